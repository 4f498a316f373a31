"""An int8 build end to end: its calibration artifact, reuse, a changed calibration file, and the engine served
and validated like any other (the shared ``int8_engines`` build)."""

from __future__ import annotations

import json
import shutil

import numpy as np

from rsz_export.artifacts.manifest import load_manifest
from rsz_export.interface import INT8_TARGET
from rsz_export.model.calibration import FORMAT
from rsz_export.model.calibration_set import BUNDLED_WARNING
from tests.helpers import SAMPLE_IMAGE, assert_clean_failure, rebuild_int8_copy, run_cli


def test_manifest_records_the_calibration_and_the_checked_qdq_model(int8_engines):
    manifest = load_manifest(int8_engines)
    calibration = manifest.calibration
    assert manifest.precision == "int8" and BUNDLED_WARNING in manifest.warnings
    assert calibration.method == "percentile" and calibration.source == "bundled" and len(calibration.images) == 4
    assert all(len(i["sha256"]) == 64 and i["crop"] for i in calibration.images)
    sides = [int(v) for i in calibration.images for v in i["size"].split("x")]
    assert min(sides) >= 224 and max(sides) <= 288
    data = json.loads((int8_engines / calibration.file.file).read_text())
    assert data["format"] == FORMAT and data["key"] == manifest.keys["calibration"] and len(data["tensors"]) > 100
    assert data["process_peak_rss_mib"] < 4096
    (engine,) = manifest.engines
    assert engine.precision == "int8" and engine.settings["qdq_check"]["passed"]
    assert engine.settings["quantization"]["activation_type"] == "QUInt8"
    assert any(f.file.endswith("model.int8-cpu.onnx") for f in engine.extra_files)


def test_the_default_target_holds_on_held_out_photographs_with_the_classifier_in_float(int8_engines):
    """Two bundled photographs are held out whole; every layer's sensitivity is measured on them, and the layers
    kept in float meet the default target there: the CPU model as built, checked on the held-out photographs."""
    calibration = load_manifest(int8_engines).calibration
    coverage, fallback = calibration.report["coverage"], calibration.report["int8_fallback"]
    held = {i["file"] for i in coverage["holdout"]["images"]}
    assert len(held) == 2 and held.isdisjoint(i["file"] for i in calibration.images)
    assert sum(coverage["images_per_profile"]) == 4 and 0 <= coverage["clipped_share"] < 0.01
    ranking = list(fallback["sensitivity"])
    assert len(ranking) == 70  # 53 Conv, 16 Add, the Gemm: most sensitive first
    kept = [layer["layer"] for layer in fallback["float_layers"]]
    assert fallback["met"] and kept == ranking[:len(kept)] and fallback["float_share"] <= 0.5
    (engine,) = load_manifest(int8_engines).engines
    check = engine.settings["qdq_check"]
    assert engine.settings["float_layers"] == kept and check["images"] == "held-out"
    assert min(check["cosine"]) >= check["bound"] == INT8_TARGET


def test_rebuild_reuses_and_a_changed_calibration_is_refused(int8_engines, tmp_path):
    folder, manifest, again = rebuild_int8_copy(int8_engines, tmp_path, "onnxruntime")
    assert again.returncode == 0 and "reused 1 engine(s)" in again.stdout, again.stderr
    target = folder / manifest.calibration.file.file
    data = json.loads(target.read_text())
    first = next(iter(data["tensors"]))
    data["tensors"][first][1] *= 2  # a hand-edited range
    target.write_text(json.dumps(data))
    before = (folder / "manifest.json").read_bytes()
    changed = run_cli(*again.args[3:])  # the same build command once more
    assert_clean_failure(changed, 4, "the int8 calibration changed since it was recorded", "--force")
    assert (folder / "manifest.json").read_bytes() == before


def test_predict_and_validate_work_unchanged(int8_engines, fast_engines):
    """Session predicts with the int8 engine as with any other; its logits point where fp32's do; validate's int8
    preset passes on the bundled photographs."""
    from rsz_export.images.loading import load_rgb
    from rsz_export.images.preprocess import crop_input
    from rsz_export.plan.routing import Route
    from rsz_export.serve.session import Session
    from rsz_export.shapes import Resolution
    from rsz_export.validate.cases import ValidateSpec
    from rsz_export.validate.run import validate

    size = Resolution(224, 224)
    x = crop_input(load_rgb(SAMPLE_IMAGE), size)
    with Session(int8_engines, preprocess="fit") as session:
        prediction = session.predict(load_rgb(SAMPLE_IMAGE))
        int8, _ = session.run(x, Route(0, 0, size, False))
    with Session(fast_engines) as session:
        fp32, _ = session.run(x, Route(0, 0, size, False))
    assert prediction.backend == "onnxruntime" and len(prediction.top) == 5
    cosine = float(np.dot(int8[0], fp32[0]) / np.linalg.norm(int8[0]) / np.linalg.norm(fp32[0]))
    assert cosine > 0.98
    report = validate(ValidateSpec(int8_engines, sizes=(Resolution(256, 256),), replace_sizes=True))
    engine = [c for c in report.cases if c.stage == "engine"]
    assert engine and all(c.passed for c in report.cases) and engine[0].policy.precision == "int8"
    assert [i.name for i in engine[0].inputs] == ["astronaut.jpg", "chelsea.jpg", "coffee.jpg", "rocket.jpg"]


def test_bench_times_int8_beside_fp32_and_sweep_takes_int8_engines(int8_engines, fast_engines, tmp_path):
    """``bench --baseline`` puts the fp32 build's engine beside the int8 one with a paired speed-up, and ``sweep``
    scores the int8 engine like any other (labels: the fp32 engine's own top-1, so agreement is what it shows)."""
    from rsz_export.bench.run import BenchSpec, run_bench
    from rsz_export.bench.stats import MeasurePolicy
    from rsz_export.images.loading import load_rgb, sample_images
    from rsz_export.images.preprocess import crop_input
    from rsz_export.plan.routing import Route
    from rsz_export.serve.session import Session
    from rsz_export.shapes import Resolution
    from rsz_export.sweep.accuracy import load_labeled, run_sweep

    size = Resolution(224, 224)
    spec = BenchSpec(str(int8_engines), sizes=(size,), backends=("onnxruntime",), peak_matrix=256,
                     policy=MeasurePolicy(warmup=1, iters=3), baseline_dir=str(fast_engines))
    _, rows = run_bench(spec, lambda line: None)
    main, base = (r.record() for r in rows)
    assert (main["variant"], main["precision"], base["variant"], base["precision"]) == (
        "dynamic", "int8", "baseline", "fp32")
    assert main["speedup"] > 0 and main["baseline_p50_ms"] == base["p50_ms"]
    with Session(fast_engines) as fp32:
        for path in sample_images():
            logits, _ = fp32.run(crop_input(load_rgb(path), size), Route(0, 0, size, True))
            folder = tmp_path / "labeled" / str(int(np.argmax(logits[0])))
            folder.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, folder / path.name)
    with Session(int8_engines) as session:
        [row] = run_sweep(session, load_labeled(tmp_path / "labeled"), [size])
    assert row.covered and row.images == len(sample_images()) and row.top5 == 1.0 and 0.5 <= row.top1 <= 1.0
