"""Reduced-precision ONNX from a real exported ResNet-50, checked on the CPU with ONNX Runtime against PyTorch."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
torch = pytest.importorskip("torch")

from rsz_export.errors import CheckFailed, UsageError  # noqa: E402
from rsz_export.model import reduced_precision as precision  # noqa: E402


@pytest.fixture(scope="session")
def resnet(engines_dir, onnx_path):
    """The session's calibrated random-weight ResNet-50 and its exported ONNX (shared with the other tests)."""
    from rsz_export.artifacts.manifest import load_manifest
    from rsz_export.model.weights import reference_from_record

    return reference_from_record(load_manifest(engines_dir).weights), onnx_path


@pytest.fixture(scope="session")
def fp16_path(resnet, tmp_path_factory):
    return precision.reduced_precision_onnx(resnet[1], tmp_path_factory.mktemp("fp16") / "model.fp16.onnx", "fp16")


def _io_types(path):
    model = onnx.load(str(path))
    return (
        [i.type.tensor_type.elem_type for i in model.graph.input],
        [o.type.tensor_type.elem_type for o in model.graph.output],
        {t.data_type for t in model.graph.initializer},
        model,
    )


def test_fp16_keeps_float32_io_and_stores_fp16_weights(fp16_path):
    inputs, outputs, weights, model = _io_types(fp16_path)
    assert inputs == [onnx.TensorProto.FLOAT] and outputs == [onnx.TensorProto.FLOAT]
    assert onnx.TensorProto.FLOAT16 in weights and onnx.TensorProto.FLOAT not in weights
    assert [i.name for i in model.graph.input] == ["images"] and [o.name for o in model.graph.output] == ["logits"]
    assert not list(fp16_path.parent.glob(".*.tmp"))  # atomic write leaves no temp file


def test_fp16_matches_pytorch_within_the_stated_bound(resnet, fp16_path):
    stats = precision.check_reduced_precision(fp16_path, resnet[0], sizes=[(128, 128), (97, 161)])
    assert "fp16 weights and stored activations" in stats.method and stats.samples == 4
    assert stats.rel_l2_max < precision.REL_L2_BOUND["fp16"], stats.summary()
    assert stats.rel_l2_max > 1e-5  # it really ran in fp16: fp32 vs fp32 would be ~1e-7
    assert stats.top1_decisive_disagreements == 0 and stats.passed
    stats.raise_if_failed()


@pytest.mark.slow  # about 10 s: a second conversion and an emulated run
def test_bf16_weights_are_rounded_fp32_and_graph_is_valid(resnet, tmp_path):
    path = precision.reduced_precision_onnx(resnet[1], tmp_path / "model.bf16.onnx", "bf16")
    inputs, outputs, weights, model = _io_types(path)
    floats = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16}
    assert inputs == outputs == [onnx.TensorProto.FLOAT] and weights & floats == {onnx.TensorProto.BFLOAT16}
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= precision.BF16_OPSET
    # Each bf16 weight is the original fp32 weight rounded to nearest: error below half a bf16 ulp.
    ref = {t.name: onnx.numpy_helper.to_array(t) for t in onnx.load(str(resnet[1])).graph.initializer}
    init = max(model.graph.initializer, key=lambda t: np.prod(t.dims))
    got = precision._bf16_bits_to_fp32(np.frombuffer(init.raw_data, np.uint16)).reshape(tuple(init.dims))
    want = ref[init.name]
    assert np.all(np.abs(got - want) <= np.abs(want) * 2.0**-8 + 1e-38)
    stats = precision.check_reduced_precision(path, resnet[0], sizes=[(96, 128)])
    assert "bf16 weights and stored activations" in stats.method and stats.passed, stats.summary()


def test_bf16_rounding_is_nearest_even():
    values = np.array([1.0, 1.0 + 2**-8, 1.0 + 3 * 2**-8, -2.5, 3.0e38], dtype=np.float32)
    back = precision._bf16_bits_to_fp32(precision._fp32_to_bf16_bits(values))
    assert back.tolist() == [1.0, 1.0, 1.0 + 4 * 2**-8, -2.5, np.float32(back[-1])]
    assert abs(back[-1] - 3.0e38) / 3.0e38 < 2**-8


def test_a_broken_conversion_fails_the_check(resnet, fp16_path, tmp_path):
    model = onnx.load(str(fp16_path))
    conv = next(t for t in model.graph.initializer if len(t.dims) == 4)
    arr = onnx.numpy_helper.to_array(conv)
    conv.CopyFrom(onnx.numpy_helper.from_array((arr * 0.5).astype(arr.dtype), conv.name))  # a wrong first conv
    bad = tmp_path / "bad.onnx"
    onnx.save(model, str(bad))
    stats = precision.check_reduced_precision(bad, resnet[1], sizes=[(64, 64)])
    assert not stats.passed and stats.rel_l2_max > precision.REL_L2_BOUND["fp16"]
    with pytest.raises(CheckFailed, match="does not match fp32"):
        stats.raise_if_failed()


def test_bad_precision_and_fp32_input_are_usage_errors(resnet, tmp_path):
    with pytest.raises(UsageError, match="'int8'"):
        precision.reduced_precision_onnx(resnet[1], tmp_path / "x.onnx", "int8")
    with pytest.raises(UsageError, match="not a reduced-precision ONNX"):
        precision.check_reduced_precision(resnet[1], resnet[0])


def _two_convs(path, middle: str = "Conv"):
    """fp16 graph x -> Conv(+0.0004) -> [middle] -> Conv(-1) at x = 1: 0.0004 with fp32 activations; 0 once the
    tensor between the convs is stored in fp16 (1.0004 rounds to 1)."""
    from onnx import TensorProto, helper, numpy_helper

    ones = numpy_helper.from_array(np.ones((1, 1, 1, 1), np.float16), "w")
    b1 = numpy_helper.from_array(np.array([0.0004], np.float16), "b1")
    b2 = numpy_helper.from_array(np.array([-1.0], np.float16), "b2")
    nodes = [helper.make_node("Cast", ["x"], ["x16"], to=TensorProto.FLOAT16),
             helper.make_node("Conv", ["x16", "w", "b1"], ["h"])]
    if middle == "Relu":
        nodes.append(helper.make_node("Relu", ["h"], ["r"]))
    nodes += [helper.make_node("Conv", ["r" if middle == "Relu" else "h", "w", "b2"], ["y16"]),
              helper.make_node("Cast", ["y16"], ["y"], to=TensorProto.FLOAT)]
    io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 1, 1, 1]) for n in ("x", "y")]
    graph = helper.make_graph(nodes, "g", io[:1], io[1:], [ones, b1, b2])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("middle", ["Conv", "Relu"])
def test_the_check_rounds_the_activations_a_gpu_stores(middle, tmp_path):
    """ONNX Runtime's CPU provider computes an fp16 graph in fp32 without rounding between ops; the emulation
    rounds each stored tensor. A Conv's output feeding its Relu stays in the fused kernel; the Relu's is stored."""
    import onnxruntime as ort

    path = _two_convs(tmp_path / "two.onnx", middle)
    x = {"x": np.ones((1, 1, 1, 1), np.float32)}
    as_is = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, x)[0]
    emulated = precision._session(precision.emulation(path, "fp16")).run(None, x)[0]
    assert abs(float(as_is.ravel()[0]) - 0.0004) < 1e-5  # ORT on the CPU: the middle tensor was never rounded
    assert float(emulated.ravel()[0]) == 0.0  # stored in fp16 between the kernels


def test_tensors_kept_in_registers_follow_the_fusions():
    from onnx import helper

    nodes = [helper.make_node("Conv", ["x", "w"], ["c1"]), helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Conv", ["r1", "w"], ["c2"]), helper.make_node("Conv", ["r1", "w"], ["down"]),
             helper.make_node("Add", ["c2", "down"], ["sum"]), helper.make_node("Relu", ["sum"], ["out"])]
    graph = helper.make_graph(nodes, "block", [], [])
    # c1 feeds its Relu; down is the Add's input computed last; sum feeds its Relu. r1 (two readers) and c2
    # (the Add's input read back from memory) are stored.
    assert precision._kept_in_registers(graph) == {"c1", "down", "sum"}


@pytest.mark.parametrize("kind", ["fp16", "bf16"])
def test_the_check_on_a_small_model(kind, classifier_onnx, tmp_path):
    reduced = precision.reduced_precision_onnx(classifier_onnx, tmp_path / f"model.{kind}.onnx", kind)
    stats = precision.check_reduced_precision(reduced, classifier_onnx, sizes=[(64, 64)])
    assert stats.passed and stats.rel_l2_max > 0 and f"{kind} weights and stored activations" in stats.method


def test_a_flip_concentrated_on_one_class_fails_the_check_within_the_error_bound(classifier_onnx, tmp_path):
    """An fp16 conversion whose bias of one class is off by 0.02: the logits stay within the rel-L2 bound, but the
    class overtakes the reference's top-1 (margin ~0.013 against fp16 errors ~1e-3 elsewhere) on both images: two
    decisive flips, and the check fails on them alone."""
    import onnxruntime as ort
    from onnx import numpy_helper

    fp32 = ort.InferenceSession(str(classifier_onnx), providers=["CPUExecutionProvider"])
    second = np.argsort(fp32.run(None, {"images": precision._images(64, 64)})[0], axis=1)[:, -2]
    assert len(set(second)) == 1  # the same runner-up on both images
    reduced = precision.reduced_precision_onnx(classifier_onnx, tmp_path / "model.fp16.onnx", "fp16")
    model = onnx.load(str(reduced))
    bias = next(t for t in model.graph.initializer if t.name == "fc_b")
    values = numpy_helper.to_array(bias).copy()
    values[second[0]] += np.float16(0.02)
    bias.CopyFrom(numpy_helper.from_array(values, bias.name))
    onnx.save(model, str(reduced))
    stats = precision.check_reduced_precision(reduced, classifier_onnx, sizes=[(64, 64)])
    assert stats.rel_l2_max <= stats.bound and stats.top1_agreement == 0.0
    assert stats.top1_decisive_disagreements == 2 and not stats.passed
