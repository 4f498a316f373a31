import json
import os
import tempfile
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rsz_export.artifacts.files import atomic_path, atomic_write_text, directory_lock, sha256_file
from rsz_export.artifacts.manifest import (
    SCHEMA_VERSION,
    CalibrationRecord,
    EngineRecord,
    FileRecord,
    LabelsRecord,
    Manifest,
    WeightsRecord,
    files_intact,
    load_manifest,
    save_manifest,
    verify_file,
)
from rsz_export.errors import IntegrityError, OutputError
from rsz_export.shapes import BatchRange
from tests.helpers import make_plan


def _manifest(plan, engines=(), num_classes=1000, labels=None):
    return Manifest(
        tool_version="0.1.0",
        command="rsz-export build",
        created_utc="2026-01-01T00:00:00+00:00",
        host={"cpu": "x"},
        versions={"torch": "2"},
        onnx=FileRecord("model.onnx", "ab" * 32, 10),
        weights=WeightsRecord("random", "cd" * 32, "seed", 0),
        backend="onnxruntime",
        precision="fp32",
        plan=plan,
        engines=tuple(engines),
        cache_key="k",
        keys={"export": "e"},
        num_classes=num_classes,
        labels=labels,
    )


@settings(max_examples=40, deadline=None)
@given(
    st.integers(32, 600),
    st.integers(0, 600),
    st.integers(1, 4),
    st.sampled_from(["free", "square"]),
    st.integers(1, 16),
    st.integers(1, 30_000),
    st.booleans(),
)
def test_manifest_round_trip(lo, extra, count, aspect, batch, num_classes, named):
    plan = make_plan(lo, lo + extra, min(count, extra + 1), BatchRange(1, batch, batch), aspect)
    engine = EngineRecord(
        "ort",
        "onnxruntime",
        "fp32",
        FileRecord("e/x.onnx", "ef" * 32, 5),
        tuple(range(len(plan.profiles))),
        1.5,
        {"a": 1},
    )
    labels = LabelsRecord(FileRecord("labels-0123456789ab.txt", "01" * 32, 7), "/x/names.json", "23" * 32)
    manifest = _manifest(plan, [engine], num_classes, labels if named else None)
    with tempfile.TemporaryDirectory() as out:
        save_manifest(manifest, out)
        assert load_manifest(out) == manifest


def test_load_manifest_errors(tmp_path):
    with pytest.raises(IntegrityError, match="no manifest"):
        load_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text("{ not json")
    with pytest.raises(IntegrityError, match="corrupt"):
        load_manifest(tmp_path)
    data = _manifest(make_plan(224, 320)).to_dict()
    (tmp_path / "manifest.json").write_text(json.dumps({**data, "schema_version": 99}))
    with pytest.raises(IntegrityError, match="schema version 99"):
        load_manifest(tmp_path)
    del data["plan"]
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(IntegrityError, match="malformed"):
        load_manifest(tmp_path)


def test_version_1_manifest_reads_as_an_imagenet_build(tmp_path):
    """Every version-1 build had ImageNet's 1000 classes and no class names of its own: that is how it reads."""
    data = _manifest(make_plan(224, 320), num_classes=10).to_dict()
    for field in ("num_classes", "labels"):
        del data[field]
    for field in ("content_sha256", "num_classes"):
        del data["weights"][field]
    (tmp_path / "manifest.json").write_text(json.dumps({**data, "schema_version": 1}))
    manifest = load_manifest(tmp_path)
    assert manifest.num_classes == 1000 and manifest.labels is None and manifest.weights.num_classes == 1000
    assert manifest.schema_version == SCHEMA_VERSION and save_manifest(manifest, tmp_path)  # written back as current
    assert json.loads((tmp_path / "manifest.json").read_text())["num_classes"] == 1000


def test_verify_file_detects_tampering(tmp_path):
    target = tmp_path / "engine.bin"
    target.write_bytes(b"engine bytes")
    record = FileRecord("engine.bin", sha256_file(target), target.stat().st_size)
    assert verify_file(tmp_path, record) == target
    assert files_intact(tmp_path, [record]) and files_intact(tmp_path, [])
    target.write_bytes(b"engine bytez")
    actual = sha256_file(target)
    with pytest.raises(IntegrityError) as info:
        verify_file(tmp_path, record)
    assert info.value.message == (f"{target} does not match the manifest (sha256 {actual[:12]}... recorded "
                                  f"{record.sha256[:12]}...): it was modified, truncated or replaced after the build")
    assert info.value.hint == "rebuild it: rsz-export build --force"
    assert not files_intact(tmp_path, [record])
    target.unlink()
    with pytest.raises(IntegrityError, match="missing"):
        verify_file(tmp_path, record)
    assert not files_intact(tmp_path, [record])


def test_an_int8_calibration_record_round_trips(tmp_path):
    calibration = CalibrationRecord(FileRecord("calibration-ab.json", "ef" * 32, 123), "entropy", "photos/",
                                    ({"file": "a.jpg", "sha256": "01" * 32, "size": [480, 640], "crop": 256},),
                                    12.5, "only 1 image(s)",
                                    {"coverage": {"clipped_share": 0.001}, "int8_fallback": None})
    manifest = replace(_manifest(make_plan(224, 256)), calibration=calibration)
    save_manifest(manifest, tmp_path)
    data = json.loads((tmp_path / "manifest.json").read_text())
    assert data["calibration"] == {"file": {"file": "calibration-ab.json", "sha256": "ef" * 32, "bytes": 123},
                                   "method": "entropy", "source": "photos/", "seconds": 12.5,
                                   "images": [{"file": "a.jpg", "sha256": "01" * 32, "size": [480, 640], "crop": 256}],
                                   "warning": "only 1 image(s)",
                                   "report": {"coverage": {"clipped_share": 0.001}, "int8_fallback": None}}
    assert load_manifest(tmp_path) == manifest
    del data["calibration"]["warning"], data["calibration"]["report"]  # as a build before either existed wrote it
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    assert load_manifest(tmp_path).calibration == replace(calibration, warning=None, report=None)


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.txt"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]
    assert oct(target.stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_directory_lock_refuses_second_writer(tmp_path):
    with directory_lock(tmp_path):
        with pytest.raises(OutputError, match="another rsz-export build"):
            with directory_lock(tmp_path):
                pass
    with directory_lock(tmp_path):  # released on exit
        pass
