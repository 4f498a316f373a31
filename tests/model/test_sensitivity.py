"""Per-layer sensitivity and the float fallback on a tiny conv net whose most sensitive layer is known by
construction: the classifier's input (the Gemm's) is given a range 500 times too wide, so quantizing it wipes
out the logits while every other layer quantizes finely."""

from __future__ import annotations

import numpy as np
import pytest

from rsz_export.model.sensitivity import (
    Layer,
    SwitchableRunner,
    choose_fallback,
    cosines,
    layers_of,
    measure_sensitivity,
)
from tests.helpers import tiny_convnet

FC_INPUT = "flat"  # the input of the classifier (Gemm) in ``tiny_convnet``


@pytest.fixture(scope="module")
def convnet(tmp_path_factory):
    """(model path, calibrated ranges with the fc input's range made 500x too wide, held-out inputs)."""
    from rsz_export.model.calibration import calibrate

    path = tiny_convnet(tmp_path_factory.mktemp("convnet") / "convnet.onnx", classes=10)
    rng = np.random.default_rng(1)
    calib = [rng.normal(0, 1, (1, 3, 16, 16)).astype(np.float32) for _ in range(8)]
    ranges = dict(calibrate(path, calib, "minmax").ranges)
    lo, hi = ranges[FC_INPUT]
    ranges[FC_INPUT] = (500 * lo, 500 * hi)
    held_out = rng.normal(0, 1, (4, 3, 16, 16)).astype(np.float32)
    return path, ranges, held_out


def test_sensitivity_ranks_the_layer_with_the_coarse_range_first(convnet):
    path, ranges, x = convnet
    runner = SwitchableRunner(path, ranges)
    assert runner.names == ["c1", "c2", "add", "fc"]
    assert np.allclose(runner.outputs(x, runner.mask(None))[0], _fp32(path, x), atol=1e-5)  # mask 0: the fp32 model
    sensitivity = measure_sensitivity(runner, x)
    ranked = sorted(sensitivity, key=lambda n: -sensitivity[n])
    assert ranked[0] == "fc" and sensitivity["fc"] > 100 * max(sensitivity[n] for n in ranked[1:])
    assert all(value >= 0 for value in sensitivity.values())


def test_the_fallback_keeps_only_that_layer_and_both_qdq_models_follow(convnet, tmp_path):
    from rsz_export.model.quantization import CPU_QDQ, TENSORRT_QDQ, _session, qdq_model

    path, ranges, x = convnet
    runner = SwitchableRunner(path, ranges)
    reference = runner.outputs(x, runner.mask(None))

    def evaluate(float_layers):
        c = cosines(reference, runner.outputs(x, runner.mask(float_layers)))
        return {"16x16": float(c.min())}, {"16x16": float(np.median(c))}

    import onnx

    layers = layers_of(onnx.load(str(path)), (1, 3, 16, 16))
    assert [layer.name for layer in layers] == ["c1", "c2", "add", "fc"] and layers[2].flop_share == 0
    placement = choose_fallback(layers, measure_sensitivity(runner, x), evaluate, target=0.99)
    assert placement.chosen.float_layers == ("fc",) and not placement.trials[0].meets(0.99)
    assert placement.to_dict()["float_layers"][0]["layer"] == "fc"
    for settings in (CPU_QDQ, TENSORRT_QDQ):
        worst = {}
        for kept in ((), ("fc",)):
            target = qdq_model(path, ranges, settings, tmp_path / f"{settings.name}-{len(kept)}.onnx", kept)
            model = onnx.load(str(target))
            fc = next(n for n in model.graph.node if n.op_type == "Gemm")
            assert (fc.input[1] == "wf") == bool(kept)  # kept in float: the fp32 weight, no DequantizeLinear
            logits = _session(target, None, settings.check_level).run(None, {"images": x})[0]
            worst[kept] = float(cosines(reference[0], logits).min())
        assert worst[()] < 0.99 <= worst[("fc",)], (settings.name, worst)


def test_no_placement_within_the_work_limit_is_reported_with_every_trial():
    layers = [Layer(f"conv{i}", "Conv", 0.25) for i in range(4)]
    sensitivity = {f"conv{i}": 0.1 * (i + 1) for i in range(4)}
    tried = []

    def evaluate(float_layers):
        tried.append(float_layers)
        return {"224x224": 0.9 + 0.01 * len(float_layers)}, {"224x224": 0.95}

    placement = choose_fallback(layers, sensitivity, evaluate, target=0.999, max_float_share=0.5)
    assert placement.chosen is None and tried == [(), ("conv3",), ("conv3", "conv2")]
    assert "2 float layer(s),  50.0% of the work in float" in placement.table()
    tried.clear()
    found = choose_fallback(layers, sensitivity, evaluate, target=0.93, max_float_share=1.0)
    assert found.chosen.float_layers == ("conv3", "conv2", "conv1")  # the fewest: 0, 1, 2 fail, 4 holds, then 3
    assert [len(t) for t in tried] == [0, 1, 2, 4, 3]


def _fp32(path, x):
    from rsz_export.model.quantization import _session

    return _session(path, None).run(None, {"images": x})[0]


def test_layers_without_a_name_are_never_candidates(convnet, tmp_path):
    import onnx

    path, ranges, x = convnet
    model = onnx.load(str(path))
    model.graph.node[2].name = ""  # c2: the quantizer could not be told to leave it out
    onnx.save(model, str(tmp_path / "renamed.onnx"))
    assert [layer.name for layer in layers_of(model, (1, 3, 16, 16))] == ["c1", "add", "fc"]
    runner = SwitchableRunner(tmp_path / "renamed.onnx", ranges)
    assert runner.names == ["c1", "add", "fc"] and set(measure_sensitivity(runner, x)) == {"c1", "add", "fc"}


def test_cosines_judge_each_image_by_its_worst_output():
    """Logits [batch, classes] or maps [batch, c, h, w], each image's values taken whole; with several outputs
    (a backbone's maps) an image counts by the output that moved most."""
    rng = np.random.default_rng(0)
    maps = rng.standard_normal((2, 4, 3, 3))
    other = maps.copy()
    other[1, :, 0, 0] *= -1  # image 1 changed in one pixel only
    whole = cosines(maps, other)
    flat = [float(np.dot(a.ravel(), b.ravel()) / np.linalg.norm(a) / np.linalg.norm(b)) for a, b in zip(maps, other)]
    assert np.allclose(whole, flat) and whole[0] == pytest.approx(1.0) and 0 < whole[1] < 1
    logits = rng.standard_normal((2, 10))
    assert np.allclose(cosines([logits, maps], [logits, other]), whole)
    assert np.allclose(cosines([maps, logits], [maps, -logits]), [-1.0, -1.0])


def test_when_no_placement_meets_every_profile_the_one_meeting_the_most_is_chosen():
    layers = [Layer(f"conv{i}", "Conv", 0.2) for i in range(5)]
    sensitivity = {f"conv{i}": 0.1 * (5 - i) for i in range(5)}

    def evaluate(float_layers):  # profile 0 (224) reaches the target with 2 float layers, profile 1 (800) never
        k = len(float_layers)
        return {"224x224": 0.98 + 0.01 * k, "800x800": 0.9}, {"224x224": 0.99, "800x800": 0.9}

    groups = [["224x224"], ["800x800"]]
    placement = choose_fallback(layers, sensitivity, evaluate, target=0.999, max_float_share=0.6, profiles=groups)
    assert placement.chosen.float_layers == ("conv0", "conv1") and placement.int8_profiles == (0,)
    assert not placement.met  # tried 0, 1, 2 and 3 (the limit: 60%); 2 is the fewest that meets profile 0
    assert [p["precision"] for p in placement.to_dict()["profiles"]] == ["int8", "fp32"]
    assert placement.to_dict()["profiles"][1]["worst"] == 0.9
    nowhere = choose_fallback(layers, sensitivity, lambda f: ({"224x224": 0.9, "800x800": 0.9},) * 2, target=0.999,
                              profiles=groups)
    assert nowhere.chosen is None and nowhere.int8_profiles == () and not nowhere.to_dict()["met"]
    everywhere = choose_fallback(layers, sensitivity, lambda f: ({"224x224": 1.0, "800x800": 1.0},) * 2, target=0.999,
                                 profiles=groups)
    assert everywhere.met and everywhere.int8_profiles == (0, 1) and everywhere.chosen.float_layers == ()
