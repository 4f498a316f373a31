"""An int8 build to an accuracy target, end to end through the library on a tiny conv net (no export): the held-out
images and the coverage report in the calibration file and the manifest, the layers kept in float recorded and
followed by the engine's Q/DQ model, and a target no placement meets stopping with exit 1 and nothing recorded."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from tests.helpers import RANDOM_METADATA, make_plan, tiny_convnet


def _photos(folder, count):
    """Smooth random colour fields (noise would be no image at all), 256x320."""
    folder.mkdir()
    rng = np.random.default_rng(3)
    for k in range(count):
        coarse = rng.integers(0, 256, (4, 5, 3), dtype=np.uint8)
        Image.fromarray(coarse).resize((320, 256), Image.BILINEAR).save(folder / f"{k}.png")
    return folder


def _build(tmp_path, target, log=None):
    from rsz_export.backends.base import BuildOptions
    from rsz_export.model.calibration_set import CalibSpec
    from rsz_export.pipeline.run import BuildSpec, build

    model = tiny_convnet(tmp_path / "convnet.onnx", metadata=RANDOM_METADATA)
    spec = BuildSpec(make_plan(224, 320), tmp_path / "out", backend="onnxruntime", onnx=model,
                     options=BuildOptions(precision="int8"),
                     calibration=CalibSpec(_photos(tmp_path / "calib", 5), target=target))
    return build(spec, log or (lambda message: None)).manifest


def test_the_manifest_reports_coverage_and_the_layers_kept_in_float(tmp_path):
    lines = []
    manifest = _build(tmp_path, 0.9999, lines.append)
    report = manifest.calibration.report
    coverage, fallback = report["coverage"], report["int8_fallback"]
    (held,) = coverage["holdout"]["images"]  # a fifth of 5 images, not calibrated on
    assert held["file"] not in {i["file"] for i in manifest.calibration.images}
    assert sum(coverage["images_per_profile"]) == 4 == len(manifest.calibration.images)
    assert 0 <= coverage["clipped_share"] < 0.01 and coverage["sizes"] == ["224x224", "320x320"]
    assert fallback["met"] and fallback["target_min_cosine"] == 0.9999
    assert set(fallback["sensitivity"]) == {"c1", "c2", "add", "fc"}
    kept = [layer["layer"] for layer in fallback["float_layers"]]
    chosen = next(t for t in fallback["trials"] if t["float_layers"] == len(kept))
    assert min(chosen["worst"].values()) >= 0.9999 and fallback["float_share"] == chosen["float_share"] <= 0.5
    assert all(min(t["worst"].values()) < 0.9999 for t in fallback["trials"] if t["float_layers"] < len(kept))
    (engine,) = manifest.engines
    assert engine.settings["float_layers"] == kept
    assert engine.settings["qdq_check"]["images"] == "held-out" and engine.settings["qdq_check"]["bound"] == 0.9999
    assert any(line.startswith("int8 coverage: calibration images per profile") for line in lines)
    data = json.loads((tmp_path / "out" / manifest.calibration.file.file).read_text())
    assert data["coverage"] == coverage and data["holdout"]["files"] == [held["file"]]


def test_no_placement_meeting_the_target_stops_with_the_table(tmp_path, monkeypatch):
    from rsz_export.errors import EXIT_CHECK_FAILED, CheckFailed
    from rsz_export.model import sensitivity

    monkeypatch.setattr(sensitivity, "MAX_FLOAT_SHARE", 0.0)  # only the Add may stay in float: never enough
    with pytest.raises(CheckFailed, match="no int8 placement meets --int8-target 0.9999") as error:
        _build(tmp_path, 0.9999)
    assert error.value.exit_code == EXIT_CHECK_FAILED and "float layer(s)" in error.value.message
    assert not (tmp_path / "out" / "manifest.json").exists()
    assert not list((tmp_path / "out").glob("calibration-*.json"))
