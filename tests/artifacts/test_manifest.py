import json
import os
import tempfile
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rsz_export.artifacts.files import atomic_path, atomic_write_text, directory_lock, sha256_file
from rsz_export.artifacts.manifest import (
    FEATURES_SCHEMA_VERSION,
    SCHEMA_VERSION,
    CalibrationRecord,
    EngineRecord,
    FileRecord,
    LabelsRecord,
    Manifest,
    WeightsRecord,
    files_intact,
    inside,
    load_manifest,
    load_previous_manifest,
    save_manifest,
    verified_bytes,
    verify_file,
)
from rsz_export.errors import IntegrityError, OutputError
from rsz_export.interface import output_names
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


def _engine_with_extra_files():
    return EngineRecord("ov", "openvino", "fp32", FileRecord("ov/model.xml", "ab" * 32, 3), (0, 1), 2.0,
                        {"threads": 2}, (FileRecord("ov/model.bin", "cd" * 32, 9),))


def test_an_engine_with_extra_files_round_trips_and_older_entries_read_with_defaults(tmp_path):
    """An engine made of several files (OpenVINO's .xml and .bin) keeps every file; the saved entry holds the
    documented fields only; an entry from before ``settings`` and ``extra_files`` existed reads with none."""
    engine = _engine_with_extra_files()
    manifest = _manifest(make_plan(224, 320, 2), [engine])
    save_manifest(manifest, tmp_path)
    assert load_manifest(tmp_path) == manifest
    entry = json.loads((tmp_path / "manifest.json").read_text())["engines"][0]
    assert entry == {"name": "ov", "backend": "openvino", "precision": "fp32",
                     "file": {"file": "ov/model.xml", "sha256": "ab" * 32, "bytes": 3}, "profiles": [0, 1],
                     "build_seconds": 2.0, "settings": {"threads": 2},
                     "extra_files": [{"file": "ov/model.bin", "sha256": "cd" * 32, "bytes": 9}]}
    del entry["settings"], entry["extra_files"]
    assert EngineRecord.from_dict(entry) == replace(engine, settings={}, extra_files=())


def test_load_previous_manifest_is_none_unless_readable(tmp_path):
    assert load_previous_manifest(tmp_path) is None
    manifest = _manifest(make_plan(224, 320))
    save_manifest(manifest, tmp_path)
    assert load_previous_manifest(tmp_path) == manifest
    (tmp_path / "manifest.json").write_text("{ not json")
    assert load_previous_manifest(tmp_path) is None


def test_a_missing_build_suggests_a_close_name_beside_it_or_how_to_build(tmp_path, monkeypatch):
    (tmp_path / "engines-224").mkdir()
    save_manifest(_manifest(make_plan(224, 320)), tmp_path / "engines-224")
    (tmp_path / "engines-225").mkdir()  # no manifest: not a build
    with pytest.raises(IntegrityError) as error:
        load_manifest(tmp_path / "engines-22")
    assert error.value.message == f"no manifest at {tmp_path / 'engines-22' / 'manifest.json'}"
    assert error.value.hint == f"did you mean {tmp_path / 'engines-224'}/?"
    monkeypatch.chdir(tmp_path)
    with pytest.raises(IntegrityError) as error:
        load_manifest("engines-22")
    assert error.value.hint == "did you mean engines-224/?"
    with pytest.raises(IntegrityError) as error:
        load_manifest("engines-224/elsewhere")
    assert error.value.hint == "build engines first: rsz-export build engines-224/elsewhere --min MIN --max MAX"
    with pytest.raises(IntegrityError) as error:
        load_manifest("no/such/parent")
    assert error.value.hint == "build engines first: rsz-export build no/such/parent --min MIN --max MAX"


def test_verified_bytes_explains_each_way_a_recorded_file_is_wrong(tmp_path):
    """What is checked is what is loaded: the bytes when they match; otherwise the same messages as
    ``verify_file`` (tampered, missing) and the reason the system gives (a folder, a path through a file)."""
    target = tmp_path / "engine.bin"
    target.write_bytes(b"engine bytes")
    record = FileRecord("engine.bin", sha256_file(target), target.stat().st_size)
    assert verified_bytes(tmp_path, record) == b"engine bytes"
    target.write_bytes(b"engine bytez")
    with pytest.raises(IntegrityError) as error:
        verified_bytes(tmp_path, record)
    assert error.value.message == (f"{target} does not match the manifest (sha256 {sha256_file(target)[:12]}... "
                                   f"recorded {record.sha256[:12]}...): it was modified, truncated or replaced after "
                                   "the build")
    target.unlink()
    with pytest.raises(IntegrityError) as error:
        verified_bytes(tmp_path, record)
    assert error.value.message == f"file {target} is missing"
    assert error.value.hint == "rebuild it: rsz-export build --force"
    (tmp_path / "folder.bin").mkdir()
    with pytest.raises(IntegrityError) as error:
        verified_bytes(tmp_path, replace(record, file="folder.bin"))
    assert error.value.message.startswith(f"{tmp_path / 'folder.bin'} is not a regular file")
    (tmp_path / "a.txt").write_text("a file, not a folder")
    with pytest.raises(IntegrityError) as error:
        verified_bytes(tmp_path, replace(record, file="a.txt/engine.bin"))
    assert error.value.message == f"{tmp_path / 'a.txt' / 'engine.bin'} cannot be read: Not a directory"


def test_a_path_leading_out_says_why_and_how_to_recover(tmp_path):
    with pytest.raises(IntegrityError) as error:
        verified_bytes(tmp_path, FileRecord("../x.onnx", "0" * 64, 0))
    assert error.value.message == (
        f"the manifest in {tmp_path} names the file '../x.onnx', which is not a relative path inside the build "
        "folder: a build's manifest names only files of that build, so this manifest was edited or copied from "
        "elsewhere; nothing it names was loaded")
    assert error.value.hint == f"rebuild the folder: rsz-export build {tmp_path} --force"


def test_manifests_read_by_their_version_and_older_fields_default(tmp_path):
    """A version-2 manifest has class names and a class count but no calibration; a version-1 one neither
    (stray newer fields are not read); warnings and stage keys round-trip and default to none when absent."""
    labels = LabelsRecord(FileRecord("labels-0123456789ab.txt", "01" * 32, 7), "/x/names.json", "23" * 32)
    manifest = replace(_manifest(make_plan(224, 320), num_classes=10, labels=labels), warnings=("w1", "w2"))
    save_manifest(manifest, tmp_path)
    assert load_manifest(tmp_path) == manifest
    data = json.loads((tmp_path / "manifest.json").read_text())
    calibration = {"file": {"file": "calibration-ab.json", "sha256": "ef" * 32, "bytes": 1}, "method": "minmax",
                   "source": "bundled", "images": [], "seconds": 1.0}
    v2 = {**data, "schema_version": 2, "calibration": calibration}
    (tmp_path / "manifest.json").write_text(json.dumps(v2))
    read = load_manifest(tmp_path)
    assert (read.num_classes, read.labels, read.calibration) == (10, labels, None)
    (tmp_path / "manifest.json").write_text(json.dumps({**v2, "schema_version": 1}))
    read = load_manifest(tmp_path)
    assert (read.num_classes, read.labels, read.calibration) == (1000, None, None)
    del data["warnings"], data["keys"]
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    assert (load_manifest(tmp_path).warnings, load_manifest(tmp_path).keys) == ((), {})


def test_unreadable_manifests_say_what_is_wrong_and_how_to_recover(tmp_path):
    path = tmp_path / "manifest.json"
    for text, message in (("{ not json", "is unreadable or corrupt: "), ("[1, 2]", "is not a JSON object"),
                          ("{}", "schema version None is not one this rsz-export reads (1, 2, 3, 4)"),
                          (json.dumps({"schema_version": 3}), "is malformed (KeyError('tool_version'))")):
        path.write_text(text)
        with pytest.raises(IntegrityError) as error:
            load_manifest(tmp_path)
        assert message in error.value.message
        assert error.value.hint == ("rebuild the engines with this version: rsz-export build --force"
                                    if "schema" in message else "rebuild with --force")
    path.unlink()
    path.mkdir()
    with pytest.raises(IntegrityError) as error:
        load_manifest(tmp_path)
    assert error.value.message.startswith(f"manifest {path} is not a regular file")


@pytest.mark.parametrize("name", ["", "C:x.onnx", "\\x.onnx"])
def test_drive_and_root_relative_names_are_not_relative_paths(tmp_path, name):
    with pytest.raises(IntegrityError, match="is not a relative path inside the build folder"):
        inside(tmp_path, FileRecord(name, "0" * 64, 0))


def test_a_symlink_leading_out_is_named_with_its_reason(tmp_path):
    (tmp_path / "build").mkdir()
    (tmp_path / "outside.onnx").write_bytes(b"x")
    (tmp_path / "build" / "model.onnx").symlink_to(tmp_path / "outside.onnx")
    with pytest.raises(IntegrityError) as error:
        inside(tmp_path / "build", FileRecord("model.onnx", "0" * 64, 1))
    assert error.value.message.startswith(f"the manifest in {tmp_path / 'build'} names the file 'model.onnx', which "
                                          "leads out of the build folder through a symlink: ")


def test_a_feature_build_is_written_as_version_4_with_its_outputs(tmp_path):
    """A backbone build (outputs other than logits) is written as version 4 with what it gives and its output
    tensors, and reads back so; a logits build stays version 3 without them, and a version-3 file's stray
    ``outputs`` is not read; a version-4 file naming an unknown kind is malformed."""
    logits = _manifest(make_plan(224, 320))
    assert (logits.schema_version, SCHEMA_VERSION, logits.has_classes) == (3, 3, True)
    assert not {"outputs", "output_names"} & set(logits.to_dict())
    for kind in ("features", "fpn"):
        manifest = replace(logits, num_classes=0, outputs=kind)
        assert (manifest.schema_version, FEATURES_SCHEMA_VERSION, manifest.has_classes) == (4, 4, False)
        data = manifest.to_dict()
        assert (data["schema_version"], data["outputs"], data["output_names"]) == (4, kind, list(output_names(kind)))
        save_manifest(manifest, tmp_path)
        assert load_manifest(tmp_path) == manifest
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps({**data, "schema_version": 3}))
    assert load_manifest(tmp_path).outputs == "logits"
    path.write_text(json.dumps({**data, "outputs": "boxes"}))
    with pytest.raises(IntegrityError) as error:
        load_manifest(tmp_path)
    unknown = ValueError("outputs 'boxes' is none of logits, features, fpn")
    assert error.value.message.endswith(f"is malformed ({unknown!r})")
