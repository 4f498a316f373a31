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
    activations take: a half-normal with one far outlier (a ReLU output), an exponential, a bimodal mixture."""
    rng = np.random.default_rng(28)
    half_normal = np.maximum(rng.standard_normal(100_000), 0)
    half_normal[7] = 40.0
    exponential = rng.exponential(1.0, 100_000)
    bimodal = np.concatenate([rng.normal(1.0, 0.3, 60_000), rng.normal(6.0, 0.5, 40_000)])
    for name, values in (("half-normal+outlier", half_normal), ("exponential", exponential), ("bimodal", bimodal)):
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
