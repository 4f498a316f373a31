"""The OpenVINO backend in the library: the IR it writes (bounded dynamic dims, fp32 weights, both files hashed),
the model cache, its runner against the known answer of the colour stand-in, the capability checks (with the
CPU's list injected, so a CPU without bf16 tests both sides), and its writes being atomic."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from rsz_export.backends import ov_support as ovs
from rsz_export.errors import EnvironmentProblem, OutputError, UsageError

ov = pytest.importorskip("openvino", reason="the [openvino] extra is not installed")

from rsz_export.artifacts.manifest import load_manifest, sha256_file  # noqa: E402
from rsz_export.backends import load_backend  # noqa: E402
from rsz_export.backends.base import RunnerOptions  # noqa: E402
from rsz_export.backends.ov_build import save_ir  # noqa: E402

backend = load_backend("openvino")


def real_capabilities() -> tuple[str, ...]:
    return tuple(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))


def test_the_ir_is_bounded_by_the_plan_keeps_fp32_weights_and_records_both_hashes(openvino_engines):
    manifest = load_manifest(openvino_engines)
    (engine,) = manifest.engines
    (weights,) = [f for f in engine.extra_files if f.file.endswith(".bin")]
    for record in (engine.file, weights):
        assert sha256_file(openvino_engines / record.file) == record.sha256
    model = ov.Core().read_model(str(openvino_engines / engine.file.file))
    assert str(model.input("images").get_partial_shape()) == "[1..4,3,224..800,224..800]"
    constants = [op for op in model.get_ops() if op.get_type_name() == "Constant"]
    assert {str(c.get_element_type()) for c in constants if c.get_output_size()} >= {"<Type: 'float32'>"}
    assert not [c for c in constants if c.get_element_type() == ov.Type.f16]
    assert engine.settings["INFERENCE_PRECISION_HINT"] == "f32" and engine.settings["compiled_precision"] == "fp32"
    assert engine.settings["cold_load_seconds"] > 0 and engine.settings["warm_load_seconds"] > 0
    cache = openvino_engines / Path(engine.file.file).parent / ovs.CACHE_DIR
    assert list(cache.glob("*.blob")), "the build compiles once into the folder's model cache"


def test_the_runner_gives_the_colour_answer_routes_and_refuses_what_no_profile_covers(openvino_engines):
    manifest = load_manifest(openvino_engines)
    rng = np.random.default_rng(0)
    with backend.open_runner(manifest, manifest.engines[0], openvino_engines, RunnerOptions(threads=1)) as runner:
        for shape, profile in (((1, 3, 224, 224), 0), ((3, 3, 300, 500), 2), ((4, 3, 800, 233), 3)):
            images = rng.standard_normal(shape).astype(np.float32)
            logits = runner.infer(images)
            np.testing.assert_allclose(logits[:, :3], images.mean(axis=(2, 3)), rtol=1e-4, atol=1e-5)
            assert logits.shape == (shape[0], 1000) and runner.last_profile == profile
        assert runner.executed_precision == "fp32" and runner.load_seconds > 0
        with pytest.raises(UsageError, match="outside every profile"):
            runner.infer(np.zeros((1, 3, 224, 801), np.float32))
        with pytest.raises(UsageError, match="outside every profile"):
            runner.infer(np.zeros((5, 3, 224, 224), np.float32))


def test_a_pinned_runner_is_static_and_agrees_with_the_dynamic_one(openvino_engines):
    from rsz_export.shapes import InputShape

    manifest = load_manifest(openvino_engines)
    images = np.random.default_rng(1).standard_normal((2, 3, 320, 288)).astype(np.float32)
    pinned = RunnerOptions(pinned=InputShape(2, 320, 288))
    with backend.open_runner(manifest, manifest.engines[0], openvino_engines, pinned) as r:
        np.testing.assert_allclose(r.infer(images)[:, :3], images.mean(axis=(2, 3)), rtol=1e-4, atol=1e-5)
        assert r.use_cache is False  # a twin never writes into the build folder's cache


@pytest.mark.parametrize("precision,need", [("fp32", "FP32"), ("bf16", "BF16"), ("fp16", "FP16"), ("int8", "INT8")])
def test_each_precision_needs_its_capability(precision, need):
    assert ovs.precision_problem(precision, ("FP32", "BF16", "FP16", "INT8"), "cpu") is None
    others = tuple(c for c in ("FP32", "BF16", "FP16", "INT8") if c != need)
    assert f"no {need}" in ovs.precision_problem(precision, others, "Test CPU")
    with pytest.raises(EnvironmentProblem, match=f"does not execute {precision}"):
        ovs.refuse_precision(precision, others, "Test CPU")


def test_the_capability_list_can_be_injected(monkeypatch):
    monkeypatch.setenv(ovs.CAPABILITIES_ENV, "fp32, bf16,INT8")
    assert ovs.declared_capabilities(lambda: ["FP32"]) == ("FP32", "BF16", "INT8")
    monkeypatch.delenv(ovs.CAPABILITIES_ENV)
    assert ovs.declared_capabilities(lambda: ["FP32", "INT8"]) == ("FP32", "INT8")
    assert ovs.cpu_facts()[0] == tuple(c.upper() for c in real_capabilities())


def test_executed_precision_names_what_openvino_compiled():
    assert ovs.executed_precision(ov.Type.f32) == "fp32"
    assert ovs.executed_precision(ov.Type.bf16) == "bf16"
    assert ovs.executed_precision("f16") == "fp16"


@pytest.mark.skipif("BF16" in real_capabilities(), reason="this CPU executes bf16: OpenVINO compiles bf16 as asked")
def test_a_bf16_engine_that_openvino_compiles_to_f32_is_refused_not_reported_as_bf16(openvino_engines, monkeypatch):
    """The engine is declared buildable by injecting BF16; OpenVINO then compiles it in f32 on this CPU, and the
    runner must say so instead of running it as 'bf16'."""
    from dataclasses import replace

    manifest = load_manifest(openvino_engines)
    engine = manifest.engines[0]
    bf16 = replace(engine, precision="bf16", settings={**engine.settings, "INFERENCE_PRECISION_HINT": "bf16"})
    monkeypatch.setenv(ovs.CAPABILITIES_ENV, "FP32,BF16,INT8")
    assert backend.check_compatible(manifest, bf16) is None
    with pytest.raises(EnvironmentProblem, match="compiled it to fp32: refusing to report fp32 results as bf16"):
        with backend.open_runner(manifest, bf16, openvino_engines):
            pass
    monkeypatch.delenv(ovs.CAPABILITIES_ENV)
    assert "no BF16" in backend.check_compatible(manifest, bf16)


def test_the_ir_appears_whole_or_not_at_all(tmp_path, monkeypatch):
    """A failure while the IR is being written leaves neither file nor any temporary file or folder."""
    a = ov.opset13.parameter([1, 3], np.float32, name="images")
    model = ov.Model([ov.opset13.relu(a)], [a], "m")
    real_replace = os.replace

    def fail_on_xml(src, dst):
        if str(src).endswith(".xml"):
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", fail_on_xml)
    with pytest.raises(OutputError, match="no space left"):
        save_ir(model, tmp_path / "m.xml", tmp_path / "m.bin")
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(os, "replace", real_replace)
    save_ir(model, tmp_path / "m.xml", tmp_path / "m.bin")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.bin", "m.xml"]


def test_the_manifest_names_the_engine_files_relative_to_the_build(openvino_engines):
    data = json.loads((openvino_engines / "manifest.json").read_text())
    (engine,) = data["engines"]
    files = [engine["file"]["file"], *(f["file"] for f in engine["extra_files"])]
    assert all((openvino_engines / f).is_file() for f in files) and files[0].endswith(".xml")
    assert data["backend"] == "openvino"


def test_bench_pairs_the_dynamic_engine_with_its_static_twin(openvino_engines):
    from rsz_export.bench.run import BenchSpec, run_bench
    from rsz_export.bench.stats import MeasurePolicy
    from rsz_export.shapes import Resolution

    spec = BenchSpec(str(openvino_engines), sizes=(Resolution(224, 224), Resolution(480, 352)), batches=(2,),
                     backends=("openvino",), policy=MeasurePolicy(warmup=0, iters=2), peak_matrix=256)
    header, rows = run_bench(spec, lambda line: None)
    records = [r.record() for r in rows]
    assert [(r["size"], r["variant"], r["batch"]) for r in records] == [
        ("224x224", "dynamic", 2), ("224x224", "static", 2), ("480x352", "dynamic", 2), ("480x352", "static", 2)]
    assert all(r["dynamic_over_static"] > 0 for r in records if r["variant"] == "dynamic")
    assert header["peak_gflops"]["openvino"] > 0 and records[0]["device"] == "cpu"
    assert not list((openvino_engines).rglob("*.tmp"))


@pytest.mark.parametrize("ort_ms,ov_ms,chosen", [
    ([30.0, 31.0, 29.0], [20.0, 22.0, 21.0], "openvino"),
    ([20.0, 21.0, 20.5], [30.0, 29.0, 31.0], "onnxruntime"),
    ([30.0, 20.0, 30.0], [25.0, 25.0, 25.0], "onnxruntime"),  # rounds disagree: within noise, the default stays
])
def test_auto_picks_openvino_only_when_it_was_faster_in_every_round(ort_ms, ov_ms, chosen):
    from rsz_export.backends.cpu_choice import decide

    assert decide({"onnxruntime": ort_ms, "openvino": ov_ms})[0] == chosen


MEASURE_CHOICE = """
import json, sys
from pathlib import Path
from rsz_export.artifacts.manifest import load_manifest
from rsz_export.backends.base import BuildOptions
from rsz_export.backends.cpu_choice import measure_choice

folder = Path(sys.argv[1])
manifest = load_manifest(folder)
lines = []
record = measure_choice(folder / manifest.onnx.file, manifest.plan, BuildOptions(), 1, lines.append)
print(json.dumps({"record": record, "lines": lines}))
"""


def test_auto_says_what_bf16_would_give_only_when_openvino_compiled_bf16(openvino_engines):
    """With BF16 declared on a CPU that compiles it to f32, the bf16 session is not timed and nothing is said; on
    a CPU with bf16 units (AVX-512 BF16, AMX), where OpenVINO compiles it to bf16, it is timed and said once.

    Run in a process of its own: after OpenVINO compiled a bf16 request on a CPU without bf16 (possible only by
    declaring capabilities the CPU lacks, as here), a signal raised later in that process crashed it."""
    import subprocess
    import sys

    from tests.helpers import REPO

    env = {**os.environ, "PYTHONPATH": str(REPO), ovs.CAPABILITIES_ENV: "FP32,BF16,INT8"}
    run = subprocess.run([sys.executable, "-c", MEASURE_CHOICE, str(openvino_engines)], capture_output=True,
                         text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout.splitlines()[-1])
    record, lines = out["record"], out["lines"]
    compiles_bf16 = "BF16" in ovs.cpu_facts()[0]  # the CPU's own capabilities, not the declared ones
    timed = {"onnxruntime", "openvino"} | ({"openvino-bf16"} if compiles_bf16 else set())
    assert set(record["rounds_ms"]) == timed and len(lines) == 1 + compiles_bf16
    assert record["chosen"] in lines[0] and len(record["rounds_ms"]["openvino"]) == 3
    assert compiles_bf16 == any("OpenVINO in bf16 took" in line for line in lines)


def test_the_bf16_line_says_what_bf16_gives():
    from rsz_export.backends.cpu_choice import bf16_line

    said = bf16_line({"median_ms": {"onnxruntime": 30.0, "openvino": 32.0, "openvino-bf16": 8.0}})
    assert "bf16 took 8.0 ms" in said and "3.75x" in said


def test_openvino_is_imported_with_its_telemetry_declined():
    """``import openvino`` would send a usage event from a forked process (and, without network, can hang the
    command at exit); the backend's import declines it and leaves the environment as it was."""
    import subprocess
    import sys

    from tests.helpers import REPO

    pytest.importorskip("openvino", reason="the [openvino] extra is not installed")
    probe = ("import os; os.environ.pop('CI', None)\n"
             "from rsz_export.backends.ov_support import load_openvino\n"
             "load_openvino()\n"
             "import openvino.tools.ovc as ovc\n"
             "print(ovc.telemetry.consent, os.environ.get('CI'))\n")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("CI", None)
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=120)
    assert result.stdout.split() == ["False", "None"], result.stderr
