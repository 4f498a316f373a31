"""A backbone build on TensorRT through the real command line over the test double (``python -m tests.backends.
trt_cli``: subprocesses, real exit codes), on both API surfaces: ``build --backend tensorrt --outputs fpn`` of a
five-output stand-in with the FPN's names, channels and strides (``tests.model.detectors.tiny_feature_onnx``: no
ResNet-50 export) over 64..160 in two profiles, then ``validate`` with a feature build's defaults (its PyTorch
reference is the stand-in itself: ``RSZ_FAKE_TRT_REFERENCE``) and ``bench``. Every feature map must come back
from the engine in each profile, within fp32's per-map bound of the reference (and of the export), and bench
must time each profile."""

from __future__ import annotations

import json

import pytest

from rsz_export.interface import FPN_NAMES
from rsz_export.validate.tolerance import FEATURE_FP32_RTOL
from tests.backends import trt_cli
from tests.backends.trt_double import V10, V11
from tests.helpers import RANDOM_METADATA
from tests.model.detectors import tiny_feature_onnx

SURFACES = {"10.x": V10, "11.x": V11}
RANGE = ["--min", "64", "--max", "160", "--profiles", "2", "--batch", "1-2"]


@pytest.fixture(scope="module")
def stand_in(tmp_path_factory):
    return tiny_feature_onnx(tmp_path_factory.mktemp("trt-fpn") / "fpn.onnx", "fpn", metadata=RANDOM_METADATA)


def _ok(result, command: str) -> None:
    assert result.returncode == 0, f"{command}: exit {result.returncode}\n{result.stderr[-3000:]}"
    assert "Traceback" not in result.stderr, f"{command}: {result.stderr[-3000:]}"


@pytest.mark.slow  # three CLI processes per API generation: about 8 s each, over the fast tier's budget
@pytest.mark.parametrize("surface", SURFACES)
def test_an_fpn_build_on_tensorrt_validates_and_benches_every_map(surface, stand_in, tmp_path):
    out, env = tmp_path / "engines", {"version": SURFACES[surface], "reference": str(stand_in)}
    _ok(trt_cli.run("build", out, *RANGE, "--backend", "tensorrt", "--onnx", stand_in, "--outputs", "fpn", **env),
        "build")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["outputs"] == "fpn" and manifest["output_names"] == list(FPN_NAMES)
    assert [(e["backend"], e["profiles"]) for e in manifest["engines"]] == [("tensorrt", [0, 1])]

    _ok(trt_cli.run("validate", out, "--json", tmp_path / "validate.json", **env), "validate")
    report = json.loads((tmp_path / "validate.json").read_text())
    assert report["passed"] and report["environment"]["outputs"] == list(FPN_NAMES)
    engine = [c for c in report["cases"] if c["stage"] == "engine"]
    for profile, shapes in enumerate(manifest["plan"]["profiles"]):  # each map bound and returned in each profile
        mine = [c for c in engine if c["profiles"] == [profile]]
        sizes = {tuple(c["size"]) for c in mine}
        assert sorted((tuple(c["size"]), c["output"]) for c in mine) == sorted(
            (size, name) for size in sizes for name in FPN_NAMES)
        corners = {tuple(shapes[k][2:]) for k in ("min", "max")}
        assert corners < sizes and tuple(shapes["opt"][2:]) not in sizes  # a feature build's grid: no opt size
    assert all(c["status"] == "passed" and c["stats"]["rel_l2"] <= FEATURE_FP32_RTOL for c in report["cases"])
    assert report["inputs_per_size"] == 1 and {c["stats"]["rows"] for c in report["cases"]} == {1}  # one in turn
    assert {i["name"] for c in engine for i in c["inputs"]} == set(report["inputs"])  # each input at some size

    bench_json = tmp_path / "bench.json"
    _ok(trt_cli.run("-q", "bench", out, "--backends", "tensorrt", "--iters", "2", "--json", bench_json, **env),
        "bench")
    bench = json.loads(bench_json.read_text())
    dynamic = [r for r in bench["rows"] if r["variant"] == "dynamic"]
    assert bench["outputs"] == "fpn" and {r["profile"] for r in dynamic} == {0, 1}
    assert all(r["backend"] == "tensorrt" and r["p50_ms"] > 0 and r["gflop"] > 0 for r in dynamic)
