"""Q/DQ (QuantizeLinear/DequantizeLinear) ONNX models from calibrated ranges, and their check on the CPU.

One calibration (``model.calibration``) gives two models, each from the settings below, the one place where
they are chosen:

* ``CPU_QDQ``, for ONNX Runtime on the CPU: uint8 activations with a zero point (asymmetric ranges use all
  256 levels after a ReLU), int8 weights per output channel (7-bit, and 8-bit as ``CPU_QDQ_VNNI`` where the
  build CPU has VNNI: ``cpu_qdq``). ONNX Runtime fuses the Q/DQ pairs around Conv,
  Gemm, Add and MaxPool into its integer kernels when it optimises the graph.
* ``TENSORRT_QDQ``, for TensorRT's explicit quantization: int8 activations and weights, both symmetric (zero
  point 0, as TensorRT requires), weights per output channel; Q/DQ at the inputs of every Conv and Gemm and at
  both inputs of each residual Add, which is where TensorRT's explicit-quantization guide ("Q/DQ layer
  placement recommendations") and NVIDIA's Model Optimizer put them: TensorRT then fuses each Q/DQ pair into
  the int8 kernel that reads the tensor, and the Add into the Conv before it. No Q/DQ on outputs of Conv
  (the next consumer's input carries one) nor on the logits.

Both are built with ONNX Runtime's ``QDQQuantizer`` fed our ranges (a ``TensorsData`` of MinMax type: the
ranges are already final), never with its own calibrators, which keep every activation in memory.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from rsz_export.artifacts.files import atomic_write_bytes
from rsz_export.errors import CheckFailed, IntegrityError


@dataclass(frozen=True)
class QdqSettings:
    """What ONNX Runtime's QDQQuantizer is told for one Q/DQ model."""

    name: str
    activation_type: str
    """``QUInt8`` or ``QInt8`` (``onnxruntime.quantization.QuantType`` member names)."""
    weight_type: str
    per_channel: bool
    reduce_range: bool
    op_types: tuple[str, ...]
    """Op types whose inputs (and outputs, unless excluded below) are quantized."""
    extra_options: dict = field(default_factory=dict)
    """QDQQuantizer's ``extra_options`` (ActivationSymmetric, WeightSymmetric, OpTypesToExcludeOutputQuantization,
    ...)."""
    check_level: str = "ORT_ENABLE_ALL"
    """The ONNX Runtime graph optimization level of the CPU check: ``ORT_ENABLE_ALL`` runs the model as ONNX
    Runtime's engine will (integer kernels); ``ORT_DISABLE_ALL`` keeps every QuantizeLinear/DequantizeLinear pair
    as its own op and computes the Conv in fp32 on the dequantized values, which is the arithmetic of an int8
    kernel accumulating in int32 (exact up to float rounding), without ONNX Runtime's int8 kernels for x86
    CPUs without VNNI, whose 16-bit intermediate sums saturate on signed int8 activations."""

    def to_dict(self) -> dict:
        data = asdict(self)
        data["op_types"] = list(self.op_types)
        return data


CPU_QDQ = QdqSettings(
    name="cpu",
    activation_type="QUInt8",
    weight_type="QInt8",
    per_channel=True,
    # 7-bit weights: x86 CPUs without VNNI multiply uint8 x int8 pairs into saturating 16-bit sums (vpmaddubsw),
    # which clipped the largest activations of full 800 px photographs (cosine 0.981 with 8-bit weights, 0.993
    # with 7-bit; ONNX Runtime's quantization guide gives the same advice). Same kernels, same speed.
    reduce_range=True,
    op_types=("Conv", "Gemm", "MatMul", "Add", "MaxPool", "Relu"),
    extra_options={"ActivationSymmetric": False, "WeightSymmetric": True,
                   "OpTypesToExcludeOutputQuantization": ["Gemm", "MatMul"]},
)
CPU_QDQ_VNNI = replace(CPU_QDQ, name="cpu-vnni", reduce_range=False)
"""The CPU model with full 8-bit weights, for CPUs with VNNI (AVX-512 VNNI, AVX-VNNI, AMX): their int8 dot
products accumulate in 32 bits and never saturate, and the eighth bit halves the weights' rounding error, which
is what most of int8's error came from (docs/int8.md, "Accuracy target"). On a CPU without VNNI the same model
saturates, so an engine made from it is refused there (``cpu_int8_problem``)."""
VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")
CPU_INT8_ENV = "RSZ_EXPORT_CPU_INT8"
"""``portable`` builds the 7-bit CPU model on any CPU (for engines deployed on CPUs without VNNI); ``vnni`` the
8-bit one; unset: the build CPU's kind."""


def has_vnni(flags=None) -> bool:
    """Whether this CPU (or ``flags``, /proc/cpuinfo names) multiplies int8 with 32-bit sums (VNNI or AMX)."""
    from rsz_export.artifacts.host import cpu_flags

    return any(flag in (cpu_flags() if flags is None else flags) for flag in VNNI_FLAGS)


def cpu_qdq(flags=None) -> QdqSettings:
    """The CPU Q/DQ model's settings for this build: ``CPU_QDQ_VNNI`` on a CPU with VNNI, else ``CPU_QDQ``;
    ``CPU_INT8_ENV`` decides instead when set."""
    import os

    from rsz_export.errors import UsageError

    chosen = os.environ.get(CPU_INT8_ENV, "").strip().lower()
    if chosen not in ("", "portable", "vnni"):
        raise UsageError(f"{CPU_INT8_ENV} must be portable or vnni; got {chosen!r}")
    if chosen:
        return CPU_QDQ_VNNI if chosen == "vnni" else CPU_QDQ
    return CPU_QDQ_VNNI if has_vnni(flags) else CPU_QDQ


def refuse_int8_without_vnni(engine) -> None:
    """EnvironmentProblem (exit 3) when ``engine`` must not run on this CPU (``cpu_int8_problem``): every runner
    that opens a CPU int8 engine asks, so serving and predicting refuse it as bench and validate do."""
    if engine is not None and (problem := cpu_int8_problem(engine)):
        from rsz_export.errors import EnvironmentProblem

        raise EnvironmentProblem(f"engine {engine.name}: {problem}",
                                 hint="rebuild the folder on this machine: rsz-export build DIR ... --force")


def cpu_int8_problem(engine, flags=None) -> str | None:
    """Why an int8 engine made from the 8-bit CPU model must not run on this CPU (no VNNI: its sums would
    saturate), else None."""
    quantization = (engine.settings or {}).get("quantization") or {}
    if engine.precision != "int8" or quantization.get("name") != CPU_QDQ_VNNI.name or has_vnni(flags):
        return None
    return (f"its int8 model has 8-bit weights for CPUs with VNNI ({', '.join(VNNI_FLAGS)}), which this CPU lacks: "
            f"its int8 sums would saturate; rebuild it here, or with {CPU_INT8_ENV}=portable to run anywhere")
TENSORRT_QDQ = QdqSettings(
    name="tensorrt",
    activation_type="QInt8",
    weight_type="QInt8",
    per_channel=True,
    reduce_range=False,
    op_types=("Conv", "Gemm", "Add"),
    # Biases stay float: ONNX Runtime quantizes Conv/Gemm biases to INT32 by default, and TensorRT's
    # IDequantizeLayer takes INT8, FP8, INT4 or FP4 only (NvInfer.h IDequantizeLayer; onnx-tensorrt
    # docs/operators.md 10.x: DequantizeLinear INT8, FP8, INT4), so an INT32 DequantizeLinear fails the parse
    # (onnx-tensorrt#850, NVIDIA/TensorRT#3360). TensorRT quantizes a float bias into the fused int8 kernel itself.
    extra_options={"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False,
                   "OpTypesToExcludeOutputQuantization": ["Conv", "Gemm", "Add"]},
    check_level="ORT_DISABLE_ALL",
)

CHECK_MIN_COSINE = 0.9
"""The smallest cosine to the fp32 logits a Q/DQ model may show on the build's check before it is refused: a
broken quantization (a wrong range, a mis-placed Q/DQ) falls far below it, a working one lies above 0.98
(docs/validate.md). ``validate`` judges the engines more finely, per size."""


def qdq_model(onnx_path, ranges: dict[str, tuple[float, float]], settings: QdqSettings, target,
              float_layers: tuple[str, ...] = ()) -> Path:
    """Write ``target``: the fp32 ONNX ``onnx_path`` with Q/DQ nodes placed and scaled as ``settings`` say,
    from ``ranges`` (tensor name -> (lo, hi)), leaving the nodes named in ``float_layers`` in float."""
    from onnxruntime.quantization import QuantType
    from onnxruntime.quantization.calibrate import CalibrationMethod, TensorData, TensorsData
    from onnxruntime.quantization.qdq_quantizer import QDQQuantizer
    from onnxruntime.quantization.quant_utils import load_model_with_shape_infer

    try:
        model = load_model_with_shape_infer(Path(onnx_path))
    except Exception as exc:  # onnx raises DecodeError, OSError or its own errors for unreadable files
        raise IntegrityError(f"cannot read ONNX {onnx_path}: {exc}") from None
    tensors = TensorsData(
        CalibrationMethod.MinMax,
        {name: TensorData(lowest=np.float32(lo), highest=np.float32(hi)) for name, (lo, hi) in ranges.items()},
    )
    quantizer = QDQQuantizer(
        model, settings.per_channel, settings.reduce_range, getattr(QuantType, settings.weight_type),
        getattr(QuantType, settings.activation_type), tensors, None, list(float_layers), list(settings.op_types),
        dict(settings.extra_options),
    )
    quantized = quantizer.quantize_model()
    del quantized.graph.value_info[:]  # shapes inferred for the quantizer; the dynamic sizes make them stale
    target = Path(target)
    atomic_write_bytes(target, quantized.SerializeToString())
    return target


@dataclass(frozen=True)
class QdqCheck:
    """How a Q/DQ model's outputs compare with the fp32 model's, per size (its worst output), on the CPU."""

    settings: str
    sizes: tuple[str, ...]
    cosine: tuple[float, ...]
    """The smallest cosine per size."""
    rel_l2: tuple[float, ...]
    """The relative L2 error per size."""
    bound: float = CHECK_MIN_COSINE
    images: str = "bundled"
    """The images checked on: ``held-out`` (the build's held-out images, bound: its --int8-target) or ``bundled``."""

    @property
    def passed(self) -> bool:
        return min(self.cosine) >= self.bound

    def summary(self) -> str:
        cells = ", ".join(f"{s} cos {c:.4f} rel L2 {r:.3f}" for s, c, r in zip(self.sizes, self.cosine, self.rel_l2))
        verdict = "ok" if self.passed else "FAILED"
        return f"{self.settings} Q/DQ vs fp32 on the CPU, {self.images} images: {cells} ({verdict})"

    def to_dict(self) -> dict:
        return {**asdict(self), "sizes": list(self.sizes), "cosine": list(self.cosine),
                "rel_l2": list(self.rel_l2), "passed": self.passed}

    def raise_if_failed(self) -> None:
        if not self.passed:
            raise CheckFailed(
                f"the int8 model does not match fp32: {self.summary()} (smallest cosine allowed {self.bound})",
                hint="calibrate on images like the ones you serve (--calib DIR), another --calib-method, or a lower "
                "--int8-target",
            )


def _session(model, threads: int | None, level: str = "ORT_ENABLE_ALL"):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])


def check_qdq(qdq_path, onnx_path, settings: QdqSettings, feeds_at, sizes, threads: int | None = None) -> QdqCheck:
    """Run the Q/DQ model and the fp32 ONNX with ONNX Runtime on the CPU at each of ``sizes`` on the inputs
    ``feeds_at(size)`` gives (a [n,3,h,w] array) and compare every output: the logits, or each feature map of a
    backbone (each image's map as one row); a size's figures are those of its worst output."""
    from rsz_export.interface import INPUT_NAME
    from rsz_export.parity import compare

    quantized, reference = _session(qdq_path, threads, settings.check_level), _session(onnx_path, threads)
    cosines, errors = [], []
    for size in sizes:
        x = feeds_at(size)
        pairs = zip(reference.run(None, {INPUT_NAME: x}), quantized.run(None, {INPUT_NAME: x}), strict=True)
        stats = [compare(want.reshape(len(want), -1), got.reshape(len(got), -1)) for want, got in pairs]
        cosines.append(round(min(s.cosine for s in stats), 6))
        errors.append(round(max(s.rel_l2 for s in stats), 6))
    return QdqCheck(settings.name, tuple(str(s) for s in sizes), tuple(cosines), tuple(errors))


def check_sizes(plan) -> tuple:
    """The sizes the build's check runs at: the plan's smallest and largest square."""
    from rsz_export.shapes import Resolution

    lo = min(min(p.min.h, p.min.w) for p in plan.profiles)
    hi = max(min(p.max.h, p.max.w) for p in plan.profiles)
    return tuple(dict.fromkeys((Resolution(lo, lo), Resolution(hi, hi))))


def profile_check_sizes(plan) -> tuple:
    """Per plan profile, the sizes int8 is judged at for it: the smallest and the largest square that routing
    sends to it (the profile's min and max corners when it serves no square)."""
    from rsz_export.plan.profiles import route
    from rsz_export.shapes import Resolution

    batch, result = plan.profiles[0].min.batch, []
    for index, profile in enumerate(plan.profiles):
        lo, hi = max(profile.min.h, profile.min.w), min(profile.max.h, profile.max.w)
        served = [s for s in range(lo, hi + 1) if route(plan.profiles, batch, s, s) == index]
        corners = (served[0], served[0], served[-1], served[-1]) if served else (
            profile.min.h, profile.min.w, profile.max.h, profile.max.w)
        result.append(tuple(dict.fromkeys((Resolution(*corners[:2]), Resolution(*corners[2:])))))
    return tuple(result)


def int8_check_sizes(calibration_file, plan) -> tuple:
    """Where an int8 engine's Q/DQ model is checked: the smallest and largest of the sizes the placement judged
    its int8 profiles at (a build with profiles in float leaves those out), else the plan's (``check_sizes``)."""
    from rsz_export.model.calibration import read_profile_precisions
    from rsz_export.shapes import Resolution

    sizes = [Resolution(*map(int, s.split("x"))) for p in read_profile_precisions(calibration_file)
             if p["precision"] == "int8" for s in p["sizes"]]
    if not sizes:
        return check_sizes(plan)
    by_area = sorted(sizes, key=lambda r: (r.h * r.w, r.h))
    return tuple(dict.fromkeys((by_area[0], by_area[-1])))


def photo_feeds(size, paths=None) -> np.ndarray:
    """``paths`` (default: the bundled photographs) through the evaluation crop at ``size``: [n,3,h,w]."""
    from rsz_export.images.loading import load_rgb, sample_images
    from rsz_export.images.preprocess import crop_input

    return np.concatenate([crop_input(load_rgb(p), size) for p in paths or sample_images()])


def _held_out(holdout: dict | None) -> list[Path] | None:
    """The held-out images a calibration file names, when they are all still there (else the bundled ones)."""
    if not holdout:
        return None
    paths = [Path(holdout["root"]) / name for name in holdout.get("files", ())]
    return paths if paths and all(p.is_file() for p in paths) else None


def checked_qdq(onnx_path, calibration_file, settings: QdqSettings, plan, target, threads=None,
                log=lambda message: None) -> tuple[Path, dict]:
    """The Q/DQ model for ``settings`` from a calibration file, checked against the fp32 ONNX with ONNX Runtime on
    the CPU (CheckFailed, exit 1, when it is far off), and the facts an engine record keeps about it."""
    from rsz_export.model.calibration import read_placement, read_ranges

    if not calibration_file:
        raise IntegrityError("an int8 build needs calibrated ranges", hint="rsz-export build --precision int8")
    ranges = read_ranges(calibration_file)
    float_layers, accuracy_target, holdout = read_placement(calibration_file)
    path = qdq_model(onnx_path, ranges, settings, target, float_layers)
    held = _held_out(holdout)
    check = check_qdq(path, onnx_path, settings, lambda size: photo_feeds(size, held),
                       int8_check_sizes(calibration_file, plan), threads)
    if held and accuracy_target is not None:
        check = replace(check, bound=accuracy_target, images="held-out")
    log(f"{path.name}: {check.summary()}")
    check.raise_if_failed()
    facts = {"quantization": settings.to_dict(), "qdq_check": check.to_dict()}
    return path, {**facts, "float_layers": list(float_layers)}
