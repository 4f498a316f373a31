"""Integrity: a damaged or foreign engine, manifest or weights file is refused with its reason before anything
is deserialised, and every call that deserialises a file is a reviewed call site."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.helpers import REPO, SAMPLE_IMAGE, assert_clean_failure, engine_file, run_cli


def test_engine_missing_truncated_tampered(damaged, tmp_path):
    engine = engine_file(damaged)
    image = str(SAMPLE_IMAGE)
    data = engine.read_bytes()
    engine.write_bytes(data[: len(data) // 2])  # truncated
    assert_clean_failure(
        run_cli("predict", str(damaged), image, "--preprocess", "fit"), 4, "does not match the manifest"
    )
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0xFF  # tampered: same size, one byte changed
    engine.write_bytes(bytes(flipped))
    assert_clean_failure(
        run_cli(
            "bench",
            str(damaged),
            "--sizes",
            "224",
            "--iters",
            "1",
            "--warmup",
            "0",
            "--no-static",
            "--backends",
            "onnxruntime",
        ),
        4,
        "does not match the manifest",
    )
    engine.unlink()  # missing
    assert_clean_failure(
        run_cli("predict", str(damaged), image), 4, "engine file(s) listed in the manifest are missing"
    )
    result = run_cli("validate", str(damaged), "--replace-sizes", "--sizes", "224", "--random-inputs", "0")
    assert_clean_failure(result, 1)
    assert "NOT-RUN" in result.stdout and "is missing" in result.stdout, result.stdout

def _edit_manifest(folder: Path, change) -> None:
    path = folder / "manifest.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))

def test_manifest_other_schema_and_corrupt(damaged):
    _edit_manifest(damaged, lambda m: m.update(schema_version=99))
    for args in (["validate", str(damaged)], ["bench", str(damaged)], ["predict", str(damaged), "x.jpg"]):
        assert_clean_failure(run_cli(*args), 4, "manifest schema version 99")
    (damaged / "manifest.json").write_text('{"schema_version": 1, "tool_ver')
    assert_clean_failure(run_cli("validate", str(damaged)), 4, "unreadable or corrupt")

FOREIGN_TRT = {
    "tensorrt_version": "10.0.1",
    "gpu_name": "NVIDIA A100-SXM4-80GB",
    "compute_capability": "8.0",
    "hardware_compat": None,
    "version_compat": False,
}

def _add_trt_engine(data: dict) -> None:
    ort = data["engines"][0]
    data["engines"].append(
        {**ort, "name": "tensorrt-fp16", "backend": "tensorrt", "precision": "fp16", "settings": FOREIGN_TRT}
    )

def test_manifest_with_foreign_tensorrt_engine(damaged):
    """A manifest naming a TensorRT engine from another TensorRT/GPU: validate stops (exit 3) before any work
    where TensorRT is absent; predict serves from the engines that can run here; asking for TensorRT is exit 3."""
    _edit_manifest(damaged, _add_trt_engine)
    image = str(SAMPLE_IMAGE)
    from rsz_export.backends.trt import unavailable_reason

    if unavailable_reason() is not None:
        assert_clean_failure(run_cli("validate", str(damaged)), 3, "backend tensorrt is not usable")
        assert_clean_failure(run_cli("predict", str(damaged), image, "--backend", "tensorrt"), 3, "tensorrt")
    served = run_cli("predict", str(damaged), image, "--preprocess", "fit", "--backend", "onnxruntime")
    assert served.returncode == 0, served.stderr

def test_foreign_tensorrt_engine_is_never_deserialised(tiny_engines, tmp_path, monkeypatch):
    """What a machine with TensorRT decides for that record: check_compatible names the difference, and
    validate turns the engine into not-run cases without opening a runner on it (nothing is deserialised)."""
    import shutil
    from types import SimpleNamespace

    from rsz_export.artifacts.manifest import load_manifest
    from rsz_export.backends import trt, trt_env
    from rsz_export.shapes import Resolution
    from rsz_export.validate.run import _engine_results

    folder = Path(shutil.copytree(tiny_engines, tmp_path / "engines"))
    _edit_manifest(folder, _add_trt_engine)
    here = {"tensorrt_version": "10.3.0", "gpu_name": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0"}
    for module in (trt, trt_env):
        monkeypatch.setattr(module, "unavailable_reason", lambda: None)
    monkeypatch.setattr(trt_env, "installed", lambda: here)
    opened = []
    monkeypatch.setattr(trt, "open_runner", lambda *args, **kwargs: opened.append(args) or pytest.fail("opened"))
    manifest = load_manifest(folder)
    engine = manifest.engines[1]  # its file is the ORT engine's, so the hash matches: only compatibility decides
    points = [(0, Resolution(224, 224), 1), (1, Resolution(320, 320), 1)]
    spec = SimpleNamespace(directory=folder)
    results = _engine_results(manifest, engine, spec, points, inputs=None, log=lambda message: None)
    assert not opened and [r.status for r in results] == ["not-run", "not-run"]
    reason = results[0].failures[0]
    assert "built by TensorRT 10.0.1 and this machine has 10.3.0" in reason
    assert "compute capability 8.0 and this GPU has 9.0" in reason


def test_reference_weights_with_pickle_payload_are_not_unpickled(damaged, tmp_path):
    """A manifest whose weights file was swapped for one carrying code (hash updated too): validate refuses it."""
    import pickle

    from rsz_export.artifacts.files import sha256_file

    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (exec, (f"open({str(marker)!r}, 'w').write('x')",))

    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps({"conv1.weight": Payload()}))
    _edit_manifest(damaged, lambda m: m["weights"].update(source=str(evil), sha256=sha256_file(evil)))
    assert_clean_failure(run_cli("validate", str(damaged)), 4, "refused to load", "never unpickles code")
    assert not marker.exists()

# ---- every deserialisation is a reviewed call site ----------------------------------------------------

DESERIALISERS = re.compile(
    r"InferenceSession\(|deserialize_cuda_engine\(|torch\.load\(|pickle\.loads?\(|"
    r"Image\.open\(|onnx\.load\(|np\.load\(|create_timing_cache\(|safetensors_load\(|read_model\("
)

REVIEWED = {
    # (file, the call's line with spaces collapsed): why it is safe
    (
        "backends/ort.py",
        "return ort.InferenceSession(model, so, providers=providers)",
    ): "engines: bytes already checked against the manifest (verified_bytes); at build, the ONNX just checked",
    (
        "model/export.py",
        'session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])',
    ): "verifies the temp file this process just exported",
    ("model/export.py", "proto = onnx.load(str(tmp))"): "the temp file this process just exported",
    (
        "model/export.py",
        "return onnx.load(str(path), load_external_data=False)",
    ): "an ONNX's graph and metadata (protobuf parse, no code); external data never followed",
    (
        "model/reduced_precision.py",
        'return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])',
    ): "reduced-precision checks of ONNX files this build wrote",
    (
        "backends/ort.py",
        'session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])',
    ): "a MatMul graph built in memory",
    ("model/reduced_precision.py", "model = onnx.load(str(src))"): "the build's checked ONNX, converted to fp16/bf16",
    (
        "model/calibration.py",
        "model = onnx.shape_inference.infer_shapes(onnx.load(str(onnx_path)))",
    ): "the build's checked ONNX (its sha256 is in the manifest being written), extra outputs added for calibration",
    (
        "model/calibration.py",
        'return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])',
    ): "that same ONNX, serialised in memory by this process",
    (
        "model/quantization.py",
        'return ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])',
    ): "the Q/DQ ONNX this build just wrote and the build's checked fp32 ONNX, compared on the CPU",
    ("model/reduced_precision.py", "model = onnx.load(str(onnx_path))"): "an ONNX this build wrote",
    ("model/sensitivity.py", "model = onnx.load(str(onnx_path))"): "the build's checked fp32 ONNX (its sha256 is in "
    "the manifest being written), fake quantization added in memory for the sensitivity measurement",
    (
        "model/sensitivity.py",
        'self.session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])',
    ): "that same ONNX, serialised in memory by this process",
    (
        "pipeline/int8_placement.py",
        "layers = layers_of(onnx.load(str(onnx_path)), (1, 3, smallest.h, smallest.w))",
    ): "the build's checked fp32 ONNX, read for its layer names and shapes",
    (
        "model/reduced_precision.py",
        "model = onnx.load(str(onnx_path), load_external_data=False)",
    ): "reads dtypes only",
    (
        "backends/trt_env.py",
        "cuda_engine = trt_runtime.deserialize_cuda_engine(blob)",
    ): "bytes from manifest.verified_bytes (runner), or the engine this build just serialised",
    (
        "backends/trt_timing.py",
        "timing_cache = builder_config.create_timing_cache(before)",
    ): "the folder's cache only if its manifest recorded its sha256 and this TensorRT and GPU made it "
    "(pipeline.cleanup.drop_untrusted_timing_cache), or the user's own --timing-cache; unreadable bytes are refused",
    (
        "backends/trt_timing.py",
        "previous = builder.create_builder_config().create_timing_cache(on_disk)",
    ): "the same cache file re-read under its lock to merge what a concurrent build added",
    (
        "model/checkpoint.py",
        'return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)',
    ): "weights_only=True: tensors only, pickled code refused; when a manifest names the file, these very bytes "
    "were checked against its sha256 first",
    (
        "model/checkpoint.py",
        "return safetensors_load(data)",
    ): "safetensors: a JSON header and raw tensor bytes, no code by design; same bytes-checked-first rule",
    (
        "images/loading.py",
        "image = Image.open(path, formats=ALLOWED_FORMATS)",
    ): "raster formats decoded in-process, size capped",
    ("images/sizes.py", "with Image.open(path, formats=ALLOWED_FORMATS) as image:"): "header only, same formats",
    (
        "backends/cpu_choice.py",
        'session = ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"])',
    ): "auto's timing: the build's checked export, or the Q/DQ model this build just wrote from it",
    ("backends/ov_build.py", "model = ov.Core().read_model(str(onnx_path))"): "the build's checked export, or the "
    "Q/DQ model this build just wrote and checked (also auto's timing)",
    ("backends/ov_build.py", "model = core.read_model(str(xml), str(bin_path))"): "the IR this build just wrote",
    (
        "backends/ov_runner.py",
        'return core.read_model(xml.decode("utf-8"), ov.Tensor(np.frombuffer(weights, dtype=np.uint8)))',
    ): "both IR files' bytes from manifest.verified_bytes: what was hash-checked is what is read; the compiled "
    "model cache beside them is OpenVINO's, keyed on the model, settings and version (docs/robustness.md 14)",
}

def _call_sites() -> set[tuple[str, str]]:
    sites = set()
    for path in sorted((REPO / "rsz_export").rglob("*.py")):
        for line in path.read_text().splitlines():
            code = line.strip()
            if DESERIALISERS.search(code) and not code.startswith(("#", '"', "'")) and "``" not in code:
                sites.add((str(path.relative_to(REPO / "rsz_export")), " ".join(code.split())))
    return sites

def test_every_deserialisation_is_a_reviewed_call_site():
    sites = _call_sites()
    unreviewed = sorted(sites - set(REVIEWED))
    assert not unreviewed, f"new deserialisation call(s): review them and add them to REVIEWED: {unreviewed}"
    assert {("backends/ort.py", "return ort.InferenceSession(model, so, providers=providers)")} <= sites
    assert not any("pickle.load" in code for _, code in sites)
