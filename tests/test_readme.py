"""The README's quickstart commands are the ones that work: checked against the Makefile and run for real."""

import json
import os
import re
import subprocess
import sys
import sysconfig
from importlib import metadata
from pathlib import Path

import pytest

from tests.helpers import REPO

VENV = Path(sys.prefix)
STAMP = VENV / ".installed"


def _installed_from() -> Path | None:
    """The checkout this interpreter's editable install points at (pip's direct_url.json), if any."""
    site = sysconfig.get_paths()["purelib"]  # not the source tree's own egg-info, which sys.path may list first
    found = list(metadata.distributions(name="rsz-export", path=[site]))
    if not found:
        return None
    record = json.loads(found[0].read_text("direct_url.json") or "{}")
    url = record.get("url", "")
    return Path(url.removeprefix("file://")).resolve() if url.startswith("file://") else None


INSTALLED_FROM = _installed_from()
needs_make_install = pytest.mark.skipif(
    not STAMP.exists() or INSTALLED_FROM != REPO.resolve(),
    reason=f"this interpreter ({sys.prefix}) was not set up by `make install` from this checkout "
    f"(rsz_export is installed from {INSTALLED_FROM}); run `make test`",
)


def _quickstart_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    section = text.split("## Quickstart", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.S).group(1)
    return [line.strip() for line in block.splitlines() if line.strip()]


def test_quickstart_is_exactly_the_two_make_commands():
    assert _quickstart_commands() == ["make engines", "make test"]


def test_make_targets_do_what_the_readme_says():
    dry = subprocess.run(
        ["make", "-n", "-B", "engines", "test", "VENV=/x/venv"], cwd=REPO, capture_output=True, text=True
    )
    assert dry.returncode == 0, dry.stderr
    assert "/x/venv/bin/rsz-export build engines --min 224 --max 800" in dry.stdout
    assert "-m venv /x/venv" in dry.stdout and "-c constraints.txt" in dry.stdout
    assert "/x/venv/bin/python -m pytest" in dry.stdout
    assert "make test" in (REPO / ".ci" / "run").read_text()
    pins = (REPO / "constraints.txt").read_text()
    assert "torch==2.14.1" in pins and "torchvision==0.29.1" in pins


@needs_make_install
def test_install_is_a_no_op_when_up_to_date():
    dry = subprocess.run(["make", "-n", "install", f"VENV={VENV}"], cwd=REPO, capture_output=True, text=True)
    assert "pip install" not in dry.stdout, dry.stdout


@needs_make_install
def test_make_engines_runs_and_reuses_an_up_to_date_build(engines_dir):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAKE")}
    result = subprocess.run(
        ["make", "engines", f"VENV={VENV}", f"ENGINES_DIR={engines_dir}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "reused 1 engine(s)" in result.stdout
