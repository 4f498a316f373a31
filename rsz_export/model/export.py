"""torch -> ONNX with named dynamic axes, post-export checks, embedded metadata, and verification.

The exported model takes ``images`` [batch, 3, height, width] float32 (ImageNet-normalised RGB) and gives
``logits`` [batch, classes] (1000 for ImageNet weights; a fine-tuned checkpoint's own head otherwise; the
count is in its metadata). It is independent of any planned range: it accepts every side in 32..4096, so
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
from rsz_export.artifacts.files import atomic_path
from rsz_export.artifacts.manifest import WeightsRecord
from rsz_export.errors import CheckFailed, IntegrityError
from rsz_export.images.imagenet import MEAN, STD
from rsz_export.interface import CHANNELS, DEFAULT_OUTPUTS, INPUT_NAME, OUTPUT_NAME, feature_maps, output_names
from rsz_export.parity import ParityStats, compare
from rsz_export.shapes import MAX_BATCH, MAX_SIZE, MIN_SIZE, Resolution

OPSET = 20
VERIFY_SIZES = (Resolution(224, 224), Resolution(227, 341), Resolution(800, 800), Resolution(32, 32))
VERIFY_RTOL = 1e-5
_EXAMPLE_BATCH = 2  # torch.export specialises dimensions of size 0 and 1, so the example batch must be >= 2


@dataclass(frozen=True)
class SizeCheck:
    """ONNX Runtime against PyTorch at one size."""

    size: Resolution
    stats: ParityStats
    output: str = OUTPUT_NAME
    """The output compared; feature maps are judged by their relative L2 alone (they have no top-1)."""

    @property
    def rel_l2(self) -> float:
        return self.stats.rel_l2

    @property
    def passed(self) -> bool:
        return self.stats.rel_l2 <= VERIFY_RTOL and (self.output != OUTPUT_NAME or self.stats.top1 == 1.0)


def output_description(outputs: str, num_classes: int) -> str:
    """The outputs' names, shapes and types as the metadata states them."""
    maps = feature_maps(outputs)
    if not maps:
        return f"{OUTPUT_NAME}[batch,{num_classes}] float32"
    return "; ".join(f"{name}[batch,{channels},ceil(height/{stride}),ceil(width/{stride})] float32"
                     for name, channels, stride in maps)


def export_metadata(weights: WeightsRecord, outputs: str = DEFAULT_OUTPUTS) -> dict[str, str]:
    """The metadata_props every exported model carries: where it came from and how to feed it."""
    versions = {name: metadata.version(name) for name in ("torch", "torchvision", "onnx")}
    return {
        "rsz_export.version": __version__,
        "rsz_export.versions": json.dumps(versions, sort_keys=True),
        "rsz_export.weights_id": weights.id,
        "rsz_export.weights_sha256": weights.sha256,
        "rsz_export.weights_seed": "" if weights.seed is None else str(weights.seed),
        "rsz_export.weights_content_sha256": weights.content_sha256 or "",
        "rsz_export.preprocessing": json.dumps(
            {"layout": "NCHW", "color": "RGB", "scale": "1/255", "mean": list(MEAN), "std": list(STD)}
        ),
        "rsz_export.size_range": f"{MIN_SIZE}..{MAX_SIZE}",
        "rsz_export.input": f"{INPUT_NAME}[batch,{CHANNELS},height,width] float32",
        "rsz_export.output": output_description(outputs, weights.num_classes),
        "rsz_export.num_classes": str(0 if feature_maps(outputs) else weights.num_classes),
        "rsz_export.outputs": outputs,
        "rsz_export.output_names": json.dumps(list(output_names(outputs))),
    }


def export_onnx(
    model, weights: WeightsRecord, path: str | Path, log=lambda message: None, verify: bool = True,
    export_key: str = "", outputs: str = DEFAULT_OUTPUTS,
) -> tuple[Path, list[SizeCheck]]:
    """Export ``model`` (giving ``outputs``: ``logits``, or a tuple of feature maps in ``output_names`` order) to a
    single-file ONNX at ``path``, checked, self-describing and (by default) verified against PyTorch, all before
    the file appears under its name: a file at ``path`` is always a finished one."""
    import onnx
    import torch
    from torch.export import Dim

    dims = {
        0: Dim("batch", min=1, max=MAX_BATCH),
        2: Dim("height", min=MIN_SIZE, max=MAX_SIZE),
        3: Dim("width", min=MIN_SIZE, max=MAX_SIZE),
    }
    example = torch.zeros(_EXAMPLE_BATCH, CHANNELS, 224, 224)
    path = Path(path)
    with atomic_path(path) as tmp:
        what = "" if outputs == DEFAULT_OUTPUTS else f" ({outputs}: {', '.join(output_names(outputs))})"
        log(f"exporting ResNet-50{what} to ONNX (torch.export, dynamic batch/height/width)")
        chatter = io.StringIO()  # the exporter prints its progress; keep it out of our output unless it fails
        try:
            with contextlib.redirect_stdout(chatter):
                torch.onnx.export(
                    model,
                    (example,),
                    str(tmp),
                    dynamo=True,
                    input_names=[INPUT_NAME],
                    output_names=list(output_names(outputs)),
                    dynamic_shapes=(dims,),
                    external_data=False,
                    opset_version=OPSET,
                    verbose=False,
                )
        except Exception:
            sys.stderr.write(chatter.getvalue())
            raise
        proto = onnx.load(str(tmp))
        _name_dims(proto, outputs)
        provenance = {
            "rsz_export.export_key": export_key,
            "rsz_export.weights_source": weights.source,
            "rsz_export.verified": "true" if verify else "false",  # true only ever reaches `path` if it passed
        }
        for key, value in {**export_metadata(weights, outputs), **provenance}.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        proto = onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True)
        onnx.checker.check_model(proto, full_check=True)
        onnx.save(proto, str(tmp))
        del proto
        checks = verify_export(model, tmp, outputs=outputs) if verify else []
    return path, checks


def _name_dims(proto, outputs: str = DEFAULT_OUTPUTS) -> None:
    """Make sure the dynamic dims carry the names users see in every tool, whatever the exporter chose (a feature
    map's sides: ``ceil(height/stride)``)."""
    names = {INPUT_NAME: ("batch", None, "height", "width"), OUTPUT_NAME: ("batch", None)}
    for name, _, stride in feature_maps(outputs):
        names[name] = ("batch", None, f"ceil(height/{stride})", f"ceil(width/{stride})")
    for value in list(proto.graph.input) + list(proto.graph.output):
        for dim, name in zip(value.type.tensor_type.shape.dim, names.get(value.name, ())):
            if name:
                dim.dim_param = name


def load_onnx_header(path: str | Path, what: str = ""):
    """An ONNX file's graph without following external data; IntegrityError for a file that is not ONNX."""
    import onnx

    try:
        return onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError, OSError and others for a bad file
        raise IntegrityError(f"{what}{path} is not a readable ONNX model: {str(exc)[:300]}") from None


def read_metadata(path: str | Path) -> dict[str, str]:
    """The metadata_props of an ONNX file."""
    return {p.key: p.value for p in load_onnx_header(path).metadata_props}


def verify_export(model, onnx_path: str | Path, sizes=VERIFY_SIZES, seed: int = 0,
                  outputs: str = DEFAULT_OUTPUTS) -> list[SizeCheck]:
    """Run ONNX Runtime and PyTorch at each size, comparing every output; CheckFailed naming every size (and
    output) that fails."""
    import numpy as np
    import onnxruntime as ort
    import torch

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(seed)
    names = output_names(outputs)
    checks = []
    for size in sizes:
        images = rng.standard_normal((1, CHANNELS, size.h, size.w), dtype=np.float32)
        with torch.no_grad():
            expected = model(torch.from_numpy(images))
        expected = [expected] if outputs == DEFAULT_OUTPUTS else list(expected)
        actual = session.run(list(names), {INPUT_NAME: images})
        for name, want, got in zip(names, expected, actual, strict=True):
            want = want.numpy()
            if want.shape != got.shape:
                raise CheckFailed(f"exported ONNX gives {name} of shape {list(got.shape)} at {size}; PyTorch gives "
                                  f"{list(want.shape)}")
            checks.append(SizeCheck(size, compare(want.reshape(len(want), -1), got.reshape(len(got), -1)), name))
    failed = [c for c in checks if not c.passed]
    if failed:
        detail = ", ".join(
            f"{c.size}{'' if c.output == OUTPUT_NAME else ' ' + c.output} (rel L2 {c.rel_l2:.2e}"
            + (f", top-1 {'same' if c.stats.top1 == 1.0 else 'differs'})" if c.output == OUTPUT_NAME else ")")
            for c in failed
        )
        what = "same top-1" if outputs == DEFAULT_OUTPUTS else "per output"
        raise CheckFailed(f"exported ONNX disagrees with PyTorch at {detail}; allowed rel L2 {VERIFY_RTOL:g}, {what}")
    return checks
