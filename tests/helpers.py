"""Helpers the tests share: the repository root, running the CLI in a subprocess, reading its progress."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_memory_of(pids) -> set[Path]:
    """The /dev/shm files these processes map or hold open (read from /proc): what a server must leave nothing of
    when it stops. Naming the files a server's own processes use, rather than comparing the whole folder before and
    after, keeps files of another server running beside it (another test, another worker) out of its account."""
    found = set()
    for pid in pids:
        try:
            maps = Path(f"/proc/{pid}/maps").read_text().splitlines()
            fds = [os.readlink(f) for f in Path(f"/proc/{pid}/fd").iterdir()]
        except OSError:  # gone, or not ours to read
            continue
        names = [line.split(maxsplit=5)[5] for line in maps if len(line.split(maxsplit=5)) == 6] + fds
        found |= {Path(n) for n in names if n.startswith("/dev/shm/") and not n.endswith(" (deleted)")}
    return found


def make_plan(min_size: int, max_size: int, *fields, **named):
    """The plan ``rsz-export plan --min MIN --max MAX`` makes, with the other ``PlanSpec`` fields (``profiles``,
    ``batch``, ``aspect``, in its order or by name) as given: how every test makes a plan."""
    from rsz_export.plan.profiles import PlanSpec, plan_profiles

    return plan_profiles(PlanSpec(min_size, max_size, *fields, **named))


def run_cli(
    *args: str, cwd: Path | None = None, timeout: float = 600, env: dict | None = None
) -> subprocess.CompletedProcess:
    """Run ``rsz-export ARGS`` in a subprocess with this interpreter; returns the completed process."""
    environment = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "rsz_export", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=environment,
    )


def wait_for_line(process: subprocess.Popen, marker: str, timeout: float = 300) -> None:
    """Read ``process``'s stderr until a line contains ``marker``; kill it and fail the test if none does."""
    import time

    deadline, seen = time.monotonic() + timeout, []
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line:
            break
        seen.append(line)
        if marker in line:
            return
    process.kill()
    pytest.fail(f"never saw {marker!r}; stderr so far: {''.join(seen)}")

TEAM = ["bolt", "nut", "washer", "gear", "spring", "bearing", "shaft", "pulley", "valve", "gasket"]
"""The class names of the 10-class checkpoint the slow tests build (``own_weights``)."""

SAMPLE_IMAGE = REPO / "rsz_export" / "data" / "images" / "astronaut.jpg"
SIGNALS = [signal.SIGINT, signal.SIGTERM, signal.SIGKILL]


def start_cli(*args: str) -> subprocess.Popen:
    """``rsz-export ARGS`` started in a subprocess with unbuffered, piped output (for interrupting it)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "rsz_export", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


def interrupt_all(processes: dict, marker: str, delay: float) -> dict:
    """Wait for ``marker`` in each process, then send it its signal; returns {signal: (returncode, stderr)}."""
    for sig, process in processes.items():
        wait_for_line(process, marker)
        time.sleep(delay)
        process.send_signal(sig)
    outcome = {}
    for sig, process in processes.items():
        _, stderr = process.communicate(timeout=120)
        outcome[sig] = (process.returncode, stderr)
    return outcome


def assert_interrupted(sig, returncode: int, stderr: str) -> None:
    """SIGKILL is a death by signal; SIGINT and SIGTERM end with exit 130 and the documented message."""
    if sig == signal.SIGKILL:
        assert returncode == -signal.SIGKILL
    else:
        assert returncode == 130, stderr
        assert "interrupted: nothing half-written was kept" in stderr and "Traceback" not in stderr, stderr


def onnx_build_args(onnx: Path, weights: Path, out: Path, *extra: str) -> list[str]:
    """``build`` from the session's ONNX and reference weights over 224..256 (the fast path: no export)."""
    return [
        "build",
        "--min",
        "224",
        "--max",
        "256",
        "--onnx",
        str(onnx),
        "--weights",
        str(weights),
        "--backend",
        "onnxruntime",
        str(out),
        *extra,
    ]

def assert_clean_failure(result, code: int, *phrases: str) -> None:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    for phrase in phrases:
        assert phrase in result.stderr, result.stderr

def assert_no_temp_files(folder: Path) -> None:
    assert not [p for p in Path(folder).rglob("*.tmp")], list(Path(folder).rglob("*.tmp"))

def engine_file(folder: Path) -> Path:
    manifest = json.loads((folder / "manifest.json").read_text())
    return folder / manifest["engines"][0]["file"]["file"]

def onnx_file(folder: Path) -> Path:
    return folder / json.loads((folder / "manifest.json").read_text())["onnx"]["file"]

def tiny_onnx(
    path: Path,
    input_name="images",
    input_shape=("batch", 3, "height", "width"),
    elem="FLOAT",
    output_shape=("batch", 1000),
    metadata: dict | None = None,
    weights=None,
) -> Path:
    """A small stand-in model: global average pool, then a [C,1000] MatMul (input rank 4) or a Flatten.
    ``weights`` is the MatMul's [C,1000] matrix (default: all ones, so every class gets the same logit)."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    channels = input_shape[1] if len(input_shape) > 1 and isinstance(input_shape[1], int) else 3
    dtype = getattr(TensorProto, elem)
    nodes = [helper.make_node("ReduceMean", [input_name, "axes"], ["pooled"], keepdims=0)]
    inits = [numpy_helper.from_array(np.arange(2, len(input_shape), dtype=np.int64), "axes")]
    nodes.append(helper.make_node("MatMul", ["pooled", "w"], ["logits"]))
    matrix = np.ones((channels, output_shape[-1]), dtype=np.float32) if weights is None else weights
    inits.append(numpy_helper.from_array(np.asarray(matrix, dtype=np.float32), "w"))
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info(input_name, dtype, list(input_shape))],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, list(output_shape))],
        inits,
    )
    return save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), path, metadata)

def save_model(model, path: Path, metadata: dict | None = None) -> Path:
    """``model`` (an onnx ModelProto) saved at ``path`` with ``metadata`` as its metadata_props."""
    from onnx import save

    for key, value in (metadata or {}).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    save(model, str(path))
    return path


def tiny_convnet(path: Path, classes: int = 1000, metadata: dict | None = None) -> Path:
    """A tiny conv net with every layer kind int8 quantizes: images -> c1 (3->8, 3x3) -> relu -> c2 (8->8, 1x1)
    -> add (c2 + relu) -> pool -> flatten -> fc (8->classes), seeded weights."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(0, 0.3, (8, 3, 3, 3)).astype(np.float32), "w1"),
             numpy_helper.from_array(rng.normal(0, 0.3, (8, 8, 1, 1)).astype(np.float32), "w2"),
             numpy_helper.from_array(rng.normal(0, 1.0, (classes, 8)).astype(np.float32), "wf"),
             numpy_helper.from_array(np.zeros(classes, np.float32), "bf")]
    nodes = [helper.make_node("Conv", ["images", "w1"], ["x1"], name="c1", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["x1"], ["r1"], name="relu"),
             helper.make_node("Conv", ["r1", "w2"], ["x2"], name="c2"),
             helper.make_node("Add", ["x2", "r1"], ["s"], name="add"),
             helper.make_node("GlobalAveragePool", ["s"], ["p"], name="pool"),
             helper.make_node("Flatten", ["p"], ["flat"], name="flatten"),
             helper.make_node("Gemm", ["flat", "wf", "bf"], ["logits"], name="fc", transB=1)]
    graph = helper.make_graph(
        nodes, "tiny-convnet",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, "height", "width"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", classes])], inits)
    return save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), path, metadata)


RANDOM_METADATA = {
    "rsz_export.weights_id": "random",
    "rsz_export.weights_sha256": "0" * 64,
    "rsz_export.weights_source": "numpy PCG64 seed 0",
}


CHECKPOINT_WRAPPINGS = (
    "bare.pt",
    "state_dict.pt",
    "reference-script.pth",
    "ddp-with-optimizer.pt",
    "weights.pt",
    "lightning.ckpt",
    "model.safetensors",
)
"""Ways training scripts save a model's weights, as the file names ``save_wrapped`` writes."""


def save_wrapped(state: dict, optimizer_state: dict, folder: Path) -> dict[str, Path]:
    """``state`` saved in each of CHECKPOINT_WRAPPINGS under ``folder``: a bare state_dict; one under
    ``state_dict`` with training progress; torchvision's reference script's dict (``model``, optimizer, scheduler,
    ``args`` as an argparse.Namespace); a DDP model's ``module.``-prefixed state_dict under ``model_state_dict``
    beside its optimizer state; one under ``weights`` with hyper-parameters; a Lightning-style ``model.``-prefixed
    ``state_dict``; and a safetensors file."""
    import argparse

    import torch
    from safetensors.torch import save_file

    prefixed = {prefix: {prefix + k: v for k, v in state.items()} for prefix in ("module.", "model.")}
    contents = {
        "bare.pt": state,
        "state_dict.pt": {"state_dict": state, "epoch": 12, "best_acc1": torch.tensor(93.1)},
        "reference-script.pth": {"model": state, "optimizer": optimizer_state, "epoch": 5,
                                 "lr_scheduler": {"step_size": 30, "gamma": 0.1, "last_epoch": 5},
                                 "args": argparse.Namespace(lr=0.1, model="resnet50", epochs=90)},
        "ddp-with-optimizer.pt": {"epoch": 7, "model_state_dict": prefixed["module."],
                                  "optimizer_state_dict": optimizer_state, "loss": 0.125},
        "weights.pt": {"weights": state, "hyper_parameters": {"lr": 0.01, "arch": "resnet50", "classes": 10}},
        "lightning.ckpt": {"state_dict": prefixed["model."], "epoch": 3, "global_step": 1200,
                           "hyper_parameters": {"lr": 3e-4}},
    }
    folder.mkdir(parents=True, exist_ok=True)
    paths = {name: folder / name for name in CHECKPOINT_WRAPPINGS}
    for name, content in contents.items():
        torch.save(content, paths[name])
    save_file({k: v.contiguous() for k, v in state.items()}, str(paths["model.safetensors"]))
    return paths


def sgd_state(model) -> dict:
    """The state of an SGD optimizer with momentum after one step over ``model``'s parameters (a momentum buffer
    per parameter, as a training checkpoint holds), without running the model or changing its weights (the
    step's gradients are zero)."""
    import torch

    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for parameter in model.parameters():
        parameter.grad = torch.zeros_like(parameter)
    optimizer.step()
    state = optimizer.state_dict()
    for parameter in model.parameters():
        parameter.grad = None
    return state


def rebuild_int8_copy(int8_engines: Path, tmp_path: Path, backend: str):
    """A copy of the shared int8 build (``int8_engines``) rebuilt with ``backend``, with the same range, export,
    weights and calibration count, so its calibration is reused: (the folder, its manifest as copied, the run)."""
    import shutil

    from rsz_export.artifacts.manifest import load_manifest

    folder = Path(shutil.copytree(int8_engines, tmp_path / "engines"))
    manifest = load_manifest(folder)
    args = ["build", str(folder), "--min", "224", "--max", "288", "--onnx", str(folder / manifest.onnx.file),
            "--weights", manifest.weights.source, "--precision", "int8", "--calib-count", "4", "--backend", backend]
    return folder, manifest, run_cli(*args)
