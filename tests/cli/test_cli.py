"""Bad input through the real CLI: one clear message, a documented exit code, no traceback, nothing half-written."""

import importlib.util
import pickle
import subprocess
import sys

import pytest

from tests.helpers import REPO, run_cli

HAVE_TENSORRT = importlib.util.find_spec("tensorrt") is not None


def _assert_clean_failure(result, code, *phrases):
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    for phrase in phrases:
        assert phrase in result.stderr, result.stderr


def _assert_nothing_written(out):
    assert not out.exists() or not [p for p in out.rglob("*") if p.name != ".rsz-export.lock"]


@pytest.mark.parametrize(
    "args,code,phrases",
    [
        (["--min", "800", "--max", "224"], 2, ["--min 800 is above --max 224"]),
        (["--min", "16", "--max", "224"], 2, ["--min 16", "32..4096"]),
        (["--min", "abc", "--max", "224"], 2, ["'abc' is not a valid integer"]),
        (["--min", "224", "--max", "800", "--backend", "coreml"], 2, ["'coreml' is not one of"]),
        (["--min", "224", "--max", "800", "--precision", "int3"], 2, ["'int3' is not one of"]),
        (
            ["--min", "224", "--max", "800", "--precision", "fp16", "--backend", "onnxruntime"],
            2,
            ["fp16", "allowed: fp32"],
        ),
        (["--min", "224", "--max", "800", "--profiles", "0"], 2, ["--profiles for 224..800 must be"]),
        (["--min", "224", "--max", "800", "--batch", "0"], 2, ["--batch", "1..1024"]),
        (["--min", "224", "--max", "800", "--weights", "/nonexistent/w.pt"], 2, ["/nonexistent/w.pt"]),
        pytest.param(
            ["--min", "224", "--max", "800", "--backend", "tensorrt"],
            3,
            ["tensorrt", "pip install"],
            marks=pytest.mark.skipif(HAVE_TENSORRT, reason="TensorRT is installed here, so --backend tensorrt works"),
        ),
    ],
)
def test_build_bad_input(tmp_path, args, code, phrases):
    out = tmp_path / "out"
    result = run_cli("build", *args, str(out))
    _assert_clean_failure(result, code, *phrases)
    _assert_nothing_written(out)


@pytest.mark.slow
def test_weights_with_pickle_payload(tmp_path):
    class Payload:
        def __reduce__(self):
            return (exec, ("open('/tmp/rsz-pwned', 'w').write('x')",))

    weights = tmp_path / "evil.pt"
    weights.write_bytes(pickle.dumps({"conv1.weight": Payload()}))
    out = tmp_path / "out"
    result = run_cli("build", "--min", "224", "--max", "320", "--weights", str(weights), str(out))
    _assert_clean_failure(result, 4, "refused to load")
    _assert_nothing_written(out)
    assert not (tmp_path / "rsz-pwned").exists()


@pytest.mark.slow
def test_corrupt_weights(tmp_path):
    weights = tmp_path / "w.pt"
    weights.write_bytes(b"PK\x03\x04 truncated zip")
    result = run_cli("export", "--weights", str(weights), "-o", str(tmp_path / "m.onnx"))
    _assert_clean_failure(result, 4, "corrupt")
    assert not (tmp_path / "m.onnx").exists()


def test_unwritable_out(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result = run_cli("build", "--min", "224", "--max", "320", "--weights", "random", str(blocker / "sub"))
    _assert_clean_failure(result, 5, "cannot write")


def test_profile_file_errors(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("min = 224\nmax = 'big'\n")
    result = run_cli("plan", "--profile-file", str(bad))
    _assert_clean_failure(result, 2, "bad.toml")
    result = run_cli("plan", "--profile-file", str(tmp_path / "missing.toml"))
    _assert_clean_failure(result, 2, "does not exist")


def test_help_and_plan_do_not_import_heavy_modules():
    code = (
        "import sys; from click.testing import CliRunner; from rsz_export.cli import main; r = CliRunner();"
        "assert r.invoke(main, ['--help']).exit_code == 0;"
        "assert r.invoke(main, ['plan', '--min', '224', '--max', '800']).exit_code == 0;"
        "[r.invoke(main, [c, '--help']) for c in main.commands];"
        "heavy = [m for m in ('torch', 'onnxruntime', 'tensorrt', 'onnx', 'torchvision') if m in sys.modules];"
        "print(','.join(heavy)); assert not heavy, heavy"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_command_has_help_and_version():
    result = run_cli("--version")
    assert result.returncode == 0 and "rsz-export" in result.stdout
    listing = run_cli("--help").stdout
    for command in ("export", "plan", "build"):
        assert command in listing
        assert run_cli(command, "--help").returncode == 0
