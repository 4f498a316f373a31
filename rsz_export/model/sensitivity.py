"""Which layers int8 should leave in float: each layer's sensitivity, measured in one session, and the smallest
set of the most sensitive layers whose float fallback meets an accuracy target.

A *layer* is a Conv, Gemm or Add node: the nodes both Q/DQ models (``model.quantization``) quantize, and the unit
ONNX Runtime's quantizer can leave out (``nodes_to_exclude``). The *switchable model* is the fp32 ONNX with a
switched fake quantization before every layer i: when element i of an extra input ``layer_mask`` is 1, each
float input x of the layer becomes ``dq(q(x))`` (asymmetric uint8 over the calibrated range, the CPU model's
activations) and its weight is quantized (symmetric int8 per output channel); at 0 both stay fp32. One session then
runs the fp32 model (mask all 0), any one layer quantized alone (a one-hot mask), or every layer but a chosen
few (mask 1 but for them), so measuring sensitivities costs one forward pass per layer and no new session.

Sensitivity of a layer: the mean of 1 - cosine(logits with that layer alone quantized, fp32 logits) over the
held-out images at the plan's smallest size. The choice (``choose_fallback``) ranks layers by sensitivity and
keeps the k most sensitive in float for k = 0, 1, 2, 4, ... (then bisects), checking each candidate with a
caller's ``evaluate`` (the build builds the real Q/DQ model and runs it on the held-out images at every check
size), until the worst cosine meets the target or the float layers would carry more than ``MAX_FLOAT_SHARE`` of
the multiply-adds (then int8 is not worth it everywhere).

Precision per profile: the check sizes are grouped by the plan profile that serves them. When no placement
within the limit meets the target at every size, the placement chosen is the tried one that meets it on the most
profiles (the fewest float layers among equals); the profiles it does not meet are built in float
(``Placement.int8_profiles``). When it meets it on none, no placement is returned.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

LAYER_OPS = ("Conv", "Gemm", "Add")
MASK_NAME = "layer_mask"
MAX_FLOAT_SHARE = 0.5
"""Most of the model's multiply-adds (share of Conv and Gemm work) the float layers may carry: beyond half, an
int8 engine on a CPU without VNNI is not faster than fp32 (docs/int8.md)."""


@dataclass(frozen=True)
class Layer:
    """A quantizable node: its name, op type, and its share of the model's multiply-adds (0 for Add)."""

    name: str
    op: str
    flop_share: float


@dataclass(frozen=True)
class Trial:
    """One candidate placement and what it measured: the worst and median cosine per check size."""

    float_layers: tuple[str, ...]
    float_share: float
    worst: dict[str, float]
    median: dict[str, float]

    def meets(self, target: float, sizes: Sequence[str] | None = None) -> bool:
        """Whether the worst cosine meets ``target`` at every check size (or at every one of ``sizes``)."""
        values = [w for s, w in self.worst.items() if sizes is None or s in sizes]
        return len(values) > 0 and min(values) >= target

    def row(self) -> str:
        cells = ", ".join(f"{s} worst {w:.4f} median {self.median[s]:.4f}" for s, w in self.worst.items())
        return f"{len(self.float_layers):3d} float layer(s), {self.float_share:6.1%} of the work in float: {cells}"


@dataclass(frozen=True)
class Placement:
    """The outcome: the layers kept in float (most sensitive first; empty when int8 everywhere meets the target),
    every layer's sensitivity, and each trial, in the order tried. ``profiles``: each plan profile's check sizes
    (empty: one group, the whole plan). ``chosen`` is None when no trial met the target on any profile."""

    target: float
    sensitivity: dict[str, float]
    layers: tuple[Layer, ...]
    trials: tuple[Trial, ...] = field(default_factory=tuple)
    chosen: Trial | None = None
    profiles: tuple[tuple[str, ...], ...] = ()

    @property
    def met(self) -> bool:
        """Whether the chosen placement meets the target at every check size (every profile in int8)."""
        return self.chosen is not None and self.chosen.meets(self.target)

    @property
    def int8_profiles(self) -> tuple[int, ...]:
        """The plan profiles the chosen placement meets the target on: built in int8, the others in float."""
        if self.chosen is None:
            return ()
        return tuple(i for i, sizes in enumerate(self.profiles) if self.chosen.meets(self.target, sizes))

    def table(self) -> str:
        return "\n".join(f"  {t.row()}" for t in self.trials)

    def to_dict(self) -> dict:
        by_name = {layer.name: layer for layer in self.layers}
        kept = [] if self.chosen is None else [
            {"layer": n, "op": by_name[n].op, "sensitivity": round(self.sensitivity[n], 7),
             "flop_share": round(by_name[n].flop_share, 5)} for n in self.chosen.float_layers]
        trials = [{"float_layers": len(t.float_layers), "float_share": round(t.float_share, 5), "worst": t.worst,
                   "median": t.median} for t in self.trials]
        ranking = sorted(self.sensitivity.items(), key=lambda item: -item[1])
        int8 = self.int8_profiles
        profiles = [{"profile": i, "sizes": list(sizes), "precision": "int8" if i in int8 else "fp32",
                     "worst": None if self.chosen is None else min(self.chosen.worst[s] for s in sizes)}
                    for i, sizes in enumerate(self.profiles)]
        return {"target_min_cosine": self.target, "met": self.met, "float_layers": kept,
                "float_share": None if self.chosen is None else round(self.chosen.float_share, 5),
                "profiles": profiles, "trials": trials, "sensitivity": {n: round(s, 7) for n, s in ranking}}


def layers_of(model, sample_shape: tuple[int, int, int, int]) -> list[Layer]:
    """The quantizable layers of an ONNX model (named), with their multiply-add shares at ``sample_shape``."""
    import onnx

    shaped = _with_input_shape(model, sample_shape)
    inferred = onnx.shape_inference.infer_shapes(shaped)
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in (*inferred.graph.value_info, *inferred.graph.output)}
    weights = {t.name: tuple(t.dims) for t in model.graph.initializer}
    work = {}
    for node in model.graph.node:
        if node.op_type in ("Conv", "Gemm") and len(node.input) > 1 and node.input[1] in weights:
            out = shapes.get(node.output[0], [])
            positions = int(np.prod(out[2:])) if node.op_type == "Conv" and len(out) > 2 else 1
            work[node.name] = positions * int(np.prod(weights[node.input[1]]))
    total = sum(work.values()) or 1
    return [Layer(n.name, n.op_type, work.get(n.name, 0) / total) for n in _named_layers(model.graph)]


def _named_layers(graph) -> list:
    """The graph's layer nodes that a name identifies (only those can be left out by name), in graph order."""
    counts: dict[str, int] = {}
    for node in graph.node:
        counts[node.name] = counts.get(node.name, 0) + 1
    return [n for n in graph.node if n.op_type in LAYER_OPS and n.name and counts[n.name] == 1]


def _with_input_shape(model, shape):
    import onnx

    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    dims = copy.graph.input[0].type.tensor_type.shape.dim
    for dim, value in zip(dims, shape):
        dim.Clear()
        dim.dim_value = value
    return copy


def _quantized_weight(weight: np.ndarray, axis: int) -> np.ndarray:
    """Symmetric int8 per output channel (along ``axis``), dequantized."""
    moved = np.moveaxis(weight, axis, 0)
    peak = np.abs(moved.reshape(moved.shape[0], -1)).max(axis=1)
    scale = np.where(peak > 0, peak / 127.0, 1.0).reshape(-1, *([1] * (moved.ndim - 1)))
    return np.moveaxis(np.clip(np.round(moved / scale), -127, 127) * scale, 0, axis).astype(np.float32)


def switchable_model(onnx_path, ranges: dict[str, tuple[float, float]]) -> tuple[bytes, list[str]]:
    """The fp32 model with a fake quantization before every layer, switched by ``layer_mask`` (module docstring),
    and the layer names in mask order. Each switch is an ``If`` on ``mask[i] > 0.5``, so a layer left in float
    costs a branch, not the quantization arithmetic: one forward pass with one layer quantized costs about one
    fp32 pass."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(onnx_path))
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    switched = _named_layers(graph)
    names = [n.name for n in switched]
    graph.input.append(helper.make_tensor_value_info(MASK_NAME, TensorProto.FLOAT, [len(names)]))
    added = [numpy_helper.from_array(np.array(0.5, np.float32), f"{MASK_NAME}/half")]
    nodes = []
    for index, node in enumerate(switched):
        p = f"{MASK_NAME}/{index}"
        added.append(numpy_helper.from_array(np.array(index, np.int64), f"{p}/i"))
        nodes += [helper.make_node("Gather", [MASK_NAME, f"{p}/i"], [f"{p}/m"]),
                  helper.make_node("Greater", [f"{p}/m", f"{MASK_NAME}/half"], [f"{p}/on"])]
        for slot, name in enumerate(node.input):
            if name in inits and slot == 1 and node.op_type in ("Conv", "Gemm"):
                weight = numpy_helper.to_array(inits[name]).astype(np.float32)
                axis = 0 if node.op_type == "Conv" or _trans_b(node) else 1
                added.append(numpy_helper.from_array(_quantized_weight(weight, axis), f"{p}/wq"))
                then = [helper.make_node("Identity", [f"{p}/wq"], [f"{p}/w/then"])]
                nodes.append(_switch(f"{p}/on", then, f"{p}/w/then", name, f"{p}/w"))
                node.input[slot] = f"{p}/w"
            elif name not in inits and name in ranges:
                scale, zero = _uint8_scale(*ranges[name])
                q = f"{p}/x{slot}"
                added += [numpy_helper.from_array(np.array(scale, np.float32), f"{q}/s"),
                          numpy_helper.from_array(np.array(zero, np.uint8), f"{q}/z")]
                then = [helper.make_node("QuantizeLinear", [name, f"{q}/s", f"{q}/z"], [f"{q}/q"]),
                        helper.make_node("DequantizeLinear", [f"{q}/q", f"{q}/s", f"{q}/z"], [f"{q}/then"])]
                nodes.append(_switch(f"{p}/on", then, f"{q}/then", name, f"{q}/x"))
                node.input[slot] = f"{q}/x"
    graph.initializer.extend(added)
    _prepend(graph, nodes)
    return model.SerializeToString(), names


def _uint8_scale(lo: float, hi: float) -> tuple[float, int]:
    """Scale and zero point of asymmetric uint8 over [lo, hi] widened to hold 0 (the CPU model's activations)."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = max(hi - lo, 1e-12) / 255.0
    return scale, int(np.clip(round(-lo / scale), 0, 255))


def _switch(condition: str, then_nodes: list, then_output: str, plain: str, output: str):
    """``output = then_nodes' result if condition else plain`` as an ONNX ``If`` (branches read the outer scope)."""
    from onnx import TensorProto, helper

    def branch(label, nodes, result):
        return helper.make_graph(nodes, f"{output}/{label}", [],
                                 [helper.make_tensor_value_info(result, TensorProto.FLOAT, None)])

    other = helper.make_node("Identity", [plain], [f"{output}/else"])
    return helper.make_node("If", [condition], [output], then_branch=branch("then", then_nodes, then_output),
                            else_branch=branch("else", [other], f"{output}/else"))


def _trans_b(node) -> bool:
    return any(a.name == "transB" and a.i == 1 for a in node.attribute)


def _reads(node) -> list[str]:
    """The names a node reads: its inputs, and for an ``If`` what its branches read from the outer scope."""
    names = list(node.input)
    for attribute in node.attribute:
        if attribute.g.node:
            names += [name for inner in attribute.g.node for name in inner.input]
    return names


def _prepend(graph, nodes) -> None:
    """Insert ``nodes`` so the graph stays topologically sorted: each right before its first consumer."""
    produced_by = {out: node for node in nodes for out in node.output}
    ordered, placed = [], set()

    def place(node):
        if id(node) in placed:
            return
        for name in _reads(node):
            if name in produced_by:
                place(produced_by[name])
        placed.add(id(node))
        ordered.append(node)

    old = list(graph.node)
    del graph.node[:]
    for node in old:
        for name in _reads(node):
            if name in produced_by:
                place(produced_by[name])
        ordered.append(node)
    graph.node.extend(ordered)


def cosines(reference, candidate) -> np.ndarray:
    """Per image, the cosine of ``candidate`` to ``reference``: arrays with the batch first (each image's values
    flattened), or lists of them, one per model output, where each image gets its lowest cosine over the outputs
    (a classifier's logits; every feature map of a backbone)."""
    if isinstance(reference, (list, tuple)):
        return np.min([cosines(a, b) for a, b in zip(reference, candidate, strict=True)], axis=0)
    a = reference.astype(np.float64).reshape(len(reference), -1)
    b = candidate.astype(np.float64).reshape(len(candidate), -1)
    return (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-30)


class SwitchableRunner:
    """One ONNX Runtime session over the switchable model; ``outputs(x, mask(float_layers))`` runs it quantized
    but for those layers, ``mask(None)`` all fp32."""

    def __init__(self, onnx_path, ranges, threads: int | None = None):
        import onnxruntime as ort

        model, self.names = switchable_model(onnx_path, ranges)
        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def outputs(self, x: np.ndarray, mask: np.ndarray) -> list[np.ndarray]:
        """Every output of the model (its logits, or a backbone's maps) for ``x`` under ``mask``."""
        return self.session.run(None, {self.input_name: x, MASK_NAME: mask.astype(np.float32)})

    def mask(self, float_layers: Sequence[str] | None) -> np.ndarray:
        if float_layers is None:
            return np.zeros(len(self.names), np.float32)
        kept = set(float_layers)
        return np.array([0.0 if n in kept else 1.0 for n in self.names], np.float32)


def measure_sensitivity(runner: SwitchableRunner, x: np.ndarray) -> dict[str, float]:
    """Each layer's 1 - cosine to fp32 with it alone quantized, averaged over the images of ``x``."""
    reference = runner.outputs(x, runner.mask(None))
    result = {}
    for index, name in enumerate(runner.names):
        mask = np.zeros(len(runner.names), np.float32)
        mask[index] = 1.0
        result[name] = float(np.mean(1.0 - cosines(reference, runner.outputs(x, mask))))
    return result


def choose_fallback(layers: Sequence[Layer], sensitivity: dict[str, float],
                    evaluate: Callable[[tuple[str, ...]], tuple[dict[str, float], dict[str, float]]],
                    target: float, max_float_share: float = MAX_FLOAT_SHARE,
                    log: Callable[[str], None] = lambda message: None,
                    profiles: Sequence[Sequence[str]] = ()) -> Placement:
    """The fewest most-sensitive layers to keep in float so ``evaluate(float_layers)`` -> (worst, median cosine
    per size) meets ``target`` everywhere; failing that, on the most of ``profiles`` (each a group of check
    sizes) that a tried placement meets it on (module docstring)."""
    ranked = sorted((layer for layer in layers if layer.name in sensitivity), key=lambda x: -sensitivity[x.name])
    shares = np.cumsum([0.0, *(layer.flop_share for layer in ranked)])
    trials: dict[int, Trial] = {}

    def trial(k: int) -> Trial:
        if k not in trials:
            chosen = tuple(layer.name for layer in ranked[:k])
            worst, median = evaluate(chosen)
            trials[k] = Trial(chosen, float(shares[k]), worst, median)
            log(f"int8 fallback: {trials[k].row()}")
        return trials[k]

    limit = max(k for k in range(len(ranked) + 1) if shares[k] <= max_float_share + 1e-12)
    failed, passed, k = -1, None, 0
    while True:
        if trial(k).meets(target):
            passed = k
            break
        failed = k
        if k == limit:
            break
        k = min(limit, max(1, 2 * k))
    while passed is not None and passed - failed > 1:
        middle = (passed + failed) // 2
        failed, passed = (failed, middle) if trial(middle).meets(target) else (middle, passed)
    ordered = tuple(trials[k] for k in sorted(trials))
    groups = tuple(tuple(sizes) for sizes in profiles)
    chosen = None if passed is None else trials[passed]
    if chosen is None and groups:
        def profiles_met(t: Trial) -> int:
            return sum(t.meets(target, sizes) for sizes in groups)

        best = max(ordered, key=lambda t: (profiles_met(t), -len(t.float_layers)))
        chosen = best if profiles_met(best) > 0 else None
    return Placement(target, sensitivity, tuple(layers), ordered, chosen, groups)
