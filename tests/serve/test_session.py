"""runtime: the routing and resizing policy (pure), and a Session serving real images from a real ORT build."""

from __future__ import annotations

import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from rsz_export.artifacts.manifest import load_manifest, save_manifest
from rsz_export.backends import load_backend
from rsz_export.errors import EnvironmentProblem, IntegrityError, UsageError
from rsz_export.interface import MAX_NUM_CLASSES
from rsz_export.plan.routing import Candidate, choose_route, fit_size, plan_candidates
from rsz_export.serve.session import MAX_WORKERS, Session, check_options, top_labels
from rsz_export.shapes import BatchRange, InputShape, Profile, Resolution
from tests.helpers import make_plan

PLAN = make_plan(224, 800, profiles=4)  # bands up to 320, 416, 576, 800; every profile starts at 224
ONE_ENGINE = [Candidate(0, i, p) for i, p in enumerate(PLAN.profiles)]


def square(lo: int, opt: int, hi: int, batch: int = 1) -> Profile:
    return Profile(InputShape(batch, lo, lo), InputShape(batch, opt, opt), InputShape(batch, hi, hi))


def test_route_picks_the_covering_profile_with_the_least_area():
    assert [p.max.h for p in PLAN.profiles] == [320, 416, 576, 800]
    assert choose_route(300, 250, ONE_ENGINE).profile == 0
    assert choose_route(321, 224, ONE_ENGINE).profile == 1
    assert choose_route(500, 300, ONE_ENGINE).profile == 2
    chosen = choose_route(799, 601, ONE_ENGINE)
    assert (chosen.profile, chosen.size, chosen.resized) == (3, Resolution(799, 601), False)


def test_route_chooses_across_engines_and_ties_go_to_the_earlier_engine():
    wide, narrow = square(224, 512, 800), square(224, 256, 288)
    candidates = [Candidate(0, 0, wide), Candidate(1, 1, narrow), Candidate(2, 1, narrow)]
    assert (choose_route(250, 280, candidates).engine, choose_route(250, 280, candidates).profile) == (1, 1)
    assert choose_route(300, 300, candidates).engine == 0


def test_outside_every_profile_is_an_error_naming_the_range():
    with pytest.raises(UsageError, match=r"1000x900 image .* outside every profile.*224\.\.800"):
        choose_route(1000, 900, ONE_ENGINE)
    with pytest.raises(UsageError, match="outside every profile"):
        choose_route(100, 300, ONE_ENGINE)


def test_shrink_fits_keeping_the_aspect_ratio():
    big = choose_route(1600, 1200, ONE_ENGINE, fit=True)
    assert (big.size, big.profile, big.resized) == (Resolution(800, 600), 3, True)
    small = choose_route(100, 150, ONE_ENGINE, fit=True)
    assert (small.size, small.profile) == (Resolution(224, 336), 1)
    with pytest.raises(UsageError, match="20.0:1 and the profiles hold at most 3.57:1"):
        choose_route(100, 2000, ONE_ENGINE, fit=True)


def test_shrink_with_square_profiles_picks_the_scale_closest_to_one():
    bands = [Candidate(0, 0, square(224, 256, 288)), Candidate(0, 1, square(289, 400, 512))]
    assert fit_size(600, 520, bands, 1, "exact") == Resolution(512, 444)
    assert fit_size(280, 300, bands, 1, "exact") == Resolution(289, 310)
    assert fit_size(250, 600, bands, 1, "exact") is None


def test_snap_rounds_sides_to_the_stride():
    chosen = choose_route(250, 270, ONE_ENGINE, stride="snap")
    assert (chosen.size, chosen.resized) == (Resolution(256, 256), True)
    assert choose_route(256, 288, ONE_ENGINE, stride="snap").resized is False
    assert choose_route(1700, 1000, ONE_ENGINE, fit=True, stride="snap").size == Resolution(800, 480)


def test_batch_outside_the_profiles_is_not_served():
    batched = [Candidate(0, 0, Profile(InputShape(4, 224, 224), InputShape(8, 256, 256), InputShape(8, 288, 288)))]
    assert choose_route(250, 250, batched, batch=4).profile == 0
    with pytest.raises(UsageError, match="batch 1"):
        choose_route(250, 250, batched, batch=1)



def test_routing_over_a_plan_names_engine_zero_and_the_profiles_index():
    assert [(c.engine, c.profile) for c in plan_candidates(PLAN)] == [(0, 0), (0, 1), (0, 2), (0, 3)]
    chosen = choose_route(500, 300, plan_candidates(PLAN))
    assert (chosen.engine, chosen.profile) == (0, 2)


def test_a_target_scales_the_image_before_routing_and_steers_the_fit():
    chosen = choose_route(150, 120, ONE_ENGINE, target=2.0)
    assert (chosen.size, chosen.profile, chosen.resized) == (Resolution(300, 240), 0, True)
    # 1200x1000 is outside every profile: fit takes the scale nearest 4 that fits, 800/300
    assert choose_route(300, 250, ONE_ENGINE, fit=True, target=4.0).size == Resolution(800, 667)
    bands = [Candidate(0, 0, square(224, 256, 288)), Candidate(0, 1, square(289, 400, 512))]
    assert fit_size(200, 200, bands, 1, "exact", target=2.0) == Resolution(400, 400)


def test_fit_into_a_fixed_shape_and_past_a_profile_of_another_batch():
    fixed = Profile(InputShape(1, 224, 224), InputShape(1, 224, 224), InputShape(1, 224, 224))
    assert fit_size(500, 500, [Candidate(0, 0, fixed)], 1, "exact") == Resolution(224, 224)
    other_batch, wide = Candidate(0, 0, square(224, 256, 288, batch=4)), Candidate(0, 1, square(224, 512, 800))
    assert fit_size(600, 600, [other_batch, wide], 1, "exact") == Resolution(600, 600)


def test_fit_ties_go_to_the_earlier_candidate():
    # twice the size in one, half in the other: as far from 1 and the same area, so the first listed wins
    up = Candidate(0, 0, Profile(InputShape(1, 256, 256), InputShape(1, 256, 256), InputShape(1, 256, 1024)))
    down = Candidate(1, 0, Profile(InputShape(1, 32, 32), InputShape(1, 64, 64), InputShape(1, 64, 4096)))
    assert fit_size(128, 128, [up, down], 1, "exact") == Resolution(256, 256)
    assert fit_size(128, 128, [down, up], 1, "exact") == Resolution(64, 64)


def test_snapped_fits_stay_inside_the_profile():
    band = [Candidate(0, 0, square(224, 512, 800))]
    assert fit_size(115, 112, band, 1, "snap") == Resolution(224, 224)  # 230 rounds down to the minimum
    assert fit_size(1580, 1600, band, 1, "snap") == Resolution(800, 800)  # 790 rounds up to the maximum
    assert fit_size(620, 620, [Candidate(0, 0, square(224, 256, 310))], 1, "snap") == Resolution(288, 288)
    # no multiple of 32 in 230..250: the fitted side stays as it is
    assert fit_size(480, 480, [Candidate(0, 0, square(230, 240, 250))], 1, "snap") == Resolution(250, 250)
    small = choose_route(100, 150, ONE_ENGINE, fit=True, stride="snap")
    assert (small.size, small.profile) == (Resolution(224, 320), 0)


def test_refusals_say_how_to_get_the_image_served():
    with pytest.raises(UsageError, match=r"covered: h,w 224\.\.320 opt \S+, batch 1\.\.1; h,w 224\.\.416") as outside:
        choose_route(1000, 900, ONE_ENGINE)
    hint = outside.value.hint
    assert hint.startswith("use --preprocess fit") and "Preprocess('fit')" in hint and hint.endswith("a wider range")
    with pytest.raises(UsageError) as elongated:
        choose_route(100, 2000, ONE_ENGINE, fit=True)
    hint = elongated.value.hint
    assert hint.startswith("use --preprocess crop") and hint.endswith("whose min and max allow this aspect ratio")


def test_top_k_is_softmax_ordered():
    logits = np.array([0.0, 3.0, 1.0, 2.0])
    labels = top_labels(logits, 3, ["a", "b", "c", "d"])
    assert [label.name for label in labels] == ["b", "d", "c"]
    assert labels[0].score == pytest.approx(np.exp(3) / np.exp(logits).sum())


@pytest.mark.parametrize("args", [(0,), (MAX_WORKERS + 1,), (1, 0), (1, MAX_NUM_CLASSES + 1)])
def test_bad_options_are_usage_errors(args):
    with pytest.raises(UsageError):
        check_options(*args)


# ---- a real Session over the session's small ORT build -------------------------------------------------------


def split_build(source, target, engines: int):
    """A copy of the small build whose plan has two profiles, served by one engine or by two engines (one each).

    ONNX Runtime engines run any shape, so the same engine file can truthfully carry either profile.
    """
    shutil.copytree(source, target)
    manifest = load_manifest(target)
    plan = make_plan(224, 288, profiles=2, batch=BatchRange())
    base = manifest.engines[0]
    if engines == 1:
        records = (replace(base, profiles=(0, 1)),)
    else:
        records = (replace(base, name="ort-low", profiles=(0,)), replace(base, name="ort-high", profiles=(1,)))
    save_manifest(replace(manifest, plan=plan, engines=records), target)
    return target


@pytest.fixture(scope="module")
def two_engines(small_engines_dir, tmp_path_factory):
    return split_build(small_engines_dir, tmp_path_factory.mktemp("split") / "engines", engines=2)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Seeded noise images of several sizes and aspect ratios, inside and outside 224..288."""
    folder = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(7)
    paths = {}
    for h, w in [(224, 224), (230, 250), (288, 240), (270, 288), (400, 320), (100, 120)]:
        paths[(h, w)] = folder / f"{h}x{w}.png"
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(paths[(h, w)])
    return paths


def reference_logits(out_dir, engine_file, image_path, size):
    """Logits from a plain onnxruntime session on the image normalised by hand (the independent check)."""
    import onnxruntime as ort

    image = Image.open(image_path).convert("RGB")
    if (image.height, image.width) != (size.h, size.w):
        image = image.resize((size.w, size.h), Image.Resampling.BILINEAR)
    x = (np.asarray(image, dtype=np.float32) / 255 - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]
    feed = x.transpose(2, 0, 1)[None].astype(np.float32)
    session = ort.InferenceSession(str(out_dir / engine_file), providers=["CPUExecutionProvider"])
    return session.run(None, {"images": feed})[0][0]


def test_session_routes_sizes_to_different_engines_and_matches_plain_onnxruntime(two_engines, photos):
    manifest = load_manifest(two_engines)
    edge = manifest.plan.profiles[0].max.h
    with Session(two_engines, preprocess="fit") as session:
        served = {size: session.predict(path, top=3) for size, path in photos.items()}
    for (h, w), p in served.items():
        assert p.original == (h, w)
        inside = 224 <= min(h, w) and max(h, w) <= 288
        assert (p.input == Resolution(h, w)) == inside
        assert p.engine == ("ort-low" if max(p.input.h, p.input.w) <= edge else "ort-high")
        assert p.profile == (0 if p.engine == "ort-low" else 1)
        logits = reference_logits(two_engines, manifest.engines[0].file.file, photos[(h, w)], p.input)
        probs = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
        assert [label.index for label in p.top] == list(np.argsort(-probs)[:3])
        assert p.top[0].score == pytest.approx(probs.max(), abs=1e-4)
        assert p.latency_ms > 0 and p.total_ms >= p.latency_ms
    assert {p.engine for p in served.values()} == {"ort-low", "ort-high"}
    assert served[(400, 320)].input == Resolution(288, 230)
    assert served[(100, 120)].input == Resolution(224, 269)


def test_session_refuses_oversize_by_default(small_engines_dir, photos):
    with Session(small_engines_dir) as session, pytest.raises(UsageError, match="outside every profile"):
        session.predict(photos[(400, 320)])


@pytest.fixture(scope="module")
def colour_photos(tmp_path_factory):
    """Per caller c (0..3), two flat images of colour c % 3 (red, green, blue: classes 0, 1, 2 of
    ``colour_engines``) at an intensity of its own, so every image has its own top-1 score and a result
    handed to the wrong caller shows."""
    folder = tmp_path_factory.mktemp("colour-photos")
    paths = {}
    for caller in range(4):
        for i in range(2):
            rgb = [0, 0, 0]
            rgb[caller % 3] = 160 + 20 * caller + 10 * i
            paths[caller, i] = folder / f"{caller}-{i}.png"
            Image.new("RGB", (240 + 16 * i, 232 + 8 * caller), tuple(rgb)).save(paths[caller, i])
    return paths


def test_concurrent_callers_never_share_a_runner_that_is_not_thread_safe(colour_engines, colour_photos, monkeypatch):
    from rsz_export.backends.ort import OrtRunner

    monkeypatch.setattr(OrtRunner, "thread_safe", property(lambda self: False))  # as a TensorRT runner is
    with Session(colour_engines) as session:
        expected = {path: session.predict(path).top for path in colour_photos.values()}
    assert len({top[0].score for top in expected.values()}) == len(colour_photos)  # each image tells itself apart
    active: dict[int, int] = {}
    overlaps, lock = [], threading.Lock()
    with Session(colour_engines, workers=2, threads=1) as session:
        opened = session._open

        def counting_open(index):
            runner = opened(index)
            infer = runner.infer

            def guarded(images, profile=None):
                with lock:
                    active[id(runner)] = active.get(id(runner), 0) + 1
                    overlaps.append(active[id(runner)])
                try:
                    return infer(images, profile=profile)
                finally:
                    with lock:
                        active[id(runner)] -= 1

            runner.infer = guarded
            return runner

        session._open = counting_open
        results, errors = [], []

        def caller(n):
            try:
                for i in range(2):
                    path = colour_photos[n, i]
                    results.append((n, path, session.predict(path).top))
            except Exception as exc:  # noqa: BLE001 - surfaced by the assertion below
                errors.append(exc)

        threads = [threading.Thread(target=caller, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors and len(results) == 8
    assert max(overlaps) == 1 and len(active) == 2
    for n, path, top in results:
        assert top[0].index == n % 3
        assert [label.index for label in top] == [label.index for label in expected[path]]
        assert [label.score for label in top] == pytest.approx([label.score for label in expected[path]], abs=1e-5)


def test_workers_share_one_thread_safe_runner_and_answer_alike(tiny_engines, photos):
    """ONNX Runtime on the CPU: one session per engine however many workers (memory once, not per worker)."""
    inside = [path for (h, w), path in photos.items() if 224 <= min(h, w) and max(h, w) <= 288]
    with Session(tiny_engines) as session:
        expected = {path: session.predict(path).top for path in inside}
    with Session(tiny_engines, workers=3, threads=1) as session:
        session.open_all()
        slots = [session._slots.get() for _ in range(3)]
        assert len({id(slot[0]) for slot in slots}) == 1 and slots[0][0].thread_safe
        for slot in slots:
            session._slots.put(slot)
        with ThreadPoolExecutor(3) as pool:
            results = list(pool.map(lambda path: (path, session.predict(path).top), inside * 3))
    for path, top in results:
        assert [label.index for label in top] == [label.index for label in expected[path]]


def test_missing_engine_file_is_an_integrity_error(engines_copy):
    manifest = load_manifest(engines_copy)
    (engines_copy / manifest.engines[0].file.file).unlink()
    with pytest.raises(IntegrityError, match="missing"):
        Session(engines_copy)


def test_tampered_engine_is_refused_before_loading(engines_copy, photos):
    manifest = load_manifest(engines_copy)
    path = engines_copy / manifest.engines[0].file.file
    path.write_bytes(path.read_bytes()[:-10] + b"0123456789")
    with Session(engines_copy) as session, pytest.raises(IntegrityError, match="does not match the manifest"):
        session.predict(photos[(224, 224)])


def test_corrupt_image_is_an_integrity_error(tiny_engines, tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with Session(tiny_engines) as session, pytest.raises(IntegrityError):
        session.predict(bad)


def test_unknown_backend_is_explained(tiny_engines):
    with pytest.raises(UsageError, match="no tensorrt engines"):
        Session(tiny_engines, backend="tensorrt")


@pytest.mark.skipif(
    load_backend("tensorrt").unavailable_reason() is None,
    reason="TensorRT is usable here, so a TensorRT-only manifest is servable",
)
def test_absent_backend_is_explained(engines_copy):
    manifest = load_manifest(engines_copy)
    save_manifest(replace(manifest, engines=(replace(manifest.engines[0], backend="tensorrt"),)), engines_copy)
    with pytest.raises(EnvironmentProblem, match="torch"):
        Session(engines_copy)
