"""validate over TensorRT engines, on the CPU against the test double: every grid case runs through the TensorRT
runner and is compared with a PyTorch reference. The manifest names ResNet-50 weights that the tiny classifier
does not hold, so the reference is the classifier itself in PyTorch (``classifier_module``); everything else is
the real validate run."""

from __future__ import annotations

import pytest

from rsz_export.shapes import BatchRange
from rsz_export.validate import run as validate_run
from rsz_export.validate.cases import ValidateSpec
from rsz_export.validate.report import exit_code
from tests.backends import fake_tensorrt
from tests.backends.trt_double import V10, V11, build_folder, classifier_module, use_double
from tests.helpers import make_plan

PLAN = make_plan(64, 160, profiles=2, batch=BatchRange(1, 2, 2))


@pytest.fixture()
def reference(monkeypatch, classifier_onnx):
    module = classifier_module(classifier_onnx)
    monkeypatch.setattr(validate_run, "reference_model", lambda record, directory, outputs="logits": module)


@pytest.mark.parametrize("version, per_profile", [(V10, True), (V11, False)])
def test_validate_runs_every_case_on_the_engines(
    version, per_profile, tmp_path, monkeypatch, classifier_onnx, reference
):
    use_double(monkeypatch, version)
    manifest = build_folder(tmp_path, PLAN, classifier_onnx, engine_per_profile=per_profile)
    report = validate_run.validate(ValidateSpec(tmp_path, batches=(1, 2), random_inputs=1))
    engine_cases = [c for c in report.cases if c.stage == "engine"]
    assert {c.engine for c in engine_cases} == {e.name for e in manifest.engines}
    assert {c.profiles[0] for c in engine_cases} == {0, 1} and {c.batch for c in engine_cases} == {1, 2}
    assert all(c.status == "passed" for c in report.cases), [c.failures for c in report.cases if not c.passed]
    assert max(c.stats.rel_l2 for c in engine_cases) < 1e-4 and exit_code(report) == 0


def test_engines_that_cannot_run_here_are_not_run(tmp_path, monkeypatch, classifier_onnx, reference):
    use_double(monkeypatch, V10)
    build_folder(tmp_path, PLAN, classifier_onnx)
    use_double(monkeypatch, V11, gpu=fake_tensorrt.FakeGpu(name="NVIDIA A10", compute_capability=(8, 6)))
    report = validate_run.validate(ValidateSpec(tmp_path, random_inputs=1))
    refused = [c for c in report.cases if c.stage == "engine"]
    assert refused and all(c.status == "not-run" for c in refused)
    assert "built by TensorRT 10.16.1.11 and this machine has 11.4.0.106" in refused[0].failures[0]
    assert "compute capability 9.0 and this GPU has 8.6" in refused[0].failures[0] and exit_code(report) == 1
