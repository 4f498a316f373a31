"""``rsz-export triton``: Triton model repositories from TensorRT builds (made with the TensorRT test double) and
from real ONNX Runtime builds. Configs are read back with Triton's own ``model_config_pb2``; files, hashes,
routing and kserve.yaml are checked against the build; failures leave nothing half-written."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as pb

from rsz_export.artifacts.manifest import load_manifest
from rsz_export.backends.base import BuildOptions
from rsz_export.cli import main
from rsz_export.errors import OutputError, UsageError
from rsz_export.pipeline.run import BuildSpec, build
from rsz_export.plan.profiles import route
from rsz_export.shapes import BatchRange
from rsz_export.triton import repository as triton_repo
from rsz_export.triton.config import TritonOptions, batching
from rsz_export.triton.repository import write_repository
from tests.backends.trt_double import V10, V11, build_folder, use_double
from tests.helpers import RANDOM_METADATA, make_plan, tiny_onnx

BATCHED = make_plan(64, 160, profiles=3, batch=BatchRange(1, 4, 8))
FIXED = make_plan(64, 160, profiles=2)


def read_config(path) -> pb.ModelConfig:
    return text_format.Parse(path.read_text(), pb.ModelConfig())


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def simple_yaml(text: str) -> dict:
    """The nested mappings of a block-style YAML file without lists (what kserve.yaml is made of)."""
    root: dict = {}
    stack = [(-1, root)]
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        indent = len(line) - len(line.lstrip())
        key, _, value = line.strip().partition(":")
        assert _ and indent % 2 == 0, line
        while stack[-1][0] >= indent:
            stack.pop()
        parent = stack[-1][1]
        assert key not in parent, line
        value = value.strip()
        if value:
            parent[key] = value[1:-1] if value[0] == '"' == value[-1] else value
        else:
            parent[key] = {}
            stack.append((indent, parent[key]))
    return root


@pytest.fixture(scope="module")
def trt_builds(classifier_onnx, tmp_path_factory):
    """TensorRT builds made with the test double: one engine over 3 profiles (batch 1..8), one engine per profile
    (10.x), and a fixed batch of 1."""
    mp = pytest.MonkeyPatch()
    folders = {}
    try:
        for key, version, plan, per_profile in (("batched", V11, BATCHED, False), ("per_profile", V10, BATCHED, True),
                                                ("fixed", V11, FIXED, False)):
            use_double(mp, version)
            folders[key] = tmp_path_factory.mktemp(key)
            build_folder(folders[key], plan, classifier_onnx, engine_per_profile=per_profile)
    finally:
        mp.undo()
    return folders


@pytest.fixture(scope="module")
def ort_build(tmp_path_factory):
    """A real ONNX Runtime build of a 10-class stand-in, batch 1..4, 3 threads."""
    out = tmp_path_factory.mktemp("ort-10")
    model = tiny_onnx(out.parent / "ten.onnx", output_shape=("batch", 10), metadata=RANDOM_METADATA,
                      weights=np.eye(3, 10, dtype=np.float32))
    plan = make_plan(224, 320, profiles=2, batch=BatchRange(1, 2, 4))
    build(BuildSpec(plan, out, backend="onnxruntime", onnx=model, options=BuildOptions(threads=3), command="pytest"))
    return out


def test_a_tensorrt_engine_lists_every_profile_and_batches_up_to_the_plans_max(trt_builds, tmp_path):
    repo = write_repository(trt_builds["batched"], tmp_path / "repo", TritonOptions(instances=2)).path
    manifest = load_manifest(trt_builds["batched"])
    config = read_config(repo / "resnet50" / "config.pbtxt")
    assert (config.name, config.backend, config.platform) == ("resnet50", "tensorrt", "tensorrt_plan")
    assert config.max_batch_size == 8
    assert [(i.name, i.data_type, list(i.dims)) for i in config.input] == [("images", pb.TYPE_FP32, [3, -1, -1])]
    assert [(o.name, o.data_type, list(o.dims)) for o in config.output] == [("logits", pb.TYPE_FP32, [1000])]
    [group] = config.instance_group
    assert (group.kind, group.count, list(group.profile)) == (pb.ModelInstanceGroup.KIND_GPU, 2, ["0", "1", "2"])
    assert list(config.dynamic_batching.preferred_batch_size) == [2, 4, 8]
    assert 0 < config.dynamic_batching.max_queue_delay_microseconds <= 1000
    engine = trt_builds["batched"] / manifest.engines[0].file.file
    assert (repo / "resnet50" / "1" / "model.plan").read_bytes() == engine.read_bytes()
    marker = json.loads((repo / "rsz-export.json").read_text())
    assert marker["source"]["manifest_sha256"] == sha256(trt_builds["batched"] / "manifest.json")
    assert marker["source"]["tensorrt_version"] == manifest.engines[0].settings["tensorrt_version"]
    assert marker["source"]["engines"][0]["file"]["sha256"] == manifest.engines[0].file.sha256
    for name, record in marker["files"].items():
        assert sha256(repo / name) == record["sha256"], name
    assert set(marker["files"]) == {"resnet50/config.pbtxt", "resnet50/1/model.plan", "routing.json", "kserve.yaml"}


def test_engine_per_profile_gives_one_model_per_engine_and_a_routing_file(trt_builds, tmp_path):
    repo = write_repository(trt_builds["per_profile"], tmp_path / "repo").path
    manifest = load_manifest(trt_builds["per_profile"])
    models = sorted(p.name for p in repo.iterdir() if p.is_dir())
    assert models == ["resnet50_p0", "resnet50_p1", "resnet50_p2"]
    for k, engine in enumerate(manifest.engines):
        config = read_config(repo / f"resnet50_p{k}" / "config.pbtxt")
        assert config.name == f"resnet50_p{k}" and list(config.instance_group[0].profile) == ["0"]
        assert engine.profiles == (k,) and config.max_batch_size == 8
        assert (repo / f"resnet50_p{k}" / "1" / "model.plan").read_bytes() == (
            trt_builds["per_profile"] / engine.file.file).read_bytes()
    table = json.loads((repo / "routing.json").read_text())
    assert not table["single_model"] and table["input"] == "images"
    for batch, h, w in ((1, 64, 64), (8, 100, 131), (3, 160, 64), (1, 130, 130)):
        covering = [e for e in table["profiles"] if e["min"]["batch"] <= batch <= e["max"]["batch"]
                    and e["min"]["h"] <= h <= e["max"]["h"] and e["min"]["w"] <= w <= e["max"]["w"]]
        chosen = min(covering, key=lambda e: (e["max_area"], e["plan_profile"]))
        assert chosen["model"] == f"resnet50_p{route(manifest.plan.profiles, batch, h, w)}"


def test_a_fixed_batch_is_part_of_each_request(trt_builds, tmp_path):
    repo = write_repository(trt_builds["fixed"], tmp_path / "repo").path
    config = read_config(repo / "resnet50" / "config.pbtxt")
    assert config.max_batch_size == 0 and not config.HasField("dynamic_batching")
    assert list(config.input[0].dims) == [1, 3, -1, -1] and list(config.output[0].dims) == [1, 1000]
    assert list(config.instance_group[0].profile) == ["0", "1"]
    with pytest.raises(UsageError, match="above the engines' largest batch 1"):
        write_repository(trt_builds["fixed"], tmp_path / "other", TritonOptions(max_batch=4))
    assert not (tmp_path / "other").exists()


@pytest.mark.parametrize("batch, requested, bound, expected", [
    (BatchRange(1, 1, 1), None, True, (0, 1)),
    (BatchRange(1, 1, 1), None, False, (0, 1)),
    (BatchRange(2, 2, 2), None, True, (0, 2)),
    (BatchRange(2, 4, 8), None, True, (0, -1)),
    (BatchRange(1, 8, 16), None, True, (16, None)),
    (BatchRange(1, 8, 16), 4, True, (4, None)),
    (BatchRange(1, 1, 1), 32, False, (32, None)),
    (BatchRange(2, 4, 8), 16, False, (16, None)),
])
def test_batching_rule(batch, requested, bound, expected):
    assert batching(batch, requested, engine_bound=bound) == expected


def test_triton_cannot_batch_for_tensorrt_engines_whose_batch_starts_above_one():
    with pytest.raises(UsageError, match="batches of 2..8 only"):
        batching(BatchRange(2, 4, 8), 4, engine_bound=True)
    with pytest.raises(UsageError, match="above the engines' largest batch 8"):
        batching(BatchRange(1, 4, 8), 9, engine_bound=True)


def test_an_onnx_runtime_build_serves_its_export_with_its_threads_and_classes(ort_build, tmp_path):
    repo = write_repository(ort_build, tmp_path / "repo", TritonOptions(name="classifier")).path
    manifest = load_manifest(ort_build)
    config = read_config(repo / "classifier" / "config.pbtxt")
    assert (config.backend, config.platform, config.max_batch_size) == ("onnxruntime", "onnxruntime_onnx", 4)
    assert list(config.input[0].dims) == [3, -1, -1] and list(config.output[0].dims) == [10]
    [group] = config.instance_group
    assert group.kind == pb.ModelInstanceGroup.KIND_CPU and not group.profile
    parameters = {k: v.string_value for k, v in config.parameters.items()}
    assert parameters == {"intra_op_thread_count": "3", "inter_op_thread_count": "1", "execution_mode": "0"}
    assert sha256(repo / "classifier" / "1" / "model.onnx") == manifest.onnx.sha256
    service = simple_yaml((repo / "kserve.yaml").read_text())
    assert service["spec"]["predictor"]["model"]["resources"]["limits"] == {"cpu": "3", "memory": "4Gi"}


def test_the_served_onnx_gives_the_logits_of_the_builds_runner(ort_build, tmp_path):
    import onnxruntime as ort

    from rsz_export.backends.ort import open_runner

    repo = write_repository(ort_build, tmp_path / "repo").path
    session = ort.InferenceSession(str(repo / "resnet50" / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    images = np.random.default_rng(0).standard_normal((2, 3, 240, 300)).astype(np.float32)
    manifest = load_manifest(ort_build)
    with open_runner(manifest, manifest.engines[0], ort_build) as runner:
        expected = runner.infer(images)
    got = session.run(["logits"], {"images": images})[0]
    assert got.shape == (2, 10)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_kserve_yaml_for_tensorrt(trt_builds, tmp_path):
    uri = "s3://models/resnet50-repo"
    write_repository(trt_builds["batched"], tmp_path / "repo", TritonOptions(name="My_Model.v2"), storage_uri=uri)
    text = (tmp_path / "repo" / "kserve.yaml").read_text()
    service = simple_yaml(text)
    assert (service["apiVersion"], service["kind"]) == ("serving.kserve.io/v1beta1", "InferenceService")
    assert service["metadata"]["name"] == "my-model-v2"
    model = service["spec"]["predictor"]["model"]
    assert model["modelFormat"] == {"name": "triton"} and model["protocolVersion"] == "v2"
    assert model["storageUri"] == uri and "placeholder" not in text
    assert model["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert load_manifest(trt_builds["batched"]).engines[0].settings["tensorrt_version"] in text


def test_a_storage_uri_that_could_break_the_yaml_is_refused(trt_builds, tmp_path):
    result = CliRunner().invoke(main, ["triton", str(trt_builds["batched"]), "--repo", str(tmp_path / "r"),
                                       "--kserve-storage-uri", 's3://x"\nkind: Pod'])
    assert result.exit_code == 2 and "not a storage URI" in result.output
    assert not list(tmp_path.iterdir())


def test_the_command_line_writes_the_repository_and_says_how_to_serve_it(trt_builds, tmp_path):
    result = CliRunner().invoke(main, ["triton", str(trt_builds["per_profile"]), "--repo", str(tmp_path / "repo")])
    assert result.exit_code == 0, result.output
    assert "resnet50_p2" in result.output and "tritonserver --model-repository" in result.output
    assert "placeholder storageUri" in result.output and "routing.json" in result.output


def test_a_tampered_engine_is_refused_and_nothing_is_written(trt_builds, tmp_path):
    import shutil

    build_dir = shutil.copytree(trt_builds["per_profile"], tmp_path / "build")
    engine = build_dir / load_manifest(build_dir).engines[2].file.file
    engine.write_bytes(engine.read_bytes()[:-1] + b"\x00")
    result = CliRunner().invoke(main, ["triton", str(build_dir), "--repo", str(tmp_path / "repo")])
    assert result.exit_code == 4 and "does not match the manifest" in result.output, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["build"]


def test_without_tritonclient_the_command_says_what_to_install(trt_builds, tmp_path, monkeypatch):
    for name in ("tritonclient", "tritonclient.grpc", "tritonclient.grpc.model_config_pb2"):
        monkeypatch.setitem(sys.modules, name, None)
    result = CliRunner().invoke(main, ["triton", str(trt_builds["batched"]), "--repo", str(tmp_path / "repo")])
    assert result.exit_code == 3 and 'pip install -e ".[serve]"' in result.output, result.output
    assert not list(tmp_path.iterdir())


def test_a_full_disk_mid_write_leaves_no_repository_and_no_temp_folder(trt_builds, tmp_path, monkeypatch):
    real_write, calls = triton_repo.atomic_write_bytes, []

    def write(path, data):
        calls.append(path)
        if len(calls) == 4:  # the second model's engine: half of it lands, then the disk is full
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data[: len(data) // 2])
            raise OutputError(f"no space left on the device while writing {path}")
        real_write(path, data)

    monkeypatch.setattr(triton_repo, "atomic_write_bytes", write)
    result = CliRunner().invoke(main, ["triton", str(trt_builds["per_profile"]), "--repo", str(tmp_path / "repo")])
    assert result.exit_code == 5 and "no space left" in result.output, result.output
    assert len(calls) == 4 and not list(tmp_path.iterdir())


def test_an_interrupt_mid_copy_leaves_no_repository_and_no_temp_folder(trt_builds, tmp_path, monkeypatch):
    calls = []

    def interrupted_on_second(folder, record):
        calls.append(record)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return (folder / record.file).read_bytes()

    monkeypatch.setattr(triton_repo, "verified_bytes", interrupted_on_second)
    with pytest.raises(KeyboardInterrupt):
        write_repository(trt_builds["per_profile"], tmp_path / "repo")
    assert len(calls) == 2 and not list(tmp_path.iterdir())


def test_an_existing_repository_is_refused_without_force_and_replaced_with_it(trt_builds, ort_build, tmp_path):
    repo = tmp_path / "repo"
    write_repository(trt_builds["per_profile"], repo)
    result = CliRunner().invoke(main, ["triton", str(ort_build), "--repo", str(repo)])
    assert result.exit_code == 5 and "already exists" in result.output and "--force" in result.output
    assert (repo / "resnet50_p0").is_dir()
    written = write_repository(ort_build, repo, force=True)
    assert written.replaced and sorted(p.name for p in repo.iterdir() if p.is_dir()) == ["resnet50"]
    assert (repo / "resnet50" / "1" / "model.onnx").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["repo"]


def test_force_never_replaces_a_folder_it_did_not_write(ort_build, tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(OutputError, match="not a repository written by rsz-export triton"):
        write_repository(ort_build, tmp_path / "mine", force=True)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_a_failed_swap_puts_the_old_repository_back(trt_builds, ort_build, tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    write_repository(trt_builds["fixed"], repo)
    before = (repo / "rsz-export.json").read_text()
    real_rename, renames = os.rename, []

    def rename(src, dst):
        renames.append(src)
        if len(renames) == 2:  # the new repository onto PATH, after the old one was moved aside
            raise OSError(errno.EIO, "I/O error")
        real_rename(src, dst)

    monkeypatch.setattr(triton_repo.os, "rename", rename)
    with pytest.raises(OutputError, match="cannot write"):
        write_repository(ort_build, repo, force=True)
    monkeypatch.undo()
    assert (repo / "rsz-export.json").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["repo"]


def test_folders_left_by_a_killed_run_are_removed(ort_build, tmp_path):
    dead = tmp_path / ".repo.rsz-export-999999999.tmp"
    (dead / "resnet50").mkdir(parents=True)
    write_repository(ort_build, tmp_path / "repo")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["repo"]


def test_a_repository_moved_aside_by_a_killed_run_is_put_back(trt_builds, ort_build, tmp_path):
    write_repository(trt_builds["fixed"], tmp_path / "repo")
    before = (tmp_path / "repo" / "rsz-export.json").read_text()
    (tmp_path / "repo").rename(tmp_path / ".repo.rsz-export-999999999.old")  # killed between the two renames
    with pytest.raises(OutputError, match="already exists"):
        write_repository(ort_build, tmp_path / "repo")
    assert (tmp_path / "repo" / "rsz-export.json").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["repo"]


def test_bad_options_are_usage_errors(ort_build, tmp_path):
    for args, phrase in ((["--name", "../x"], "cannot name a Triton model"), (["--instances", "0"], "--instances"),
                         (["--max-batch", "0"], "--max-batch")):
        result = CliRunner().invoke(main, ["triton", str(ort_build), "--repo", str(tmp_path / "r"), *args])
        assert result.exit_code == 2 and phrase in result.output, result.output
    result = CliRunner().invoke(main, ["triton", str(tmp_path / "nothing"), "--repo", str(tmp_path / "r")])
    assert result.exit_code == 4 and "no manifest" in result.output
    assert not (tmp_path / "r").exists()


def test_the_documented_client_routing_matches_the_plans_rule(trt_builds, tmp_path):
    import re

    from tests.helpers import REPO

    docs = (REPO / "docs" / "serving.md").read_text()
    [code] = [block for block in re.findall(r"```python\n(.*?)```", docs, re.S) if "def model_for" in block]
    repo = write_repository(trt_builds["per_profile"], tmp_path / "repo").path
    namespace: dict = {}
    exec(code.replace("PATH/routing.json", str(repo / "routing.json")), namespace)  # noqa: S102 - our own docs
    plan = load_manifest(trt_builds["per_profile"]).plan
    for batch, h, w in ((1, 64, 64), (8, 100, 131), (3, 160, 64), (1, 130, 130), (2, 97, 160)):
        assert namespace["model_for"](batch, h, w) == f"resnet50_p{route(plan.profiles, batch, h, w)}"
    with pytest.raises(ValueError, match="outside every profile"):
        namespace["model_for"](1, 200, 64)


@pytest.mark.slow
def test_an_int8_build_serves_its_q_dq_model_with_the_engines_logits(int8_engines, tmp_path):
    """Triton gets the int8 engine's Q/DQ ONNX (not the fp32 export), and it computes what the engine does."""
    import onnxruntime as ort

    from rsz_export.backends.ort import QDQ_FILE, open_runner

    manifest = load_manifest(int8_engines)
    [engine] = manifest.engines
    repo = write_repository(int8_engines, tmp_path / "repo").path
    served = repo / "resnet50" / "1" / "model.onnx"
    [qdq] = [r for r in engine.extra_files if r.file.endswith(QDQ_FILE)]
    assert sha256(served) == qdq.sha256 != manifest.onnx.sha256
    images = np.random.default_rng(0).standard_normal((1, 3, 224, 256)).astype(np.float32)
    with open_runner(manifest, engine, int8_engines) as runner:
        expected = runner.infer(images)
    got = ort.InferenceSession(str(served), providers=["CPUExecutionProvider"]).run(["logits"], {"images": images})[0]
    cosine = float(np.sum(got * expected) / (np.linalg.norm(got) * np.linalg.norm(expected)))
    assert cosine > 0.9999, cosine
