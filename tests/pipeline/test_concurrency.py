"""Builds and readers at once: predictions keep running while ``build --force`` replaces a folder, and a build
defers deleting files a reader may still use."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import SAMPLE_IMAGE, make_plan, onnx_build_args, run_cli, start_cli


def _writer_lock_held(folder: Path) -> bool:
    """Whether a process holds the folder's writer lock (read from /proc/locks: probing it with flock could make
    the build find it taken)."""
    lock = folder / ".rsz-export.lock"
    if not lock.exists():
        return False
    inode = f":{lock.stat().st_ino} "
    return any(inode in line for line in Path("/proc/locks").read_text().splitlines())


def test_predict_during_build_force(fast_engines, tmp_path, onnx_path, reference_weights):
    """Predictions keep running while ``build --force`` replaces every file of the folder: a ``predict`` started
    with it succeeds or fails with an integrity message (exit 4), never a crash, and a Session opened and used
    while the build holds the folder's writer lock succeeds (the old build stays servable until the new
    manifest lands)."""
    import shutil
    import time

    from rsz_export.errors import IntegrityError
    from rsz_export.serve.session import Session

    folder = Path(shutil.copytree(fast_engines, tmp_path / "engines"))
    build = start_cli(*onnx_build_args(onnx_path, reference_weights, folder, "--force"))
    deadline = time.monotonic() + 120
    while not _writer_lock_held(folder) and build.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    cli = start_cli("predict", str(folder), str(SAMPLE_IMAGE), "--preprocess", "fit", "--top-k", "1")
    outcomes = []
    while build.poll() is None or not outcomes:
        locked_before = _writer_lock_held(folder)
        try:
            with Session(folder, preprocess="fit") as session:
                session.predict(SAMPLE_IMAGE, top=1)
            code = 0
        except IntegrityError:
            code = 4
        outcomes.append((locked_before and _writer_lock_held(folder), code))
    _, stderr = build.communicate(timeout=120)
    assert build.returncode == 0, stderr
    _, cli_stderr = cli.communicate(timeout=300)
    assert "Traceback" not in cli_stderr, cli_stderr
    assert cli.returncode == 0 or (cli.returncode == 4 and "error:" in cli_stderr), cli_stderr
    inside = [code for during, code in outcomes if during]
    assert inside, f"no Session ran wholly inside the rebuild: {outcomes}"
    assert 0 in inside, outcomes  # not every prediction during a rebuild may fail
    assert run_cli("predict", str(folder), str(SAMPLE_IMAGE), "--preprocess", "fit").returncode == 0


def test_build_defers_removing_files_a_reader_uses(fast_engines, tmp_path, onnx_path, reference_weights):
    """A Session (predict) holds the readers' lock: a rebuild that replaces the engines keeps the old ones
    until the reader is gone, and the next build removes them."""
    import shutil

    from rsz_export.pipeline.run import BuildSpec, build
    from rsz_export.serve.session import Session

    folder = Path(shutil.copytree(fast_engines, tmp_path / "engines"))

    def rebuild(lo, hi):
        logged = []
        spec = BuildSpec(
            make_plan(lo, hi),
            folder,
            backend="onnxruntime",
            weights=str(reference_weights),
            onnx=onnx_path,
        )
        build(spec, logged.append)
        return "\n".join(logged)

    old_engines = {p.name for p in folder.glob("onnxruntime-*")}
    with Session(folder, preprocess="fit") as session:
        log = rebuild(224, 240)
        assert "a reader is using" in log
        assert old_engines <= {p.name for p in folder.glob("onnxruntime-*")}
        assert session.predict(SAMPLE_IMAGE).top  # the reader's engines are still there and intact
    rebuild(224, 256)
    assert {p.name for p in folder.glob("onnxruntime-*")} == old_engines  # stale ones removed, no reader now
