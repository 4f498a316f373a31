"""TensorRT end to end: build a small-range engine with 2 profiles, run it, compare with a reference, reuse the
timing cache, build one engine per profile in fp16, refuse a tampered engine.

Every test runs twice: against the TensorRT test double on the CPU (a tiny classifier, compared with ONNX Runtime
on the same ONNX), and against real TensorRT with ResNet-50 compared with PyTorch where TensorRT and a CUDA GPU
exist (``make test-gpu``), skipped with the reason elsewhere.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from rsz_export.backends import trt as trt_backend
from rsz_export.backends.base import BuildOptions
from rsz_export.errors import IntegrityError, UsageError
from rsz_export.plan.profiles import route
from rsz_export.shapes import BatchRange
from tests.backends.trt_double import V11, manifest_for, onnx_reference, use_double
from tests.helpers import make_plan

REASON = trt_backend.unavailable_reason()
REAL = pytest.param(
    "tensorrt",
    marks=[pytest.mark.tensorrt, pytest.mark.gpu, pytest.mark.skipif(REASON is not None, reason=str(REASON))],
)
PLAN = make_plan(224, 288, profiles=2, batch=BatchRange(1, 2, 2))  # the runs below feed batch 2


@dataclass
class Setup:
    out: Path
    """Holds model.onnx; engines are built beside it."""
    reference: object
    """images -> reference logits."""


@pytest.fixture(scope="module")
def resnet_export(tmp_path_factory):
    import torch
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.resnet50(weights=None).eval()
    out = tmp_path_factory.mktemp("trt")
    dims = {
        0: torch.export.Dim("batch", min=1, max=8),
        2: torch.export.Dim("height", min=32, max=512),
        3: torch.export.Dim("width", min=32, max=512),
    }
    torch.onnx.export(
        model,
        (torch.randn(1, 3, 224, 224),),
        str(out / "model.onnx"),
        dynamo=True,
        external_data=False,
        input_names=["images"],
        output_names=["logits"],
        dynamic_shapes={"x": dims},
    )

    def reference(x):
        with torch.inference_mode():
            return model(torch.from_numpy(x)).numpy()

    return Setup(out, reference)


@pytest.fixture(params=["double", REAL])
def setup(request, monkeypatch, tmp_path, classifier_onnx) -> Setup:
    if request.param == "tensorrt":
        return request.getfixturevalue("resnet_export")
    use_double(monkeypatch, V11)
    (tmp_path / "model.onnx").write_bytes(classifier_onnx.read_bytes())
    return Setup(tmp_path, onnx_reference(classifier_onnx))


def _build(out, **kw):
    logs = []
    records = trt_backend.build_engines(out / "model.onnx", PLAN, BuildOptions(**kw), out, logs.append)
    return records, logs


def test_build_run_compare_and_reuse_timing_cache(setup):
    out = setup.out
    records, _ = _build(out, workspace_mib=2048, opt_level=2)
    (record,) = records
    assert record.profiles == (0, 1) and record.settings["api_major"] in (10, 11)
    assert len(record.settings["device_memory_bytes_per_profile"]) == 2
    layers = json.loads((out / record.extra_files[0].file).read_text())
    assert layers and record.settings["layers"]["layers"] > 0
    first_cache = record.settings["timing_cache"]
    assert first_cache["reused"] is False and (out / "timing.cache").stat().st_size == first_cache["bytes"]
    manifest = manifest_for(records, out, PLAN)
    assert trt_backend.check_compatible(manifest, record) is None
    with trt_backend.open_runner(manifest, None, out) as runner:
        for h, w in ((224, 224), (239, 271), (288, 288)):
            x = np.random.default_rng(h).standard_normal((2, 3, h, w)).astype(np.float32)
            ref, got = setup.reference(x), runner.infer(x)
            assert got.shape == (2, 1000) and runner.last_profile == route(PLAN.profiles, 2, h, w)
            rel = np.linalg.norm(got - ref) / np.linalg.norm(ref)
            assert rel < 1e-2 and (got.argmax(1) == ref.argmax(1)).all(), rel  # TF32 is on by default
            assert runner.last_latency_ms > 0
        with pytest.raises(UsageError, match="outside every profile"):
            runner.infer(np.zeros((1, 3, 320, 320), np.float32))
    again, _ = _build(out, workspace_mib=2048, opt_level=2)
    cache = again[0].settings["timing_cache"]
    assert cache["reused"] is True and cache["loaded_sha256"] == first_cache["sha256"]
    if "new_entries" in cache:
        assert cache["new_entries"] == 0  # every tactic came from the cache


def test_engine_per_profile_routes_like_one_engine(setup):
    records, _ = _build(setup.out, engine_per_profile=True, precision="fp16")
    assert [r.profiles for r in records] == [(0,), (1,)]
    with trt_backend.open_runner(manifest_for(records, setup.out, PLAN), None, setup.out) as runner:
        x = np.random.default_rng(1).standard_normal((1, 3, 288, 250)).astype(np.float32)
        got, ref = runner.infer(x), setup.reference(x)
        assert runner.last_profile == route(PLAN.profiles, 1, 288, 250)
        assert np.linalg.norm(got - ref) / np.linalg.norm(ref) < 5e-2


def test_tampered_engine_is_refused_before_loading(setup):
    records, _ = _build(setup.out, precision="fp32", tf32=False)
    path = setup.out / records[0].file.file
    path.write_bytes(path.read_bytes()[:-16])
    with pytest.raises(IntegrityError, match="does not match the manifest"):
        with trt_backend.open_runner(manifest_for(records, setup.out, PLAN), None, setup.out):
            pass
