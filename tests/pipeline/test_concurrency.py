"""Builds and readers at once: predictions keep running while ``build --force`` replaces a folder, and a build
defers deleting files a reader may still use."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import SAMPLE_IMAGE, onnx_build_args, run_cli, start_cli


def test_predict_during_build_force(fast_engines, tmp_path, onnx_path, reference_weights):
    """Predictions keep running while ``build --force`` replaces every file of the folder: each one succeeds
    or fails with an integrity message (exit 4), never a crash."""
    import shutil

    folder = Path(shutil.copytree(fast_engines, tmp_path / "engines"))
    build = start_cli(*onnx_build_args(onnx_path, reference_weights, folder, "--force"))
    outcomes = []
    while build.poll() is None or not outcomes:
        result = run_cli("predict", str(folder), str(SAMPLE_IMAGE), "--oversize", "shrink", "--top-k", "1")
        assert "Traceback" not in result.stderr, result.stderr
        assert result.returncode == 0 or (result.returncode == 4 and "error:" in result.stderr), result.stderr
        outcomes.append(result.returncode)
    _, stderr = build.communicate(timeout=120)
    assert build.returncode == 0, stderr
    assert 0 in outcomes, outcomes  # the old build (then the new one) stays servable: not every predict may fail
    assert run_cli("predict", str(folder), str(SAMPLE_IMAGE), "--oversize", "shrink").returncode == 0

def test_build_defers_removing_files_a_reader_uses(fast_engines, tmp_path, onnx_path, reference_weights):
    """A Session (predict) holds the readers' lock: a rebuild that replaces the engines keeps the old ones
    until the reader is gone, and the next build removes them."""
    import shutil

    from rsz_export.pipeline.run import BuildSpec, build
    from rsz_export.plan.profiles import PlanSpec, plan_profiles
    from rsz_export.serve.session import Session

    folder = Path(shutil.copytree(fast_engines, tmp_path / "engines"))

    def rebuild(lo, hi):
        logged = []
        spec = BuildSpec(
            plan_profiles(PlanSpec(lo, hi)),
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
