"""Bad input on the newer surfaces (class names, checkpoints, calibration folders, model names, image folders,
serve's options), tried as a careless or hostile user would: one clear message, the documented exit code, nothing
written. Cheap on purpose: tiny stand-in models, no ResNet-50 export; the CLI where a process start is cheap (no
torch import on the way to the refusal), the library's build in-process where it would be dear."""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path

import pytest
from PIL import Image

from rsz_export.errors import EXIT_INTEGRITY, EXIT_OUTPUT, EXIT_USAGE, IntegrityError, UsageError, shown
from tests.helpers import RANDOM_METADATA, assert_clean_failure, run_cli, tiny_onnx

BUILD = ("build", "--min", "224", "--max", "256", "--weights", "random")


def _png(path: Path, size=(320, 240), colour=(200, 40, 40)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)
    return path


def _noisy_png(path: Path, size=(320, 240)) -> Path:
    import numpy as np

    pixels = np.random.default_rng(0).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


# 1. Small text inputs: bounded, from regular files only.

def _unblocked_after(fifo: Path, seconds: float = 5) -> threading.Timer:
    """Should a reader wait for a writer on ``fifo`` (the bug), a writer comes, so a test fails instead of hanging."""
    timer = threading.Timer(seconds, lambda: os.close(os.open(fifo, os.O_WRONLY)))
    timer.start()
    return timer


def test_labels_from_a_device_or_a_pipe_are_refused_without_reading(tmp_path):
    from rsz_export.model.labels import read_labels

    out = tmp_path / "out"
    result = run_cli(*BUILD, str(out), "--labels", "/dev/zero", timeout=60)
    assert_clean_failure(result, EXIT_USAGE, "--labels /dev/zero is not a regular file (it is a character device)")
    assert not out.exists()
    fifo = tmp_path / "names.fifo"
    os.mkfifo(fifo)  # nobody writes to it: reading it would wait for ever
    unblock = _unblocked_after(fifo)
    try:
        with pytest.raises(UsageError, match="is not a regular file \\(it is a named pipe\\)"):
            read_labels(fifo)
    finally:
        unblock.cancel()


def test_small_inputs_over_their_limit_are_refused(tmp_path):
    from rsz_export.errors import SMALL_FILE_BYTES
    from rsz_export.model.labels import read_labels
    from rsz_export.plan.profile_file import load_profile_file

    big = tmp_path / "big.txt"
    with open(big, "wb") as handle:  # sparse: no disk used
        handle.truncate(SMALL_FILE_BYTES + 1)
    with pytest.raises(UsageError, match="is larger than the 16 MiB such a file may hold"):
        read_labels(big)
    with pytest.raises(UsageError, match="profile file .* is not a regular file"):
        load_profile_file("/dev/zero")


def test_a_manifest_that_is_a_pipe_is_refused(tmp_path):
    from rsz_export.artifacts.manifest import load_manifest

    fifo = tmp_path / "manifest.json"
    os.mkfifo(fifo)
    unblock = _unblocked_after(fifo)
    try:
        with pytest.raises(IntegrityError, match="manifest .* is not a regular file"):
            load_manifest(tmp_path)
    finally:
        unblock.cancel()


def test_a_build_file_replaced_by_a_pipe_or_grown_is_refused_without_reading_it_all(tmp_path):
    from rsz_export.artifacts.files import sha256_file
    from rsz_export.artifacts.manifest import FileRecord, verified_bytes

    (tmp_path / "engine.onnx").write_bytes(b"x" * 10)
    record = FileRecord("engine.onnx", sha256_file(tmp_path / "engine.onnx"), 10)
    assert verified_bytes(tmp_path, record) == b"x" * 10
    (tmp_path / "engine.onnx").write_bytes(b"x" * 11)
    with pytest.raises(IntegrityError, match="does not match the manifest"):
        verified_bytes(tmp_path, record)
    (tmp_path / "engine.onnx").unlink()
    os.mkfifo(tmp_path / "engine.onnx")
    unblock = _unblocked_after(tmp_path / "engine.onnx")
    try:
        with pytest.raises(IntegrityError, match="engine.onnx is not a regular file"):
            verified_bytes(tmp_path, record)
        with pytest.raises(IntegrityError, match="cannot read .*engine.onnx: not a regular file"):
            sha256_file(tmp_path / "engine.onnx")
    finally:
        unblock.cancel()


# 2. Class names: bounded length, no control characters.

@pytest.mark.parametrize("content, phrase", [
    ("cat\n" + "x" * 1_000_000 + "\n", "class name(s) at index 1 are longer than 200 characters"),
    ("cat\nd\x00og\n", "class name(s) at index 1 hold control or invisible characters (e.g. '\\x00' in 'd\\x00og')"),
    ("cat\nd\x1cog\n", "hold control or invisible characters"),  # splitlines() would have made two names of it
    ('["cat", "d\\u2028og"]', "hold control or invisible characters"),
], ids=["1 MB name", "NUL", "file separator", "line separator in JSON"])
def test_class_names_too_long_or_with_control_characters_are_refused(content, phrase, tmp_path):
    from rsz_export.model.labels import read_labels

    names = tmp_path / "names.txt"
    names.write_text(content, encoding="utf-8")
    with pytest.raises(UsageError) as error:
        read_labels(names)
    assert phrase in error.value.message


def test_a_class_name_with_a_nul_byte_stops_the_build(tmp_path):
    names = tmp_path / "names.txt"
    names.write_text("cat\nd\x00og\n", encoding="utf-8")
    out = tmp_path / "out"
    result = run_cli(*BUILD, str(out), "--labels", str(names), "--num-classes", "2")
    assert_clean_failure(result, EXIT_USAGE, "class name(s) at index 1 hold control or invisible characters")
    assert not out.exists()


# 3. A folder name str.isdigit() accepts and int() does not.

def test_a_class_folder_named_with_a_superscript_digit(tiny_engines, tmp_path):
    from rsz_export.sweep.accuracy import class_index

    assert class_index("²", ["a", "b", "c"]) is None and class_index("2", ["a", "b", "c"]) == 2
    _png(tmp_path / "labeled" / "²" / "a.png")
    result = run_cli("sweep", str(tiny_engines), "--images", str(tmp_path / "labeled"), "--sizes", "224")
    assert_clean_failure(result, EXIT_USAGE, "1 class folder(s) in", "name no class the model knows: '²'")


def test_superscript_digits_in_number_options_are_usage_errors():
    from rsz_export.shapes import parse_batches, parse_sizes

    with pytest.raises(UsageError, match="cannot read '²' in '²': write whole numbers"):
        parse_batches("²")
    with pytest.raises(UsageError, match="cannot read size"):
        parse_sizes("2²")


# 4. Checked before the output folder is created.

def test_a_truncated_png_in_calib_leaves_no_folder(tmp_path):
    from rsz_export.backends.base import BuildOptions
    from rsz_export.model.calibration_set import CalibSpec
    from rsz_export.pipeline.run import BuildSpec, build
    from rsz_export.plan.profiles import PlanSpec, plan_profiles

    calib = tmp_path / "calib"
    _png(calib / "a.png")
    data = _noisy_png(calib / "cut.png").read_bytes()
    (calib / "cut.png").write_bytes(data[: len(data) // 2])  # the header is whole, the pixel data is not
    model = tiny_onnx(tmp_path / "tiny.onnx", metadata=RANDOM_METADATA)
    out = tmp_path / "out"
    spec = BuildSpec(plan_profiles(PlanSpec(224, 320)), out, backend="onnxruntime", onnx=model,
                     options=BuildOptions(precision="int8"), calibration=CalibSpec(calib))
    with pytest.raises(IntegrityError, match=r"cannot read image .*cut.png \(corrupt or truncated\)") as error:
        build(spec)
    assert error.value.exit_code == EXIT_INTEGRITY and not out.exists()


def test_a_checkpoint_with_nan_and_inf_is_an_integrity_error_when_read(wrapped_checkpoints, tmp_path):
    from safetensors.torch import save_file

    from rsz_export.pipeline.run import BuildSpec, build
    from rsz_export.plan.profiles import PlanSpec, plan_profiles

    state = {k: v.clone() for k, v in wrapped_checkpoints[0].items()}
    state["fc.bias"][3] = float("nan")
    state["layer1.0.conv1.weight"][0, 0, 0, 0] = float("inf")
    save_file(state, tmp_path / "diverged.safetensors")  # saved and read faster than torch.save's zip
    out = tmp_path / "out"
    spec = BuildSpec(plan_profiles(PlanSpec(224, 256)), out, backend="onnxruntime",
                     weights=str(tmp_path / "diverged.safetensors"))
    with pytest.raises(IntegrityError) as error:
        build(spec)
    assert error.value.exit_code == EXIT_INTEGRITY and not out.exists()
    assert "holds NaN or infinite values in 2 tensor(s): " in error.value.message
    for tensor in ("layer1.0.conv1.weight (0 NaN, 1 Inf)", "fc.bias (1 NaN, 0 Inf)"):
        assert tensor in error.value.message


def test_an_onnx_with_a_non_finite_weight_is_an_integrity_error(tmp_path):
    import numpy as np

    from rsz_export.pipeline.run import BuildSpec, build
    from rsz_export.plan.profiles import PlanSpec, plan_profiles

    weights = np.ones((3, 1000), dtype=np.float32)
    weights[1, 7] = np.nan
    model = tiny_onnx(tmp_path / "nan.onnx", metadata=RANDOM_METADATA, weights=weights)
    out = tmp_path / "out"
    spec = BuildSpec(plan_profiles(PlanSpec(224, 256)), out, backend="onnxruntime", onnx=model)
    with pytest.raises(IntegrityError, match="holds NaN or infinite values in 1 weight tensor\\(s\\): w") as error:
        build(spec)
    assert error.value.exit_code == EXIT_INTEGRITY and not out.exists()


def test_a_failed_run_removes_the_folder_it_created_when_only_its_lock_is_there(tmp_path):
    from rsz_export.artifacts.files import directory_lock

    for created, folder in ((True, tmp_path / "new"), (False, tmp_path / "old")):
        folder.mkdir()
        with pytest.raises(UsageError), directory_lock(folder, created=created):
            raise UsageError("stopped")
        assert folder.exists() is not created
    (tmp_path / "kept").mkdir()
    with pytest.raises(UsageError), directory_lock(tmp_path / "kept", created=True):
        (tmp_path / "kept" / "model.onnx").write_bytes(b"finished")
        raise UsageError("stopped")
    assert (tmp_path / "kept" / "model.onnx").exists()


# 5. Name patterns match the whole name: `$` also matches before a trailing newline.

def test_model_names_with_a_trailing_newline_are_refused(tiny_engines, tmp_path):
    from rsz_export.triton.kserve import check_storage_uri

    repo = tmp_path / "repo"
    result = run_cli("triton", str(tiny_engines), "--repo", str(repo), "--name", "resnet50\n")
    assert_clean_failure(result, EXIT_USAGE, "--name 'resnet50\\n' cannot name a Triton model")
    assert not repo.exists() and not list(tmp_path.iterdir())
    result = run_cli("serve", str(tiny_engines), "--name", "resnet50\n")
    assert_clean_failure(result, EXIT_USAGE, "--name 'resnet50\\n' cannot name a Triton model")
    with pytest.raises(UsageError, match="is not a storage URI"):
        check_storage_uri("s3://bucket/repo\n")


# 6. One rule for links in image folders.

def _folder_with_links(tmp_path) -> Path:
    outside = tmp_path / "outside"
    _png(outside / "elsewhere.png", (640, 480))
    images = tmp_path / "images"
    _png(images / "good.png")
    (images / "to-file.png").symlink_to(outside / "elsewhere.png")
    (images / "to-folder").symlink_to(outside, target_is_directory=True)
    return images


def test_links_inside_an_image_folder_are_never_followed_and_said_so(tmp_path):
    from rsz_export.images.loading import LINK_REASON, list_files

    images = _folder_with_links(tmp_path)
    files, skipped = list_files(images)
    assert files == [images / "good.png"]
    assert [(s.path.name, s.reason) for s in skipped] == [("to-file.png", LINK_REASON), ("to-folder", LINK_REASON)]
    result = run_cli("plan", "--images", str(images))
    assert result.returncode == 0, result.stderr
    assert f"1 image(s) in {images}; skipped 2 (2 symbolic link not followed)" in result.stdout
    assert "480" not in result.stdout.split("\n", 2)[1]  # the 640x480 image behind the links was not counted


def test_a_linked_class_folder_is_not_followed_by_sweep(tmp_path):
    from rsz_export.images.loading import LINK_REASON
    from rsz_export.sweep.accuracy import load_labeled

    _png(tmp_path / "labeled" / "cat" / "a.png")
    _png(tmp_path / "outside" / "b.png")
    (tmp_path / "labeled" / "dog").symlink_to(tmp_path / "outside", target_is_directory=True)
    labeled = load_labeled(tmp_path / "labeled", ["cat", "dog"])
    assert labeled.items == ((str(tmp_path / "labeled" / "cat" / "a.png"), 0),)
    assert labeled.skipped == ((str(tmp_path / "labeled" / "dog"), LINK_REASON),)


def test_predict_says_which_links_it_did_not_follow(tiny_engines, tmp_path):
    images = _folder_with_links(tmp_path)
    result = run_cli("predict", str(tiny_engines), str(images))
    assert result.returncode == 0, result.stderr
    assert f"warning: skipped {images / 'to-file.png'}: symbolic link not followed" in result.stderr
    assert f"warning: skipped {images / 'to-folder'}: symbolic link not followed" in result.stderr
    assert [line.split(":")[0] for line in result.stdout.splitlines() if not line.startswith(" ")] == [
        str(images / "good.png")]


# 7. Names escaped in human output.

def test_a_file_name_with_a_newline_cannot_add_a_result_line(tiny_engines, tmp_path):
    fake = "fake.png: 224x224 at its own size (fit), engine ort (onnxruntime) profile 0, 1.0 ms (total 1.0 ms)"
    images = tmp_path / "images"
    _png(images / f"a.png\n{fake}\n.png")
    result = run_cli("predict", str(tiny_engines), str(images), "--csv", str(tmp_path / "p.csv"))
    assert result.returncode == 0, result.stderr
    heads = [line for line in result.stdout.splitlines() if not line.startswith(" ")]
    assert len(heads) == 1 and heads[0].startswith(shown(images / f"a.png\n{fake}\n.png") + ": ")
    assert fake not in result.stdout.splitlines()
    assert f"a.png\n{fake}\n.png" in (tmp_path / "p.csv").read_text()  # the CSV quotes the name as it is


def test_shown_escapes_only_what_is_not_printable():
    assert shown("photos/chat noir.jpg") == "photos/chat noir.jpg" and shown("été.png") == "été.png"
    assert shown("a\nb") == "'a\\nb'" and shown("x\x1b[2Jy") == "'x\\x1b[2Jy'"


# 8. Permission errors named as such.

def test_unreadable_images_are_named_permission_denied(monkeypatch, tmp_path):
    from PIL import Image as PilImage

    from rsz_export.images.loading import load_rgb
    from rsz_export.images.sizes import read_size
    from rsz_export.model.calibration_set import CalibSpec, resolve_calibration_set
    from rsz_export.plan.profiles import PlanSpec, plan_profiles

    calib = tmp_path / "calib"
    _png(calib / "locked.png")

    def refuse(*args, **kwargs):  # what open() does to a file without read permission (tests run as root here)
        raise PermissionError(13, "Permission denied", str(calib / "locked.png"))

    monkeypatch.setattr(PilImage, "open", refuse)
    with pytest.raises(ValueError, match=r"^cannot read \(permission denied\)$"):
        read_size(calib / "locked.png")
    with pytest.raises(IntegrityError, match=r"cannot read image .*locked.png \(permission denied\)$"):
        load_rgb(calib / "locked.png")
    with pytest.raises(UsageError, match=re.escape("e.g. locked.png: cannot read (permission denied))")):
        resolve_calibration_set(CalibSpec(calib), plan_profiles(PlanSpec(224, 320)))


def test_a_sub_folder_that_cannot_be_listed_is_said(monkeypatch, tmp_path):
    from rsz_export.images.loading import list_files

    _png(tmp_path / "images" / "good.png")
    (tmp_path / "images" / "locked").mkdir()
    real = os.scandir

    def scandir(path="."):
        if Path(path).name == "locked":
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    files, skipped = list_files(tmp_path / "images")
    assert files == [tmp_path / "images" / "good.png"]
    assert [(s.path.name, s.reason) for s in skipped] == [("locked", "cannot list folder (permission denied)")]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files without read permission")
def test_an_unreadable_labels_file_is_named_permission_denied(tmp_path):
    from rsz_export.model.labels import read_labels

    names = tmp_path / "names.txt"
    names.write_text("cat\n")
    names.chmod(0)
    with pytest.raises(UsageError, match="cannot be read: permission denied"):
        read_labels(names)


# 9. serve: the log's folder checked before start, a warning beyond loopback.

def test_serve_log_file_that_cannot_be_written_is_refused_before_start(tiny_engines, tmp_path):
    from rsz_export.errors import OutputError
    from rsz_export.triton.spec import check_log_file

    log = tmp_path / "nothere" / "server.log"
    result = run_cli("serve", str(tiny_engines), "--log-file", str(log), timeout=60)
    assert_clean_failure(result, EXIT_OUTPUT, f"--log-file {log}: its folder {log.parent} does not exist")
    assert "starting the Triton server core" not in result.stderr
    with pytest.raises(OutputError, match="--log-file /dev/zero is not a regular file"):
        check_log_file(Path("/dev/zero"))
    check_log_file(tmp_path / "server.log")  # a new file in an existing folder is fine


@pytest.mark.parametrize("host, warned", [("0.0.0.0", True), ("::", True), ("127.0.0.1", False), ("localhost", False)])
def test_serve_warns_on_start_when_it_listens_beyond_loopback(host, warned, tmp_path):
    from rsz_export.triton.spec import beyond_loopback

    assert beyond_loopback(host) is warned
    if host == "0.0.0.0":  # through the command: the warning comes first, then the missing build stops it
        result = run_cli("serve", str(tmp_path / "nothing"), "--host", host)
        assert_clean_failure(result, EXIT_INTEGRITY, "no manifest at")
        assert "warning: --host 0.0.0.0 listens beyond this machine" in result.stderr
        assert result.stderr.index("warning") < result.stderr.index("error")

