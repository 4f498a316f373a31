"""Bad options through the real CLI: one clear message, a documented exit code, no traceback, nothing written.

The rows of docs/robustness.md section 1 (regenerate them with ``python -m tests.cli.test_bad_options``).
Options are checked before torch is imported.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.helpers import assert_clean_failure, assert_no_temp_files, run_cli

OPTION_CASES = [
    ("range negative", ["build", "--min", "-224", "--max", "800"], 2, "--min -224 is outside"),
    ("range absurdly large", ["build", "--min", "224", "--max", "100000"], 2, "--max 100000 is outside"),
    ("range non-numeric max", ["plan", "--min", "224", "--max", "big"], 2, "'big' is not a valid integer"),
    ("range missing max", ["build", "--min", "224"], 2, "give the range with --min and --max"),
    ("profiles too many", ["plan", "--min", "224", "--max", "800", "--profiles", "99"], 2, "in 1..16, got 99"),
    ("profiles negative", ["plan", "--min", "224", "--max", "800", "--profiles", "-1"], 2, "in 1..16, got -1"),
    ("batch reversed", ["plan", "--min", "224", "--max", "800", "--batch", "8-1"], 2, "min <= opt <= max"),
    ("batch non-numeric", ["plan", "--min", "224", "--max", "800", "--batch", "many"], 2, "cannot read batch 'many'"),
    (
        "precision bf16 on onnxruntime",
        ["build", "--min", "224", "--max", "800", "--precision", "bf16", "--backend", "onnxruntime"],
        2,
        "precision bf16 is not available on backend onnxruntime",
    ),
    ("predict unknown backend", ["predict", "--backend", "coreml", "x.jpg"], 2, "'coreml' is not one of"),
    ("sizes trailing x", ["validate", "nodir", "--sizes", "224x"], 2, "cannot read size '224x'"),
    ("sizes words", ["validate", "nodir", "--sizes", "abc"], 2, "cannot read size 'abc'"),
    ("sizes zero", ["validate", "nodir", "--sizes", "0"], 2, "height 0 is outside"),
    ("sizes too wide", ["validate", "nodir", "--sizes", "224x99999"], 2, "width 99999 is outside"),
    ("sizes empty", ["validate", "nodir", "--sizes="], 2, "no sizes in ''"),
    ("sizes fractional (bench)", ["bench", "nodir", "--sizes", "22.5"], 2, "cannot read size '22.5'"),
    ("sweep reversed (bench)", ["bench", "nodir", "--sweep", "800:224:32"], 2, "needs STEP > 0 and STOP >= START"),
    ("sizes malformed (sweep)", ["sweep", "nodir", "--images", "nodir", "--sizes", "224x"], 2, "cannot read size"),
    ("random inputs too many", ["validate", "nodir", "--random-inputs", "100"], 2, "0..64"),
    ("no inputs per size", ["validate", "nodir", "--inputs-per-size", "0"], 2, "--inputs-per-size must be a whole"),
    ("negative tolerance", ["validate", "nodir", "--rtol", "-1"], 2, "--rtol must be a finite number >= 0"),
    (
        "export into a file's path",
        ["export", "-o", "/dev/null/resnet50.onnx"],
        5,
        "cannot write into /dev/null: it is a file, not a directory",
    ),
    ("no manifest (validate)", ["validate", "nodir"], 4, "no manifest at nodir/manifest.json"),
    ("no manifest (bench)", ["bench", "nodir"], 4, "no manifest at nodir/manifest.json"),
]


@pytest.mark.parametrize("case,args,code,phrase", OPTION_CASES, ids=[c[0] for c in OPTION_CASES])
def test_bad_option(tmp_path, case, args, code, phrase):
    result = run_cli(*args, str(tmp_path / "out")) if args[0] == "build" else run_cli(*args, cwd=tmp_path)
    assert_clean_failure(result, code, phrase)
    assert not (tmp_path / "out").exists()


def test_report_to_unwritable_or_full_target(fast_engines, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    quick = ["--replace-sizes", "--sizes", "224", "--random-inputs", "0"]
    assert_clean_failure(
        run_cli("validate", str(fast_engines), *quick, "--json", str(blocker / "r.json")), 5, "cannot write"
    )
    assert_clean_failure(
        run_cli("validate", str(fast_engines), *quick, "--junit", "/dev/full"),
        5,
        "no space left on the device while writing /dev/full",
    )
    assert Path("/dev/full").is_char_device()  # written in place, never replaced by a renamed file
    assert_no_temp_files(fast_engines)


def test_batch_and_sizes_outside_the_profiles(fast_engines):
    assert_clean_failure(
        run_cli("validate", str(fast_engines), "--batches", "4"), 2, "--batches 4 is outside every profile"
    )
    assert_clean_failure(run_cli("validate", str(fast_engines), "--sizes", "800"), 2, "--sizes 800x800 is outside")
    assert_clean_failure(
        run_cli("bench", str(fast_engines), "--batches", "4", "--sizes", "224"),
        2,
        "no profile covers batch 4 at 224x224",
    )


if __name__ == "__main__":  # print the option cases as docs/robustness.md rows, from real runs
    for case, args, _code, _phrase in OPTION_CASES:
        run = run_cli(*args, "/tmp/rsz-doc-out") if args[0] == "build" else run_cli(*args, cwd=Path("/tmp"))
        message = " ".join(
            line.strip() for line in run.stderr.strip().splitlines() if not line.startswith(("Usage", "Try"))
        )
        sys.stdout.write(f"| {case} | `rsz-export {' '.join(args)}` | {message} | {run.returncode} |\n")
