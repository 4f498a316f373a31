import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from rsz_export.artifacts.manifest import load_manifest
from rsz_export.interface import INPUT_NAME, OUTPUT_NAME
from rsz_export.model.export import read_metadata, verify_export
from rsz_export.model.weights import reference_from_record


@pytest.fixture(scope="module")
def reference(engines_dir):
    return reference_from_record(load_manifest(engines_dir).weights)


def test_single_file_named_dynamic_dims(onnx_path):
    assert not list(onnx_path.parent.glob("*.data"))
    proto = onnx.load(str(onnx_path))
    onnx.checker.check_model(proto, full_check=True)
    (inp,), (out,) = proto.graph.input, proto.graph.output
    assert inp.name == INPUT_NAME and out.name == OUTPUT_NAME
    assert [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim] == ["batch", 3, "height", "width"]
    assert [d.dim_param or d.dim_value for d in out.type.tensor_type.shape.dim] == ["batch", 1000]
    assert inp.type.tensor_type.elem_type == onnx.TensorProto.FLOAT


def test_metadata_describes_provenance(onnx_path, engines_dir):
    meta = read_metadata(onnx_path)
    manifest = load_manifest(engines_dir)
    assert meta["rsz_export.weights_sha256"] == manifest.weights.sha256
    assert meta["rsz_export.size_range"] == "32..4096"
    assert meta["rsz_export.num_classes"] == "1000" and meta["rsz_export.output"] == "logits[batch,1000] float32"
    versions = json.loads(meta["rsz_export.versions"])
    assert versions["torch"] == torch.__version__.split("+")[0]
    pre = json.loads(meta["rsz_export.preprocessing"])
    assert pre["layout"] == "NCHW" and pre["mean"] == [0.485, 0.456, 0.406]


@pytest.mark.parametrize("shape", [(1, 225, 301), (2, 33, 45), (1, 513, 799), (1, 800, 224)])
def test_onnx_matches_pytorch_at_odd_and_non_square_sizes(onnx_path, reference, shape):
    n, h, w = shape
    images = np.random.default_rng(h * w).standard_normal((n, 3, h, w), dtype=np.float32)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    actual = session.run(None, {INPUT_NAME: images})[0]
    with torch.no_grad():
        expected = reference(torch.from_numpy(images)).numpy()
    assert actual.shape == (n, 1000)
    rel = np.linalg.norm(actual - expected) / np.linalg.norm(expected)
    assert rel <= 1e-5
    assert (actual.argmax(1) == expected.argmax(1)).all()


def test_verification_reports_failing_size(onnx_path, reference):
    from rsz_export.errors import CheckFailed
    from rsz_export.shapes import Resolution

    perturbed = reference_from_record(load_manifest(onnx_path.parent).weights)
    with torch.no_grad():
        perturbed.fc.bias.add_(0.05)  # the ONNX no longer matches this model
    with pytest.raises(CheckFailed, match="227x341"):
        verify_export(perturbed, onnx_path, sizes=[Resolution(227, 341)])
