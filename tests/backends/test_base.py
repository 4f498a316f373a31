"""The backend contract: every registered backend is a complete ``Backend`` whose facts agree with the registry
and pyproject.toml, and the runner base class checks every feed (dtype, rank, channels, covered size) and routes it
by the plan's rule before a backend sees it."""

from __future__ import annotations

import numpy as np
import pytest

from rsz_export.backends import BACKENDS, BUILD_BACKENDS, REFERENCE, load_backend
from rsz_export.backends.base import Backend, BuildOptions, Runner
from rsz_export.errors import UsageError
from rsz_export.interface import PRECISIONS
from rsz_export.plan.profiles import route
from rsz_export.shapes import BatchRange
from tests.helpers import REPO, make_plan

PLAN = make_plan(224, 800, profiles=4, batch=BatchRange(1, 2, 4))


class Recorder(Runner):
    """A runner whose backend records what reached it: nothing unchecked may."""

    def __init__(self, plan, profiles):
        super().__init__(plan, profiles)
        self.calls: list[tuple[tuple[int, ...], object]] = []

    def _run(self, images, profile):
        self.calls.append((images.shape, profile))
        return np.zeros((images.shape[0], 1000), np.float32)


@pytest.mark.parametrize("name", sorted(BACKENDS))
def test_every_registered_backend_is_a_complete_backend_object(name):
    backend = load_backend(name)
    assert isinstance(backend, Backend) and not type(backend).__abstractmethods__
    assert backend.name == name and load_backend(name) is backend  # one instance per process
    assert backend.precisions and set(backend.precisions) <= set(PRECISIONS)
    assert backend.builds == (name in BUILD_BACKENDS) and backend.builds != (name == REFERENCE)
    extras = (REPO / "pyproject.toml").read_text().split("[project.optional-dependencies]")[1].split("\n[")[0]
    assert backend.extra is None or f"\n{backend.extra} = [" in extras


@pytest.mark.parametrize("name", sorted(BACKENDS))
def test_every_backend_refuses_a_precision_it_does_not_have(name):
    backend = load_backend(name)
    missing = [p for p in PRECISIONS if p not in backend.precisions] or ["fp64"]
    with pytest.raises(UsageError, match=f"precision {missing[0]} is not available on backend {name}"):
        backend.check_options(BuildOptions(precision=missing[0]))


def test_a_backend_that_does_not_build_says_so():
    with pytest.raises(UsageError, match=f"backend {REFERENCE} does not build engines"):
        load_backend(REFERENCE).build_engines(None, None, BuildOptions(), None, print)


def test_routing_matches_the_plan_and_maps_engine_profiles():
    runner = Recorder(PLAN, range(4))
    for h, w in ((224, 224), (300, 224), (800, 640), (513, 799)):
        runner.infer(np.zeros((1, 3, h, w), np.float32))
        assert runner.last_profile == route(PLAN.profiles, 1, h, w)
    only_last = Recorder(PLAN, (3,))
    only_last.infer(np.zeros((2, 3, 800, 640), np.float32))
    assert only_last.last_profile == 3 and only_last.calls == [((2, 3, 800, 640), 3)]
    forced = Recorder(PLAN, range(4))
    forced.infer(np.zeros((1, 3, 300, 224), np.float32), profile=3)
    assert forced.last_profile == 3


@pytest.mark.parametrize(
    "feed, profiles, forced, phrase",
    [
        (np.zeros((1, 3, 800, 800), np.float32), (0, 1), None, "outside every profile of this engine"),
        (np.zeros((8, 3, 224, 224), np.float32), (0, 1, 2, 3), None, "outside every profile"),
        (np.zeros((1, 3, 224, 224), np.float32), (0, 1), 3, "cannot serve"),
        (np.zeros((1, 224, 224), np.float32), (0,), None, "float32 NCHW"),
        (np.zeros((1, 3, 224, 224), np.float64), (0,), None, "float32 NCHW array, got float64"),
        (np.zeros((1, 3, 224, 224), np.uint8), (0,), None, "got uint8"),
        (np.zeros((1, 4, 224, 224), np.float32), (0,), None, "3 channels"),
        (np.zeros((1, 1, 224, 224), np.float32), (0,), None, "3 channels"),
        (np.zeros((0, 3, 224, 224), np.float32), (0,), None, "no image"),
        ([[1.0]], (0,), None, "float32 NCHW"),
    ],
)
def test_bad_feeds_never_reach_the_backend(feed, profiles, forced, phrase):
    runner = Recorder(PLAN, profiles)
    with pytest.raises(UsageError, match=phrase):
        runner.infer(feed, profile=forced)
    assert runner.calls == [] and runner.last_profile is None


def test_refusal_names_the_covered_ranges():
    with pytest.raises(UsageError) as err:
        Recorder(PLAN, (0, 1)).infer(np.zeros((1, 3, 800, 800), np.float32))
    assert "1x3x800x800" in err.value.message and "profile 0: h,w 224.." in err.value.message


def test_without_a_plan_any_size_resnet_accepts_is_served():
    runner = Recorder(None, ())
    runner.infer(np.zeros((1, 3, 32, 4096), np.float32))
    assert runner.last_profile is None
    with pytest.raises(UsageError, match="32..4096"):
        runner.infer(np.zeros((1, 3, 31, 64), np.float32))


def test_runner_options_are_checked_when_made():
    from rsz_export.backends.base import RunnerOptions
    from rsz_export.shapes import InputShape

    assert RunnerOptions(threads=2, pinned=InputShape(1, 224, 256)).pinned.w == 256
    with pytest.raises(UsageError, match="threads must be a whole number"):
        RunnerOptions(threads=0)
    with pytest.raises(UsageError, match="pinned must be an InputShape, got tuple"):
        RunnerOptions(pinned=(1, 224, 224))
