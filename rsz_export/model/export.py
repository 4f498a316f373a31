"""torch -> ONNX with named dynamic axes, post-export checks, embedded metadata, and verification.

The exported model takes ``images`` [batch, 3, height, width] float32 (ImageNet-normalised RGB) and gives
``logits`` [batch, 1000]. It is independent of any planned range: it accepts every side in 32..4096, so
one export serves every plan and backend.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from rsz_export import __version__
from rsz_export.errors import CheckFailed, IntegrityError, UsageError
from rsz_export.fileio import atomic_path
from rsz_export.imagenet import MEAN, STD
from rsz_export.manifest import WeightsRecord
from rsz_export.shapes import MAX_BATCH, MAX_SIZE, MIN_SIZE, Resolution

INPUT_NAME = "images"
OUTPUT_NAME = "logits"
OPSET = 20
VERIFY_SIZES = (Resolution(224, 224), Resolution(227, 341), Resolution(800, 800), Resolution(32, 32))
VERIFY_RTOL = 1e-5
_EXAMPLE_BATCH = 2  # torch.export specialises dimensions of size 0 and 1, so the example batch must be >= 2


@dataclass(frozen=True)
class SizeCheck:
    """ONNX Runtime against PyTorch at one size."""

    size: Resolution
    rel_l2: float
    top1_match: bool

    @property
    def passed(self) -> bool:
        return self.rel_l2 <= VERIFY_RTOL and self.top1_match


def export_metadata(weights: WeightsRecord) -> dict[str, str]:
    """The metadata_props every exported model carries: where it came from and how to feed it."""
    versions = {name: metadata.version(name) for name in ("torch", "torchvision", "onnx")}
    return {
        "rsz_export.version": __version__,
        "rsz_export.versions": json.dumps(versions, sort_keys=True),
        "rsz_export.weights_id": weights.id,
        "rsz_export.weights_sha256": weights.sha256,
        "rsz_export.weights_seed": "" if weights.seed is None else str(weights.seed),
        "rsz_export.preprocessing": json.dumps(
            {"layout": "NCHW", "color": "RGB", "scale": "1/255", "mean": list(MEAN), "std": list(STD)}
        ),
        "rsz_export.size_range": f"{MIN_SIZE}..{MAX_SIZE}",
        "rsz_export.input": f"{INPUT_NAME}[batch,3,height,width] float32",
        "rsz_export.output": f"{OUTPUT_NAME}[batch,1000] float32",
    }


def export_onnx(
    model, weights: WeightsRecord, path: str | Path, log=lambda message: None, verify: bool = True, export_key: str = ""
) -> tuple[Path, list[SizeCheck]]:
    """Export ``model`` to a single-file ONNX at ``path``, checked, self-describing and (by default) verified
    against PyTorch, all before the file appears under its name: a file at ``path`` is always a finished one."""
    import onnx
    import torch
    from torch.export import Dim

    dims = {
        0: Dim("batch", min=1, max=MAX_BATCH),
        2: Dim("height", min=MIN_SIZE, max=MAX_SIZE),
        3: Dim("width", min=MIN_SIZE, max=MAX_SIZE),
    }
    example = torch.zeros(_EXAMPLE_BATCH, 3, 224, 224)
    path = Path(path)
    with atomic_path(path) as tmp:
        log("      exporting ResNet-50 to ONNX (torch.export, dynamic batch/height/width)")
        chatter = io.StringIO()  # the exporter prints its progress; keep it out of our output unless it fails
        try:
            with contextlib.redirect_stdout(chatter):
                torch.onnx.export(
                    model,
                    (example,),
                    str(tmp),
                    dynamo=True,
                    input_names=[INPUT_NAME],
                    output_names=[OUTPUT_NAME],
                    dynamic_shapes=(dims,),
                    external_data=False,
                    opset_version=OPSET,
                    verbose=False,
                )
        except Exception:
            sys.stderr.write(chatter.getvalue())
            raise
        proto = onnx.load(str(tmp))
        _name_dims(proto)
        provenance = {
            "rsz_export.export_key": export_key,
            "rsz_export.weights_source": weights.source,
            "rsz_export.verified": "true" if verify else "false",  # true only ever reaches `path` if it passed
        }
        for key, value in {**export_metadata(weights), **provenance}.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        proto = onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True)
        onnx.checker.check_model(proto, full_check=True)
        onnx.save(proto, str(tmp))
        del proto
        checks = verify_export(model, tmp) if verify else []
    return path, checks


def _name_dims(proto) -> None:
    """Make sure the dynamic dims carry the names users see in every tool, whatever the exporter chose."""
    names = {INPUT_NAME: ("batch", None, "height", "width"), OUTPUT_NAME: ("batch", None)}
    for value in list(proto.graph.input) + list(proto.graph.output):
        for dim, name in zip(value.type.tensor_type.shape.dim, names.get(value.name, ())):
            if name:
                dim.dim_param = name


def read_metadata(path: str | Path) -> dict[str, str]:
    """The metadata_props of an ONNX file (loads only the graph header, not the weights into memory twice)."""
    import onnx

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError, OSError and others for a bad file
        raise IntegrityError(f"{path} is not a readable ONNX model: {exc}") from None
    return {p.key: p.value for p in proto.metadata_props}


def verify_export(model, onnx_path: str | Path, sizes=VERIFY_SIZES, seed: int = 0) -> list[SizeCheck]:
    """Run ONNX Runtime and PyTorch at each size; CheckFailed naming every size that fails."""
    import numpy as np
    import onnxruntime as ort
    import torch

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(seed)
    checks = []
    for size in sizes:
        images = rng.standard_normal((1, 3, size.h, size.w), dtype=np.float32)
        with torch.no_grad():
            expected = model(torch.from_numpy(images)).numpy()
        actual = session.run([OUTPUT_NAME], {INPUT_NAME: images})[0]
        rel = float(np.linalg.norm(actual - expected) / max(np.linalg.norm(expected), 1e-30))
        checks.append(SizeCheck(size, rel, bool((actual.argmax(1) == expected.argmax(1)).all())))
    failed = [c for c in checks if not c.passed]
    if failed:
        detail = ", ".join(
            f"{c.size} (rel L2 {c.rel_l2:.2e}, top-1 {'same' if c.top1_match else 'differs'})" for c in failed
        )
        raise CheckFailed(
            f"exported ONNX disagrees with PyTorch at {detail}; allowed rel L2 {VERIFY_RTOL:g}, same top-1"
        )
    return checks


# ---- a user-provided ONNX (``build --onnx``) -----------------------------------------------------------


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
    if dims[1] != 3:
        problems.append(f"input {INPUT_NAME!r} has {dims[1]} channels (dim 1), expected 3 (RGB)")
    heights = [p.min.h for p in plan.profiles] + [p.max.h for p in plan.profiles]
    widths = [p.min.w for p in plan.profiles] + [p.max.w for p in plan.profiles]
    batches = [p.min.batch for p in plan.profiles] + [p.max.batch for p in plan.profiles]
    for axis, name, sides in ((0, "batch", batches), (2, "height", heights), (3, "width", widths)):
        problem = _fixed_side_problem(dims, axis, name, min(sides), max(sides))
        if problem:
            problems.append(f"input {INPUT_NAME!r}: {problem}")
    out_dims = _dims(outputs[0]) if len(outputs) == 1 else []
    if len(outputs) != 1 or outputs[0].name != OUTPUT_NAME or len(out_dims) != 2 or out_dims[1] != 1000:
        got = [(v.name, _dims(v)) for v in outputs]
        problems.append(f"its outputs are {got}, expected one {OUTPUT_NAME!r} of shape [batch,1000]")
    return problems


def _external_tensors(proto) -> list[str]:
    import onnx

    return [t.name for t in proto.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]


def check_user_onnx(path: str | Path, plan) -> dict[str, str]:
    """Check that ``path`` is a single-file ONNX with this tool's interface covering ``plan``.

    Returns its metadata_props. IntegrityError (exit 4) for a missing or unreadable file or one with
    external data (never followed: it could name any file on the machine); UsageError (exit 2) naming
    every way the model's interface differs from ``images`` [batch,3,height,width] float32 ->
    ``logits`` [batch,1000].
    """
    import onnx

    path = Path(path)
    if not path.is_file():
        raise IntegrityError(f"--onnx {path} does not exist or is not a file")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError, OSError and others for a bad file
        raise IntegrityError(f"--onnx {path} is not a readable ONNX model: {str(exc)[:300]}") from None
    if not proto.graph.node:
        raise IntegrityError(f"--onnx {path} is not a readable ONNX model: it has no graph")
    external = _external_tensors(proto)
    if external:
        raise IntegrityError(
            f"--onnx {path} keeps {len(external)} tensor(s) in external data files (e.g. {external[0]!r})",
            hint="save it as one file: onnx.save(model, PATH, save_as_external_data=False)",
        )
    problems = interface_problems(proto, plan)
    if problems:
        raise UsageError(
            f"--onnx {path} is not a ResNet-50 export this tool can build from: " + "; ".join(problems),
            hint=f"export one with: rsz-export export -o {path.name}",
        )
    return {p.key: p.value for p in proto.metadata_props}
