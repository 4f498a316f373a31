"""The README, walked as a new user walks it: every shell command of its code blocks, in order, in one folder,
each checked for its exit code and a line of its output.

``WALK`` lists the README's commands in order (a test keeps the two lists equal, so a command added to the README
must be added here) with what runs in the walk: the command itself, the same with a smaller range where the README's
own command allows one (to keep the suite's time), or nothing, with the reason (installing packages, the test suite
itself, Docker, Kubernetes). ``rsz-export`` and ``.venv/bin/rsz-export`` run this interpreter's ``rsz_export``;
``make engines`` runs the build it stands for (tests/test_readme.py checks that it does); ``validate`` checks one
size instead of its grid. The ``engines`` folder
is the session's 224..800 build (what ``make engines`` makes), linked in, so its build step is the reuse a second
``make engines`` is; the own-model part builds, validates, predicts and sweeps a 10-class checkpoint for real.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from tests.helpers import REPO, run_cli


@dataclass(frozen=True)
class Step:
    """A README command; what the walk runs for it (None: not run, ``why`` says why), the exit code expected and
    a piece of its output (stdout or stderr) that shows it did what the README says."""

    readme: str
    runs: str | None = None
    code: int = 0
    shows: str = ""
    why: str = ""


NOT_INSTALLING = "installs packages: the test environment has them"
ONE_SIZE = "--replace-sizes --sizes 224 --random-inputs 0"
GRID_WHY = ("one size instead of the grid (minutes on 2 cores); the full 224..800 grid of a checkpoint's build is "
            "validated in tests/pipeline/test_own_model.py")
SAME_BUILD = "rsz-export build engines --min 224 --max 800"
DETECTOR_WHY = ("needs a detector checkpoint: tests/test_readme_backbone.py builds a seeded one's FPN over 600..1344 "
                "and runs the section's Python block on it; benchmarks/detection_backbone.py times build and validate")
WALK = (
    Step("make engines", SAME_BUILD, 0, "reused 1 engine(s)", "the build it runs"),
    Step("make test", why="the test suite this walk is part of"),
    Step('pip install -e .', why=NOT_INSTALLING),
    Step('pip install -e ".[tensorrt]"', why=NOT_INSTALLING),
    Step('pip install -e ".[plot]"', why=NOT_INSTALLING),
    Step('pip install -e ".[serve]"', why=NOT_INSTALLING),
    Step('pip install -e ".[openvino]"', why=NOT_INSTALLING),
    Step("rsz-export sweep engines --images labeled/ --preprocess crop,fit --plot sweep.png --json sweep.json",
         "=", 0, "1 image(s) in 1 class(es) from labeled"),
    Step("rsz-export build engines-parts --min 224 --max 800 --weights runs/best.pt --labels classes.txt",
         "rsz-export build engines-parts --min 224 --max 352 --weights runs/best.pt --labels classes.txt", 0,
         "reusing the export cached in", "224..352 instead of 224..800: validate's grid stays small"),
    Step("rsz-export validate engines-parts",
         f"rsz-export validate engines-parts {ONE_SIZE}", 0, "PASS: 2 passed, 0 failed", GRID_WHY),
    Step("rsz-export predict engines-parts photo.jpg --top-k 3", "=", 0, "photo.jpg: 342x512 shrunk to 235x352"),
    Step("rsz-export sweep engines-parts --images labeled/ --sizes 224,288,352", "=", 0, "352x352"),
    Step("rsz-export build engines-det --profile-file profiles/detection-backbone.toml --weights fasterrcnn.pth",
         why=DETECTOR_WHY),
    Step("rsz-export validate engines-det", why=DETECTOR_WHY),
    Step("rsz-export bench engines-det --sizes 800x1216", why=DETECTOR_WHY),
    Step('pip install -e ".[serve]"', why=NOT_INSTALLING),
    Step("rsz-export build engines --min 224 --max 800 --batch 1:4:8 --backend tensorrt", "=", 3,
         "backend tensorrt is not usable on this machine", "where TensorRT is missing, it must say so (exit 3)"),
    Step("rsz-export triton engines --repo model_repository --kserve-storage-uri s3://my-bucket/models/resnet50",
         "=", 0, "model_repository"),
    Step("docker run --gpus=all --rm -p8000:8000 -p8001:8001 -v $PWD/model_repository:/models "
         "nvcr.io/nvidia/tritonserver:<yy.mm>-py3 tritonserver --model-repository=/models",
         why="needs Docker and a GPU"),
    Step("kubectl apply -f model_repository/kserve.yaml", why="needs a Kubernetes cluster"),
    Step("make engines", SAME_BUILD, 0, "reused 1 engine(s)", "the build it runs"),
    Step(".venv/bin/rsz-export validate engines --junit report.xml --json parity.json",
         f"rsz-export validate engines --junit report.xml --json parity.json {ONE_SIZE}", 0,
         "PASS: 2 passed, 0 failed", GRID_WHY),
    Step("make check", why="the test suite's fast tier"),
    Step("make test", why="the test suite this walk is part of"),
    Step("make test-gpu", why="the GPU tier: make test-gpu on a GPU machine"),
    Step("make lint", why="ruff over the sources: CI runs it"),
    Step("make bench", why="the standard benchmark (minutes): benchmarks/run_standard.py"),
)
"""Every shell command of README.md in order; ``runs`` "=" means the README's command as it is."""

CLASSES = ["bolt", "nut", "washer", "gear", "tabby", "spring", "shaft", "pulley", "valve", "gasket"]
"""The checkpoint's class names: one is ImageNet's, so the one labeled/ folder serves both sweeps of the README."""


def readme_commands() -> list[str]:
    """The commands of README.md's shell blocks (``sh``; the CI example's ``run:`` lines), continuation lines
    joined and trailing comments dropped, in order."""
    commands = []
    for kind, block in re.findall(r"```(sh|yaml)\n(.*?)```", (REPO / "README.md").read_text(), re.S):
        lines = block.replace("\\\n", " ").splitlines()
        if kind == "yaml":
            lines = [line.split("- run:", 1)[1] for line in lines if "- run:" in line]
        for line in lines:
            command = re.sub(r"\s+#.*$", "", line.strip())
            if command and not command.startswith("#"):
                commands.append(" ".join(command.split()))
    return commands


def test_the_walk_lists_every_readme_command_in_order():
    assert [step.readme for step in WALK] == readme_commands()
    assert all(step.runs or step.why for step in WALK)


def test_the_readme_says_how_to_run_the_installed_command():
    quickstart = (REPO / "README.md").read_text().split("## Install", 1)[0]
    assert "`.venv/bin/rsz-export`" in quickstart and "`source .venv/bin/activate`" in quickstart


def test_the_readme_sample_output_is_what_predict_prints():
    """The own-model section's sample output, rendered by predict from the numbers it shows."""
    from rsz_export.cli.predict import render_prediction
    from rsz_export.serve.session import Label, Prediction
    from rsz_export.shapes import Resolution

    section = (REPO / "README.md").read_text().split("## Your own model", 1)[1]
    sample = re.search(r"```\n(photo\.jpg: .*?)\n```", section, re.S).group(1)
    top = (Label(8, "valve", 0.4042), Label(7, "pulley", 0.2992), Label(6, "shaft", 0.2888))
    answer = Prediction("photo.jpg", (342, 512), Resolution(342, 512), "ort", "onnxruntime", 2, top, 154.8, 666.2,
                        preprocess="fit")
    assert sample == render_prediction(answer)


def _set_up(folder: Path, engines_dir: Path, own_weights, cifar_build: Path) -> None:
    """What a user of the README has beside the clone: engines from make engines, a labeled folder, a photo, a
    checkpoint and its class names, and an export cache (``$RSZ_EXPORT_CACHE``) holding the checkpoint's export,
    as a CI cache would (the session's one export of those weights: the walk adds no export of its own)."""
    from rsz_export.artifacts import export_cache
    from rsz_export.artifacts.manifest import load_manifest

    shutil.copytree(engines_dir, folder / "engines", copy_function=os.link)  # files are replaced, never rewritten
    photos = REPO / "rsz_export" / "data" / "images"
    (folder / "labeled" / "tabby").mkdir(parents=True)  # one image: every size of the sweep runs it
    shutil.copy(photos / "chelsea.jpg", folder / "labeled" / "tabby")
    shutil.copy(photos / "rocket.jpg", folder / "photo.jpg")  # 342x512, as in the README's sample output
    (folder / "runs").mkdir()
    shutil.copy(own_weights[1]["ddp-with-optimizer.pt"], folder / "runs" / "best.pt")
    (folder / "classes.txt").write_text("".join(f"{name}\n" for name in CLASSES))
    exported = load_manifest(cifar_build)
    assert export_cache.store(cifar_build / exported.onnx.file, exported.keys["export"])


def _run(step: Step, folder: Path):
    words = shlex.split(step.readme if step.runs == "=" else step.runs)
    assert words[0] in ("rsz-export", ".venv/bin/rsz-export"), words
    return run_cli(*words[1:], cwd=folder)


def test_the_readme_walk(engines_dir, own_weights, cifar_build, tmp_path, monkeypatch):
    from rsz_export.artifacts.export_cache import CACHE_ENV
    from rsz_export.backends import load_backend

    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "export-cache"))
    _set_up(tmp_path, engines_dir, own_weights, cifar_build)
    has_tensorrt = load_backend("tensorrt").unavailable_reason() is None
    for step in WALK:
        if step.runs is None or (step.code == 3 and has_tensorrt):  # a TensorRT build is make test-gpu's
            continue
        result = _run(step, tmp_path)
        said = result.stdout + result.stderr
        assert result.returncode == step.code, (step.readme, result.stdout[-3000:], result.stderr[-3000:])
        assert step.shows in said and "Traceback" not in said, (step.readme, said[-3000:])
    assert (tmp_path / "sweep.png").read_bytes()[:4] == b"\x89PNG" and (tmp_path / "sweep.json").is_file()
    assert (tmp_path / "model_repository" / "resnet50" / "config.pbtxt").is_file()
    assert (tmp_path / "model_repository" / "kserve.yaml").is_file()
    tests = ET.parse(tmp_path / "report.xml").getroot().get("tests")
    assert int(tests) > 0 and (tmp_path / "parity.json").is_file()
