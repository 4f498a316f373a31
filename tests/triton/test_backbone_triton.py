"""A backbone build (``--outputs fpn``) for Triton: the repository's config lists every feature map with dynamic
sides, ``routing.json`` names them, and ``serve`` (logits only) refuses the build with the way to serve it."""

from __future__ import annotations

import json

import pytest

from rsz_export.errors import UsageError
from rsz_export.interface import FPN_NAMES
from rsz_export.shapes import BatchRange
from tests.helpers import RANDOM_METADATA, make_plan
from tests.model.detectors import tiny_feature_onnx


@pytest.fixture(scope="module")
def fpn_stand_in(tmp_path_factory):
    """The five-output stand-in built with ONNX Runtime over 64..160, batch 1..4 (about a second)."""
    from rsz_export.pipeline.run import BuildSpec, build

    folder = tmp_path_factory.mktemp("fpn-triton")
    model = tiny_feature_onnx(folder / "fpn.onnx", "fpn", metadata=RANDOM_METADATA)
    build(BuildSpec(make_plan(64, 160, 2, BatchRange(1, 2, 4)), folder / "engines", backend="onnxruntime",
                    onnx=model, outputs="fpn"))
    return folder / "engines"


def test_the_repository_lists_every_feature_map(fpn_stand_in, tmp_path):
    pytest.importorskip("tritonclient", reason="the [serve] extra is not installed")
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    from rsz_export.triton.repository import write_repository

    repo = tmp_path / "repo"
    write_repository(fpn_stand_in, repo)
    config = text_format.Parse((repo / "resnet50" / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    assert config.max_batch_size == 4 and [i.name for i in config.input] == ["images"]
    assert [(o.name, list(o.dims)) for o in config.output] == [(name, [256, -1, -1]) for name in FPN_NAMES]
    assert json.loads((repo / "routing.json").read_text())["output"] == list(FPN_NAMES)


def test_serve_refuses_a_build_without_logits(fpn_stand_in):
    from rsz_export.artifacts.manifest import load_manifest
    from rsz_export.triton.server import refuse_feature_maps

    with pytest.raises(UsageError, match="serve gives one output, logits") as caught:
        refuse_feature_maps(load_manifest(fpn_stand_in))
    assert "rsz-export triton DIR --repo PATH" in caught.value.hint
