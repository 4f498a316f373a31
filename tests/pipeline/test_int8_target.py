"""An int8 build to an accuracy target, end to end through the library on a tiny conv net (no export): the held-out
images and the coverage report in the calibration file and the manifest, the layers kept in float recorded and
followed by the engine's Q/DQ model, and a target no placement meets stopping with exit 1 and nothing recorded."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
from PIL import Image

from tests.helpers import RANDOM_METADATA, make_plan, run_cli, tiny_convnet


def _photos(folder, count):
    """Smooth random colour fields (noise would be no image at all), 256x320."""
    folder.mkdir(exist_ok=True)
    rng = np.random.default_rng(3)
    for k in range(count):
        coarse = rng.integers(0, 256, (4, 5, 3), dtype=np.uint8)
        Image.fromarray(coarse).resize((320, 256), Image.BILINEAR).save(folder / f"{k}.png")
    return folder


def _build(tmp_path, target, log=None):
    from rsz_export.backends.base import BuildOptions
    from rsz_export.model.calibration_set import CalibSpec
    from rsz_export.pipeline.run import BuildSpec, build

    model = tiny_convnet(tmp_path / "convnet.onnx", metadata=RANDOM_METADATA)
    spec = BuildSpec(make_plan(224, 320), tmp_path / "out", backend="onnxruntime", onnx=model,
                     options=BuildOptions(precision="int8"),
                     calibration=CalibSpec(_photos(tmp_path / "calib", 5), target=target))
    return build(spec, log or (lambda message: None)).manifest


def test_the_manifest_reports_coverage_and_the_layers_kept_in_float(tmp_path):
    lines = []
    manifest = _build(tmp_path, 0.9999, lines.append)
    report = manifest.calibration.report
    coverage, fallback = report["coverage"], report["int8_fallback"]
    (held,) = coverage["holdout"]["images"]  # a fifth of 5 images, not calibrated on
    assert held["file"] not in {i["file"] for i in manifest.calibration.images}
    assert sum(coverage["images_per_profile"]) == 4 == len(manifest.calibration.images)
    assert 0 <= coverage["clipped_share"] < 0.01 and coverage["sizes"] == ["224x224", "320x320"]
    assert fallback["met"] and fallback["target_min_cosine"] == 0.9999
    assert set(fallback["sensitivity"]) == {"c1", "c2", "add", "fc"}
    kept = [layer["layer"] for layer in fallback["float_layers"]]
    chosen = next(t for t in fallback["trials"] if t["float_layers"] == len(kept))
    assert min(chosen["worst"].values()) >= 0.9999 and fallback["float_share"] == chosen["float_share"] <= 0.5
    assert all(min(t["worst"].values()) < 0.9999 for t in fallback["trials"] if t["float_layers"] < len(kept))
    assert fallback["latency_size"] == "224x224" and all(t["latency_ms"] > 0 for t in fallback["trials"])
    assert [p["precision"] for p in fallback["profiles"]] == ["int8"] * len(manifest.plan.profiles)
    (engine,) = manifest.engines
    assert engine.settings["float_layers"] == kept
    assert engine.settings["qdq_check"]["images"] == "held-out" and engine.settings["qdq_check"]["bound"] == 0.9999
    assert any(line.startswith("int8 coverage: calibration images per profile") for line in lines)
    data = json.loads((tmp_path / "out" / manifest.calibration.file.file).read_text())
    assert data["coverage"] == coverage and data["holdout"]["files"] == [held["file"]]


def test_no_placement_meeting_the_target_stops_with_the_table(tmp_path, monkeypatch):
    from rsz_export.errors import EXIT_CHECK_FAILED, CheckFailed
    from rsz_export.model import sensitivity

    monkeypatch.setattr(sensitivity, "MAX_FLOAT_SHARE", 0.0)  # only the Add may stay in float: never enough
    with pytest.raises(CheckFailed, match="no int8 placement meets --int8-target 0.9999") as error:
        _build(tmp_path, 0.9999)
    assert error.value.exit_code == EXIT_CHECK_FAILED and "float layer(s)" in error.value.message
    assert not (tmp_path / "out" / "manifest.json").exists()
    assert not list((tmp_path / "out").glob("calibration-*.json"))


NO_OPENVINO = pytest.mark.skipif(importlib.util.find_spec("openvino") is None,
                                 reason="the [openvino] extra is not installed")


@pytest.mark.parametrize(("backend", "name"), [("onnxruntime", "ort"),
                                               pytest.param("openvino", "openvino", marks=NO_OPENVINO)])
def test_a_profile_int8_cannot_hold_to_the_target_is_built_and_served_in_fp32(tmp_path, monkeypatch, backend, name):
    """Two profiles whose held-out worst cosines differ; a target between them: the better one is int8, the other
    fp32, each in an engine of its own that the manifest, serving and bench agree on."""
    from rsz_export.backends.base import BuildOptions
    from rsz_export.model import sensitivity
    from rsz_export.model.calibration_set import CalibSpec
    from rsz_export.model.quantization import _session
    from rsz_export.pipeline.run import BuildSpec, build
    from rsz_export.serve.session import Session

    model = tiny_convnet(tmp_path / "convnet.onnx", metadata=RANDOM_METADATA)
    plan, calib = make_plan(224, 320, 2), _photos(tmp_path / "calib", 5)

    def built(target, out):
        spec = BuildSpec(plan, tmp_path / out, backend=backend, onnx=model,
                         options=BuildOptions(precision="int8"), calibration=CalibSpec(calib, target=target))
        return build(spec, lambda message: None).manifest

    every_layer_int8 = built(0.5, "probe").calibration.report["int8_fallback"]
    per_profile = [min(every_layer_int8["trials"][0]["worst"][s] for s in p["sizes"])
                   for p in every_layer_int8["profiles"]]
    assert [p["sizes"] for p in every_layer_int8["profiles"]] == [["224x224", "264x264"], ["265x265", "320x320"]]
    better = int(np.argmax(per_profile))
    assert per_profile[better] > per_profile[1 - better]  # the two profiles differ on the held-out image
    monkeypatch.setattr(sensitivity, "MAX_FLOAT_SHARE", 0.0)  # no Conv or Gemm may stay in float
    manifest = built(float(np.mean(per_profile)), "out")

    fallback = manifest.calibration.report["int8_fallback"]
    assert not fallback["met"] and [p["precision"] for p in fallback["profiles"]] == [
        "int8" if i == better else "fp32" for i in range(2)]
    by_precision = {e.precision: e for e in manifest.engines}
    assert sorted(by_precision) == ["fp32", "int8"] and manifest.precision == "int8"
    assert by_precision["int8"].profiles == (better,) and by_precision["fp32"].profiles == (1 - better,)
    assert [by_precision[p].file.file.split("/")[1] for p in ("int8", "fp32")] == ["int8", "fp32"]  # own folders
    fp32 = _session(model, None)
    with Session(tmp_path / "out") as session:
        for profile, side in ((0, 240), (1, 300)):
            x = np.random.default_rng(side).random((1, 3, side, side), dtype=np.float32)
            chosen = session.route(side, side)
            assert chosen.profile == profile
            assert session.engine_name(chosen.engine)[0] == (f"{name}-int8" if profile == better else name)
            logits, _ = session.run(x, chosen)
            exact = np.allclose(logits, fp32.run(None, {"images": x})[0], rtol=1e-4, atol=1e-5)
            assert exact == (profile != better)  # only the fp32 profile computes the fp32 model's logits
    result = run_cli("bench", str(tmp_path / "out"), "--sizes", "240,300", "--backends", backend,
                     "--iters", "2", "--warmup", "1", "--no-static", "--json", "-")
    assert result.returncode == 0, result.stderr
    points = {(p["h"], p["engine"], p["precision"]) for p in json.loads(result.stdout)["rows"]}
    assert points == {(240, f"{name}-int8" if better == 0 else name, "int8" if better == 0 else "fp32"),
                      (300, f"{name}-int8" if better == 1 else name, "int8" if better == 1 else "fp32")}



def test_engines_built_for_some_profiles_are_numbered_by_the_whole_plan():
    from rsz_export.artifacts.manifest import EngineRecord, FileRecord
    from rsz_export.pipeline.run import _profiles_of_plan

    def engine(name, profiles):  # the file keeps its name: it lies in the precision's own folder
        return EngineRecord(name, "tensorrt", "fp32", FileRecord("tensorrt-fp32-p1.engine", "0" * 64, 1), profiles, 1.0)

    assert _profiles_of_plan(engine("tensorrt-fp32-p1", (1,)), (0, 2, 3)) == engine("tensorrt-fp32-p2", (2,))
    assert _profiles_of_plan(engine("tensorrt-fp32", (0, 1)), (1, 3)) == engine("tensorrt-fp32", (1, 3))


def test_changing_only_the_target_reuses_the_ranges_and_judges_again(tmp_path):
    """The ranges depend on the export, the images, the method and the plan: a new --int8-target takes them from
    the previous calibration file (same tensors, same numbers), writes a file of its own with the new placement,
    and a changed earlier file is calibrated anew rather than trusted."""
    lines = []
    first = _build(tmp_path, 0.9999)
    old = tmp_path / "out" / first.calibration.file.file
    before = json.loads(old.read_text())
    second = _build(tmp_path, 0.5, lines.append)
    new = tmp_path / "out" / second.calibration.file.file
    assert new != old and any(line.startswith("reusing the int8 ranges of") for line in lines)
    assert not any(line.startswith("calibrating int8 ranges") for line in lines)
    after = json.loads(new.read_text())
    assert after["tensors"] == before["tensors"] and after["ranges_key"] == before["ranges_key"]
    assert after["int8_fallback"]["target_min_cosine"] == 0.5 and after["int8_fallback"]["float_layers"] == []
    data = json.loads(new.read_text())
    data["tensors"] = {name: [lo * 2, hi * 2] for name, (lo, hi) in data["tensors"].items()}
    new.write_text(json.dumps(data))  # no longer what the manifest recorded: not a source of ranges
    lines.clear()
    _build(tmp_path, 0.9999, lines.append)
    assert any(line.startswith("calibrating int8 ranges") for line in lines)


def test_an_engine_with_8_bit_weights_is_rebuilt_on_a_cpu_without_vnni(tmp_path, monkeypatch):
    """Built where the CPU has VNNI, the CPU model has 8-bit weights; the same folder built again on a CPU without
    VNNI (whose int8 sums would saturate on them) rebuilds it with 7-bit weights, judging the placement again on
    that model from the same ranges."""
    from rsz_export.artifacts import host
    from rsz_export.model.quantization import CPU_INT8_ENV

    monkeypatch.delenv(CPU_INT8_ENV, raising=False)
    monkeypatch.setattr(host, "cpu_flags", lambda: ["avx2", "fma", "avx512f", "avx512_vnni"])
    vnni = _build(tmp_path, 0.9999)
    (engine,) = vnni.engines
    assert engine.settings["quantization"]["name"] == "cpu-vnni"
    assert engine.settings["quantization"]["reduce_range"] is False
    assert vnni.calibration.report["int8_fallback"]["checked_with"] == "cpu-vnni"
    monkeypatch.setattr(host, "cpu_flags", lambda: ["avx2", "fma"])
    lines = []
    avx2 = _build(tmp_path, 0.9999, lines.append)
    assert any(line.startswith("rebuilding: engine ort-int8: its int8 model has 8-bit weights") for line in lines)
    assert any(line.startswith("reusing the int8 ranges of") for line in lines)
    (engine,) = avx2.engines
    assert engine.settings["quantization"]["name"] == "cpu" and engine.settings["quantization"]["reduce_range"]
    assert avx2.calibration.report["int8_fallback"]["checked_with"] == "cpu"


def test_bench_and_serving_refuse_an_engine_with_8_bit_weights_on_a_cpu_without_vnni(tmp_path, monkeypatch):
    from rsz_export.artifacts import host
    from rsz_export.bench.run import BenchSpec, run_bench
    from rsz_export.errors import EXIT_ENVIRONMENT, EnvironmentProblem
    from rsz_export.model.quantization import CPU_INT8_ENV

    monkeypatch.setenv(CPU_INT8_ENV, "vnni")
    _build(tmp_path, 0.9999)
    monkeypatch.setattr(host, "cpu_flags", lambda: ["avx2", "fma"])
    with pytest.raises(EnvironmentProblem, match="8-bit weights for CPUs with VNNI") as error:
        run_bench(BenchSpec(str(tmp_path / "out"), backends=("onnxruntime",)), lambda message: None)
    assert error.value.exit_code == EXIT_ENVIRONMENT
    from rsz_export.serve.session import Session

    with Session(tmp_path / "out") as session, pytest.raises(EnvironmentProblem, match="rebuild the folder"):
        session.open_all()  # what a server does before it answers: the same refusal, not saturated answers


@pytest.mark.parametrize("per_profile", [False, True], ids=["one-engine", "engine-per-profile"])
def test_tensorrt_judges_the_placement_on_its_own_model_and_builds_fp32_where_it_misses(
        tmp_path, monkeypatch, trt_double, per_profile):
    """Over the TensorRT double: the trials run TensorRT's Q/DQ model (exact arithmetic), so a target between its
    two profiles' worst cosines gives an int8 engine from the TensorRT model for the one and an fp32 engine for
    the other, each numbered by the whole plan's profile, and the build's own check of that model passes."""
    from rsz_export.backends.base import BuildOptions
    from rsz_export.model import sensitivity
    from rsz_export.model.calibration_set import CalibSpec
    from rsz_export.pipeline.run import BuildSpec, build

    model = tiny_convnet(tmp_path / "convnet.onnx", metadata=RANDOM_METADATA)
    plan, calib = make_plan(224, 320, 2), _photos(tmp_path / "calib", 5)
    monkeypatch.setattr(sensitivity, "MAX_FLOAT_SHARE", 0.0)

    def built(target, out):
        spec = BuildSpec(plan, tmp_path / out, backend="tensorrt", onnx=model,
                         options=BuildOptions(precision="int8", engine_per_profile=per_profile),
                         calibration=CalibSpec(calib, target=target))
        return build(spec, lambda message: None).manifest

    probe = built(0.5, "probe").calibration.report["int8_fallback"]
    assert probe["checked_with"] == "tensorrt"
    worst = [min(probe["trials"][0]["worst"][s] for s in p["sizes"]) for p in probe["profiles"]]
    better = int(np.argmax(worst))
    assert worst[better] > worst[1 - better]
    manifest = built(float(np.mean(worst)), "out")
    engines = {e.precision: e for e in manifest.engines}
    assert engines["int8"].profiles == (better,) and engines["fp32"].profiles == (1 - better,)
    assert engines["int8"].settings["precision_path"] == "qdq-onnx"
    assert engines["int8"].settings["reduced_check"]["qdq_check"]["images"] == "held-out"
    suffix = (lambda i: f"-p{i}") if per_profile else (lambda i: "")
    assert engines["int8"].name == f"tensorrt-int8{suffix(better)}"
    assert engines["fp32"].name == f"tensorrt-fp32{suffix(1 - better)}"
    assert probe["latency_size"] is None and all(t["latency_ms"] is None for t in probe["trials"])  # no GPU timing
