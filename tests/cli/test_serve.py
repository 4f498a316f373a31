"""serve's refusals before any server starts (each a clean message and its exit code), and its signal handling.
The server itself, called over HTTP and gRPC, is tested in tests/triton/test_server.py."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys

import pytest

from tests.helpers import REPO, assert_clean_failure, engine_file, run_cli


def test_without_the_serving_extra_it_says_what_to_install(tmp_path):
    code = ("import sys; sys.modules['pytriton'] = sys.modules['pytriton.triton'] = None\n"
            "from rsz_export.cli import main\n"
            f"main(['serve', {str(tmp_path)!r}])")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert_clean_failure(result, 3, "PyTriton", 'pip install -e ".[serve]"')


def test_a_bad_name_is_a_usage_error(tiny_engines):
    pytest.importorskip("pytriton.triton", reason="the [serve] extra is not installed")
    assert_clean_failure(run_cli("serve", str(tiny_engines), "--name", "res net"), 2, "--name 'res net'")


def test_a_port_in_use_is_an_environment_error(tiny_engines):
    pytest.importorskip("pytriton.triton", reason="the [serve] extra is not installed")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("serve", str(tiny_engines), "--http-port", str(port), "--grpc-port", str(port + 1))
    assert_clean_failure(result, 3, f"cannot listen on 127.0.0.1:{port} (http)", "--http-port")


def test_a_tampered_engine_is_refused_before_a_port_opens(tiny_engines, tmp_path):
    pytest.importorskip("pytriton.triton", reason="the [serve] extra is not installed")
    engines = shutil.copytree(tiny_engines, tmp_path / "engines")
    path = engine_file(engines)
    path.write_bytes(path.read_bytes()[:-10] + b"0123456789")
    assert_clean_failure(run_cli("serve", str(engines)), 4, "does not match the manifest")


STOP_SIGNALS = """
import signal, sys, time
from rsz_export.cli.serve import StopSignals
stop = StopSignals().install()
signal.raise_signal(signal.SIGTERM)
print("stop asked" if stop.event.wait(5) else "no stop", flush=True)
try:
    signal.raise_signal(signal.SIGINT)
    time.sleep(2)  # the handler runs here
except KeyboardInterrupt:
    print("aborted", flush=True)
    sys.exit(0)
print("not aborted", flush=True)
sys.exit(1)
"""


def test_the_first_signal_asks_for_a_stop_and_a_second_one_aborts():
    # A fresh interpreter: a signal raised inside a test worker can meet whatever handlers earlier tests' libraries
    # (native runtimes, the test runner) left installed in that process.
    result = subprocess.run([sys.executable, "-c", STOP_SIGNALS], cwd=REPO, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.split() == ["stop", "asked", "aborted"]
