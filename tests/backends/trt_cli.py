"""``python -m tests.backends.trt_cli ARGS``: the rsz-export command line with the TensorRT test double in place
of TensorRT and its fake device in place of the CUDA side, for tests of the CLI's answers (exit codes,
messages, files left behind) on a machine without TensorRT.

Environment: RSZ_FAKE_TRT_VERSION (default the 11.x surface), RSZ_FAKE_TRT_GPU ("NAME:MAJOR.MINOR"),
RSZ_FAKE_TRT_SIGNAL_AT_STEP and RSZ_FAKE_TRT_SIGNAL (a signal number, default SIGINT) to deliver a signal
inside the build, RSZ_FAKE_TRT_DEVICE_MIB (the fake GPU's memory), RSZ_FAKE_TRT_REFERENCE (an ONNX written by
``trt_double.classifier_onnx``, or for a feature build one by ``tests.model.detectors.tiny_feature_onnx``: validate's
PyTorch reference is that model, since the manifest names ResNet-50 weights the tiny model does not hold).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run(*args, timeout: float = 300, **env: str) -> subprocess.CompletedProcess:
    """``python -m tests.backends.trt_cli ARGS`` in a subprocess (real exit codes); ``env``: the RSZ_FAKE_TRT_*
    settings above by their lower-case suffix (``version="10.16.1.11"``)."""
    environment = {**os.environ, "PYTHONPATH": str(REPO), **{f"RSZ_FAKE_TRT_{k.upper()}": v for k, v in env.items()}}
    command = [sys.executable, "-m", "tests.backends.trt_cli", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=environment, cwd=REPO)


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
    if env("RSZ_FAKE_TRT_REFERENCE"):
        from rsz_export.validate import run as validate_run
        from tests.backends.trt_double import classifier_module
        from tests.model.detectors import tiny_feature_module

        reference = Path(env("RSZ_FAKE_TRT_REFERENCE"))
        validate_run.reference_model = lambda record, directory, outputs="logits": (
            classifier_module(reference) if outputs == "logits" else tiny_feature_module(reference))


if __name__ == "__main__":
    install()
    from rsz_export.cli import main

    main(prog_name="rsz-export")
