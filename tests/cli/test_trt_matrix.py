"""Every command a user runs on a TensorRT build, through the real command line over the TensorRT test double
(``python -m tests.backends.trt_cli``: subprocesses, real exit codes), on both API surfaces (10.x and 11.x):
builds fp32 (batch 1..2), int8 and ``--engine-per-profile`` of a tiny classifier with ResNet-50's interface, each
followed by ``validate`` (one random input per size; its PyTorch reference is the classifier itself, as the
manifest names ResNet-50 weights the tiny model does not hold: ``RSZ_FAKE_TRT_REFERENCE``), ``predict`` (a photo
and a folder), ``bench`` with its defaults (every default size, static twins; two timed calls per point),
``sweep`` and ``triton``. Each row shares one build across its commands; each command must exit 0 and its
output is checked.

The fast tier keeps one row (11.x fp32); the others run in the full suite. What the double cannot show (tactics,
reduced-precision numerics, real memory and timings): docs/tensorrt.md "What ran where".
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.backends import trt_cli
from tests.backends.trt_double import V10, V11
from tests.helpers import SAMPLE_IMAGE

SURFACES = {"10.x": V10, "11.x": V11}
KINDS = {
    "fp32": ["--batch", "1-2"],
    "int8": ["--precision", "int8", "--calib-count", "4"],
    "per-profile": ["--engine-per-profile"],
}
RANGE = ["--min", "64", "--max", "160", "--profiles", "2"]
ROWS = [pytest.param(s, k, id=f"{s}-{k}") for s in SURFACES for k in KINDS]
pytestmark = pytest.mark.slow  # each row builds and runs six commands (about 15 s of CPU): the full suite runs them


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> tuple[Path, Path]:
    """(a folder of three small photos, a labelled folder of two classes) for predict and sweep."""
    from PIL import Image

    root = tmp_path_factory.mktemp("trt-matrix-inputs")
    photos, labeled = root / "photos", root / "labeled"
    for i, (size, colour) in enumerate(
        (((120, 90), (200, 40, 40)), ((64, 140), (40, 200, 40)), ((90, 90), (40, 40, 200)))
    ):
        photos.mkdir(exist_ok=True)
        Image.new("RGB", size, colour).save(photos / f"{i}.jpg")
    for name in ("tench", "goldfish"):
        (labeled / name).mkdir(parents=True)
        Image.new("RGB", (100, 80), (120, 60, 30)).save(labeled / name / "a.png")
    return photos, labeled


def _ok(result, cell: str) -> None:
    assert result.returncode == 0, f"{cell}: exit {result.returncode}\n{result.stderr[-3000:]}"
    assert "Traceback" not in result.stderr, f"{cell}: {result.stderr[-3000:]}"


def _check_build(out: Path, kind: str, version: str) -> dict:
    manifest = json.loads((out / "manifest.json").read_text())
    engines = manifest["engines"]
    assert {e["backend"] for e in engines} == {"tensorrt"} and manifest["precision"] == kind.replace(
        "per-profile", "fp32"
    )
    assert [tuple(e["profiles"]) for e in engines] == ([(0,), (1,)] if kind == "per-profile" else [(0, 1)])
    assert all(e["settings"]["tensorrt_version"] == version for e in engines)
    if kind == "fp32":
        assert manifest["plan"]["batch"][:2] == [1, 2]
    if kind == "int8":
        import onnx

        assert manifest["calibration"]["file"]
        qdq = [f for f in engines[0]["extra_files"] if f["file"].endswith(".onnx")]
        model = onnx.load(str(out / qdq[0]["file"]))
        kinds = {t.name: t.data_type for t in model.graph.initializer}
        dq_inputs = [n.input[0] for n in model.graph.node if n.op_type == "DequantizeLinear"]
        assert dq_inputs and all(kinds.get(name, onnx.TensorProto.INT8) == onnx.TensorProto.INT8 for name in dq_inputs)
    return manifest


def _check_validate(path: Path, manifest) -> None:
    report = json.loads(path.read_text())
    cases = [c for c in report["cases"] if c["stage"] == "engine"]
    assert {c["engine"] for c in cases} == {e["name"] for e in manifest["engines"]}
    assert {c["profiles"][0] for c in cases} == {0, 1} and all(c["status"] == "passed" for c in report["cases"])


def _check_predict(result, manifest, photos: Path) -> None:
    report = json.loads(result.stdout)
    assert report["complete"] and report["classified"] == 1 + len(list(photos.iterdir())) and report["skipped"] == 0
    names = {e["name"] for e in manifest["engines"]}
    for prediction in report["predictions"]:
        assert prediction["backend"] == "tensorrt" and prediction["engine"] in names
        assert prediction["profile"] in (0, 1) and len(prediction["top"]) == 5
        scores = [t["score"] for t in prediction["top"]]
        assert scores == sorted(scores, reverse=True) and 0 < sum(scores) <= 1.0001


def _check_bench(path: Path, manifest) -> None:
    rows = json.loads(path.read_text())["rows"]
    dynamic = [r for r in rows if r["variant"] == "dynamic"]
    static = [r for r in rows if r["variant"] == "static"]
    assert dynamic and len(static) == len(dynamic), [r["variant"] for r in rows]
    assert all(r["backend"] == "tensorrt" and r["precision"] == manifest["precision"] for r in dynamic)
    assert all(r["p50_ms"] > 0 and r["dynamic_over_static"] > 0 and r["trt_activation_mib"] > 0 for r in dynamic)
    assert {r["profile"] for r in dynamic} == {0, 1}


def _check_sweep(result, manifest) -> None:
    rows = json.loads(result.stdout)["rows"]
    names = {e["name"] for e in manifest["engines"]}
    assert rows and all(r["backend"] == "tensorrt" and r["engine"] in names for r in rows)
    covered = [r for r in rows if r["covered"]]
    assert all(r["images"] == 2 and r["profile"] in (0, 1) for r in covered)
    assert {r["size"] for r in covered} == {r["size"] for r in rows}  # every size runs on some engine
    assert any(r["pareto"] for r in rows)


def _check_triton(repo: Path, manifest, kind: str) -> None:
    models = ["resnet50_p0", "resnet50_p1"] if kind == "per-profile" else ["resnet50"]
    for model in models:
        config = (repo / model / "config.pbtxt").read_text()
        assert 'platform: "tensorrt_plan"' in config and "KIND_GPU" in config, config
        assert (repo / model / "1" / "model.plan").stat().st_size > 0
    plans = sorted((repo / m / "1" / "model.plan").read_bytes() for m in models)
    engines = sorted((Path(manifest["_dir"]) / e["file"]["file"]).read_bytes() for e in manifest["engines"])
    assert plans == engines


@pytest.mark.parametrize("surface, kind", ROWS)
def test_every_command_on_a_tensorrt_build(surface, kind, tmp_path, classifier_onnx, inputs):
    version, photos, labeled = SURFACES[surface], *inputs
    out, env = tmp_path / "engines", {"version": SURFACES[surface], "reference": str(classifier_onnx)}
    built = trt_cli.run("build", out, *RANGE, "--backend", "tensorrt", "--onnx", classifier_onnx, *KINDS[kind], **env)
    _ok(built, "build")
    manifest = {**_check_build(out, kind, version), "_dir": str(out)}
    validated = trt_cli.run("validate", out, "--random-inputs", "1", "--json", tmp_path / "validate.json", **env)
    _ok(validated, "validate")
    _check_validate(tmp_path / "validate.json", manifest)
    predicted = trt_cli.run("-q", "predict", out, SAMPLE_IMAGE, photos, "--json", "-", **env)
    _ok(predicted, "predict")
    _check_predict(predicted, manifest, photos)
    bench_json = tmp_path / "bench.json"
    benched = trt_cli.run("-q", "bench", out, "--backends", "tensorrt", "--iters", "2", "--json", bench_json, **env)
    _ok(benched, "bench")
    _check_bench(bench_json, manifest)
    swept = trt_cli.run("-q", "sweep", out, "--images", labeled, "--json", "-", **env)
    _ok(swept, "sweep")
    _check_sweep(swept, manifest)
    exported = trt_cli.run("-q", "triton", out, "--repo", tmp_path / "repo", **env)
    _ok(exported, "triton")
    _check_triton(tmp_path / "repo", manifest, kind)
