"""A user-provided ONNX (``build --onnx``): its interface checked, its class count read, and the weights it
stands for named."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from rsz_export.artifacts.files import sha256_file
from rsz_export.artifacts.manifest import WeightsRecord
from rsz_export.errors import UsageError
from rsz_export.interface import DEFAULT_OUTPUTS, NUM_CLASSES, output_names
from rsz_export.shapes import is_digits


@dataclass(frozen=True)
class ImportedOnnx:
    """A user-provided ONNX that passed the interface check: its hash, its class count (the ``logits`` width; 0
    for feature maps), the weights its metadata names (None when it names none) and its outputs' kind."""

    path: Path
    sha256: str
    num_classes: int
    weights: WeightsRecord | None
    outputs: str = DEFAULT_OUTPUTS


def weights_from_metadata(meta: dict[str, str], num_classes: int) -> WeightsRecord | None:
    """The WeightsRecord an rsz-export ONNX names in its metadata, or None when it does not say enough."""
    weights_id, sha = meta.get("rsz_export.weights_id"), meta.get("rsz_export.weights_sha256")
    if not weights_id or not sha:
        return None
    source = meta.get("rsz_export.weights_source", "")
    seed_text = meta.get("rsz_export.weights_seed") or ""
    if not seed_text and weights_id == "random":  # exports before weights_seed: "numpy PCG64 seed N"
        found = re.search(r"seed ([0-9]+)\Z", source)
        seed_text = found.group(1) if found else ""
    if weights_id == "random" and not is_digits(seed_text):
        return None
    seed = int(seed_text) if is_digits(seed_text) else None
    content = meta.get("rsz_export.weights_content_sha256") or None
    if not num_classes and weights_id != "file":  # a feature build of seeded or ImageNet weights: their head's size
        num_classes = NUM_CLASSES
    return WeightsRecord(weights_id, sha, source, seed, None, content, num_classes)


def check_import(spec) -> ImportedOnnx:
    """Check ``spec.onnx`` (interface, weights to validate against) without writing anything."""
    from rsz_export.model.onnx_interface import check_user_onnx

    meta, num_classes, kind = check_user_onnx(spec.onnx, spec.plan)
    if kind != spec.outputs:
        gives = "logits" if kind == DEFAULT_OUTPUTS else f"the {kind} feature maps ({', '.join(output_names(kind))})"
        raise UsageError(f"--onnx {spec.onnx} gives {gives}, but the build asks for --outputs {spec.outputs}",
                         hint=f"add --outputs {kind}")
    weights = weights_from_metadata(meta, num_classes)
    if spec.weights is None and weights is None:
        raise UsageError(
            f"--onnx {spec.onnx} does not say which weights it was exported from (no rsz_export metadata), "
            "so validate would have no PyTorch reference",
            hint="give the weights it holds with --weights imagenet1k-v1|imagenet1k-v2|random|PATH",
        )
    return ImportedOnnx(Path(spec.onnx), sha256_file(spec.onnx), num_classes, weights, kind)
