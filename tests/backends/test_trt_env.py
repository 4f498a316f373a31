"""What the TensorRT backend says about this machine: TensorRT absent, no CUDA GPU, the CUDA side it uses."""

from __future__ import annotations

import sys

import pytest

from rsz_export.backends import trt as backend
from rsz_export.backends import trt_cuda, trt_env
from rsz_export.errors import EnvironmentProblem, IntegrityError
from tests.backends.trt_double import V11, manifest_for, use_double
from tests.helpers import make_plan

NO_CUDA = pytest.mark.skipif(trt_cuda.TorchCuda.problem() is None, reason="torch sees a CUDA GPU here")


def test_import_without_tensorrt_is_an_environment_problem(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import tensorrt now raises ImportError
    with pytest.raises(EnvironmentProblem, match="TensorRT is not installed") as info:
        trt_env.import_trt()
    assert info.value.exit_code == 3 and "pypi.nvidia.com" in str(info.value)


@NO_CUDA
def test_tensorrt_without_a_cuda_gpu_is_not_usable(monkeypatch):
    """The double stands for an installed TensorRT; the CUDA side is the real one (torch, no GPU here)."""
    fake = use_double(monkeypatch, V11)
    monkeypatch.setattr(trt_env, "cuda", lambda: trt_cuda.TorchCuda)
    assert trt_env.cuda() is trt_cuda.TorchCuda and trt_env.import_trt() is fake
    reason = backend.unavailable_reason()
    assert "TensorRT 11.4.0.106 is installed but no CUDA GPU is usable (torch sees no CUDA device" in reason
    assert backend.timing_cache_problem({}) == reason


def test_the_default_cuda_side_is_torch():
    assert trt_env.cuda() is trt_cuda.TorchCuda


def test_a_manifest_without_tensorrt_engines_opens_no_runner(tmp_path):
    from rsz_export.artifacts.manifest import EngineRecord, FileRecord

    (tmp_path / "model.onnx").write_bytes(b"")
    ort = EngineRecord("ort", "onnxruntime", "fp32", FileRecord("e.onnx", "0" * 64, 1), (0,), 1.0, {})
    manifest = manifest_for([ort], tmp_path, make_plan(224, 288))
    with pytest.raises(IntegrityError, match="lists no TensorRT engine"):
        backend.open_runner(manifest, None, tmp_path)


def test_without_torch_the_cuda_side_says_so(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    assert trt_cuda.TorchCuda.problem().startswith("torch cannot be imported")
