"""Builds whose model has its own classes: the count from the model, the names from ``--labels``, stored and
hash-checked with the build, and every refusal before anything is written. Tiny stand-in models (the real
interface with C outputs) and checkpoint files that are never exported keep these in the fast tier."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rsz_export.artifacts.manifest import load_manifest, verify_file
from rsz_export.errors import IntegrityError, UsageError
from rsz_export.pipeline.run import BuildSpec, build
from rsz_export.serve.session import Session
from rsz_export.shapes import Resolution
from rsz_export.sweep.accuracy import load_labeled, run_sweep
from tests.helpers import RANDOM_METADATA, SAMPLE_IMAGE, assert_clean_failure, make_plan, run_cli, tiny_onnx

PLAN = make_plan(224, 288)
TEAM = [f"part {i}" for i in range(10)]


def _tiny(folder: Path, classes: int) -> Path:
    return tiny_onnx(folder / f"tiny{classes}.onnx", output_shape=("batch", classes), metadata=RANDOM_METADATA)


def _names(path: Path, names) -> Path:
    path.write_text(json.dumps(list(names)) if path.suffix == ".json" else "".join(f"{n}\n" for n in names))
    return path


def _build(out: Path, onnx: Path, labels: Path | None = None, log=lambda message: None):
    return build(BuildSpec(PLAN, out, backend="onnxruntime", onnx=onnx, labels=labels), log)


def test_class_count_and_names_are_stored_with_the_build_and_served(tmp_path):
    out = tmp_path / "out"
    manifest = _build(out, _tiny(tmp_path, 10), _names(tmp_path / "team.txt", TEAM)).manifest
    assert manifest.num_classes == 10 and manifest.weights.num_classes == 10
    assert manifest.labels.source == str((tmp_path / "team.txt").resolve())
    assert verify_file(out, manifest.labels.file).read_text().splitlines() == TEAM  # the build carries them
    with Session(out, preprocess="fit") as session:
        assert session.names == TEAM
        top = session.predict(SAMPLE_IMAGE, top=20).top  # asking for more than there are gives them all
    assert len(top) == 10 and {label.name for label in top} == set(TEAM)


def test_fewer_classes_than_the_default_top_k(tmp_path):
    out = tmp_path / "out"
    _build(out, _tiny(tmp_path, 3))
    with Session(out, preprocess="fit") as session:
        assert [label.name for label in session.predict(SAMPLE_IMAGE).top] == ["class 0", "class 1", "class 2"]
    result = run_cli("predict", str(out), str(SAMPLE_IMAGE), "--preprocess", "fit", "--json", "-")
    assert result.returncode == 0, result.stderr
    assert len(json.loads(result.stdout)["predictions"][0]["top"]) == 3
    _build(tmp_path / "one", _tiny(tmp_path, 1))  # a single logit: a score, served like any other head
    with Session(tmp_path / "one", preprocess="fit") as session:
        (label,) = session.predict(SAMPLE_IMAGE).top
    assert (label.index, label.name, label.score) == (0, "class 0", 1.0)


def test_new_names_rewrite_the_manifest_and_reuse_export_and_engines(tmp_path):
    out, model, logged = tmp_path / "out", _tiny(tmp_path, 10), []
    first = _build(out, model, _names(tmp_path / "team.txt", TEAM)).manifest
    assert _build(out, model, tmp_path / "team.txt").reused  # same names: up to date
    renamed = _build(out, model, _names(tmp_path / "team.json", [n.upper() for n in TEAM]), logged.append)
    assert not renamed.reused and "reusing the imported ONNX" in " ".join(logged)
    assert any("reusing the onnxruntime engines" in line for line in logged)
    assert renamed.manifest.engines == first.engines and renamed.manifest.onnx == first.onnx
    assert renamed.manifest.labels.file != first.labels.file and not (out / first.labels.file.file).exists()
    with Session(out) as session:
        assert session.names[0] == "PART 0"
    unnamed = _build(out, model).manifest  # without --labels: the defaults, and no stale names
    assert unnamed.labels is None and not list(out.glob("labels-*.txt"))


def test_tampered_names_are_refused(tmp_path):
    out = tmp_path / "out"
    manifest = _build(out, _tiny(tmp_path, 10), _names(tmp_path / "team.txt", TEAM)).manifest
    (out / manifest.labels.file.file).write_text("".join(f"{n}\n" for n in reversed(TEAM)))
    with pytest.raises(IntegrityError, match="does not match the manifest"):
        Session(out)


def test_sweep_matches_folders_by_the_builds_names(tmp_path):
    from PIL import Image

    out = tmp_path / "out"
    _build(out, _tiny(tmp_path, 10), _names(tmp_path / "team.txt", TEAM))
    for folder in ("Part_3", "part-7", "2"):  # names as the build has them (case, '_' and '-' aside), or indices
        (tmp_path / "labeled" / folder).mkdir(parents=True)
        Image.open(SAMPLE_IMAGE).resize((256, 240)).save(tmp_path / "labeled" / folder / "a.png")
    with Session(out) as session:
        labeled = load_labeled(tmp_path / "labeled", session.names)
        rows = run_sweep(session, labeled, [Resolution(224, 224)])
    assert dict(labeled.classes) == {"2": 2, "Part_3": 3, "part-7": 7}
    assert rows[0].images == 3 and rows[0].top5 is not None
    (tmp_path / "labeled" / "goldfish").mkdir()
    with pytest.raises(UsageError, match=r"(?s)name no class the model knows: 'goldfish'.*'part 0', 'part 1'"):
        load_labeled(tmp_path / "labeled", TEAM)


@pytest.fixture()
def names(tmp_path) -> dict[str, Path]:
    files = {"three": _names(tmp_path / "three.txt", TEAM[:3]), "ten": _names(tmp_path / "ten.json", TEAM),
             "empty": tmp_path / "empty.txt", "dupes": _names(tmp_path / "dupes.txt", TEAM[:9] + ["Part_0"])}
    files["empty"].write_text("\n")
    return files


BAD_BUILDS = [
    ("--num-classes 0", ["--weights", "random", "--num-classes", "0"], 2, "--num-classes must be a whole number"),
    ("--num-classes without random weights", ["--num-classes", "10"], 2, "--num-classes 10 needs --weights random"),
    ("labels count differs", ["--weights", "random", "--num-classes", "10", "--labels", "{three}"], 2,
     "has 3 class name(s) but the model has 10 classes (--weights random has a 10-class head)"),
    ("labels empty", ["--weights", "random", "--labels", "{empty}"], 2, "holds no class names"),
    ("labels duplicate", ["--weights", "random", "--num-classes", "10", "--labels", "{dupes}"], 2,
     "names a class twice: 'part 0' (index 0) and 'Part_0' (index 9)"),
    ("labels missing", ["--weights", "random", "--labels", "{nowhere}"], 2, "does not exist"),
    ("ONNX and labels disagree", ["--onnx", "{tiny3}", "--labels", "{ten}"], 2,
     "has 10 class name(s) but the model has 3 classes (--onnx"),
    ("ONNX and --num-classes disagree", ["--onnx", "{tiny3}", "--num-classes", "12"], 2,
     "--num-classes 12 does not match --onnx"),
    ("checkpoint and labels disagree", ["--weights", "{ddp}", "--labels", "{three}"], 2,
     "has 3 class name(s) but the model has 10 classes (fc.weight in"),
    ("checkpoint and --num-classes disagree", ["--weights", "{ddp}", "--num-classes", "1000"], 2,
     "--num-classes 1000 does not match the checkpoint"),
    ("another architecture", ["--weights", "{resnet18}"], 4, "is not a torchvision ResNet-50 checkpoint"),
    ("truncated checkpoint", ["--weights", "{truncated}"], 4, "is corrupt, truncated or not a PyTorch file"),
]


@pytest.mark.parametrize("args,code,phrase", [c[1:] for c in BAD_BUILDS], ids=[c[0] for c in BAD_BUILDS])
def test_bad_classes_and_checkpoints_are_refused_before_anything_is_written(
    tmp_path, names, wrapped_checkpoints, args, code, phrase
):
    """Each through the real ``build`` command, in this process (torch is loaded once for all of them)."""
    import torch
    import torchvision
    from click.testing import CliRunner

    from rsz_export.cli import main

    paths = {**names, "ddp": wrapped_checkpoints[1]["ddp-with-optimizer.pt"], "nowhere": tmp_path / "no.txt"}
    if "{tiny3}" in args:
        paths["tiny3"] = _tiny(tmp_path, 3)
    if "{resnet18}" in args or "{truncated}" in args:
        torch.save(torchvision.models.resnet18(num_classes=10).state_dict(), tmp_path / "resnet18.pt")
        data = (tmp_path / "resnet18.pt").read_bytes()
        (tmp_path / "truncated.pt").write_bytes(data[: len(data) // 3])
        paths.update(resnet18=tmp_path / "resnet18.pt", truncated=tmp_path / "truncated.pt")
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["build", "--min", "224", "--max", "288", *[a.format(**paths) for a in args],
                                       str(out)])
    assert result.exit_code == code, (result.output, result.exception)
    assert phrase in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert not out.exists()


@pytest.mark.slow
def test_another_architecture_through_a_separate_process(tmp_path):
    """The same refusal as a user sees it: one message naming what did not fit, exit 4, no traceback."""
    import torch
    import torchvision

    torch.save({"model": torchvision.models.resnet18().state_dict(), "epoch": 90}, tmp_path / "resnet18.pth")
    out = tmp_path / "out"
    result = run_cli("build", "--min", "224", "--max", "288", "--weights", str(tmp_path / "resnet18.pth"), str(out))
    assert_clean_failure(result, 4, "not a torchvision ResNet-50 checkpoint", "the keys 'model', 'epoch'",
                         "of the wrong shape: layer1.0.conv1.weight [64, 64, 3, 3], expected [64, 64, 1, 1]")
    assert not out.exists()


def test_a_version_1_build_reads_as_imagenet(tmp_path):
    """A folder built before class counts were recorded serves ImageNet's 1000 names, as it always did."""
    out = tmp_path / "out"
    _build(out, _tiny(tmp_path, 1000))
    data = json.loads((out / "manifest.json").read_text())
    for key in ("num_classes", "labels"):
        del data[key]
    (out / "manifest.json").write_text(json.dumps({**data, "schema_version": 1}))
    assert load_manifest(out).num_classes == 1000
    with Session(out, preprocess="fit") as session:
        assert session.names[0] == "tench" and session.predict(SAMPLE_IMAGE).top[0].name in session.names


def test_bench_counts_the_flop_of_the_builds_own_head(tmp_path):
    from rsz_export.bench.flops import resnet50_flop
    from rsz_export.bench.run import BenchSpec, run_bench
    from rsz_export.bench.stats import MeasurePolicy

    out = tmp_path / "out"
    _build(out, _tiny(tmp_path, 10))
    spec = BenchSpec(str(out), sizes=(Resolution(224, 224),), backends=("onnxruntime",),
                     policy=MeasurePolicy(warmup=0, iters=2), peak_matrix=256)
    header, rows = run_bench(spec, lambda message: None)
    assert header["num_classes"] == 10
    assert rows[0].gflop * 1e9 == resnet50_flop(1, 224, 224, num_classes=10) < resnet50_flop(1, 224, 224)


def test_an_output_without_a_fixed_class_count_has_none():
    from onnx import TensorProto, helper

    from rsz_export.model.onnx_interface import output_classes

    def model(*dims):
        out = helper.make_tensor_value_info("logits", TensorProto.FLOAT, list(dims))
        return helper.make_model(helper.make_graph([], "g", [], [out]))

    assert output_classes(model("batch", 10)) == 10 and output_classes(model("batch", 1)) == 1
    assert output_classes(model("batch", "classes")) is None and output_classes(model("batch", 10, 1)) is None
