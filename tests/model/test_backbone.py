"""ResNet-50 as a backbone (``--outputs features|fpn``): checkpoints read and refused, the interface check, the
build's keys, and (slow tier) the exported feature maps against torchvision's at small and odd sizes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rsz_export.errors import IntegrityError, UsageError
from rsz_export.interface import FEATURE_NAMES, FPN_NAMES, feature_maps, map_side
from tests.helpers import RANDOM_METADATA, assert_clean_failure, make_plan, run_cli
from tests.model.detectors import detector_shapes, key_only_checkpoint, tiny_feature_onnx

PARITY_SIZES = ((64, 64), (97, 131), (160, 127), (65, 160))
"""Sizes in the fixtures' 64..160 range, odd sides included (each map's side is ceil(side / stride))."""
RTOL = 1e-5


def _read(path: Path, outputs: str, log=lambda message: None) -> dict:
    from rsz_export.model.checkpoint import checkpoint_state, read_file

    return checkpoint_state(read_file(path), path, outputs, log)


@pytest.mark.parametrize(("backbone", "says"), [("resnet101", "ResNet-101 (3/4/23/3 blocks"),
                                                ("mobilenet", "not a ResNet")])
def test_detector_with_another_backbone_is_refused(backbone, says, tmp_path):
    checkpoint = key_only_checkpoint(detector_shapes(backbone), tmp_path / f"{backbone}.pth")
    for outputs in ("fpn", "features"):
        with pytest.raises(IntegrityError) as caught:
            _read(checkpoint, outputs)
        assert says in caught.value.message and "is not a ResNet-50 backbone" in caught.value.message
        assert caught.value.exit_code == 4 and "resnet50_fpn" in caught.value.hint


def test_classifier_has_no_fpn_weights(tmp_path):
    classifier = detector_shapes("classifier")
    checkpoint = key_only_checkpoint(classifier, tmp_path / "classifier.pth")
    with pytest.raises(IntegrityError, match="has no FPN weights: it holds a classifier") as caught:
        _read(checkpoint, "fpn")
    assert "--outputs features" in caught.value.hint
    assert set(_read(checkpoint, "features")) == {k for k in classifier if not k.startswith("fc.")}


def test_detector_checkpoint_for_logits_points_to_fpn(tmp_path):
    checkpoint = key_only_checkpoint(detector_shapes(), tmp_path / "detector.pth")
    with pytest.raises(IntegrityError) as caught:
        _read(checkpoint, "logits")
    assert "--outputs fpn" in caught.value.hint


def test_detector_heads_are_listed_and_fpn_keys_kept(tmp_path):
    checkpoint = key_only_checkpoint(detector_shapes(), tmp_path / "detector.pth")
    lines = []
    state = _read(checkpoint, "fpn", lines.append)
    assert lines == ["the detector's heads are not part of the fpn model and were left out: roi_heads (8 tensors), "
                     "rpn (6 tensors)"]
    assert {k.split(".")[0] for k in state} == {"body", "fpn"} and "fpn.layer_blocks.3.0.weight" in state


def test_seeded_or_imagenet_weights_have_no_fpn():
    from rsz_export.model.weights import choose_weights

    with pytest.raises(UsageError, match="seeded random weights have no feature pyramid"):
        choose_weights("random", outputs="fpn")
    with pytest.raises(IntegrityError, match="imagenet1k-v2 has no FPN weights"):
        choose_weights("imagenet1k-v2", outputs="fpn")
    assert choose_weights("random", outputs="features").num_classes == 0


def test_class_options_refused_for_feature_builds(tmp_path):
    from rsz_export.pipeline.run import BuildSpec

    labels = tmp_path / "labels.txt"
    labels.write_text("cat\n")
    with pytest.raises(UsageError, match="--labels names classes, and an --outputs features build has none"):
        BuildSpec(make_plan(64, 160), tmp_path / "out", labels=labels, outputs="features")
    with pytest.raises(UsageError, match="--num-classes names classes"):
        BuildSpec(make_plan(64, 160), tmp_path / "out", num_classes=10, outputs="fpn")


def test_logits_builds_keep_their_export_key():
    """Existing build folders and exports are reused: a logits build's key is what it was before --outputs."""
    import hashlib

    from rsz_export import __version__
    from rsz_export.pipeline.keys import stage_keys
    from rsz_export.pipeline.run import BuildSpec

    versions = {"torch": "2", "torchvision": "0.2", "onnx": "1"}
    keys = {o: stage_keys(BuildSpec(make_plan(64, 160), Path("x"), outputs=o), "onnxruntime", "random:seed=0",
                          versions) for o in ("logits", "features", "fpn")}
    before = {"tool": __version__, "weights": "random:seed=0", **versions}
    assert keys["logits"].export == hashlib.sha256(json.dumps(before, sort_keys=True).encode()).hexdigest()
    assert len({k.export for k in keys.values()}) == 3


def test_interface_check_accepts_feature_maps(tmp_path):
    import onnx

    from rsz_export.model.onnx_interface import check_user_onnx, output_kind

    plan = make_plan(64, 160)
    for outputs in ("features", "fpn"):
        path = tiny_feature_onnx(tmp_path / f"{outputs}.onnx", outputs)
        assert output_kind(onnx.load(str(path))) == outputs
        assert check_user_onnx(path, plan)[1:] == (0, outputs)
    wrong = tiny_feature_onnx(tmp_path / "wrong.onnx", "fpn", channels={"pool": 128})
    with pytest.raises(UsageError, match="or the feature maps of a backbone"):
        check_user_onnx(wrong, plan)


def test_onnx_import_must_name_its_outputs(tmp_path):
    from rsz_export.pipeline.onnx_import import check_import
    from rsz_export.pipeline.run import BuildSpec

    path = tiny_feature_onnx(tmp_path / "fpn.onnx", "fpn", metadata=RANDOM_METADATA)
    with pytest.raises(UsageError, match="gives the fpn feature maps .* asks for --outputs logits") as caught:
        check_import(BuildSpec(make_plan(64, 160), tmp_path / "out", onnx=path))
    assert caught.value.hint == "add --outputs fpn"
    imported = check_import(BuildSpec(make_plan(64, 160), tmp_path / "out", onnx=path, outputs="fpn"))
    assert imported.outputs == "fpn" and imported.num_classes == 0


@pytest.mark.slow  # three CLI processes (one imports torch): the fast tier checks the same refusals in-process
def test_bad_backbone_inputs_through_the_cli(tmp_path):
    checkpoint = key_only_checkpoint(detector_shapes("mobilenet"), tmp_path / "mobilenet.pth")
    out = tmp_path / "engines"
    result = run_cli("build", str(out), "--min", "64", "--max", "160", "--outputs", "fpn", "--weights", str(checkpoint))
    assert_clean_failure(result, 4, "is not a ResNet-50 backbone", "not a ResNet")
    labels = tmp_path / "labels.txt"
    labels.write_text("cat\n")
    result = run_cli("build", str(out), "--min", "64", "--max", "160", "--outputs", "features", "--labels", str(labels))
    assert_clean_failure(result, 2, "--labels names classes")
    assert not out.exists()
    result = run_cli("export", "--outputs", "fpn", "-o", str(tmp_path / "fpn.onnx"))
    assert_clean_failure(result, 4, "--weights imagenet1k-v2 has no FPN weights")
    assert not (tmp_path / "fpn.onnx").exists()


def _session(build: Path):
    import onnxruntime as ort

    manifest = json.loads((build / "manifest.json").read_text())
    return ort.InferenceSession(str(build / manifest["onnx"]["file"]), providers=["CPUExecutionProvider"]), manifest


def _rel_l2(expected: np.ndarray, actual: np.ndarray) -> float:
    return float(np.linalg.norm(actual.astype(np.float64) - expected) / np.linalg.norm(expected))


def test_fpn_build_matches_the_detectors_backbone(fpn_build, detector):
    """Every FPN level of the engine's ONNX against the whole torchvision detector's own backbone."""
    import onnx
    import torch

    session, manifest = _session(fpn_build)
    assert manifest["outputs"] == "fpn" and manifest["output_names"] == list(FPN_NAMES)
    assert manifest["num_classes"] == 0 and manifest["schema_version"] == 4
    proto = onnx.load(str(fpn_build / manifest["onnx"]["file"]), load_external_data=False)
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["rsz_export.outputs"] == "fpn" and json.loads(meta["rsz_export.output_names"]) == list(FPN_NAMES)
    dims = {o.name: [d.dim_param or d.dim_value for d in o.type.tensor_type.shape.dim] for o in proto.graph.output}
    assert dims["pool"] == ["batch", 256, "ceil(height/64)", "ceil(width/64)"]
    rng = np.random.default_rng(1)
    for h, w in PARITY_SIZES:
        images = rng.standard_normal((2, 3, h, w), dtype=np.float32)
        with torch.no_grad():
            expected = detector.backbone(torch.from_numpy(images))
        actual = dict(zip(FPN_NAMES, session.run(list(FPN_NAMES), {"images": images}), strict=True))
        for name, _, stride in feature_maps("fpn"):
            assert actual[name].shape == (2, 256, map_side(h, stride), map_side(w, stride))
            assert _rel_l2(expected[name].numpy(), actual[name]) <= RTOL, (name, h, w)


def test_feature_build_matches_intermediate_layer_getter(feature_build):
    import torch
    import torchvision
    from torchvision.models._utils import IntermediateLayerGetter

    from rsz_export.model.weights import random_state_dict

    session, manifest = _session(feature_build)
    assert manifest["outputs"] == "features" and manifest["weights"]["num_classes"] == 1000
    classifier = torchvision.models.resnet50(weights=None)
    classifier.load_state_dict(random_state_dict(0))
    getter = IntermediateLayerGetter(classifier.eval(), {name: name for name in FEATURE_NAMES})
    rng = np.random.default_rng(2)
    for h, w in PARITY_SIZES[1:3]:
        images = rng.standard_normal((1, 3, h, w), dtype=np.float32)
        with torch.no_grad():
            expected = getter(torch.from_numpy(images))
        actual = dict(zip(FEATURE_NAMES, session.run(list(FEATURE_NAMES), {"images": images}), strict=True))
        for name, channels, stride in feature_maps("features"):
            assert actual[name].shape == (1, channels, map_side(h, stride), map_side(w, stride))
            assert _rel_l2(expected[name].numpy(), actual[name]) <= RTOL, (name, h, w)


def test_int8_check_judges_every_feature_map(tmp_path):
    """The Q/DQ check compares each output: a model whose third FPN level is negated fails it, the others equal."""
    import onnx
    from onnx import numpy_helper

    from rsz_export.model.quantization import CPU_QDQ, check_qdq
    from rsz_export.shapes import Resolution

    model = tiny_feature_onnx(tmp_path / "fpn.onnx", "fpn")
    proto = onnx.load(str(model))
    for tensor in proto.graph.initializer:
        if tensor.name == "w_2":
            tensor.CopyFrom(numpy_helper.from_array(-numpy_helper.to_array(tensor), "w_2"))
    onnx.save(proto, str(tmp_path / "wrong.onnx"))
    feeds = lambda size: np.random.default_rng(size.h).standard_normal((2, 3, size.h, size.w), dtype=np.float32)  # noqa: E731
    sizes = (Resolution(64, 64), Resolution(97, 131))
    same = check_qdq(model, model, CPU_QDQ, feeds, sizes)
    wrong = check_qdq(tmp_path / "wrong.onnx", model, CPU_QDQ, feeds, sizes)
    assert same.passed and min(same.cosine) > 0.999999
    assert not wrong.passed and max(wrong.cosine) < -0.999 and min(wrong.rel_l2) > 1.99


def test_int8_build_of_a_backbone_calibrates_and_checks_its_maps(tmp_path):
    """``--precision int8`` on a backbone (the five-output stand-in): calibrated, quantized, checked, built."""
    from rsz_export.backends.base import BuildOptions
    from rsz_export.pipeline.run import BuildSpec, build

    model = tiny_feature_onnx(tmp_path / "fpn.onnx", "fpn", metadata=RANDOM_METADATA)
    lines = []
    from rsz_export.model.calibration_set import CalibSpec

    spec = BuildSpec(make_plan(64, 128, 1), tmp_path / "out", backend="onnxruntime", onnx=model, outputs="fpn",
                     options=BuildOptions(precision="int8"), calibration=CalibSpec(target=None))  # random 1x1 convs
    manifest = build(spec, lines.append).manifest
    assert manifest.outputs == "fpn" and manifest.precision == "int8"
    check = next(line for line in lines if "Q/DQ vs fp32" in line)
    assert "ok" in check, check


def test_feature_builds_use_backends_that_give_every_output(tmp_path):
    """OpenVINO's runner gives one output: asked for, it is refused; under auto it is not timed against ONNX Runtime."""
    from rsz_export.pipeline.run import BuildSpec, _for_feature_maps, build

    model = tiny_feature_onnx(tmp_path / "fpn.onnx", "fpn", metadata=RANDOM_METADATA)
    with pytest.raises(UsageError, match="--backend openvino engines give one output"):
        build(BuildSpec(make_plan(64, 128, 1), tmp_path / "out", backend="openvino", onnx=model, outputs="fpn"))
    assert not (tmp_path / "out").exists()
    spec = BuildSpec(make_plan(64, 128, 1), tmp_path / "out", onnx=model, outputs="fpn")
    assert _for_feature_maps(spec, "onnxruntime", "timing", ("onnxruntime", "openvino"))[::2] == ("onnxruntime", ())
