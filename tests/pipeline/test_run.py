import json

import pytest

from rsz_export.artifacts.manifest import load_manifest, verify_file
from rsz_export.pipeline.run import BuildSpec, build
from rsz_export.plan.profiles import uncovered_example
from tests.helpers import make_plan, run_cli


def test_quickstart_build_manifest(engines_dir):
    manifest = load_manifest(engines_dir)
    assert manifest.backend == "onnxruntime" and manifest.precision == "fp32"
    assert (manifest.plan.min_size, manifest.plan.max_size) == (224, 800)
    assert uncovered_example(manifest.plan) is None
    assert manifest.host["cpu"] and manifest.versions["onnxruntime"] and manifest.versions["torch"]
    for engine in manifest.engines:
        verify_file(engines_dir, engine.file)
        assert engine.profiles == tuple(range(len(manifest.plan.profiles)))
        assert engine.settings["intra_op_num_threads"] >= 1 and engine.build_seconds > 0
    verify_file(engines_dir, manifest.onnx)
    if manifest.weights.id == "random":  # no pretrained weights cached here: the fallback is loud and recorded
        assert any("random weights" in w for w in manifest.warnings) and manifest.weights.warning


def test_rerun_reuses_and_force_rebuilds(engines_copy):
    spec = BuildSpec(make_plan(224, 288), engines_copy, backend="onnxruntime")
    before = load_manifest(engines_copy)
    again = build(spec)
    assert again.reused and again.manifest == before
    forced = build(BuildSpec(spec.plan, engines_copy, backend="onnxruntime", force=True))
    assert not forced.reused and forced.manifest.created_utc >= before.created_utc
    assert forced.manifest.onnx.sha256 == before.onnx.sha256  # same export, bit for bit


def test_tampered_engine_is_rebuilt_on_rerun(engines_copy):
    manifest = load_manifest(engines_copy)
    engine_path = engines_copy / manifest.engines[0].file.file
    engine_path.write_bytes(engine_path.read_bytes()[:1000])
    result = build(BuildSpec(manifest.plan, engines_copy, backend="onnxruntime"))
    assert not result.reused
    verify_file(engines_copy, result.manifest.engines[0].file)


def test_failed_engine_build_keeps_previous_manifest(engines_copy, monkeypatch):
    from rsz_export.backends import ort

    before = (engines_copy / "manifest.json").read_text()

    def explode(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(ort, "build_engines", explode)
    new_plan = make_plan(224, 256)
    with pytest.raises(KeyboardInterrupt):
        build(BuildSpec(new_plan, engines_copy, backend="onnxruntime"))
    assert (engines_copy / "manifest.json").read_text() == before
    manifest = load_manifest(engines_copy)
    for record in [manifest.onnx, *(e.file for e in manifest.engines)]:
        verify_file(engines_copy, record)
    assert not list(engines_copy.rglob("*.tmp"))


def test_cli_plan_is_instant_and_json(tmp_path):
    result = run_cli("plan", "--min", "224", "--max", "800", "--json", "-")
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    assert len(plan["profiles"]) == 4 and plan["profiles"][-1]["max"] == [1, 3, 800, 800]


def test_cli_build_reuse_reports_it(small_engines_dir):
    result = run_cli(
        "build", "--min", "224", "--max", "288", str(small_engines_dir), "--backend", "onnxruntime"
    )
    assert result.returncode == 0, result.stderr
    assert "up to date" in result.stderr and result.stdout.startswith("reused")
