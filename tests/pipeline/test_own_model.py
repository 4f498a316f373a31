"""A team's own fine-tuned ResNet-50, end to end: a 10-class checkpoint as training scripts save it, built,
validated against PyTorch and used for predictions with the team's class names, over the cifar-transfer range
and over 224..800. One export serves every wrapping of the weights (its key is their content).

Slow tier (real ResNet-50): the 10-class weights are the session's calibrated reference weights with the first
ten rows of their classifier, so activations and logits look like a trained network's.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from rsz_export.artifacts.manifest import load_manifest
from rsz_export.pipeline.run import BuildSpec, build
from rsz_export.shapes import Resolution
from rsz_export.validate.cases import ValidateSpec
from rsz_export.validate.report import render_json
from rsz_export.validate.run import validate
from tests.helpers import REPO, SAMPLE_IMAGE, make_plan, run_cli, save_wrapped, sgd_state

TEAM = ["bolt", "nut", "washer", "gear", "spring", "bearing", "shaft", "pulley", "valve", "gasket"]
PARITY = 1e-5
"""Relative L2 error allowed between engine and PyTorch logits in these tests (validate's fp32 preset allows 1e-4)."""
CIFAR_PROFILE = REPO / "profiles" / "cifar-transfer.toml"


@pytest.fixture(scope="module")
def own_weights(reference_weights, tmp_path_factory) -> tuple[dict, dict[str, Path], Path]:
    """The 10-class state_dict, its file in every wrapping, and the team's names (one per line)."""
    import torch

    from rsz_export.model.weights import build_model

    state = torch.load(reference_weights, weights_only=True)
    state = {**state, "fc.weight": state["fc.weight"][:10].clone(), "fc.bias": state["fc.bias"][:10].clone()}
    folder = tmp_path_factory.mktemp("own-weights")
    paths = save_wrapped(state, sgd_state(build_model(state)), folder)
    (folder / "team.txt").write_text("".join(f"{name}\n" for name in TEAM))
    (folder / "team.json").write_text(json.dumps(TEAM))
    return state, paths, folder / "team.txt"


@pytest.fixture(scope="module")
def cifar_build(own_weights, tmp_path_factory) -> Path:
    """``rsz-export build`` over profiles/cifar-transfer.toml from the DDP checkpoint (with its optimizer state)
    and the team's names: the module's one ResNet-50 export."""
    _, paths, team = own_weights
    out = tmp_path_factory.mktemp("own-cifar") / "engines"
    result = run_cli("build", str(out), "--profile-file", str(CIFAR_PROFILE), "--backend", "onnxruntime",
                     "--weights", str(paths["ddp-with-optimizer.pt"]), "--labels", str(team))
    assert result.returncode == 0, result.stderr
    return out


def _small_images(folder: Path) -> list[Path]:
    """The bundled photographs at CIFAR-like sizes inside 32..64."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    sizes = [(48, 48), (64, 40), (33, 61), (60, 60)]
    sources = sorted(SAMPLE_IMAGE.parent.glob("*.jpg"))
    paths = []
    for (w, h), source in zip(sizes, sources):
        paths.append(folder / f"{source.stem}-{w}x{h}.png")
        Image.open(source).convert("RGB").resize((w, h)).save(paths[-1])
    return paths


def _parity(report: dict) -> float:
    """The worst relative L2 error of a validate JSON report, after checking every case passed."""
    cases = report["cases"]
    assert cases and all(c["status"] == "passed" for c in cases), [c for c in cases if c["status"] != "passed"]
    return max(c["stats"]["rel_l2"] for c in cases)


def test_the_export_has_the_checkpoints_classes_and_names(cifar_build):
    import onnx

    manifest = load_manifest(cifar_build)
    assert (manifest.num_classes, manifest.weights.num_classes, manifest.weights.id) == (10, 10, "file")
    assert manifest.weights.source.endswith("ddp-with-optimizer.pt") and manifest.labels is not None
    proto = onnx.load(str(cifar_build / manifest.onnx.file), load_external_data=False)
    assert [d.dim_param or d.dim_value for d in proto.graph.output[0].type.tensor_type.shape.dim] == ["batch", 10]
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["rsz_export.output"] == "logits[batch,10] float32" and meta["rsz_export.num_classes"] == "10"
    assert meta["rsz_export.weights_content_sha256"] == manifest.weights.content_sha256


def test_cifar_transfer_range_validates_predicts_and_sweeps_with_the_team_names(cifar_build, tmp_path):
    checked = run_cli("validate", str(cifar_build), "--json", "-")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    report = json.loads(checked.stdout)
    sizes = {tuple(c["size"]) for c in report["cases"]}
    assert {(32, 32), (64, 64), (35, 37)} <= sizes and _parity(report) <= PARITY
    images = _small_images(tmp_path / "small")
    predicted = run_cli("predict", str(cifar_build), *map(str, images), "--top-k", "3", "--json", "-")
    assert predicted.returncode == 0, predicted.stderr
    answers = json.loads(predicted.stdout)["predictions"]
    assert len(answers) == 4 and all(len(a["top"]) == 3 and a["top"][0]["name"] in TEAM for a in answers)
    assert {a["top"][0]["name"] for a in answers} == {TEAM[a["top"][0]["index"]] for a in answers}
    labeled = tmp_path / "labeled"  # each image under the team's name for its own top-1: 100% at its size
    for image, answer in zip(images, answers):
        (labeled / answer["top"][0]["name"].upper()).mkdir(parents=True, exist_ok=True)
        shutil.copy(image, labeled / answer["top"][0]["name"].upper())
    swept = run_cli("sweep", str(cifar_build), "--images", str(labeled), "--sizes", "48,64", "--json", "-")
    assert swept.returncode == 0, swept.stderr
    assert {r["size"] for r in json.loads(swept.stdout)["rows"]} == {"48x48", "64x64"}


def test_every_wrapping_shares_the_one_export(cifar_build, own_weights, tmp_path):
    """Rebuilding with the same weights saved another way reuses the export and the engines and records the
    file given now (validate then verifies and reads that file)."""
    from rsz_export.model.weights import reference_from_record

    state, paths, team = own_weights
    out = Path(shutil.copytree(cifar_build, tmp_path / "engines"))
    first = load_manifest(out)

    def rebuild(path: Path, logged: list[str]):
        return build(BuildSpec(first.plan, out, backend="onnxruntime", weights=str(path), labels=team), logged.append)

    assert rebuild(paths["ddp-with-optimizer.pt"], []).reused  # the file the folder was built from: up to date
    for name, path in paths.items():
        if name == "ddp-with-optimizer.pt":
            continue
        logged: list[str] = []
        result = rebuild(path, logged)
        manifest = result.manifest
        assert not result.reused and "reusing the exported ONNX (same weights and exporter)" in "".join(logged)
        assert any("reusing the onnxruntime engines" in line for line in logged), logged
        assert (manifest.onnx, manifest.engines) == (first.onnx, first.engines)
        assert manifest.weights.source == str(path.resolve()) and manifest.keys["export"] == first.keys["export"]
    model = reference_from_record(manifest.weights)  # the last one: the safetensors file, verified and read
    assert all(v.equal(state[k]) for k, v in model.state_dict().items())


def test_224_to_800_builds_validates_and_predicts_from_the_safetensors_file(cifar_build, own_weights, tmp_path):
    """Another range in another folder: the export is carried over (as a CI cache would), so this costs one
    ONNX Runtime engine build, not an export."""
    from rsz_export.serve.session import Session

    _, paths, team = own_weights
    out = tmp_path / "engines"
    out.mkdir()
    first = load_manifest(cifar_build)
    for name in (first.onnx.file, "manifest.json"):
        shutil.copy2(cifar_build / name, out / name)
    logged: list[str] = []
    spec = BuildSpec(make_plan(224, 800), out, backend="onnxruntime",
                     weights=str(paths["model.safetensors"]), labels=team.with_suffix(".json"))
    manifest = build(spec, logged.append).manifest
    assert "reusing the exported ONNX (same weights and exporter)" in "".join(logged) and manifest.num_classes == 10
    one_photo = tmp_path / "photo"
    one_photo.mkdir()
    shutil.copy(SAMPLE_IMAGE, one_photo)
    report = json.loads(render_json(validate(ValidateSpec(out, images_dir=one_photo, random_inputs=0))))
    sizes = {tuple(c["size"]) for c in report["cases"]}
    assert {(224, 224), (800, 800), (417, 609)} <= sizes and _parity(report) <= PARITY
    with Session(out) as session:
        answer = session.predict(SAMPLE_IMAGE, top=10)
    assert answer.input == Resolution(512, 512) and [label.name for label in answer.top] != []
    assert sorted(label.name for label in answer.top) == sorted(TEAM)


def test_build_from_the_ten_class_export_itself(cifar_build, own_weights, tmp_path):
    """``build --onnx`` takes a C-class export: its class count comes from its output, checked against the
    weights given as the reference and against the names."""
    _, paths, team = own_weights
    exported = cifar_build / load_manifest(cifar_build).onnx.file
    out = tmp_path / "engines"
    spec = BuildSpec(make_plan(224, 256), out, backend="onnxruntime", onnx=exported,
                     weights=str(paths["bare.pt"]), labels=team)
    manifest = build(spec).manifest
    assert manifest.num_classes == 10 and manifest.weights.source == str(paths["bare.pt"].resolve())
    report = validate(ValidateSpec(out, sizes=(Resolution(240, 232),), replace_sizes=True, random_inputs=1))
    assert _parity(json.loads(render_json(report))) <= PARITY
