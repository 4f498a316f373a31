"""Shared fixtures: one real build of the quickstart range per test session, and a small one reusing its export."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import (
    CHECKPOINT_WRAPPINGS,
    RANDOM_METADATA,
    REPO,
    TEAM,
    make_plan,
    run_cli,
    save_wrapped,
    sgd_state,
    tiny_onnx,
)

# Builds in tests (in-process and in CLI subprocesses) do not share exports through the user's cache: each test
# sees its folder's own behaviour, and nothing is written outside the test's folders. The cache's own tests set a
# folder of theirs (tests/artifacts/test_export_cache.py).
os.environ["RSZ_EXPORT_CACHE"] = "off"


def _library_build(out_dir: Path, min_size: int, max_size: int, weights: str | None = None):
    from rsz_export.pipeline.run import BuildSpec, build

    plan = make_plan(min_size, max_size)
    return build(BuildSpec(plan, out_dir, backend="onnxruntime", weights=weights, command="pytest fixture")).manifest


def pytest_configure(config) -> None:
    """With pytest-xdist on a machine with a core per worker, each worker (and every process it starts) runs on
    a core of its own with one thread per math library: ONNX Runtime sizes its pool from the cores a process may
    use, so two workers never oversubscribe the cores with spinning thread pools. ``RSZ_TEST_PIN=0`` turns it off."""
    worker, count = os.environ.get("PYTEST_XDIST_WORKER"), int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))
    if not worker or count < 2 or os.environ.get("RSZ_TEST_PIN") == "0" or not hasattr(os, "sched_setaffinity"):
        return
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < count:
        return
    config.rsz_all_cpus = set(cpus)
    os.sched_setaffinity(0, {cpus[int(worker.removeprefix("gw")) % len(cpus)]})
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(name, "1")


SERVER_TESTS = (
    "tests/triton/", "tests/cli/test_serve.py", "tests/cli/test_openvino_cli.py", "tests/test_readme_walk.py",
)
"""Tests that start a Triton server (its core and model processes beside the client): they keep every core, as
a server has in use."""


@pytest.fixture(autouse=True)
def _servers_keep_every_core(request):
    every = getattr(request.config, "rsz_all_cpus", None)
    where = request.node.path.relative_to(REPO).as_posix()
    if every is None or not where.startswith(SERVER_TESTS):
        yield
        return
    pinned = os.sched_getaffinity(0)
    os.sched_setaffinity(0, every)
    try:
        yield
    finally:
        os.sched_setaffinity(0, pinned)


def shared(tmp_path_factory, name: str, make: Callable[[Path], None]) -> Path:
    """``root/name`` made by ``make`` once for the whole test session: with pytest-xdist, in the folder the workers
    share (their base folders' parent), the first worker to ask making it while the others wait on a lock. The
    real-model fixtures are made this way, so two workers never export the same ResNet-50 twice; what they make is
    only read afterwards (tests that change a build change a copy)."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent
    out, done = root / name, root / f"{name}.done"
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir()
            make(out)
            done.touch()
    return out


@pytest.fixture(params=("10", "11"), ids=("trt10", "trt11"))
def trt_double(request, monkeypatch):
    """The TensorRT test double installed for one test, once per API generation (10.x and 11.x); the fake
    ``tensorrt`` module (its ``__version__`` says which). ``use_double`` directly for other versions or devices."""
    from tests.backends import fake_tensorrt
    from tests.backends.trt_double import use_double

    return use_double(monkeypatch, fake_tensorrt.VERSIONS[request.param])


@pytest.fixture(scope="session")
def engines_dir(tmp_path_factory) -> Path:
    """What `make engines` builds (224..800, default weights: random with a warning where none are cached)."""
    return shared(tmp_path_factory, "engines", lambda out: _library_build(out, 224, 800))


@pytest.fixture(scope="session")
def small_engines_dir(engines_dir, tmp_path_factory) -> Path:
    """A 224..288 build; it reuses the session export (same weights), so it costs one ORT optimisation."""
    out = tmp_path_factory.mktemp("small-engines")
    manifest = json.loads((engines_dir / "manifest.json").read_text())
    shutil.copy2(engines_dir / manifest["onnx"]["file"], out / manifest["onnx"]["file"])
    shutil.copy2(engines_dir / "manifest.json", out / "manifest.json")
    _library_build(out, 224, 288)
    return out


@pytest.fixture(scope="session")
def onnx_path(engines_dir) -> Path:
    """The session's exported ONNX file."""
    manifest = json.loads((engines_dir / "manifest.json").read_text())
    return engines_dir / manifest["onnx"]["file"]


@pytest.fixture()
def engines_copy(small_engines_dir, tmp_path) -> Path:
    """A private copy of the small build, for tests that damage it."""
    target = tmp_path / "engines"
    shutil.copytree(small_engines_dir, target)
    return target


@pytest.fixture(scope="session")
def reference_weights(engines_dir, tmp_path_factory) -> Path:
    """The session export's weights as a state_dict file (loads in a second, unlike regenerated random ones)."""
    def save(folder: Path) -> None:
        import torch

        from rsz_export.artifacts.manifest import load_manifest
        from rsz_export.validate.reference import reference_model

        model = reference_model(load_manifest(engines_dir).weights, engines_dir)
        torch.save({k: v.contiguous() for k, v in model.state_dict().items()}, folder / "reference.pt")

    return shared(tmp_path_factory, "robust-weights", save) / "reference.pt"


@pytest.fixture(scope="session")
def fast_engines(onnx_path, reference_weights, tmp_path_factory) -> Path:
    """A 224..256 ORT build from the session export (``build --onnx``) whose reference is a weights file."""
    out = tmp_path_factory.getbasetemp() / "robust-engines"
    if not (out / "manifest.json").exists():
        from rsz_export.pipeline.run import BuildSpec, build

        plan = make_plan(224, 256)
        build(
            BuildSpec(
                plan,
                out,
                backend="onnxruntime",
                weights=str(reference_weights),
                onnx=onnx_path,
                command="pytest robustness fixture",
            )
        )
    return out

@pytest.fixture(scope="session")
def int8_engines(onnx_path, reference_weights, tmp_path_factory) -> Path:
    """An int8 ORT build over 224..288 from the session export, calibrated on 4 crops of the bundled photographs:
    the one int8 build the slow tests share (calibration, the held-out analysis with the default --int8-target,
    the Q/DQ model, its check and the engine)."""
    def make(out: Path) -> None:
        from rsz_export.backends.base import BuildOptions
        from rsz_export.model.calibration_set import CalibSpec
        from rsz_export.pipeline.run import BuildSpec, build

        spec = BuildSpec(make_plan(224, 288), out, backend="onnxruntime", weights=str(reference_weights),
                         onnx=onnx_path, options=BuildOptions(precision="int8"), calibration=CalibSpec(count=4),
                         command="pytest int8 fixture")
        build(spec)

    return shared(tmp_path_factory, "int8-engines", make)


@pytest.fixture(scope="session")
def own_weights(reference_weights, tmp_path_factory) -> tuple[dict, dict[str, Path], Path]:
    """The 10-class state_dict, its file in every wrapping, and the team's names (one per line)."""
    import torch

    from rsz_export.model.weights import build_model

    state = torch.load(reference_weights, weights_only=True)
    state = {**state, "fc.weight": state["fc.weight"][:10].clone(), "fc.bias": state["fc.bias"][:10].clone()}

    def save(folder: Path) -> None:
        save_wrapped(state, sgd_state(build_model(state)), folder)
        (folder / "team.txt").write_text("".join(f"{name}\n" for name in TEAM))
        (folder / "team.json").write_text(json.dumps(TEAM))

    folder = shared(tmp_path_factory, "own-weights", save)
    return state, {name: folder / name for name in CHECKPOINT_WRAPPINGS}, folder / "team.txt"


@pytest.fixture(scope="session")
def cifar_build(own_weights, tmp_path_factory) -> Path:
    """``rsz-export build`` over profiles/cifar-transfer.toml from the DDP checkpoint (with its optimizer state)
    and the team's names: the one export of the 10-class weights (tests/pipeline/test_own_model.py, and the
    README walk's own model, which takes it from an export cache as a CI cache would)."""
    _, paths, team = own_weights

    def make(folder: Path) -> None:
        cifar = REPO / "profiles" / "cifar-transfer.toml"
        result = run_cli("build", str(folder / "engines"), "--profile-file", str(cifar), "--backend", "onnxruntime",
                         "--weights", str(paths["ddp-with-optimizer.pt"]), "--labels", str(team))
        assert result.returncode == 0, result.stderr

    return shared(tmp_path_factory, "own-cifar", make) / "engines"


@pytest.fixture()
def damaged(fast_engines, tmp_path) -> Path:
    """A private copy of ``fast_engines`` to damage."""
    return Path(shutil.copytree(fast_engines, tmp_path / "engines"))


@pytest.fixture(scope="session")
def tiny_engines(tmp_path_factory) -> Path:
    """An ONNX Runtime build over 224..800 (4 profiles) of a tiny stand-in with the real interface (``images``
    [batch,3,h,w] -> ``logits`` [batch,1000]), built in a second without exporting ResNet-50: for the fast tier's
    tests of routing, serving, bench and the CLI, which do not depend on the network's numerics. Its manifest
    names seeded weights it does not hold, so validating it fails on the weights' hash instead of passing."""
    from rsz_export.pipeline.run import BuildSpec, build

    out = tmp_path_factory.mktemp("tiny-engines")
    model = tiny_onnx(out.parent / "tiny.onnx", metadata=RANDOM_METADATA)
    plan = make_plan(224, 800)
    build(BuildSpec(plan, out, backend="onnxruntime", onnx=model, command="pytest tiny fixture"))
    return out


@pytest.fixture(scope="session")
def wrapped_checkpoints(tmp_path_factory) -> tuple[dict, dict[str, Path]]:
    """A 10-class ResNet-50 state_dict (torchvision's seeded initialisation: nothing is run) and its paths saved
    in every wrapping of ``helpers.CHECKPOINT_WRAPPINGS``, for the fast tier's loading and bad-input tests."""
    import torch
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.resnet50(num_classes=10)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    return state, save_wrapped(state, sgd_state(model), tmp_path_factory.mktemp("wrapped"))


@pytest.fixture(scope="session")
def colour_engines(tmp_path_factory) -> Path:
    """Like ``tiny_engines`` (224..800, 4 profiles), with profiles taking batches of 1..4 and a stand-in whose
    logits for classes 0, 1 and 2 are the input's mean red, green and blue (normalised; every other class 0):
    what it predicts depends on the pixels that reached it, so tests can tell which preprocessing ran (a red
    image is class 0, tench; green 1, goldfish; blue 2, great white shark)."""
    import numpy as np

    from rsz_export.pipeline.run import BuildSpec, build
    from rsz_export.shapes import BatchRange

    out = tmp_path_factory.mktemp("colour-engines")
    weights = np.zeros((3, 1000), dtype=np.float32)
    weights[[0, 1, 2], [0, 1, 2]] = 1.0
    model = tiny_onnx(out.parent / "colour.onnx", metadata=RANDOM_METADATA, weights=weights)
    plan = make_plan(224, 800, batch=BatchRange(1, 4, 4))
    build(BuildSpec(plan, out, backend="onnxruntime", onnx=model, command="pytest colour fixture"))
    return out


@pytest.fixture(scope="session")
def mixed_photos(tmp_path_factory) -> Path:
    """200 flat-colour images from 64x64 to 4000x3000 (JPEG and PNG, several aspect ratios), made once per
    session: flat colours compress to a few KB at any size, so making and decoding them stays cheap."""
    from PIL import Image

    folder = tmp_path_factory.mktemp("mixed-photos")
    colours = ((220, 30, 30), (30, 200, 40), (30, 40, 220))
    for i in range(200):
        h, w = mixed_size(i)
        kind = "jpg" if i % 2 or h * w > 2_000_000 else "png"  # big PNGs are slow to write and to read
        Image.new("RGB", (w, h), colours[i % 3]).save(folder / f"{i:03d}.{kind}")
    return folder


def mixed_size(i: int) -> tuple[int, int]:
    """(h, w) of image i of ``mixed_photos``: the longer side grows geometrically from 64 (i = 0, square) to
    4000 (i = 199, 3000x4000), the aspect ratio (h:w) cycling through 1:1, 4:3, 9:16, 3:2 and 3:4."""
    longer = round(64 * (4000 / 64) ** (i / 199))
    h_over_w = (1.0, 4 / 3, 9 / 16, 3 / 2, 3 / 4)[i % 5]
    if h_over_w <= 1:
        return max(1, round(longer * h_over_w)), longer
    return longer, max(1, round(longer / h_over_w))


REAL_MODEL_FIXTURES = {"engines_dir", "small_engines_dir", "onnx_path", "engines_copy", "reference_weights",
                       "fast_engines", "damaged", "random_weights", "int8_engines", "own_weights",
                       "cifar_build", "detector", "detector_checkpoint", "fpn_build", "feature_build"}
"""Fixtures that export, build or run the real ResNet-50 (seeded weights are calibrated by running it): a test
using one is in the slow tier."""


def pytest_collection_modifyitems(items) -> None:
    """Mark every test that needs the real model ``slow``, so ``make check`` (-m "not slow") never exports it."""
    for item in items:
        if REAL_MODEL_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def classifier_onnx(tmp_path_factory) -> Path:
    """A tiny Conv classifier with the real interface and distinct logits per class, for the TensorRT test double
    (tests/backends/trt_double.py) and other tests that need real numbers without ResNet-50."""
    from tests.backends.trt_double import classifier_onnx as make

    return make(tmp_path_factory.mktemp("classifier") / "classifier.onnx")


@pytest.fixture(scope="session")
def openvino_engines(tmp_path_factory) -> Path:
    """The ``colour_engines`` stand-in (logits of classes 0..2 = the input's mean red, green, blue) built with
    OpenVINO over 224..800 (4 profiles, batches 1..4): the OpenVINO build the CLI tests share (about a second)."""
    pytest.importorskip("openvino", reason="the [openvino] extra is not installed")
    import numpy as np

    from rsz_export.pipeline.run import BuildSpec, build
    from rsz_export.plan.profiles import PlanSpec, plan_profiles
    from rsz_export.shapes import BatchRange

    out = tmp_path_factory.mktemp("openvino-engines")
    weights = np.zeros((3, 1000), dtype=np.float32)
    weights[[0, 1, 2], [0, 1, 2]] = 1.0
    model = tiny_onnx(out.parent / "ov-colour.onnx", metadata=RANDOM_METADATA, weights=weights)
    plan = plan_profiles(PlanSpec(224, 800, batch=BatchRange(1, 4, 4)))
    build(BuildSpec(plan, out, backend="openvino", onnx=model, command="pytest openvino fixture"))
    return out


@pytest.fixture(scope="session")
def detector(tmp_path_factory):
    """A seeded torchvision Faster R-CNN ResNet-50 FPN, built as a trained one is (tests/model/detectors.py)."""
    from tests.model.detectors import make_detector

    return make_detector()


@pytest.fixture(scope="session")
def detector_checkpoint(tmp_path_factory) -> Path:
    """A seeded Faster R-CNN (``detector``'s weights) saved as torchvision's detection reference script saves it
    (model, optimizer, scheduler...), once per run."""
    from tests.model.detectors import make_detector, save_detector

    return shared(tmp_path_factory, "detector", lambda out: save_detector(make_detector(), out / "fasterrcnn.pth")) \
        / "fasterrcnn.pth"


@pytest.fixture(scope="session")
def fpn_build(detector_checkpoint, tmp_path_factory) -> Path:
    """``--outputs fpn`` from the detector checkpoint over 64..160 (2 profiles, batch 1..2) with ONNX Runtime: the
    feature-map build the backbone tests share (one export, small sizes), made once per run."""
    from rsz_export.pipeline.run import BuildSpec, build
    from rsz_export.shapes import BatchRange

    def make(out: Path) -> None:
        build(BuildSpec(make_plan(64, 160, 2, BatchRange(1, 1, 2)), out / "engines", backend="onnxruntime",
                        weights=str(detector_checkpoint), outputs="fpn", export_cache=False,
                        command="pytest fpn fixture"))

    return shared(tmp_path_factory, "fpn", make) / "engines"


@pytest.fixture(scope="session")
def feature_build(tmp_path_factory) -> Path:
    """``--outputs features`` from seeded random weights over 64..160 with ONNX Runtime (one profile), made once
    per run."""
    from rsz_export.pipeline.run import BuildSpec, build

    def make(out: Path) -> None:
        build(BuildSpec(make_plan(64, 160, 1), out / "engines", backend="onnxruntime", weights="random",
                        outputs="features", export_cache=False, verify=False,  # its tests compare
                        command="pytest features fixture"))

    return shared(tmp_path_factory, "features", make) / "engines"
