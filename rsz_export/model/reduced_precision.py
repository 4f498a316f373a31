"""Reduced-precision ONNX (fp16, bf16) with float32 inputs and outputs, and its check against fp32 on the CPU.

TensorRT 11 builds strongly typed networks only, so fp16/bf16 engines come from an ONNX whose tensors already
have those types (TensorRT 10 may use builder flags instead; see docs/tensorrt.md).

fp16: onnxconverter-common's converter with ``keep_io_types=True``: weights stored as fp16, a Cast after the
input and before the output, every op computed in fp16.

bf16: the same graph shape with bfloat16 in place of float16. onnxconverter-common has no bf16 mode, so the
fp16 graph it produces is retyped: each fp16 initializer is replaced by the *original fp32* weight rounded to
bf16 (round to nearest even; no double rounding through fp16), Cast targets and value types become bf16,
and the opset is raised to 22, the first in which Conv and MaxPool accept bfloat16 (the ops of ResNet-50 have
no semantic change between opsets 20 and 22).

The check on the CPU (``check_reduced_precision``) runs an emulation, for both precisions, because ONNX
Runtime's CPU provider cannot show the error of the reduced graph itself: it has no bf16 Conv, and for fp16 it
inserts casts and computes in fp32 without rounding between ops, so the fp16 graph run as is measures only the
rounding of the weights. The emulation is the reduced graph with its weights widened back to fp32 (exact), in
which every tensor a GPU engine writes to memory between its kernels is rounded to fp16/bf16 and back (a Cast
pair): the input, each Relu, MaxPool, pooling and Gemm output, and the one input of each residual Add that
is read from memory. Outputs that TensorRT's fused kernels keep in registers (a Conv feeding its Relu, or the
Add it is fused with; an Add feeding its Relu) are not rounded, and the arithmetic inside a kernel is fp32, as
in the fp32-accumulating kernels TensorRT prefers. So it measures storage rounding of weights and activations,
not a GPU's own kernels; the parity check on a GPU (``validate``) measures those. docs/tensorrt.md has the
numbers behind the bounds.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from rsz_export.artifacts.files import atomic_write_bytes
from rsz_export.errors import CheckFailed, IntegrityError, UsageError, check_choice
from rsz_export.parity import combine, compare

REDUCED_PRECISIONS = ("fp16", "bf16")
BF16_OPSET = 22
REL_L2_BOUND = {"fp16": 8e-3, "bf16": 6e-2}
"""Relative L2 error of the logits allowed against fp32 under the emulation (module docstring): about 16 unit
roundoffs (fp16 keeps 11 significant bits, u = 2^-11 = 4.9e-4; bf16 keeps 8, u = 3.9e-3), about twice the
error measured on ResNet-50 to leave room for other weights and sizes, while a conversion bug (a wrong cast, a
clamped weight, a dropped op) gives errors of order 1e-1 to 1. docs/tensorrt.md has the measurements."""
FUSED_POINTWISE = ("Relu", "Add")
"""Ops TensorRT fuses into the kernel that produces their input, which then never goes to memory."""
DEFAULT_SIZES = ((224, 224), (160, 288))


def _fp32_to_bf16_bits(values: np.ndarray) -> np.ndarray:
    """Round float32 values to bfloat16 (nearest even) and return the 16-bit patterns."""
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    return rounded.astype(np.uint16)


def _bf16_bits_to_fp32(bits: np.ndarray) -> np.ndarray:
    return (bits.astype(np.uint32) << 16).view(np.float32)


def _retype(graph, old: int, new: int) -> None:
    """Change every value type and Cast target ``old`` -> ``new`` in a graph."""
    for info in list(graph.input) + list(graph.output) + list(graph.value_info):
        if info.type.tensor_type.elem_type == old:
            info.type.tensor_type.elem_type = new
    for node in graph.node:
        for attr in node.attribute:
            if node.op_type == "Cast" and attr.name == "to" and attr.i == old:
                attr.i = new


def _to_bf16(fp16_model, fp32_model):
    import onnx
    from onnx import TensorProto, numpy_helper

    originals = {t.name: t for t in fp32_model.graph.initializer}
    for init in fp16_model.graph.initializer:
        if init.data_type != TensorProto.FLOAT16:
            continue
        source = originals.get(init.name)
        values = numpy_helper.to_array(source) if source is not None else numpy_helper.to_array(init).astype(np.float32)
        init.CopyFrom(
            onnx.helper.make_tensor(
                init.name, TensorProto.BFLOAT16, values.shape, _fp32_to_bf16_bits(values).tobytes(), raw=True
            )
        )
    if any(n.op_type == "Constant" for n in fp16_model.graph.node):
        raise UsageError("bf16 conversion does not handle Constant nodes; re-export the ONNX with constant folding")
    _retype(fp16_model.graph, TensorProto.FLOAT16, TensorProto.BFLOAT16)
    for opset in fp16_model.opset_import:
        if opset.domain in ("", "ai.onnx"):
            opset.version = max(opset.version, BF16_OPSET)
    return fp16_model


def reduced_precision_onnx(src, dst, precision: str) -> Path:
    """Write ``dst``: the ONNX ``src`` with weights and compute in fp16 or bf16, float32 inputs and outputs kept."""
    check_choice(precision, "reduced precision", REDUCED_PRECISIONS)
    import onnx
    from onnxconverter_common import float16

    try:
        model = onnx.load(str(src))
    except Exception as exc:  # onnx raises DecodeError, OSError or its own errors for unreadable files
        raise IntegrityError(f"cannot read ONNX {src}: {exc}") from None
    with warnings.catch_warnings():  # it warns once per weight below fp16's range, which it clamps to 1e-7
        warnings.simplefilter("ignore", UserWarning)
        reduced = float16.convert_float_to_float16(model, keep_io_types=True)
    if precision == "bf16":
        reduced = _to_bf16(reduced, model)
    onnx.checker.check_model(reduced, full_check=True)
    dst = Path(dst)
    atomic_write_bytes(dst, reduced.SerializeToString())
    return dst


def _widened(onnx_path: Path, precision: str):
    """The reduced graph with its fp16/bf16 weights widened to fp32 (exact) and every fp16/bf16 type made fp32."""
    import onnx
    from onnx import TensorProto, numpy_helper

    kind = TensorProto.BFLOAT16 if precision == "bf16" else TensorProto.FLOAT16
    model = onnx.load(str(onnx_path))
    for init in model.graph.initializer:
        if init.data_type == TensorProto.BFLOAT16:
            bits = np.frombuffer(init.raw_data, dtype=np.uint16).reshape(tuple(init.dims))
            init.CopyFrom(numpy_helper.from_array(_bf16_bits_to_fp32(bits), init.name))
        elif init.data_type == TensorProto.FLOAT16:
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float32), init.name))
    _retype(model.graph, kind, TensorProto.FLOAT)
    return model


def _kept_in_registers(graph) -> set[str]:
    """Tensors a fused GPU kernel never writes to memory: an output whose one consumer is a Relu, or an Add for
    which it is the input computed last (the Add's other input was computed earlier and is read from memory)."""
    order = {name: i for i, node in enumerate(graph.node) for name in node.output}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    kept = set()
    for name, users in consumers.items():
        if len(users) != 1 or users[0].op_type not in FUSED_POINTWISE or name not in order:
            continue
        if users[0].op_type == "Relu" or max(users[0].input, key=lambda n: order.get(n, -1)) == name:
            kept.add(name)
    return kept


def _round_activations(model, precision: str, fused: bool = True) -> bytes:
    """``model`` (widened) with each tensor a GPU engine stores rounded to ``precision`` by a Cast pair (every op
    output when ``fused`` is False: what benchmarks/precision_check.py compares against)."""
    from onnx import TensorProto, helper

    low = TensorProto.BFLOAT16 if precision == "bf16" else TensorProto.FLOAT16
    graph = model.graph
    skip = (_kept_in_registers(graph) if fused else set()) | {o.name for o in graph.output}
    nodes, renamed = [], {}
    for node in graph.node:
        node.input[:] = [renamed.get(name, name) for name in node.input]
        nodes.append(node)
        for name in (n for n in node.output if n and n not in skip):
            renamed[name] = f"{name}__stored"
            nodes.append(helper.make_node("Cast", [name], [f"{name}__low"], to=low))
            nodes.append(helper.make_node("Cast", [f"{name}__low"], [renamed[name]], to=TensorProto.FLOAT))
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.value_info[:]  # types of rewired tensors: ONNX Runtime infers them again
    return model.SerializeToString()


def emulation(onnx_path: Path, precision: str) -> bytes:
    """The CPU emulation of a reduced-precision ONNX that ``check_reduced_precision`` runs (module docstring)."""
    return _round_activations(_widened(onnx_path, precision), precision)


def _precision_of(onnx_path: Path) -> str:
    import onnx
    from onnx import TensorProto

    model = onnx.load(str(onnx_path), load_external_data=False)
    kinds = {t.data_type for t in model.graph.initializer}
    if TensorProto.BFLOAT16 in kinds:
        return "bf16"
    if TensorProto.FLOAT16 in kinds:
        return "fp16"
    raise UsageError(f"{onnx_path} has no fp16 or bf16 weights: it is not a reduced-precision ONNX")


def _session(model):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def _reference(model):
    """A function images -> fp32 logits from a torch module or the path of an fp32 ONNX."""
    if isinstance(model, (str, Path)):
        session = _session(Path(model))
        name = session.get_inputs()[0].name
        return lambda x: session.run(None, {name: x})[0]
    import torch

    def run(x):
        with torch.inference_mode():
            return model(torch.from_numpy(x)).float().numpy()

    return run


def _images(h: int, w: int, batch: int = 2, seed: int = 0) -> np.ndarray:
    """Deterministic, image-like inputs in normalized space: smooth colour gradients plus texture."""
    rng = np.random.default_rng(seed + 7 * h + w)
    yy, xx = np.meshgrid(np.linspace(-1, 1, h), np.linspace(-1, 1, w), indexing="ij")
    out = np.empty((batch, 3, h, w), dtype=np.float32)
    for n in range(batch):
        for c in range(3):
            a, b, f = rng.uniform(-1.5, 1.5, 3)
            out[n, c] = a * xx + b * yy + 0.5 * np.sin(6 * f * xx * yy) + 0.3 * rng.standard_normal((h, w))
    return out


@dataclass(frozen=True)
class PrecisionStats:
    """How a reduced-precision ONNX compares with fp32 logits over some sizes."""

    precision: str
    method: str
    sizes: tuple[str, ...]
    samples: int
    rel_l2_max: float
    max_abs: float
    top1_agreement: float
    top1_decisive_disagreements: int
    bound: float

    @property
    def passed(self) -> bool:
        return self.rel_l2_max <= self.bound and self.top1_decisive_disagreements == 0

    def summary(self) -> str:
        verdict = "ok" if self.passed else "FAILED"
        return (
            f"{self.precision} via {self.method}: rel L2 max {self.rel_l2_max:.2e} (bound {self.bound:.0e}), "
            f"top-1 agreement {self.top1_agreement:.0%} over {self.samples} images "
            f"at {', '.join(self.sizes)}: {verdict}"
        )

    def to_dict(self) -> dict:
        return {**asdict(self), "sizes": list(self.sizes), "passed": self.passed}

    def raise_if_failed(self) -> None:
        if not self.passed:
            raise CheckFailed(
                f"the reduced-precision ONNX does not match fp32: {self.summary()}",
                hint="use --precision fp32, or report the ONNX and sizes",
            )


def check_reduced_precision(onnx_path, model, sizes=None) -> PrecisionStats:
    """Run ``onnx_path`` with ONNX Runtime on the CPU and compare with ``model`` (a torch module or an fp32
    ONNX path) at ``sizes`` ((h, w) pairs or Resolutions; default 224x224 and 160x288), batch 2 each."""
    onnx_path = Path(onnx_path)
    precision = _precision_of(onnx_path)
    session = _session(emulation(onnx_path, precision))
    name = session.get_inputs()[0].name
    reference = _reference(model)
    pairs = [(s.h, s.w) if hasattr(s, "h") else tuple(s) for s in (sizes or DEFAULT_SIZES)]
    stats = []
    for h, w in pairs:
        x = _images(h, w)
        stats.append(compare(reference(x), session.run(None, {name: x})[0]))
    total = combine(stats)
    method = f"onnxruntime-cpu emulation: {precision} weights and stored activations, fp32 arithmetic"
    return PrecisionStats(
        precision,
        method,
        tuple(f"{h}x{w}" for h, w in pairs),
        total.rows,
        total.rel_l2,
        total.max_abs,
        total.top1,
        total.decisive_flips,
        REL_L2_BOUND[precision],
    )
