"""The interface check of a user-provided ONNX (``build --onnx``): does it take and give what rsz-export's
export does, and does it cover the plan?"""

from __future__ import annotations

from pathlib import Path

from rsz_export.errors import IntegrityError, UsageError
from rsz_export.interface import CHANNELS, INPUT_NAME, OUTPUT_KINDS, OUTPUT_NAME, feature_maps


def _dims(value) -> list[int | str]:
    """Each dim as its fixed size (int) or its symbolic name (str; '?' when unnamed)."""
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in value.type.tensor_type.shape.dim]


def _fixed_side_problem(dims: list, axis: int, name: str, lo: int, hi: int) -> str | None:
    value = dims[axis]
    if isinstance(value, str) or (lo == value == hi):
        return None
    return f"its {name} is fixed at {value} but the plan needs {lo}..{hi}"


def interface_problems(proto, plan) -> list[str]:
    """What keeps ``proto`` from serving ``plan`` as ResNet-50 does here (empty list: it fits)."""
    import onnx

    initializers = {t.name for t in proto.graph.initializer}
    inputs = [v for v in proto.graph.input if v.name not in initializers]
    outputs = list(proto.graph.output)
    if len(inputs) != 1 or inputs[0].name != INPUT_NAME:
        return [f"its inputs are {[v.name for v in inputs]}, expected exactly one named {INPUT_NAME!r}"]
    problems = []
    value, dims = inputs[0], _dims(inputs[0])
    if value.type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
        problems.append(
            f"input {INPUT_NAME!r} is {onnx.TensorProto.DataType.Name(value.type.tensor_type.elem_type)}, "
            "expected FLOAT (float32)"
        )
    if len(dims) != 4:
        return problems + [f"input {INPUT_NAME!r} has rank {len(dims)} {dims}, expected 4: [batch,3,height,width]"]
    if dims[1] != CHANNELS:
        problems.append(f"input {INPUT_NAME!r} has {dims[1]} channels (dim 1), expected {CHANNELS} (RGB)")
    heights = [p.min.h for p in plan.profiles] + [p.max.h for p in plan.profiles]
    widths = [p.min.w for p in plan.profiles] + [p.max.w for p in plan.profiles]
    batches = [p.min.batch for p in plan.profiles] + [p.max.batch for p in plan.profiles]
    for axis, name, sides in ((0, "batch", batches), (2, "height", heights), (3, "width", widths)):
        problem = _fixed_side_problem(dims, axis, name, min(sides), max(sides))
        if problem:
            problems.append(f"input {INPUT_NAME!r}: {problem}")
    if output_kind(proto) is None:
        got = [(v.name, _dims(v)) for v in outputs]
        maps = "; ".join(f"{kind}: " + ", ".join(f"{n}[batch,{c},h/{s},w/{s}]" for n, c, s in feature_maps(kind))
                         for kind in OUTPUT_KINDS[1:])
        problems.append(
            f"its outputs are {got}, expected one {OUTPUT_NAME!r} of shape [batch,classes] with a fixed class count, "
            f"or the feature maps of a backbone ({maps})"
        )
    return problems


def output_kind(proto) -> str | None:
    """Which interface the model's outputs have (one of ``interface.OUTPUT_KINDS``): ``logits`` [batch, C], or a
    backbone's feature maps, each [batch, channels, height', width'] float32 with its channel count fixed and the
    names in order; None for anything else."""
    import onnx

    if output_classes(proto) is not None:
        return OUTPUT_KINDS[0]
    outputs = list(proto.graph.output)
    for kind in OUTPUT_KINDS[1:]:
        maps = feature_maps(kind)
        if [v.name for v in outputs] == [name for name, _, _ in maps] and all(
            len(_dims(v)) == 4 and _dims(v)[1] == channels and v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
            for v, (_, channels, _) in zip(outputs, maps, strict=True)
        ):
            return kind
    return None


def output_classes(proto) -> int | None:
    """The class count of a model with one ``logits`` [batch, C] output and a fixed C >= 1, else None."""
    outputs = list(proto.graph.output)
    dims = _dims(outputs[0]) if len(outputs) == 1 and outputs[0].name == OUTPUT_NAME else []
    return dims[1] if len(dims) == 2 and isinstance(dims[1], int) and dims[1] >= 1 else None


def _external_tensors(proto) -> list[str]:
    import onnx

    return [t.name for t in proto.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]


def _non_finite_initializers(proto) -> list[str]:
    """Names of the model's floating-point weights that hold a NaN or an infinity."""
    import numpy as np
    from onnx import numpy_helper

    found = []
    for tensor in proto.graph.initializer:
        values = numpy_helper.to_array(tensor)
        if np.issubdtype(values.dtype, np.floating) and not np.isfinite(values).all():
            found.append(tensor.name)
    return found


def check_user_onnx(path: str | Path, plan) -> tuple[dict[str, str], int, str]:
    """Check that ``path`` is a single-file ONNX with this tool's interface covering ``plan``.

    Returns its metadata_props, its class count (0 for a backbone's feature maps) and its outputs' kind.
    IntegrityError (exit 4) for a missing or unreadable file or one with
    external data (never followed: it could name any file on the machine); UsageError (exit 2) naming
    every way the model's interface differs from ``images`` [batch,3,height,width] float32 ->
    ``logits`` [batch,classes] (classes fixed, any number) or a backbone's feature maps (``--outputs``).
    """
    from rsz_export.model.export import load_onnx_header

    path = Path(path)
    if not path.is_file():
        raise IntegrityError(f"--onnx {path} does not exist or is not a file")
    proto = load_onnx_header(path, "--onnx ")
    if not proto.graph.node:
        raise IntegrityError(f"--onnx {path} is not a readable ONNX model: it has no graph")
    external = _external_tensors(proto)
    if external:
        raise IntegrityError(
            f"--onnx {path} keeps {len(external)} tensor(s) in external data files (e.g. {external[0]!r})",
            hint="save it as one file: onnx.save(model, PATH, save_as_external_data=False)",
        )
    non_finite = _non_finite_initializers(proto)
    if non_finite:
        raise IntegrityError(
            f"--onnx {path} holds NaN or infinite values in {len(non_finite)} weight tensor(s): "
            + ", ".join(non_finite[:5]) + (f" and {len(non_finite) - 5} more" if len(non_finite) > 5 else ""),
            hint="export it again from weights that are finite",
        )
    problems = interface_problems(proto, plan)
    if problems:
        raise UsageError(
            f"--onnx {path} is not a ResNet-50 export this tool can build from: " + "; ".join(problems),
            hint=f"export one with: rsz-export export -o {path.name}",
        )
    return {p.key: p.value for p in proto.metadata_props}, output_classes(proto) or 0, output_kind(proto)
