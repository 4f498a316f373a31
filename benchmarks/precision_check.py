"""Measure what the CPU check of a reduced-precision ONNX (fp16, bf16) reports for ResNet-50, under three error
models, to show the numbers behind ``model.reduced_precision.REL_L2_BOUND``.

Usage:
    python benchmarks/precision_check.py [--onnx PATH] [--json PATH]

Without --onnx, ResNet-50 with the project's seeded random weights is exported first (`rsz-export export
--weights random`). For fp16 and bf16 it reports the relative L2 error of the logits against the fp32 ONNX (both
under ONNX Runtime's CPU provider, batch 2 of image-like inputs) at the check's default sizes and at the sizes
tests/model/test_reduced_precision.py uses, for: the weights rounded only (what ONNX Runtime computes when it
runs an fp16 graph on a CPU), every op output rounded too, and only the tensors a GPU engine stores between its
fused kernels rounded (what the check runs). Writes a JSON record with the machine, versions and date.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SIZES = ((224, 224), (160, 288), (128, 128), (97, 161), (96, 128))


def _export(target: Path) -> Path:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    args = [sys.executable, "-m", "rsz_export", "export", "-o", str(target), "--weights", "random", "--no-verify"]
    subprocess.run(args, check=True, env=env, capture_output=True)
    return target


def _rel_l2(session, reference, sizes) -> float:
    from rsz_export.model.reduced_precision import _images
    from rsz_export.parity import combine, compare

    name = session.get_inputs()[0].name
    return combine(
        [compare(reference(_images(h, w)), session.run(None, {name: _images(h, w)})[0]) for h, w in sizes]
    ).rel_l2


def measure(onnx_path: Path, work: Path) -> dict:
    from rsz_export.model import reduced_precision as rp

    reference = rp._reference(onnx_path)
    results = {}
    for precision in rp.REDUCED_PRECISIONS:
        reduced = rp.reduced_precision_onnx(onnx_path, work / f"model.{precision}.onnx", precision)
        models = {
            "weights only": rp._widened(reduced, precision).SerializeToString(),
            "every op output rounded": rp._round_activations(rp._widened(reduced, precision), precision, fused=False),
            "stored tensors rounded (the check)": rp.emulation(reduced, precision),
        }
        results[precision] = {
            method: {f"{h}x{w}": _rel_l2(rp._session(model), reference, [(h, w)]) for h, w in SIZES}
            for method, model in models.items()
        }
        results[precision]["bound"] = rp.REL_L2_BOUND[precision]
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--onnx", help="an fp32 ResNet-50 export (default: export one with random weights)")
    parser.add_argument("--json", dest="json_path")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from rsz_export.artifacts.host import provenance

    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = Path(args.onnx) if args.onnx else _export(Path(tmp) / "resnet50.onnx")
        results = measure(onnx_path, Path(tmp))
    for precision, methods in results.items():
        for method, errors in methods.items():
            if method != "bound":
                print(f"{precision} {method:>36}: " + ", ".join(f"{s} {e:.2e}" for s, e in errors.items()))
        print(f"{precision} bound {methods['bound']:.0e}")
    if args.json_path:
        record = {
            "benchmark": "precision_check",
            "model": str(args.onnx or "ResNet-50, seeded random weights (rsz-export export --weights random)"),
            "rel_l2": results,
            **provenance(),
        }
        Path(args.json_path).write_text(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
