"""Serving from TensorRT engines (serve.session.Session), on the CPU against the test double: predictions equal
those of an ONNX Runtime build of the same model, one engine or one per profile, from several threads."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from PIL import Image

from rsz_export.errors import EnvironmentProblem
from rsz_export.pipeline.run import BuildSpec, build
from rsz_export.serve.session import Session
from tests.backends import fake_tensorrt
from tests.backends.trt_double import V10, V11, build_folder, use_double
from tests.helpers import make_plan

PLAN = make_plan(64, 160, profiles=2)
SIZES = ((64, 64), (97, 131), (160, 150), (150, 64))


COLOURS = ((230, 20, 20), (20, 200, 40), (30, 40, 220), (200, 200, 60))


def _images():
    """Seeded noise at each of ``SIZES``, then one flat colour per size (one image per concurrent caller)."""
    rng = np.random.default_rng(0)
    noise = [Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)) for h, w in SIZES]
    return noise + [Image.new("RGB", (w, h), colour) for (h, w), colour in zip(SIZES, COLOURS, strict=True)]


@pytest.fixture(scope="module")
def ort_predictions(classifier_onnx, tmp_path_factory):
    out = tmp_path_factory.mktemp("ort")
    build(BuildSpec(PLAN, out, backend="onnxruntime", onnx=classifier_onnx, command="pytest"))
    with Session(out) as session:
        return [session.predict(image) for image in _images()]


@pytest.mark.parametrize("version, per_profile", [(V10, False), (V11, True)])
def test_predictions_match_onnx_runtime(version, per_profile, tmp_path, monkeypatch, classifier_onnx, ort_predictions):
    use_double(monkeypatch, version)
    manifest = build_folder(tmp_path, PLAN, classifier_onnx, engine_per_profile=per_profile)
    images = _images()
    coloured = range(len(SIZES), len(images))
    assert len({ort_predictions[i].top[0].score for i in coloured}) == len(coloured)  # each caller's is its own
    with Session(tmp_path, workers=2) as session:
        got = [session.predict(image) for image in images]
        threaded = {}
        threads = [threading.Thread(target=lambda i=i: threaded.update({i: session.predict(images[i])}))
                   for i in coloured]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    got += [threaded[i] for i in coloured]
    for mine, theirs in zip(got, ort_predictions + [ort_predictions[i] for i in coloured], strict=True):
        assert mine.backend == "tensorrt" and mine.profile == theirs.profile and mine.input == theirs.input
        assert [label.index for label in mine.top] == [label.index for label in theirs.top]
        np.testing.assert_allclose([x.score for x in mine.top], [x.score for x in theirs.top], rtol=1e-4)
    assert {p.engine for p in got} == {e.name for e in manifest.engines}


def test_an_engine_from_another_gpu_is_not_served(tmp_path, monkeypatch, classifier_onnx):
    use_double(monkeypatch, V11)
    build_folder(tmp_path, PLAN, classifier_onnx)
    use_double(monkeypatch, V11, gpu=fake_tensorrt.FakeGpu(name="NVIDIA A10", compute_capability=(8, 6)))
    with Session(tmp_path) as session:
        with pytest.raises(EnvironmentProblem, match="compute capability 9.0 and this GPU has 8.6") as info:
            session.predict(_images()[0])
    assert info.value.exit_code == 3
