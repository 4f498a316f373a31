"""fake_tensorrt: a test double of the ``tensorrt`` Python module (10.x and 11.x flavours) that enforces the
documented contract of the calls rsz-export makes and computes real outputs with ONNX Runtime on the CPU.

    import fake_tensorrt
    trt = fake_tensorrt.install(monkeypatch, "11.4.0.106")   # sys.modules["tensorrt"] for this test
    trt._fake.knobs / trt._fake.gpu / trt._fake.device     # failure knobs, the fake GPU, fake device memory

See README.md beside this file for what it enforces and what it cannot know.
"""

from ._core import FakeGpu, Knobs
from ._device import ALIGNMENT, DeviceError, FakeDevice
from ._module import install, make_module
from ._surface import known_versions

VERSIONS = {"10": "10.16.1.11", "11": "11.4.0.106"}

__all__ = [
    "ALIGNMENT",
    "DeviceError",
    "FakeDevice",
    "FakeGpu",
    "Knobs",
    "VERSIONS",
    "install",
    "known_versions",
    "make_module",
]
