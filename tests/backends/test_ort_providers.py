"""ONNX Runtime provider lists and TensorRT-EP option strings built from a plan (pure)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rsz_export.backends import ort_providers
from rsz_export.errors import UsageError
from rsz_export.shapes import BatchRange
from tests.helpers import make_plan

PLAN = make_plan(224, 512, profiles=3, batch=BatchRange(1, 4, 8))


def test_profile_strings_repeat_the_input_once_per_profile_in_plan_order():
    opts = ort_providers.trt_profile_options(PLAN)
    assert set(opts) == {"trt_profile_min_shapes", "trt_profile_opt_shapes", "trt_profile_max_shapes"}
    maxes = opts["trt_profile_max_shapes"].split(",")
    assert maxes == [f"images:8x3x{p.max.h}x{p.max.w}" for p in PLAN.profiles]
    assert opts["trt_profile_min_shapes"].split(",")[0] == "images:1x3x224x224"
    assert opts["trt_profile_opt_shapes"].split(",")[1] == "images:4x3x{0}x{0}".format(PLAN.profiles[1].opt.h)
    assert opts["trt_profile_max_shapes"].split(",")[-1] == "images:8x3x512x512"


def test_shape_string_rejects_nonsense():
    assert ort_providers.shape_string("x", (1, 3, 32, 48)) == "x:1x3x32x48"
    with pytest.raises(UsageError):
        ort_providers.shape_string("x", (1, 0, 3))


def test_tensorrt_provider_keeps_caches_in_the_output_dir(tmp_path):
    chain = ort_providers.providers_for("tensorrt", PLAN, tmp_path, "fp16")
    names = [c[0] if isinstance(c, tuple) else c for c in chain]
    assert names == ["TensorrtExecutionProvider", "CPUExecutionProvider"]  # no CUDA: nothing runs beside TensorRT
    trt = chain[0][1]
    assert Path(trt["trt_engine_cache_path"]) == tmp_path / "ort-trt-cache"
    assert trt["trt_engine_cache_enable"] == "True" and trt["trt_fp16_enable"] == "True"
    assert "trt_bf16_enable" not in trt
    assert all(isinstance(v, str) for v in trt.values())
    bf16 = ort_providers.tensorrt_options(PLAN, tmp_path, "bf16", workspace_mib=512)
    assert bf16["trt_bf16_enable"] == "True" and bf16["trt_fp16_enable"] == "False"
    assert bf16["trt_max_workspace_size"] == str(512 << 20)


def test_cpu_and_cuda_chains():
    assert ort_providers.providers_for("cpu", PLAN, "out", "fp32") == ["CPUExecutionProvider"]
    cuda = ort_providers.providers_for("cuda", PLAN, "out", "fp32")
    assert cuda == [("CUDAExecutionProvider", {"device_id": "0", "use_tf32": "0"}), "CPUExecutionProvider"]
    assert ort_providers.providers_for("cuda", PLAN, "out", "tf32")[0][1]["use_tf32"] == "1"
    with pytest.raises(UsageError, match="device 'rocm'"):
        ort_providers.providers_for("rocm", PLAN, "out", "fp32")
    with pytest.raises(UsageError, match="precision 'int4'"):
        ort_providers.providers_for("cuda", PLAN, "out", "int4")


def test_available_providers_and_missing_device():
    have = ort_providers.available_providers()
    assert "CPUExecutionProvider" in have
    assert ort_providers.missing_provider("cpu") is None
    with pytest.raises(UsageError, match="device 'rocm'"):
        ort_providers.missing_provider("rocm")
    missing = ort_providers.missing_provider("tensorrt")
    assert "no TensorrtExecutionProvider" in missing and "onnxruntime-gpu" in missing
