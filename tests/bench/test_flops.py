"""FLOP counts: analytic ResNet-50, the ONNX graph walk, and torch's own counter must agree."""

from __future__ import annotations

import pytest

from rsz_export.bench.flops import conv_out, resnet50_flop
from rsz_export.errors import UsageError
from tests.bench.onnx_walk import onnx_flop


def test_resnet50_at_224_is_the_published_4_1_gmac():
    assert resnet50_flop(1, 224, 224) == 8_178_368_512  # 4.09 GMAC


def test_flop_scales_with_batch_and_roughly_with_pixels():
    base = resnet50_flop(1, 224, 224)
    assert resnet50_flop(4, 224, 224) == 4 * base
    big = resnet50_flop(1, 448, 448)
    assert 3.9 * base < big < 4.05 * base  # the classifier does not grow with the image


def test_conv_out_matches_floor_rounding():
    assert conv_out(224, 7, 2, 3) == 112
    assert conv_out(227, 7, 2, 3) == 114
    assert conv_out(33, 3, 2, 1) == 17


def test_bad_sizes_are_usage_errors():
    with pytest.raises(UsageError, match="height"):
        resnet50_flop(1, 16, 224)


@pytest.fixture(scope="module")
def torch_and_model():
    torch = pytest.importorskip("torch")
    torchvision = pytest.importorskip("torchvision")
    return torch, torchvision.models.resnet50().eval()


@pytest.mark.parametrize("shape", [(1, 224, 224), (2, 227, 341), (1, 33, 65)])
def test_analytic_count_matches_torch_flop_counter(torch_and_model, shape):
    from torch.utils.flop_counter import FlopCounterMode

    torch, _ = torch_and_model
    meta_model = _meta_copy(torch)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        meta_model(torch.zeros(shape[0], 3, *shape[1:], device="meta"))
    assert resnet50_flop(*shape) == counter.get_total_flops()


def test_classifier_term_follows_the_head_size(torch_and_model):
    """A 10-class head: 2 x 2048 x (1000 - 10) FLOP fewer per image, matching torch's own count of that model."""
    from torch.utils.flop_counter import FlopCounterMode

    torch, torchvision = torch_and_model[0], pytest.importorskip("torchvision")
    assert resnet50_flop(3, 64, 48) - resnet50_flop(3, 64, 48, num_classes=10) == 3 * 2 * 2048 * 990
    with torch.device("meta"):
        model = torchvision.models.resnet50(num_classes=10).eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(3, 3, 64, 48, device="meta"))
    assert resnet50_flop(3, 64, 48, num_classes=10) == counter.get_total_flops()
    with pytest.raises(UsageError, match="num_classes"):
        resnet50_flop(1, 224, 224, num_classes=0)


def _meta_copy(torch):
    import torchvision

    with torch.device("meta"):  # shapes only: the counter needs no real arithmetic
        return torchvision.models.resnet50().eval()


def _tiny_onnx(path):
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper, save

    w = numpy_helper.from_array(np.zeros((8, 3, 3, 3), np.float32), "w")
    fc = numpy_helper.from_array(np.zeros((8, 10), np.float32), "fc")
    nodes = [
        helper.make_node("Conv", ["images", "w"], ["c"], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("GlobalAveragePool", ["c"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("MatMul", ["f", "fc"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, "height", "width"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])],
        [w, fc],
    )
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def test_onnx_walk_counts_conv_and_matmul_at_the_pinned_size(tmp_path):
    pytest.importorskip("onnx")
    path = tmp_path / "tiny.onnx"
    _tiny_onnx(path)
    conv = 2 * 2 * 8 * 16 * 32 * 3 * 9  # batch 2, 8 channels, 32x64 -> 16x32 output, 3x3x3 taps
    assert onnx_flop(path, 2, 32, 64) == conv + 2 * 2 * 8 * 10


def test_onnx_walk_of_the_exported_model_matches_the_analytic_count(onnx_path):
    assert onnx_flop(onnx_path, 2, 227, 341) == resnet50_flop(2, 227, 341)
    assert onnx_flop(onnx_path, 1, 224, 224) == 8_178_368_512
