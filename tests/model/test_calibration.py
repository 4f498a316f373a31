"""Streaming calibration: running statistics that never grow, the three range methods, and the ranges file."""

from __future__ import annotations

import json
import math
import resource

import numpy as np
import pytest

from rsz_export.errors import IntegrityError
from rsz_export.model import calibration as cal
from tests.backends.fake_tensorrt.testing import tiny_classifier_onnx
from tests.helpers import make_plan


def test_histogram_doubling_is_exact():
    """Growing the range merges bin pairs: the counts equal a histogram made at the final range in one go."""
    rng = np.random.default_rng(0)
    batches = [rng.standard_normal(5000).astype(np.float32) * scale for scale in (0.5, 1.0, 3.0, 9.0)]
    stats = cal.TensorStats()
    for batch in batches:
        stats.update(batch)
    values = np.abs(np.concatenate(batches))
    direct = np.bincount(np.minimum((values * (cal.BINS / stats.edge)).astype(np.int32), cal.BINS - 1),
                         minlength=cal.BINS)
    assert stats.edge >= values.max() and np.array_equal(stats.hist, direct)
    assert stats.lo == pytest.approx(float(np.concatenate(batches).min()))
    assert stats.hist.shape == (cal.BINS,)


def test_large_tensors_are_sampled_for_the_histogram_only():
    values = np.linspace(-1.0, 7.0, cal.HISTOGRAM_SAMPLES * 4 + 3, dtype=np.float32)
    stats = cal.TensorStats()
    stats.update(values)
    assert stats.hist.sum() <= cal.HISTOGRAM_SAMPLES and (stats.lo, stats.hi) == (-1.0, 7.0)


def test_methods_clip_outliers_but_minmax_does_not():
    """A ReLU-like tensor with rare large outliers: minmax keeps them, percentile and entropy clip them; the lower
    end stays 0 for a tensor that is never negative."""
    rng = np.random.default_rng(1)
    values = np.maximum(rng.standard_normal(200_000), 0).astype(np.float32)
    values[:1] = 60.0  # one in 200 000: beyond the 99.999th percentile
    stats = cal.TensorStats()
    stats.update(values)
    assert stats.range("minmax") == (0.0, 60.0)
    lo, hi = stats.range("percentile")
    assert lo == 0.0 and 3.0 < hi < 6.0
    lo, hi = stats.range("entropy")
    assert lo == 0.0 and hi < 60.0
    zeros = cal.TensorStats()
    zeros.update(np.zeros(10, np.float32))
    assert zeros.range("entropy") == (0.0, 0.0)


def test_calibrate_streams_one_image_at_a_time(tmp_path):
    """Ranges for every float activation the quantizers may touch (not the logits), from a generator."""
    model = tiny_classifier_onnx(tmp_path / "m.onnx", relu=True)
    rng = np.random.default_rng(0)
    feeds = (rng.standard_normal((1, 3, s, s)).astype(np.float32) for s in (40, 64, 33))
    run = cal.calibrate(model, feeds, "percentile")
    assert run.images == 3 and set(run.ranges) == {"images", "conv", "relu", "pool", "flat"}
    assert run.ranges["relu"][0] == 0.0 and run.ranges["images"][0] < 0 < run.ranges["images"][1]


def test_ranges_file_round_trip_and_damage(tmp_path):
    run = cal.CalibrationRun("minmax", {"a": (-1.0, 2.0)}, 1, 0.1)
    path = cal.write_ranges(tmp_path / "c.json", run, key="k")
    assert cal.read_ranges(path) == {"a": (-1.0, 2.0)}
    data = json.loads(path.read_text())
    data["tensors"]["a"] = [3.0, 2.0]
    path.write_text(json.dumps(data))
    with pytest.raises(IntegrityError, match="reversed"):
        cal.read_ranges(path)
    path.write_text("{not json")
    with pytest.raises(IntegrityError, match="not a readable calibration file"):
        cal.read_ranges(path)


def _brute_force_kl(hist, cut: int, levels: int = cal.QUANTIZED_BINS) -> float:
    """KL(P || Q) for keeping ``cut`` bins, written out bin by bin from the entropy calibration's definition
    (TensorRT's, GTC 2017): P is the first ``cut`` bins with every count beyond them added to the last one; Q
    merges those ``cut`` bins (without the outliers) into ``levels`` chunks and spreads each chunk's count evenly
    over its non-empty bins; both are normalised; a bin empty on one side only gets 1e-12 on that side."""
    counts = [float(c) for c in hist]
    p = counts[:cut]
    p[-1] += sum(counts[cut:])
    q = [0.0] * cut
    for level in range(levels):
        start, stop = level * cut // levels, (level + 1) * cut // levels
        chunk = counts[start:stop]
        used = [i for i, c in zip(range(start, stop), chunk) if c != 0]
        for i in used:
            q[i] = sum(chunk) / len(used)
    p_total, q_total = sum(p), sum(q)
    divergence = 0.0
    for pi, qi in zip(p, q):
        pi, qi = pi / p_total, qi / q_total
        if pi == 0 and qi == 0:
            continue
        pi, qi = pi or 1e-12, qi or 1e-12
        divergence += pi * math.log(pi / qi)
    return divergence


def _seeded_histograms():
    """Histograms of |x| as calibration builds them (``TensorStats``), from seeded samples of the shapes that
    activations take: a half-normal with one far outlier (a ReLU output), an exponential, a bimodal mixture, a
    heavy tail (a squared exponential: most of the mass below the best cut, much of it beyond the smallest), and
    two levels with a few far values (a tensor that takes few distinct values)."""
    rng = np.random.default_rng(28)
    half_normal = np.maximum(rng.standard_normal(100_000), 0)
    half_normal[7] = 40.0
    exponential = rng.exponential(1.0, 100_000)
    bimodal = np.concatenate([rng.normal(1.0, 0.3, 60_000), rng.normal(6.0, 0.5, 40_000)])
    heavy_tail = rng.exponential(1.0, 100_000) ** 2
    levels = np.concatenate([np.full(50_000, 1.0), np.full(50_000, 3.0), rng.uniform(0.0, 40.0, 50)])
    for name, values in (("half-normal+outlier", half_normal), ("exponential", exponential), ("bimodal", bimodal),
                         ("squared-exponential", heavy_tail), ("two-levels+far-values", levels)):
        stats = cal.TensorStats()
        stats.update(values.astype(np.float32))
        yield name, stats


@pytest.mark.parametrize("name,stats", [pytest.param(*h, id=h[0]) for h in _seeded_histograms()])
def test_entropy_cut_is_the_brute_force_kl_minimum(name, stats):
    """The entropy threshold is the candidate cut (128, 144, ... bins) with the least KL divergence, found again
    here by trying every candidate with the bin-by-bin definition; the threshold is that cut's upper edge."""
    cuts = range(cal.QUANTIZED_BINS, cal.BINS + 1, cal.ENTROPY_STEP)
    divergences = {cut: _brute_force_kl(stats.hist, cut) for cut in cuts}
    best = min(divergences, key=divergences.get)
    chosen = cal.entropy_bins(stats.hist)
    assert divergences[chosen] == pytest.approx(divergences[best], rel=1e-9, abs=1e-15), (name, chosen, best)
    assert stats.threshold("entropy") == pytest.approx(min(chosen * stats.edge / cal.BINS, stats.hi))
    assert stats.threshold("entropy") != pytest.approx(stats.threshold("percentile"))


@pytest.mark.slow
def test_calibration_memory_stays_bounded_at_800(onnx_path):
    """800x800 inputs through ResNet-50: peak resident memory of the process stays under 4 GB (ONNX Runtime's
    own histogram calibrators keep every activation of every input; here one image's are held at a time)."""
    feeds = (np.random.default_rng(k).standard_normal((1, 3, 800, 800)).astype(np.float32) for k in range(3))
    run = cal.calibrate(onnx_path, feeds, "entropy")
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    assert run.images == 3 and len(run.ranges) > 100 and peak_gib < 4.0


def test_stale_calibrations_are_cleaned_up_and_the_current_one_kept(tmp_path):
    from dataclasses import replace

    from rsz_export.artifacts.manifest import CalibrationRecord, EngineRecord, FileRecord
    from rsz_export.pipeline.cleanup import remove_stale
    from tests.backends.trt_double import manifest_for

    for name in ("calibration-aaaaaaaaaaaa.json", "calibration-bbbbbbbbbbbb.json", "model.onnx", "notes.json"):
        (tmp_path / name).write_text("{}")
    current = CalibrationRecord(FileRecord("calibration-bbbbbbbbbbbb.json", "0" * 64, 2), "percentile", "bundled",
                                (), 1.0)
    engine = EngineRecord("ort-int8", "onnxruntime", "int8", FileRecord("model.onnx", "0" * 64, 2), (0,), 1.0)
    manifest = replace(manifest_for([engine], tmp_path, make_plan(224, 256)), calibration=current)
    remove_stale(tmp_path, manifest)
    left = sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("."))  # the readers' lock file stays
    assert left == ["calibration-bbbbbbbbbbbb.json", "model.onnx", "notes.json"]


def test_histogram_edges_zeros_and_single_values():
    """The first update sets the edge to the largest |x|; the same largest value again keeps it; that value
    lands in the last bin; a one-value tensor counts; all-zero tensors count in bin 0; small values spread."""
    stats = cal.TensorStats()
    stats.update(np.array([0.25], np.float32))
    assert (stats.lo, stats.hi, stats.edge, int(stats.hist[-1])) == (0.25, 0.25, 0.25, 1)
    stats.update(np.array([-0.25, 0.125], np.float32))
    assert stats.edge == 0.25 and int(stats.hist[-1]) == 2 and int(stats.hist[cal.BINS // 2]) == 1
    zeros = cal.TensorStats()
    zeros.update(np.zeros(7, np.float32))
    zeros.update(np.zeros(3, np.float32))
    assert int(zeros.hist[0]) == 10 and int(zeros.hist.sum()) == 10


def test_entropy_ties_go_to_the_smallest_cut():
    """A histogram whose only values lie in its last bin: every cut is a perfect copy (divergence 0), and the
    search keeps the first, as TensorRT's argmin does; the threshold of a one-value tensor follows."""
    for count in (1, 5):
        hist = np.zeros(cal.BINS, np.int64)
        hist[-1] = count
        assert cal.entropy_bins(hist) == cal.QUANTIZED_BINS
    stats = cal.TensorStats()
    stats.update(np.array([0.25], np.float32))
    assert stats.threshold("entropy") == 0.25 * cal.QUANTIZED_BINS / cal.BINS


def test_percentile_is_the_upper_edge_of_the_bin_holding_that_rank():
    """99 999 values of 0.5 and one of 1.0 (the largest |x|, so 1.0 is the edge): the 99.999th percentile is
    0.5, in bin 1024 of [0, 1], so the threshold is that bin's upper edge, 1025/2048, not the largest value."""
    values = np.full(100_000, 0.5, np.float32)
    values[-1] = 1.0
    stats = cal.TensorStats()
    stats.update(values)
    assert stats.edge == 1.0
    assert stats.threshold("percentile") == 1025 / 2048 and stats.range("percentile") == (0.5, 1025 / 2048)


def test_minmax_keeps_a_negative_extreme():
    stats = cal.TensorStats()
    stats.update(np.array([-5.0, -0.5, 1.0], np.float32))
    assert stats.threshold("minmax") == 5.0 and stats.range("minmax") == (-5.0, 1.0)


def test_large_tensors_histogram_every_kth_value_from_the_first():
    """Sampling takes values 0, k, 2k, ... in memory order (k the smallest step keeping at most
    ``HISTOGRAM_SAMPLES``): the histogram is exactly theirs, and the same on every run."""
    size = cal.HISTOGRAM_SAMPLES * 4 + 3
    values = np.where(np.arange(size) % 5 == 0, 1.0, 0.5).astype(np.float32)  # k = 5: every sampled value is 1.0
    stats = cal.TensorStats()
    stats.update(values)
    assert int(stats.hist[-1]) == len(range(0, size, 5)) and int(stats.hist.sum()) == int(stats.hist[-1])


def _ranges_file(path, tensors, format_=cal.FORMAT):
    path.write_text(json.dumps({"format": format_, "tensors": tensors}))
    return path


def test_ranges_file_records_its_method_and_settings_and_reads_flat_ranges(tmp_path):
    """What the file says about its ranges (the method, the bins, the percentile where it applies, the time
    taken); a tensor that held one value (lo == hi, e.g. all zeros) reads back as it was written."""
    run = cal.CalibrationRun("percentile", {"zeros": (0.0, 0.0), "a": (-1.0, 2.0)}, 3, 1.2345)
    data = json.loads(cal.write_ranges(tmp_path / "p.json", run, key="k").read_text())
    assert {k: data[k] for k in ("format", "key", "method", "bins", "percentile", "seconds")} == {
        "format": cal.FORMAT, "key": "k", "method": "percentile", "bins": cal.BINS, "percentile": cal.PERCENTILE,
        "seconds": 1.23}
    assert cal.read_ranges(tmp_path / "p.json") == {"zeros": (0.0, 0.0), "a": (-1.0, 2.0)}
    minmax = json.loads(cal.write_ranges(tmp_path / "m.json", cal.CalibrationRun("minmax", {}, 1, 0.5)).read_text())
    assert minmax["method"] == "minmax" and minmax["percentile"] is None


def test_unreadable_ranges_files_say_what_is_wrong_and_how_to_recover(tmp_path):
    folder = tmp_path / "calibration.json"
    folder.mkdir()
    with pytest.raises(IntegrityError) as error:
        cal.read_ranges(folder)
    assert error.value.message.startswith(f"{folder} is not a regular file")
    with pytest.raises(IntegrityError) as error:
        cal.read_ranges(_ranges_file(tmp_path / "old.json", {"a": [0, 1]}, "rsz-export int8 calibration 0"))
    assert error.value.message.endswith("format 'rsz-export int8 calibration 0'")
    assert error.value.hint == "calibrate again: rsz-export build --force"
    with pytest.raises(IntegrityError, match="no ranges") as error:
        cal.read_ranges(_ranges_file(tmp_path / "empty.json", {}))
    assert error.value.hint == "calibrate again: build --force"


def test_calibrated_ranges_are_each_tensors_streamed_statistics(tmp_path):
    """The input's range is ``TensorStats`` over the images fed (for each method, the histogram only where the
    method uses one); the conv output read only by the Relu is not run and takes the Relu's range; the run
    records its method, image count and time, and logs every 8 images."""
    model = tiny_classifier_onnx(tmp_path / "m.onnx", relu=True)
    feeds = [np.random.default_rng(k).standard_normal((1, 3, 64, 64)).astype(np.float32) for k in range(16)]
    feeds[3][0, 0, 0, 0] = 30.0  # one far value: percentile and entropy clip it, minmax keeps it
    stats = cal.TensorStats()
    for feed in feeds:
        stats.update(feed)
    ranges, log = {}, []
    for method in ("minmax", "percentile", "entropy"):
        run = cal.calibrate(model, iter(feeds), method, threads=1, log=log.append)
        assert (run.method, run.images) == (method, 16) and 0.0 < run.seconds < 60.0
        assert run.ranges["images"] == pytest.approx(stats.range(method))
        assert run.ranges["conv"] == run.ranges["relu"]
        ranges[method] = run.ranges["images"]
    assert ranges["minmax"][1] == 30.0 and ranges["percentile"][1] < 30.0 and ranges["entropy"] != ranges["percentile"]
    assert log == ["calibrated on 8 image(s)", "calibrated on 16 image(s)"] * 3


def _graph_with_an_old_style_weight_input(output: str = "logits"):
    """Conv -> Relu -> Reshape (shape from a Constant) -> Relu and Add: the Conv's weight is an initializer also
    listed as a graph input (older exporters do this), and the Reshape's output is read by a Relu and an Add."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.ones((2, 3, 1, 1), np.float32), "w")
    shape = helper.make_tensor("shape_value", TensorProto.INT64, [2], [1, -1])
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"]), helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("Constant", [], ["shape"], value=shape),
             helper.make_node("Reshape", ["r", "shape"], ["flat"]), helper.make_node("Relu", ["flat"], ["flat_relu"]),
             helper.make_node("Add", ["flat", "flat_relu"], [output])]
    graph = helper.make_graph(
        nodes, "old_style",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4]),
         helper.make_tensor_value_info("w", TensorProto.FLOAT, [2, 3, 1, 1])],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, [1, 32])], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return onnx.shape_inference.infer_shapes(model)


def test_calibration_tensors_are_float_activations_only():
    """Not the weight (even listed as an input), not the int64 shape, not a classifier's logits (kept in float),
    not the Conv output that only a Relu reads (its range is the Relu's); the Reshape output, read by a Relu and an
    Add, is measured, and so is a backbone's feature map (an output other than logits)."""
    model = _graph_with_an_old_style_weight_input()
    assert cal.relu_inputs(model) == {"c": "r"}
    assert cal.calibration_tensors(model) == ["x", "r", "flat", "flat_relu"]
    assert cal.calibration_tensors(_graph_with_an_old_style_weight_input("0")) == ["x", "r", "flat", "flat_relu", "0"]


def test_entropy_keeps_a_histogram_that_its_levels_hold_whole():
    """Values filling exactly the first 128 bins (or a ramp over the first 256) lose nothing at that cut, with
    the last kept bin's own count in it: the search keeps them all rather than clipping the largest values."""
    flat = np.zeros(cal.BINS, np.int64)
    flat[:128] = 100
    ramp = np.zeros(cal.BINS, np.int64)
    ramp[:256] = np.arange(1, 257)
    assert (cal.entropy_bins(flat), cal.entropy_bins(ramp)) == (128, 256)


def test_a_calibration_file_names_its_float_layers_target_and_held_out_images(tmp_path):
    """What a build reads back besides the ranges; a file written before those existed reads as none of them."""
    run = cal.CalibrationRun("entropy", {"a": (-1.0, 2.0)}, 3, 0.5)
    holdout = {"root": "/photos", "files": ["a.jpg", "b.jpg"]}
    fallback = {"float_layers": [{"layer": "conv1", "gain": 0.01}, {"layer": "fc"}], "target_min_cosine": 0.995}
    path = cal.write_ranges(tmp_path / "c.json", run, int8_fallback=fallback, holdout=holdout)
    assert cal.read_placement(path) == (("conv1", "fc"), 0.995, holdout)
    older = cal.write_ranges(tmp_path / "old.json", run)
    assert cal.read_placement(older) == ((), None, None)
    none = cal.write_ranges(tmp_path / "none.json", run, int8_fallback=None, holdout=None)
    assert cal.read_placement(none) == ((), None, None)
    empty = cal.write_ranges(tmp_path / "empty.json", run, int8_fallback={"float_layers": None,
                                                                          "target_min_cosine": 0.99})
    assert cal.read_placement(empty) == ((), 0.99, None)
    folder = tmp_path / "folder.json"
    folder.mkdir()
    with pytest.raises(IntegrityError) as error:
        cal.read_placement(folder)
    assert error.value.message.startswith(f"{folder} is not a regular file")


def test_clipped_shares_count_values_outside_each_range(tmp_path):
    """Per tensor, the share of its values below lo or above hi over every feed (a value at a bound is kept);
    overall, clipped values over all values of the tensors given ranges; a tensor the model lacks is ignored."""
    model = tiny_classifier_onnx(tmp_path / "m.onnx", classes=10, relu=True)
    feeds = [np.random.default_rng(k).standard_normal((1, 3, 8, 8)).astype(np.float32) for k in range(2)]
    feeds[0][0, 0, 0, :2] = (-1.0, 1.0)  # at the bounds: kept
    images = np.concatenate(feeds)
    clipped = int(np.count_nonzero((images < -1.0) | (images > 1.0)))
    ranges = {"images": (-1.0, 1.0), "pool": (-1e9, 1e9), "absent": (0.0, 0.0)}
    shares, overall = cal.clipped_shares(model, ranges, iter(feeds), threads=1)
    assert shares == {"images": pytest.approx(clipped / images.size), "pool": 0.0}
    assert 0 < clipped < images.size
    assert overall == pytest.approx(clipped / (images.size + 2 * 8))  # pool: 8 channels per feed
    assert cal.clipped_shares(model, ranges, iter([])) == ({}, 0.0)
    one = tiny_classifier_onnx(tmp_path / "one.onnx", classes=10, channels=1)  # pool: a single value per image
    assert cal.clipped_shares(one, {"pool": (1e9, 1e9)}, iter(feeds[:1])) == ({"pool": 1.0}, 1.0)


def test_measuring_sessions_run_on_the_cpu_with_basic_optimisations(tmp_path, monkeypatch):
    """Calibration and the clipped-share count run ONNX Runtime's CPU provider (not a GPU one where installed),
    with basic graph optimisations only (a fusion would hide a measured tensor), the thread count asked for and
    ONNX Runtime's warnings silenced."""
    import onnxruntime as ort

    real, seen = ort.InferenceSession, []

    def spy(model, options=None, providers=None, **kwargs):
        seen.append((options, providers))
        return real(model, options, providers=providers, **kwargs)

    monkeypatch.setattr(ort, "InferenceSession", spy)
    model = tiny_classifier_onnx(tmp_path / "m.onnx", classes=10)
    feed = np.zeros((1, 3, 8, 8), np.float32)
    ranges = cal.calibrate(model, iter([feed]), "minmax", threads=2).ranges
    cal.clipped_shares(model, ranges, iter([feed]), threads=3)
    assert [providers for _, providers in seen] == [["CPUExecutionProvider"]] * 2
    assert [options.intra_op_num_threads for options, _ in seen] == [2, 3]
    for options, _ in seen:
        assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        assert options.log_severity_level == 3
