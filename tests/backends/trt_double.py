"""Running the TensorRT backend on the CPU against the test double (tests/backends/fake_tensorrt).

``use_double`` puts a fake ``tensorrt`` of one version in ``sys.modules`` and the double's fake device in place
of the backend's CUDA side (``trt_env.cuda``), so build, runner, validate, bench and serving all run through
``rsz_export/backends/trt*.py`` unchanged. What the double enforces and what it cannot know (tactics,
reduced-precision numerics, real memory): fake_tensorrt/README.md and docs/tensorrt.md. Nothing here ran on a GPU.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from tests.backends import fake_tensorrt
from tests.backends.fake_tensorrt.testing import tiny_classifier_onnx
from tests.helpers import RANDOM_METADATA

V10, V11 = fake_tensorrt.VERSIONS["10"], fake_tensorrt.VERSIONS["11"]
BOTH = (V10, V11)


class FakeBuffer:
    """Device memory from the double's fake device, freed with the object (as a torch CUDA tensor is)."""

    def __init__(self, device, shape, dtype):
        self.device, self.shape, self.dtype = device, tuple(shape), np.dtype(dtype)
        self.ptr = device.malloc(max(int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize, 1))

    def __del__(self):
        try:
            self.device.free(self.ptr)
        except Exception:  # noqa: BLE001 - the device may already be gone at interpreter exit
            pass


class FakeCuda:
    """The runner's CUDA side (rsz_export.backends.trt_cuda.TorchCuda) over the installed double's fake GPU,
    device memory and streams: the same methods, the same asynchrony (work runs when its stream syncs)."""

    @staticmethod
    def _trt():
        return sys.modules["tensorrt"]

    @staticmethod
    def problem() -> str | None:
        return None

    @classmethod
    def facts(cls) -> dict:
        gpu = cls._trt()._fake.gpu
        return {
            "gpu_name": gpu.name,
            "compute_capability": "{}.{}".format(*gpu.compute_capability),
            "driver": "fake",
            "cuda_runtime": "fake",
            "gpu_memory_mib": gpu.total_memory >> 20,
        }

    def __init__(self):
        self.device = self._trt()._fake.device
        self.stream_handle = self.device.create_stream()

    def to_device(self, array, dtype: str):
        buffer = FakeBuffer(self.device, array.shape, dtype)
        self.device.memcpy_htod(buffer.ptr, np.ascontiguousarray(array, dtype=dtype), self.stream_handle)
        return buffer

    def empty(self, shape, dtype: str):
        return FakeBuffer(self.device, shape, dtype)

    @staticmethod
    def address(buffer) -> int:
        return buffer.ptr

    def run_timed(self, run):
        start = time.perf_counter()
        result = run()
        self.device.synchronize(self.stream_handle)
        return result, (time.perf_counter() - start) * 1000.0

    def to_host(self, buffer):
        out = self.device.memcpy_dtoh(buffer.ptr, buffer.shape, buffer.dtype, self.stream_handle)
        self.device.synchronize(self.stream_handle)
        return out.astype(np.float32)

    def synchronize(self) -> None:
        self.device.synchronize(self.stream_handle)


def use_double(monkeypatch, version: str = V11, cuda: type = FakeCuda, **kwargs):
    """Install a fake tensorrt ``version`` (``kwargs``: gpu=FakeGpu(...), knobs=Knobs(...)) for one test and put
    ``cuda`` (FakeCuda) in place of the backend's CUDA side; returns the fake module."""
    from rsz_export.backends import trt_env

    trt = fake_tensorrt.install(monkeypatch, version, **kwargs)
    monkeypatch.setattr(trt_env, "cuda", lambda: cuda)
    return trt


def classifier_onnx(path: Path, relu: bool = False) -> Path:
    """A small Conv -> GlobalAveragePool -> Gemm classifier with ResNet-50's interface (``images``
    [batch,3,h,w] -> ``logits`` [batch,1000]), distinct logits per class, and rsz-export weights metadata so
    ``build --onnx`` accepts it."""
    import onnx

    tiny_classifier_onnx(path, relu=relu)
    model = onnx.load(str(path))
    for key, value in RANDOM_METADATA.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(path))
    return path


def manifest_for(records, out: Path, plan, onnx_name: str = "model.onnx"):
    """A minimal manifest over ``records`` (library tests that call the backend directly)."""
    from rsz_export.artifacts.manifest import Manifest, WeightsRecord, file_record

    weights = WeightsRecord("random", "0" * 64, "seeded", 0)
    onnx = file_record(out, out / onnx_name)
    return Manifest("test", "pytest", "now", {}, {}, onnx, weights, "tensorrt", records[0].precision, plan,
                    tuple(records), "k")


def onnx_reference(onnx_path: Path):
    """images -> logits of an ONNX under ONNX Runtime's CPU provider (what the double's outputs must equal)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    return lambda x: session.run(None, {"images": x})[0]


def build_folder(out: Path, plan, onnx: Path, **options):
    """``rsz-export build OUT --backend tensorrt --onnx ONNX`` through the library (the pipeline writes the
    manifest); returns the manifest."""
    from rsz_export.backends.base import BuildOptions
    from rsz_export.pipeline.run import BuildSpec, build

    spec = BuildSpec(plan, out, backend="tensorrt", options=BuildOptions(**options), onnx=onnx, command="pytest")
    return build(spec).manifest


def classifier_module(onnx_path: Path):
    """The classifier of ``classifier_onnx`` as a torch module with the same weights: a PyTorch reference for
    validate (whose manifest names ResNet-50 weights the tiny model does not have)."""
    import onnx
    import torch
    from onnx import numpy_helper

    weights = {
        t.name: torch.from_numpy(numpy_helper.to_array(t).copy()) for t in onnx.load(str(onnx_path)).graph.initializer
    }
    conv = torch.nn.Conv2d(3, weights["conv_w"].shape[0], 3, padding=1)
    fc = torch.nn.Linear(weights["fc_w"].shape[1], weights["fc_w"].shape[0])
    with torch.no_grad():
        conv.weight.copy_(weights["conv_w"]), conv.bias.copy_(weights["conv_b"])
        fc.weight.copy_(weights["fc_w"]), fc.bias.copy_(weights["fc_b"])
    return torch.nn.Sequential(conv, torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), fc).eval()
