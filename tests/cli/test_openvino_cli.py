"""OpenVINO builds through the CLI, as a user runs them (subprocess): build, predict, sweep, bench and triton on
the colour stand-in (``openvino_engines``: red -> class 0 tench, green 1 goldfish, blue 2 great white shark), and
the bad inputs: OpenVINO missing, a precision this CPU does not execute, a changed ``.bin``, an IR this OpenVINO
cannot read. Each refusal exits with its documented code and leaves nothing half-written."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from PIL import Image

from rsz_export.backends import ov_support as ovs
from tests.helpers import (
    RANDOM_METADATA,
    REPO,
    assert_clean_failure,
    assert_no_temp_files,
    rebuild_int8_copy,
    run_cli,
    tiny_onnx,
)

ov = pytest.importorskip("openvino", reason="the [openvino] extra is not installed")
HAS_BF16 = "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
HAS_FP16 = "FP16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


@pytest.fixture(scope="module")
def colour_onnx(tmp_path_factory):
    import numpy as np

    weights = np.zeros((3, 1000), dtype=np.float32)
    weights[[0, 1, 2], [0, 1, 2]] = 1.0
    return tiny_onnx(tmp_path_factory.mktemp("ov-cli") / "colour.onnx", metadata=RANDOM_METADATA, weights=weights)


def build_args(onnx, out, *extra):
    return ("build", str(out), "--onnx", str(onnx), "--min", "224", "--max", "320", "--backend", "openvino", *extra)


def engine_paths(folder):
    engine = json.loads((folder / "manifest.json").read_text())["engines"][0]
    return folder / engine["file"]["file"], folder / engine["extra_files"][0]["file"]


def test_predict_runs_the_openvino_engine_and_names_it(openvino_engines, tmp_path):
    Image.new("RGB", (300, 260), (230, 20, 20)).save(tmp_path / "red.png")
    result = run_cli("predict", str(openvino_engines), str(tmp_path / "red.png"), "--top-k", "1")
    assert result.returncode == 0, result.stderr
    assert "engine openvino (openvino) profile 0" in result.stdout and "tench (0)" in result.stdout


@pytest.mark.slow  # predict covers the same session path in the fast tier
def test_sweep_scores_blue_images_as_the_shark(openvino_engines, tmp_path):
    (tmp_path / "great white shark").mkdir()
    for i, (w, h) in enumerate([(300, 250), (500, 400), (260, 260)]):
        Image.new("RGB", (w, h), (20, 20, 230)).save(tmp_path / "great white shark" / f"{i}.png")
    result = run_cli("sweep", str(openvino_engines), "--images", str(tmp_path), "--sizes", "224,480", "--json", "-")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)["rows"]
    assert [(r["size"], r["top1"], r["images"]) for r in rows] == [("224x224", 1.0, 3), ("480x480", 1.0, 3)]


@pytest.mark.slow  # the matmul peak at 2048 and the twins: about 15 s on 2 cores (tests/bench covers it fast)
def test_bench_times_the_engine_against_its_reshaped_static_twin(openvino_engines, tmp_path):
    out = tmp_path / "bench.json"
    result = run_cli("bench", str(openvino_engines), "--backends", "openvino", "--sizes", "224,600x400",
                     "--iters", "3", "--warmup", "1", "--json", str(out))
    assert result.returncode == 0, result.stderr
    document = json.loads(out.read_text())
    rows = document["rows"]
    assert [(r["size"], r["variant"]) for r in rows] == [("224x224", "dynamic"), ("224x224", "static"),
                                                         ("600x400", "dynamic"), ("600x400", "static")]
    dynamic = [r for r in rows if r["variant"] == "dynamic"]
    assert all(r["dynamic_over_static"] > 0 and r["gflops_per_s"] > 0 for r in dynamic)
    assert all(r["first_call_after_shape_change_ms"] > 0 for r in dynamic)
    assert [r["profile"] for r in dynamic] == [0, 3]
    assert document["peak_gflops"]["openvino"] > 0 and document["versions"]["openvino"]


def test_triton_writes_an_openvino_model_triton_can_read(openvino_engines, tmp_path):
    pytest.importorskip("tritonclient.grpc", reason="the [serve] extra is not installed")
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as pb

    from rsz_export.artifacts.manifest import load_manifest

    built_threads = load_manifest(openvino_engines).engines[0].settings["INFERENCE_NUM_THREADS"]
    assert built_threads >= 1  # the build's own thread count (the cores it could use), passed on to Triton
    result = run_cli("triton", str(openvino_engines), "--repo", str(tmp_path / "repo"))
    assert result.returncode == 0, result.stderr
    config = text_format.Parse((tmp_path / "repo/resnet50/config.pbtxt").read_text(), pb.ModelConfig())
    assert (config.backend, config.platform, config.max_batch_size) == ("openvino", "", 4)
    assert config.instance_group[0].kind == pb.ModelInstanceGroup.KIND_CPU and not config.instance_group[0].profile
    assert {k: v.string_value for k, v in config.parameters.items()} == {
        "INFERENCE_NUM_THREADS": str(built_threads), "NUM_STREAMS": "1",
        "PERFORMANCE_HINT": "LATENCY"}
    assert list(config.input[0].dims) == [3, -1, -1]
    xml, weights = engine_paths(openvino_engines)
    assert (tmp_path / "repo/resnet50/1/model.xml").read_bytes() == xml.read_bytes()
    assert (tmp_path / "repo/resnet50/1/model.bin").read_bytes() == weights.read_bytes()


def test_without_openvino_the_build_says_what_to_install(colour_onnx, tmp_path):
    code = ("import sys; sys.modules['openvino'] = None\nfrom rsz_export.cli import main\n"
            f"main({list(build_args(colour_onnx, tmp_path / 'out'))!r})")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert_clean_failure(result, 3, "OpenVINO is not installed", ovs.INSTALL)
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(HAS_BF16, reason="this CPU executes bf16")
def test_bf16_on_a_cpu_without_bf16_is_refused_before_anything_is_written(colour_onnx, tmp_path):
    result = run_cli(*build_args(colour_onnx, tmp_path / "out", "--precision", "bf16"))
    assert_clean_failure(result, 3, "does not execute bf16", "no BF16", "--precision fp32")
    assert not (tmp_path / "out").exists()


@pytest.mark.slow  # the same check as bf16's (tests/backends/test_openvino.py covers both in the fast tier)
@pytest.mark.skipif(HAS_FP16, reason="this CPU executes fp16")
def test_fp16_without_amx_fp16_is_refused(colour_onnx, tmp_path):
    result = run_cli(*build_args(colour_onnx, tmp_path / "out", "--precision", "fp16"))
    assert_clean_failure(result, 3, "does not execute fp16", "AMX-FP16")
    assert not (tmp_path / "out").exists()


@pytest.mark.slow  # three subprocesses, about 7 s on 2 cores
@pytest.mark.skipif(HAS_BF16, reason="this CPU executes bf16")
def test_a_bf16_build_for_another_cpu_is_refused_where_it_would_run_in_f32(colour_onnx, tmp_path, openvino_engines):
    """Declared capabilities build it; predict refuses it here, with and without the declaration (the second time
    because OpenVINO compiled it to f32): never a 'bf16' answer computed in f32."""
    declared = {ovs.CAPABILITIES_ENV: "FP32,BF16,INT8"}
    out = tmp_path / "out"
    assert run_cli(*build_args(colour_onnx, out, "--precision", "bf16"), env=declared).returncode == 0
    Image.new("RGB", (300, 260), (20, 200, 20)).save(tmp_path / "green.png")
    plain = run_cli("predict", str(out), str(tmp_path / "green.png"))
    assert_clean_failure(plain, 3, "does not execute bf16")
    forced = run_cli("predict", str(out), str(tmp_path / "green.png"), env=declared)
    assert_clean_failure(forced, 3, "compiled it to fp32", "refusing to report fp32 results as bf16")
    assert "goldfish" not in plain.stdout + forced.stdout


def test_a_changed_bin_is_an_integrity_error(openvino_engines, tmp_path):
    folder = shutil.copytree(openvino_engines, tmp_path / "engines")
    _, weights = engine_paths(folder)
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    Image.new("RGB", (300, 260), (230, 20, 20)).save(tmp_path / "red.png")
    assert_clean_failure(run_cli("predict", str(folder), str(tmp_path / "red.png")), 4,
                         "resnet50.openvino.bin does not match the manifest")


def _written(folder):
    """The files under ``folder``, less the readers' lock (the one file a reader such as predict may create)."""
    from rsz_export.artifacts.files import READERS_LOCK

    return sorted(p.name for p in folder.rglob("*") if p.name != READERS_LOCK)


def test_an_ir_this_openvino_cannot_read_is_an_environment_error(openvino_engines, tmp_path):
    """An intact IR (its sha256 as recorded) that names an operator set this OpenVINO does not know, as an IR
    written by a newer OpenVINO may: exit 3 naming both versions, nothing written."""
    from rsz_export.artifacts.files import sha256_file

    folder = shutil.copytree(openvino_engines, tmp_path / "engines")
    xml, _ = engine_paths(folder)
    text = xml.read_text()
    xml.write_text(text.replace('version="opset1"', 'version="opset999"', 1))
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["engines"][0]["file"].update(sha256=sha256_file(xml), bytes=xml.stat().st_size)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    before = _written(folder)
    Image.new("RGB", (300, 260), (230, 20, 20)).save(tmp_path / "red.png")
    result = run_cli("predict", str(folder), str(tmp_path / "red.png"))
    assert_clean_failure(result, 3, "cannot read the IR of engine openvino", "written by OpenVINO",
                         "unsupported opset: opset999")
    assert _written(folder) == before
    assert_no_temp_files(folder)


@pytest.mark.slow  # two builds, one timing both runtimes: about 14 s on 2 cores
def test_auto_times_both_runtimes_records_them_and_keeps_the_faster(colour_onnx, tmp_path):
    from rsz_export.backends import ov_support as ovs
    from rsz_export.backends.cpu_choice import decide

    out = tmp_path / "out"
    result = run_cli("build", str(out), "--onnx", str(colour_onnx), "--min", "224", "--max", "320")
    assert result.returncode == 0, result.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    choice = manifest["engines"][0]["settings"]["auto_choice"]
    bf16 = {"openvino-bf16"} if "BF16" in ovs.cpu_facts()[0] else set()  # timed only to say what bf16 would give
    assert set(choice["rounds_ms"]) == {"onnxruntime", "openvino"} | bf16
    assert choice["shapes"] == ["1x3x256x256", "1x3x288x288"]
    assert manifest["backend"] == choice["chosen"] == decide(choice["rounds_ms"])[0]
    assert f"per round: {choice['chosen']}" in result.stderr
    again = run_cli("build", str(out), "--onnx", str(colour_onnx), "--min", "224", "--max", "320")
    assert again.returncode == 0 and "up to date" in again.stderr and "per round" not in again.stderr


@pytest.fixture(scope="module")
def openvino_resnet(fast_engines, onnx_path, reference_weights, tmp_path_factory):
    """The real ResNet-50 (224..256, the session export) rebuilt with OpenVINO: the export is reused."""
    from tests.helpers import onnx_build_args

    folder = shutil.copytree(fast_engines, tmp_path_factory.mktemp("ov-resnet") / "engines")
    args = [a if a != "onnxruntime" else "openvino" for a in onnx_build_args(onnx_path, reference_weights, folder)]
    result = run_cli(*args)
    assert result.returncode == 0 and "exporting" not in result.stderr, result.stderr
    return folder


def test_validate_passes_an_openvino_resnet50_build(openvino_resnet, tmp_path):
    out = tmp_path / "report.json"
    result = run_cli("validate", str(openvino_resnet), "--sizes", "240x256", "--replace-sizes", "--json", str(out))
    assert result.returncode == 0, result.stderr
    cases = json.loads(out.read_text())["cases"]
    engine = [c for c in cases if c["stage"] == "engine"]
    assert engine and all(c["backend"] == "openvino" and c["status"] == "passed" for c in engine)
    assert min(c["stats"]["cosine"] for c in engine) > 0.9999


def test_openvino_int8_runs_the_ort_int8_q_dq_model_as_well(int8_engines, tmp_path):
    """Same calibration, same CPU Q/DQ model: OpenVINO's int8 logits against fp32 are as close as ONNX Runtime's."""
    import numpy as np

    from rsz_export.artifacts.manifest import load_manifest
    from rsz_export.backends import load_backend
    from rsz_export.images.loading import load_rgb, sample_images
    from rsz_export.images.preprocess import crop_input
    from rsz_export.parity import compare
    from rsz_export.shapes import Resolution

    folder, manifest, result = rebuild_int8_copy(int8_engines, tmp_path, "openvino")
    assert result.returncode == 0 and "reusing the int8 calibration" in result.stderr, result.stderr
    ov_manifest = load_manifest(folder)
    feeds = [crop_input(load_rgb(p), Resolution(256, 256)) for p in sample_images()[:2]]
    ort, openvino = load_backend("onnxruntime"), load_backend("openvino")
    with ort.open_onnx_file(manifest, folder) as fp32, \
            ort.open_runner(manifest, manifest.engines[0], int8_engines) as ort8, \
            openvino.open_runner(ov_manifest, ov_manifest.engines[0], folder) as ov8:
        for feed in feeds:
            reference = fp32.infer(feed)
            ort_cos = compare(reference[0], ort8.infer(feed)[0]).cosine
            ov_cos = compare(reference[0], ov8.infer(feed)[0]).cosine
            assert ov_cos > 0.98 and ov_cos >= ort_cos - 0.005, (ov_cos, ort_cos)
    assert ov8.executed_precision == "fp32" and ov_manifest.engines[0].precision == "int8"
    assert np.isfinite(ov_cos)


@pytest.mark.slow  # a Triton server core starts and stops: about 15 s
def test_serve_answers_from_the_openvino_engine(openvino_engines, tmp_path):
    pytest.importorskip("pytriton.triton", reason="the [serve] extra is not installed")
    httpclient = pytest.importorskip("tritonclient.http", reason="the [serve] extra is not installed")
    import numpy as np

    from tests.triton.test_server import Server, infer

    server = Server(openvino_engines, tmp_path / "serve.txt")
    server.wait_serving()
    try:
        images = np.random.default_rng(3).standard_normal((2, 3, 300, 420)).astype(np.float32)
        logits = infer(server.http_client(), httpclient, images)
    finally:
        code, _ = server.interrupt()
    assert code == 0, server.log.read_text()
    np.testing.assert_allclose(logits[:, :3], images.mean(axis=(2, 3)), rtol=1e-4, atol=1e-5)
    assert "openvino" in server.log.read_text()
