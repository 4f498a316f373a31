"""A build folder damaged or full: a rerun repairs what no longer matches the manifest, a full disk is exit 5
with nothing half-written, and a timing cache no manifest vouches for is not used."""

from __future__ import annotations

import json

import pytest

from tests.helpers import SAMPLE_IMAGE, assert_clean_failure, assert_no_temp_files, onnx_build_args, onnx_file, run_cli


@pytest.mark.slow
def test_corrupt_export_then_build_rerun_exports_again(engines_copy):
    """Without --onnx, a rerun whose ONNX no longer matches the manifest exports again (about a minute)."""
    from rsz_export.artifacts.manifest import load_manifest, verify_file

    model = onnx_file(engines_copy)
    model.write_bytes(model.read_bytes()[:1000])
    rerun = run_cli("build", "--min", "224", "--max", "288", str(engines_copy), "--no-verify")
    assert rerun.returncode == 0 and "exporting ResNet-50" in rerun.stderr, rerun.stderr
    repaired = load_manifest(engines_copy)
    for record in (repaired.onnx, *(e.file for e in repaired.engines)):
        verify_file(engines_copy, record)

def test_onnx_missing_or_corrupt_then_build_rerun_repairs(damaged, onnx_path, reference_weights):
    model = onnx_file(damaged)
    model.write_bytes(b"not an onnx file")
    result = run_cli("validate", str(damaged), "--replace-sizes", "--sizes", "224", "--random-inputs", "0")
    assert_clean_failure(result, 1)
    assert "NOT-RUN: export onnx" in result.stdout and "does not match the manifest" in result.stdout, result.stdout
    model.unlink()
    image = str(SAMPLE_IMAGE)
    served = run_cli("predict", str(damaged), image, "--preprocess", "fit")  # engines alone serve images
    assert served.returncode == 0, served.stderr
    rerun = run_cli(*onnx_build_args(onnx_path, reference_weights, damaged))
    assert rerun.returncode == 0 and rerun.stdout.startswith("built"), rerun.stderr
    from rsz_export.artifacts.manifest import load_manifest, verify_file

    repaired = load_manifest(damaged)
    for record in (repaired.onnx, *(e.file for e in repaired.engines)):
        verify_file(damaged, record)

def test_build_on_a_full_disk(tmp_path, onnx_path, reference_weights, monkeypatch):
    """ENOSPC while copying the ONNX in, then while writing the manifest: exit 5, no manifest, no temp files."""
    import errno
    import os

    from click.testing import CliRunner

    from rsz_export.cli import main

    def full(*_args, **_kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    out = tmp_path / "out"
    args = onnx_build_args(onnx_path, reference_weights, out)
    for target in ("shutil.copyfile", "os.fsync"):
        with monkeypatch.context() as patch:
            patch.setattr(target, full)
            result = CliRunner().invoke(main, args)
        assert result.exit_code == 5, (result.output, result.exception)
        assert "no space left on the device" in result.stderr
        assert not (out / "manifest.json").exists()
        assert_no_temp_files(out)

def test_timing_cache_in_the_folder_is_used_only_when_the_manifest_recorded_it(damaged):
    """TensorRT would parse the timing cache natively: one the manifest does not vouch for is removed first."""
    from rsz_export.artifacts.files import sha256_file
    from rsz_export.pipeline.cleanup import drop_untrusted_timing_cache

    cache = damaged.resolve() / "timing.cache"
    cache.write_bytes(b"planted by someone else")
    logged = []
    drop_untrusted_timing_cache(damaged, cache, logged.append)
    assert not cache.exists() and "not using timing.cache" in logged[0]
    cache.write_bytes(b"what the last build wrote")
    manifest = json.loads((damaged / "manifest.json").read_text())
    manifest["engines"][0]["settings"]["timing_cache"] = {"sha256": sha256_file(cache)}
    (damaged / "manifest.json").write_text(json.dumps(manifest))
    drop_untrusted_timing_cache(damaged, cache, logged.append)
    assert cache.read_bytes() == b"what the last build wrote"
    elsewhere = damaged.parent / "my.cache"
    elsewhere.write_bytes(b"the user's own")
    drop_untrusted_timing_cache(damaged, elsewhere, logged.append)
    assert elsewhere.exists()
