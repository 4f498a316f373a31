"""``python -m tests.backends.trt_cli ARGS``: the rsz-export command line with the TensorRT test double in place
of TensorRT and its fake device in place of the CUDA side, for tests of the CLI's answers (exit codes,
messages, files left behind) on a machine without TensorRT.

Environment: RSZ_FAKE_TRT_VERSION (default the 11.x surface), RSZ_FAKE_TRT_GPU ("NAME:MAJOR.MINOR"),
RSZ_FAKE_TRT_SIGNAL_AT_STEP and RSZ_FAKE_TRT_SIGNAL (a signal number, default SIGINT) to deliver a signal
inside the build, RSZ_FAKE_TRT_DEVICE_MIB (the fake GPU's memory).
"""

from __future__ import annotations

import os
import signal
import sys


def install() -> None:
    from rsz_export.backends import trt_env
    from tests.backends import fake_tensorrt
    from tests.backends.trt_double import V11, FakeCuda

    env = os.environ.get
    gpu = fake_tensorrt.FakeGpu()
    if env("RSZ_FAKE_TRT_GPU"):
        name, cc = env("RSZ_FAKE_TRT_GPU").rsplit(":", 1)
        gpu = fake_tensorrt.FakeGpu(name=name, compute_capability=tuple(int(x) for x in cc.split(".")))
    step = env("RSZ_FAKE_TRT_SIGNAL_AT_STEP")
    knobs = fake_tensorrt.Knobs(
        sigint_at_build_step=int(step) if step else None,
        build_signal=int(env("RSZ_FAKE_TRT_SIGNAL", int(signal.SIGINT))),
    )
    module = fake_tensorrt.make_module(env("RSZ_FAKE_TRT_VERSION", V11), gpu=gpu, knobs=knobs)
    if env("RSZ_FAKE_TRT_DEVICE_MIB"):
        module._fake.device.total_bytes = int(env("RSZ_FAKE_TRT_DEVICE_MIB")) << 20
    sys.modules["tensorrt"] = module
    trt_env.cuda = lambda: FakeCuda


if __name__ == "__main__":
    install()
    from rsz_export.cli import main

    main(prog_name="rsz-export")
