"""The two Q/DQ models from one calibration: where their Q/DQ nodes are, their types, and the CPU check."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from rsz_export.errors import CheckFailed
from rsz_export.model.calibration import calibrate
from rsz_export.model.quantization import CPU_QDQ, TENSORRT_QDQ, check_qdq, qdq_model
from rsz_export.shapes import Resolution


def residual_onnx(path):
    """images -> Conv -> Relu -> Conv -> Add(relu) -> Relu -> GlobalAveragePool -> Flatten -> Gemm -> logits."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)

    def weight(name, *shape, scale=0.3):
        return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)

    nodes = [
        helper.make_node("Conv", ["images", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["c2", "r1"], ["sum"], name="add"),
        helper.make_node("Relu", ["sum"], ["r2"], name="relu2"),
        helper.make_node("GlobalAveragePool", ["r2"], ["pool"], name="pool"),
        helper.make_node("Flatten", ["pool"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", "fc", "fcb"], ["logits"], name="fc", transB=1),
    ]
    inits = [weight("w1", 8, 3, 3, 3), weight("b1", 8), weight("w2", 8, 8, 3, 3, scale=0.1), weight("b2", 8),
             weight("fc", 10, 8), weight("fcb", 10)]
    graph = helper.make_graph(
        nodes, "residual", [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["n", 3, "h", "w"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", 10])], inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory):
    folder = tmp_path_factory.mktemp("qdq")
    model = residual_onnx(folder / "residual.onnx")
    rng = np.random.default_rng(0)
    run = calibrate(model, (rng.uniform(-2, 2, (1, 3, s, s)).astype(np.float32) for s in (32, 48, 40)), "minmax")
    return folder, model, run.ranges


def _consumers(model, op):
    """For each node of type ``op``: whether each of its inputs comes from a DequantizeLinear."""
    produced = {o: n.op_type for n in model.graph.node for o in n.output}
    return [[produced.get(i) == "DequantizeLinear" for i in n.input] for n in model.graph.node if n.op_type == op]


def test_tensorrt_model_is_symmetric_int8_at_conv_gemm_and_both_add_inputs(calibrated):
    import onnx
    from onnx import TensorProto, numpy_helper

    folder, model, ranges = calibrated
    model = onnx.load(str(qdq_model(model, ranges, TENSORRT_QDQ, folder / "trt.onnx")))
    inits = {t.name: t for t in model.graph.initializer}
    assert all(c[:2] == [True, True] for c in _consumers(model, "Conv"))  # activation and weight
    assert _consumers(model, "Add") == [[True, True]] and _consumers(model, "Gemm")[0][:2] == [True, True]
    assert all(n.output[0] != "logits" or n.op_type == "Gemm" for n in model.graph.node)  # nothing after logits
    zero_points = [inits[n.input[2]] for n in model.graph.node if n.op_type == "QuantizeLinear"]
    assert zero_points and all(z.data_type == TensorProto.INT8 for z in zero_points)
    assert all(not numpy_helper.to_array(z).any() for z in zero_points)  # symmetric: zero point 0
    conv_weights = [n for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits
                    and len(inits[n.input[0]].dims) == 4]
    assert all(inits[n.input[0]].data_type == TensorProto.INT8 for n in conv_weights)
    weight_scales = [numpy_helper.to_array(inits[n.input[1]]) for n in conv_weights]
    assert weight_scales and all(s.size == 8 for s in weight_scales)  # per output channel
    # Biases stay float: TensorRT's DequantizeLinear takes INT8/FP8/INT4(/FP4) only, never INT32 (NvInfer.h
    # IDequantizeLayer; onnx-tensorrt docs/operators.md).
    dequantized = [inits[n.input[0]].data_type for n in model.graph.node if n.op_type == "DequantizeLinear"
                   and n.input[0] in inits]
    assert dequantized and set(dequantized) == {TensorProto.INT8}
    biases = [n.input[2] for n in model.graph.node if n.op_type in ("Conv", "Gemm")]
    assert all(inits[b].data_type == TensorProto.FLOAT for b in biases)


@pytest.mark.parametrize("version", ["10.16.1.11", "11.4.0.106"])
def test_tensorrt_model_passes_the_parsers_support_matrix(version, calibrated):
    """The TensorRT Q/DQ model parses under the test double's ONNX parser, which refuses op and input types
    outside onnx-tensorrt's published support matrix (an INT32 bias DequantizeLinear, for one)."""
    from tests.backends import fake_tensorrt
    from tests.backends.fake_tensorrt.testing import recording_logger

    folder, model, ranges = calibrated
    path = qdq_model(model, ranges, TENSORRT_QDQ, folder / f"trt-{version}.onnx")
    trt = fake_tensorrt.make_module(version)
    logger = recording_logger(trt)
    parser = trt.OnnxParser(trt.Builder(logger).create_network(0), logger)
    assert parser.parse_from_file(str(path)), [str(parser.get_error(i)) for i in range(parser.num_errors)]


def test_cpu_model_has_uint8_activations_and_int8_weights(calibrated):
    import onnx
    from onnx import TensorProto

    folder, model, ranges = calibrated
    model = onnx.load(str(qdq_model(model, ranges, CPU_QDQ, folder / "cpu.onnx")))
    inits = {t.name: t for t in model.graph.initializer}
    kinds = Counter(inits[n.input[2]].data_type for n in model.graph.node if n.op_type == "QuantizeLinear")
    assert set(kinds) == {TensorProto.UINT8}
    weights = [inits[n.input[0]].data_type for n in model.graph.node
               if n.op_type == "DequantizeLinear" and n.input[0] in inits and len(inits[n.input[0]].dims) >= 2]
    assert weights and set(weights) == {TensorProto.INT8}


@pytest.mark.parametrize("settings", [CPU_QDQ, TENSORRT_QDQ], ids=lambda s: s.name)
def test_check_against_fp32_passes_and_catches_wrong_ranges(settings, calibrated):
    folder, model, ranges = calibrated
    rng = np.random.default_rng(5)

    def feeds(size):
        return rng.uniform(-2, 2, (3, 3, size.h, size.w)).astype(np.float32)

    sizes = [Resolution(32, 32), Resolution(41, 57)]
    good = check_qdq(qdq_model(model, ranges, settings, folder / "good.onnx"), model, settings, feeds, sizes)
    assert good.passed and min(good.cosine) > 0.95 and good.sizes == ("32x32", "41x57")
    squeezed = {name: (lo / 50, hi / 50) for name, (lo, hi) in ranges.items()}  # clips nearly everything
    bad = check_qdq(qdq_model(model, squeezed, settings, folder / "bad.onnx"), model, settings, feeds, sizes)
    assert not bad.passed
    with pytest.raises(CheckFailed, match="does not match fp32"):
        bad.raise_if_failed()


def test_the_cpu_model_has_8_bit_weights_only_for_cpus_with_vnni(monkeypatch):
    from dataclasses import replace

    from rsz_export.artifacts.manifest import EngineRecord, FileRecord
    from rsz_export.errors import UsageError
    from rsz_export.model.quantization import CPU_INT8_ENV, CPU_QDQ_VNNI, cpu_int8_problem, cpu_qdq

    def engine_record(precision, settings):
        return EngineRecord("ort", "onnxruntime", precision, FileRecord("e.onnx", "0" * 64, 1), (0,), 1.0, settings)

    monkeypatch.delenv(CPU_INT8_ENV, raising=False)
    assert cpu_qdq(["avx2", "fma"]) is CPU_QDQ and CPU_QDQ.reduce_range
    assert all(cpu_qdq(["avx2", flag]) is CPU_QDQ_VNNI for flag in ("avx512_vnni", "avx_vnni", "amx_int8"))
    assert CPU_QDQ_VNNI.reduce_range is False and replace(CPU_QDQ_VNNI, name="cpu", reduce_range=True) == CPU_QDQ
    monkeypatch.setenv(CPU_INT8_ENV, "portable")
    assert cpu_qdq(["avx512_vnni"]) is CPU_QDQ
    monkeypatch.setenv(CPU_INT8_ENV, "vnni")
    assert cpu_qdq(["avx2"]) is CPU_QDQ_VNNI
    monkeypatch.setenv(CPU_INT8_ENV, "8bit")
    with pytest.raises(UsageError, match="portable or vnni"):
        cpu_qdq()
    eight, seven = (engine_record("int8", {"quantization": s.to_dict()}) for s in (CPU_QDQ_VNNI, CPU_QDQ))
    assert "lacks" in cpu_int8_problem(eight, ["avx2"]) and cpu_int8_problem(eight, ["avx512_vnni"]) is None
    assert cpu_int8_problem(seven, ["avx2"]) is None
    assert cpu_int8_problem(engine_record("fp32", {}), ["avx2"]) is None
