"""INT8 calibration that streams: per-tensor ranges from one image at a time, in bounded memory.

The fp32 ONNX runs under ONNX Runtime with every tensor to be quantized added as a graph output; each image's
tensors update running statistics and are dropped before the next image runs. What is kept per tensor is its
minimum, its maximum and (for ``entropy`` and ``percentile``) a histogram of |x| with ``BINS`` bins over
[0, edge]. When a value exceeds the edge, the edge doubles and adjacent bin pairs merge, which is exact (the new
bins' boundaries are old ones), so the memory per tensor never grows and no earlier image is needed again.

Ranges at the end:
* ``minmax``: the smallest and largest value seen;
* ``percentile``: |x| is clipped at the ``PERCENTILE`` percentile of the histogram;
* ``entropy``: the clip threshold minimising the KL divergence between the histogram and its 128-level
  quantized copy (the calibration of TensorRT's entropy calibrator, NVIDIA GTC 2017 "8-bit inference with
  TensorRT", on |x|).
A threshold t turns into the range [max(min, -t), min(max, t)], so a tensor that is never negative (after a
ReLU) keeps 0 as its lower end.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rsz_export.errors import IntegrityError, read_small_file
from rsz_export.interface import CALIBRATION_METHODS

METHODS = CALIBRATION_METHODS
DEFAULT_METHOD = CALIBRATION_METHODS[0]
BINS = 2048
PERCENTILE = 99.999
"""Percent of |x| kept inside the range by ``percentile``."""
QUANTIZED_BINS = 128
"""The positive int8 levels the entropy method compares against."""
HISTOGRAM_SAMPLES = 1 << 18
"""At most this many values of one tensor per image go into its histogram (every k-th value in memory order:
positions spread over channels and the image); the minimum and maximum always see every value. A 800x800
image has 120 M activations: histogramming all of them would cost more than running the network."""
ENTROPY_STEP = 16
"""Candidate thresholds of the entropy search are 128, 144, ... bins: within 1/128 of the best one."""
CALIBRATED_OPS = ("Conv", "Gemm", "MatMul", "Add", "Relu", "MaxPool", "ReduceMean", "GlobalAveragePool",
                  "Reshape", "Flatten")
"""Ops whose float inputs and outputs get a range: everything either Q/DQ model may quantize."""

FORMAT = "rsz-export int8 calibration 1"
"""The ``format`` of a calibration file: per-tensor ranges under ``tensors``, with the set and method."""


def read_ranges(path: str | Path) -> dict[str, tuple[float, float]]:
    """tensor -> (lo, hi) from a calibration file; IntegrityError (exit 4) when it is not one."""
    path = Path(path)
    try:
        data = json.loads(read_small_file(path, str(path), IntegrityError).decode("utf-8"))
        if data.get("format") != FORMAT:
            raise ValueError(f"format {data.get('format')!r}")
        ranges = {str(k): (float(lo), float(hi)) for k, (lo, hi) in data["tensors"].items()}
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise IntegrityError(f"{path} is not a readable calibration file: {exc}",
                             hint="calibrate again: rsz-export build --force") from None
    if not ranges or any(not lo <= hi for lo, hi in ranges.values()):
        raise IntegrityError(f"{path} holds no ranges or a reversed one", hint="calibrate again: build --force")
    return ranges


def read_placement(path: str | Path) -> tuple[tuple[str, ...], float | None, dict | None]:
    """(layers kept in float, the accuracy target or None, the held-out images {root, files} or None) from a
    calibration file that ``read_ranges`` accepted; files of earlier versions have none of them."""
    data = json.loads(read_small_file(Path(path), str(path), IntegrityError).decode("utf-8"))
    fallback = data.get("int8_fallback") or {}
    layers = tuple(str(layer["layer"]) for layer in fallback.get("float_layers") or ())
    return layers, fallback.get("target_min_cosine"), data.get("holdout")


def read_profile_precisions(path: str | Path) -> tuple[dict, ...]:
    """The int8 placement's verdict per plan profile ({profile, sizes, precision, worst}) from a calibration file
    that ``read_ranges`` accepted; empty when it judged none (no accuracy target, or a file of an earlier version)."""
    data = json.loads(read_small_file(Path(path), str(path), IntegrityError).decode("utf-8"))
    return tuple(dict(p) for p in (data.get("int8_fallback") or {}).get("profiles") or ())




class TensorStats:
    """Running minimum, maximum and histogram of |x| for one tensor (see the module docstring)."""

    __slots__ = ("lo", "hi", "edge", "hist")

    def __init__(self) -> None:
        self.lo, self.hi, self.edge = math.inf, -math.inf, 0.0
        self.hist = np.zeros(BINS, dtype=np.int64)

    def update(self, values: np.ndarray, histogram: bool = True) -> None:
        if values.size == 0:
            return
        lo, hi = float(values.min()), float(values.max())
        self.lo, self.hi = min(self.lo, lo), max(self.hi, hi)
        if not histogram:
            return
        flat = values.ravel()
        sample = flat[:: -(-flat.size // HISTOGRAM_SAMPLES)]  # every k-th value, at most HISTOGRAM_SAMPLES
        amax = max(-lo, hi)
        if amax <= 0.0:
            self.hist[0] += sample.size
            return
        if self.edge == 0.0:
            self.edge = amax
        while amax > self.edge:  # double the range: bins (2k, 2k+1) become bin k, the upper half starts empty
            self.hist = np.concatenate([self.hist.reshape(-1, 2).sum(axis=1), np.zeros(BINS // 2, np.int64)])
            self.edge *= 2.0
        index = np.abs(sample, dtype=np.float32)
        index *= np.float32(BINS / self.edge)
        self.hist += np.bincount(np.minimum(index.astype(np.int32), BINS - 1), minlength=BINS)

    def threshold(self, method: str) -> float:
        """The clip threshold on |x| for ``method`` (the largest |x| for minmax)."""
        amax = max(-self.lo, self.hi, 0.0)
        total = int(self.hist.sum())
        if method == "minmax" or self.edge == 0.0 or total == 0:
            return amax
        width = self.edge / BINS
        if method == "percentile":
            index = int(np.searchsorted(np.cumsum(self.hist), total * PERCENTILE / 100.0))
            return min(amax, (index + 1) * width)
        return min(amax, entropy_bins(self.hist) * width)

    def range(self, method: str) -> tuple[float, float]:
        t = self.threshold(method)
        return max(self.lo, -t), min(self.hi, t)


def _kl(p: np.ndarray, q: np.ndarray) -> float:
    p, q = p / p.sum(), q / q.sum()
    mask = p > 0
    if np.any(q[mask] == 0):
        return math.inf
    return float(np.sum(p[mask] * np.log(p[mask] / q[mask])))


def entropy_bins(hist: np.ndarray, levels: int = QUANTIZED_BINS, step: int = ENTROPY_STEP) -> int:
    """How many of ``hist``'s bins to keep: the cut whose clipped distribution (outliers added to the last kept
    bin) loses the least information, by KL divergence, when merged into ``levels`` levels."""
    hist = hist.astype(np.float64)
    if hist.sum() == 0:
        return len(hist)
    best, best_kl = len(hist), math.inf
    for cut in range(levels, len(hist) + 1, step):
        p = hist[:cut].copy()
        p[-1] += hist[cut:].sum()
        starts = (np.arange(levels) * cut) // levels
        lengths = np.diff(np.append(starts, cut))
        nonzero = (hist[:cut] != 0).astype(np.float64)
        sums = np.add.reduceat(hist[:cut], starts)
        counts = np.add.reduceat(nonzero, starts)
        q = np.repeat(np.divide(sums, counts, out=np.zeros(levels), where=counts > 0), lengths) * nonzero
        divergence = _kl(p + 1e-12 * (p == 0) * (q > 0), q + 1e-12 * (q == 0) * (p > 0))
        if divergence < best_kl:
            best, best_kl = cut, divergence
    return best


def relu_inputs(model) -> dict[str, str]:
    """Tensors read by one Relu and nothing else -> that Relu's output. Their range is the Relu's: a Q/DQ model
    quantizes them only where the Relu is fused into their producer, and then with the Relu's range (ONNX
    Runtime's quantizer copies it over too), so they are not run as calibration outputs, which saves the largest
    share of the activation traffic."""
    readers: dict[str, list] = {}
    for node in model.graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    return {name: nodes[0].output[0] for name, nodes in readers.items()
            if len(nodes) == 1 and nodes[0].op_type == "Relu"}


def calibration_tensors(model) -> list[str]:
    """The float activations that ``CALIBRATED_OPS`` read or write (not weights, not the inputs of a lone Relu:
    ``relu_inputs``; not the model's outputs, kept in float, except a backbone's feature maps, calibrated like
    any activation: later layers read them too)."""
    from onnx import TensorProto

    from rsz_export.interface import OUTPUT_KINDS, feature_maps

    maps = {name for kind in OUTPUT_KINDS for name, _, _ in feature_maps(kind)}
    outputs = {o.name for o in model.graph.output if o.name not in maps}
    skipped = {t.name for t in model.graph.initializer} | outputs | set(relu_inputs(model))
    floats = {v.name for v in (*model.graph.input, *model.graph.value_info, *model.graph.output)
              if v.type.tensor_type.elem_type == TensorProto.FLOAT}
    names: dict[str, None] = {}
    for node in model.graph.node:
        if node.op_type in CALIBRATED_OPS:
            for name in (*node.input, *node.output):
                if name and name in floats and name not in skipped:
                    names[name] = None
    return list(names)


def _augmented(onnx_path) -> tuple[bytes, list[str], dict[str, str]]:
    """The model with every calibrated tensor as an extra output (shapes inferred first to find the floats), and
    the Relu inputs whose range is their Relu's."""
    import onnx
    from onnx import TensorProto, helper

    model = onnx.shape_inference.infer_shapes(onnx.load(str(onnx_path)))
    names = calibration_tensors(model)
    already = {o.name for o in model.graph.output}  # a backbone's feature maps are outputs already
    model.graph.output.extend(helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in names
                              if n not in already)
    return model.SerializeToString(), names, relu_inputs(model)


def _measuring_session(model: bytes, threads: int | None):
    """An ONNX Runtime CPU session over the model with its measured tensors as outputs (``_augmented``): basic
    optimisations only, so no fusion hides a measured tensor."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


@dataclass(frozen=True)
class CalibrationRun:
    """Per-tensor ranges for one method, and what the run cost."""

    method: str
    ranges: dict[str, tuple[float, float]]
    images: int
    seconds: float


def calibrate(onnx_path, feeds: Iterable[np.ndarray], method: str, threads: int | None = None,
              log: Callable[[str], None] = lambda message: None) -> CalibrationRun:
    """Run ``feeds`` (float32 [1,3,h,w] arrays, produced one at a time) through the fp32 ONNX and return the
    per-tensor ranges for ``method`` (see the module docstring). Memory: one image's activations plus
    ``BINS`` counters per tensor."""

    from rsz_export.interface import INPUT_NAME

    started = time.perf_counter()
    model, names, from_relu = _augmented(onnx_path)
    session = _measuring_session(model, threads)
    stats = {name: TensorStats() for name in names}
    count = 0
    for feed in feeds:
        outputs = session.run(names, {INPUT_NAME: feed})
        for name, values in zip(names, outputs):
            stats[name].update(values, histogram=method != "minmax")
        del outputs
        count += 1
        if count % 8 == 0:
            log(f"calibrated on {count} image(s)")
    ranges = {name: s.range(method) for name, s in stats.items()}
    ranges.update({name: ranges[relu] for name, relu in from_relu.items() if relu in ranges})
    return CalibrationRun(method, ranges, count, time.perf_counter() - started)


def write_ranges(path, run: CalibrationRun, **facts) -> Path:
    """Write a calibration file atomically: ``facts`` (the set, the key, ...) and the ranges under ``tensors``."""
    from rsz_export.artifacts.files import atomic_write_text

    data = {"format": FORMAT, **facts, "method": run.method, "bins": BINS,
            "percentile": PERCENTILE if run.method == "percentile" else None, "seconds": round(run.seconds, 2),
            "tensors": {name: [lo, hi] for name, (lo, hi) in run.ranges.items()}}
    atomic_write_text(path, json.dumps(data, indent=1) + "\n")
    return Path(path)


def clipped_shares(onnx_path, ranges: dict[str, tuple[float, float]], feeds: Iterable[np.ndarray],
                   threads: int | None = None) -> tuple[dict[str, float], float]:
    """Per calibrated tensor, the share of its values outside its range over ``feeds`` (what int8 clips), and
    the share over every value of every tensor."""

    from rsz_export.interface import INPUT_NAME

    model, names, _ = _augmented(onnx_path)
    names = [n for n in names if n in ranges]
    session = _measuring_session(model, threads)
    clipped, total = dict.fromkeys(names, 0), dict.fromkeys(names, 0)
    for feed in feeds:
        for name, values in zip(names, session.run(names, {INPUT_NAME: feed})):
            lo, hi = ranges[name]
            clipped[name] += int(np.count_nonzero((values < lo) | (values > hi)))
            total[name] += values.size
    shares = {n: clipped[n] / total[n] for n in names if total[n]}
    return shares, sum(clipped.values()) / max(1, sum(total.values()))
