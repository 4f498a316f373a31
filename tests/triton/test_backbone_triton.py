"""A backbone build (``--outputs fpn``, a five-output stand-in) served and timed: the Triton repository's config
lists every feature map with dynamic sides, ``serve`` answers each map asked for and refuses others, bench counts
the backbone's FLOP."""

from __future__ import annotations

import json

import pytest

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


def test_the_served_interface_and_the_session_give_every_map(fpn_stand_in):
    import numpy as np
    import onnxruntime as ort

    from rsz_export.serve.session import Session
    from rsz_export.triton.server import batch_outputs
    from rsz_export.triton.spec import ServedInterface

    with Session(fpn_stand_in) as session:
        served = ServedInterface.of(session.manifest)
        assert served.outputs == tuple((name, (256, -1, -1)) for name in FPN_NAMES)
        assert "outputs 0 FP32 [-1,256,-1,-1]" in served.describe()
        images = np.random.default_rng(0).standard_normal((3, 3, 97, 131)).astype(np.float32)
        maps = batch_outputs(session, images, "resnet50")
    model = ort.InferenceSession(str(fpn_stand_in.parent / "fpn.onnx"), providers=["CPUExecutionProvider"])
    for got, want in zip(maps, model.run(None, {"images": images}), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_a_request_for_an_output_the_model_lacks_is_refused():
    from rsz_export.triton.request_check import Refused, RequestLimits, check_header

    limits = RequestLimits("resnet50", 1, 4, 160 * 160, lambda h, w: "p0", "64..160", FPN_NAMES)
    header = {"inputs": [{"name": "images", "shape": [1, 3, 64, 64], "datatype": "FP32", "data": [0.0] * 12288}]}
    check_header(header | {"outputs": [{"name": "pool"}, {"name": "0"}]}, limits, 0)
    with pytest.raises(Refused) as caught:
        check_header(header | {"outputs": [{"name": "logits"}]}, limits, 0)
    assert caught.value.reason == "bad_input"
    assert str(caught.value.message) == ("model 'resnet50' has 5 outputs, '0', '1', '2', '3', 'pool'; 'outputs' "
                                         "asks for 'logits'")


@pytest.mark.slow
def test_serve_answers_each_map_asked_for_and_refuses_others(fpn_stand_in):
    """The local server on the stand-in (about 15 s: the Triton core starts and stops)."""
    import socket

    import numpy as np
    import onnxruntime as ort

    pytest.importorskip("pytriton.triton", reason="the [serve] extra (nvidia-pytriton) is not installed")
    httpclient = pytest.importorskip("tritonclient.http", reason="the [serve] extra is not installed")
    from tritonclient.utils import InferenceServerException

    from rsz_export.triton.server import LocalServer
    from rsz_export.triton.spec import ServeSpec

    def free_port() -> int:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            return probe.getsockname()[1]

    spec = ServeSpec(fpn_stand_in, http_port=free_port(), grpc_port=free_port(), threads=1)
    images = np.random.default_rng(1).standard_normal((2, 3, 65, 127)).astype(np.float32)
    want = ort.InferenceSession(str(fpn_stand_in.parent / "fpn.onnx"),
                                providers=["CPUExecutionProvider"]).run(None, {"images": images})
    with LocalServer(spec, log=lambda line: None):
        client = httpclient.InferenceServerClient(f"127.0.0.1:{spec.http_port}")
        try:
            tensor = httpclient.InferInput("images", list(images.shape), "FP32")
            tensor.set_data_from_numpy(images)
            asked = [httpclient.InferRequestedOutput(name) for name in ("pool", "1")]
            result = client.infer("resnet50", [tensor], outputs=asked)
            np.testing.assert_allclose(result.as_numpy("pool"), want[4], rtol=1e-5, atol=1e-5)
            np.testing.assert_allclose(result.as_numpy("1"), want[1], rtol=1e-5, atol=1e-5)
            with pytest.raises(InferenceServerException, match="has 5 outputs, '0', '1', '2', '3', 'pool'"):
                client.infer("resnet50", [tensor], outputs=[httpclient.InferRequestedOutput("logits")])
        finally:
            client.close()


def test_bench_times_a_feature_build_with_the_backbones_flop(fpn_stand_in):
    """bench on a build with several outputs: every point timed, its GFLOP the FPN backbone's at that size."""
    from rsz_export.bench.flops import resnet50_flop
    from rsz_export.bench.run import BenchSpec, run_bench
    from rsz_export.bench.stats import MeasurePolicy
    from rsz_export.shapes import Resolution

    spec = BenchSpec(str(fpn_stand_in), sizes=(Resolution(97, 131),), backends=("onnxruntime",),
                     policy=MeasurePolicy(warmup=0, iters=2), peak_matrix=256)
    header, rows = run_bench(spec, lambda line: None)
    assert header["outputs"] == "fpn" and rows
    assert {row.record()["gflop"] for row in rows} == {resnet50_flop(1, 97, 131, outputs="fpn") / 1e9}
