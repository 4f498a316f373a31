"""validate: case planning (pure), the reference cache, and end to end on the session's small real build."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from rsz_export.artifacts.manifest import load_manifest
from rsz_export.cli.validate import validate as validate_command
from rsz_export.errors import EnvironmentProblem, UsageError
from rsz_export.plan.grid import size_grid
from rsz_export.shapes import BatchRange, Resolution, parse_batches
from rsz_export.validate.cases import ValidateSpec, grid_points, plan_cases
from rsz_export.validate.reference import Inputs
from rsz_export.validate.run import validate
from tests.helpers import make_plan

# ---- pure planning -----------------------------------------------------------------------------------


def test_grid_points_follow_the_shared_size_grid_and_sizes_option():
    plan = make_plan(224, 800)
    points = grid_points(plan, ValidateSpec())
    assert {(p, s) for p, s, _ in points} == {(g.profile, g.size) for g in size_grid(plan)}
    assert any(s.h != s.w and s.h % 2 and s.w % 32 for _, s, _ in points)  # odd, non-square, not /32
    extra = grid_points(plan, ValidateSpec(sizes=(Resolution(227, 341),)))
    assert len(extra) > len(points) and (0, Resolution(227, 341), 1) not in points
    only = grid_points(plan, ValidateSpec(sizes=(Resolution(227, 341),), replace_sizes=True))
    assert {s for _, s, _ in only} == {Resolution(227, 341)}
    assert {p for p, _, _ in only} == {i for i, p in enumerate(plan.profiles) if p.covers(1, 227, 341)}


def test_a_feature_build_skips_each_profiles_opt_size_unless_asked():
    """A backbone's default grid: every profile's min, max, odd size and widest aspect (the detector range's 10
    sizes instead of 13); --sizes adds an opt size back, --replace-sizes still replaces."""
    from rsz_export.plan.profile_file import load_profile_file
    from tests.helpers import REPO

    plan = load_profile_file(REPO / "profiles" / "detection-backbone.toml").plan()
    full, maps = grid_points(plan, ValidateSpec()), grid_points(plan, ValidateSpec(), "fpn")
    opts = {(g.profile, g.size) for g in size_grid(plan) if g.role == "opt"}
    assert maps == [pt for pt in full if pt[:2] not in opts]
    for i, p in enumerate(plan.profiles):
        mine = [s for j, s, _ in maps if j == i]
        assert {Resolution(p.min.h, p.min.w), Resolution(p.max.h, p.max.w)} < set(mine)
        assert any(s.h % 2 and s.w % 2 and s.h != s.w for s in mine) and Resolution(p.opt.h, p.opt.w) not in mine
    assert len({s for _, s, _ in maps}) == 10 and len({s for _, s, _ in full}) == 13
    opt = Resolution(plan.profiles[2].opt.h, plan.profiles[2].opt.w)
    assert (2, opt, 1) in grid_points(plan, ValidateSpec(sizes=(opt,)), "features")
    assert grid_points(plan, ValidateSpec(sizes=(opt,), replace_sizes=True), "fpn") == [(2, opt, 1)]


def test_sizes_and_batches_outside_every_profile_are_usage_errors():
    plan = make_plan(224, 288, batch=BatchRange(1, 4, 8))
    with pytest.raises(UsageError, match=r"--sizes 801x801 is outside every profile.*224\.\.288"):
        grid_points(plan, ValidateSpec(sizes=(Resolution(801, 801),)))
    with pytest.raises(UsageError, match=r"--batches 16 is outside every profile's batch range \(1\.\.8\)"):
        grid_points(plan, ValidateSpec(batches=(16,)))
    assert {b for _, _, b in grid_points(plan, ValidateSpec(batches=(1, 8)))} == {1, 8}
    with pytest.raises(UsageError, match="--replace-sizes needs --sizes"):
        ValidateSpec(replace_sizes=True)
    with pytest.raises(UsageError, match="cannot read 'x' in 'x'"):
        parse_batches("x")


def test_shared_graph_engines_run_each_size_once_and_list_its_profiles():
    plan = make_plan(224, 800)
    points = grid_points(plan, ValidateSpec())
    every = tuple(range(len(plan.profiles)))
    shared = plan_cases(points, every, shared=True)
    separate = plan_cases(points, every, shared=False)
    assert len(separate) == len(points) > len(shared) == len({(s, b) for _, s, b in points})
    min_case = next(c for c in shared if c.size == Resolution(224, 224))
    assert min_case.profiles == every  # "free" aspect: every profile starts at the global minimum
    assert [c.profiles for c in plan_cases(points, (1,), shared=False)] == [(1,)] * sum(p == 1 for p, _, _ in points)


def test_reference_is_computed_once_per_size_and_input():
    calls = []

    def model(x):
        calls.append(tuple(x.shape))
        return x.mean(dim=(2, 3)).repeat(1, 2)

    inputs = Inputs([], [0, 1], model)
    first = inputs.reference(Resolution(40, 48), 1)
    again = inputs.reference(Resolution(40, 48), 1)
    assert first is again and calls == [(2, 3, 40, 48)]  # one stacked forward for both inputs, then cached
    assert [n for n, _, _ in first] == ["random0", "random1"]
    np.testing.assert_allclose(first[1][2], np.tile(first[1][1].mean(axis=(2, 3)), (1, 2)), rtol=1e-6)
    batch = inputs.reference(Resolution(40, 48), 3)
    assert batch[0][1].shape == (3, 3, 40, 48) and len(calls) == 2


# ---- end to end on a real build -------------------------------------------------------------------------


def _invoke(*args: str):
    return CliRunner().invoke(validate_command, list(args), catch_exceptions=False)


def _expected_junit_cases(directory: Path) -> int:
    manifest = load_manifest(directory)
    grid = {(g.profile, g.size) for g in size_grid(manifest.plan)}
    per_engine = [sum(p in e.profiles for p, _ in grid) for e in manifest.engines]
    return len(grid) + sum(per_engine)  # the export stage covers every profile too


@pytest.fixture(scope="module")
def default_run(small_engines_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("validate-out")
    result = _invoke(str(small_engines_dir), "--junit", str(out / "report.xml"), "--json", str(out / "report.json"))
    return result, out


def test_validate_passes_with_readable_junit_and_json(default_run, small_engines_dir):
    result, out = default_run
    assert result.exit_code == 0, result.output
    assert "PASS:" in result.output
    root = ET.parse(out / "report.xml").getroot()
    cases = root.findall(".//testcase")
    assert len(cases) == _expected_junit_cases(small_engines_dir) and root.get("failures") == "0"
    assert {s.get("name") for s in root.findall("testsuite")} == {"onnx-export", "engine.ort"}
    data = json.loads((out / "report.json").read_text())
    assert data["passed"] is True and data["inputs"] == ["astronaut.jpg", "chelsea.jpg", "coffee.jpg", "rocket.jpg",
                                                    "random0", "random1"]
    worst = max(c["stats"]["rel_l2"] for c in data["cases"])
    assert 0 < worst < 1e-4  # real computations: not bit-identical, but fp32-close


def test_broken_engine_file_is_reported_not_run_and_exits_1(engines_copy, tmp_path):
    engine = load_manifest(engines_copy).engines[0]
    path = engines_copy / engine.file.file
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in the middle of the weights
    path.write_bytes(bytes(data))
    result = _invoke(str(engines_copy), "--sizes", "227x251", "--replace-sizes", "--random-inputs", "0",
                     "--junit", str(tmp_path / "r.xml"))
    assert result.exit_code == 1, result.output
    assert f"NOT-RUN: engine {engine.name} p0 227x251 b1: not run:" in result.output
    assert "does not match the manifest" in result.output
    errors = ET.parse(tmp_path / "r.xml").getroot().findall(".//error")
    assert len(errors) == 1 and "does not match the manifest" in errors[0].get("message")
    assert re.search(r"^ok\s+export\s+onnx", result.output, re.MULTILINE)  # the export is still checked: passes


def test_tightened_fp32_tolerance_fails_and_names_the_cases(small_engines_dir, tmp_path):
    result = _invoke(str(small_engines_dir), "--sizes", "227x251", "--replace-sizes", "--random-inputs", "1",
                     "--rtol", "1e-9", "--json", str(tmp_path / "r.json"))
    assert result.exit_code == 1, result.output
    assert "FAILED: export onnx p0 227x251 b1: relative L2 error" in result.output
    assert "FAILED: engine ort p0 227x251 b1: relative L2 error" in result.output
    cases = json.loads((tmp_path / "r.json").read_text())["cases"]
    assert all(c["status"] == "failed" and c["stats"]["needed"]["rtol"] > 1e-9 for c in cases)


def test_user_images_with_unreadable_files_are_skipped_and_counted(small_engines_dir, tmp_path):
    from PIL import Image

    Image.new("RGB", (300, 200), (200, 30, 30)).save(tmp_path / "red.png")
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    result = _invoke(str(small_engines_dir), "--images", str(tmp_path), "--sizes", "224", "--replace-sizes",
                     "--random-inputs", "0")
    assert result.exit_code == 0, result.output
    assert "skipped" in result.output and "broken.jpg" in result.output
    assert "1 input file(s) skipped" in result.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["--sizes", "1000"], "--sizes 1000x1000 is outside every profile"),
        (["--sizes", "22x"], "--sizes: cannot read size '22x'"),
        (["--min-top1", "2"], "--min-top1 must be a finite number in 0..1, got 2.0"),
        (["--batches", "0"], "--batches: batch size must be a whole number in 1..1024, got 0"),
    ],
)
def test_usage_errors_exit_2_with_the_value(small_engines_dir, args, message):
    result = _invoke(str(small_engines_dir), *args)
    assert result.exit_code == 2 and message in result.output


def test_missing_backend_exits_3(small_engines_dir, monkeypatch):
    from rsz_export.backends import ort

    monkeypatch.setattr(ort, "unavailable_reason", lambda: "onnxruntime is not installed: pip install onnxruntime")
    with pytest.raises(EnvironmentProblem, match="pip install onnxruntime"):
        validate(ValidateSpec(directory=small_engines_dir))
    result = _invoke(str(small_engines_dir))
    assert result.exit_code == 3 and "backend onnxruntime is not usable" in result.output


def test_incompatible_engine_is_not_run(small_engines_dir, monkeypatch):
    from rsz_export.backends import ort

    monkeypatch.setattr(ort, "check_compatible", lambda manifest, engine: "built for GPU X, this machine has GPU Y")
    report = validate(ValidateSpec(directory=small_engines_dir, sizes=(Resolution(230, 230),), replace_sizes=True,
                                   random_inputs=0))
    engine_cases = [c for c in report.cases if c.stage == "engine"]
    assert [c.status for c in engine_cases] == ["not-run"]
    assert engine_cases[0].failures == ("not run: built for GPU X, this machine has GPU Y",)
    assert [c.status for c in report.cases if c.stage == "export"] == ["passed"]
    assert isinstance(engine_cases[0].size, Resolution) and np.isfinite(report.seconds)
