"""predict over folders of many images, as a user runs it: every image's route, batches, a progress bar only on a
terminal, --json/--csv that survive an interrupt, and bad files that never stop the folder."""

from __future__ import annotations

import csv
import json
import os
import pty
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import mixed_size
from tests.helpers import REPO, assert_clean_failure, run_cli, start_cli
from tests.images.test_loading import png16


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow
def test_a_folder_of_200_mixed_photos_runs_with_the_defaults(colour_engines, mixed_photos, tmp_path):
    out_json, out_csv = tmp_path / "p.json", tmp_path / "p.csv"
    started = time.perf_counter()
    result = run_cli("predict", str(colour_engines), str(mixed_photos), "--json", str(out_json), "--csv", str(out_csv))
    elapsed = time.perf_counter() - started
    assert result.returncode == 0, result.stderr
    assert "images  [" not in result.stderr and "Traceback" not in result.stderr  # piped: no progress bar
    rows = read_csv(out_csv)
    document = json.loads(out_json.read_text())
    assert len(rows) == 200 and document["complete"] and document["classified"] == 200
    assert len([line for line in result.stdout.splitlines() if not line.startswith("  ")]) == 200
    for row in rows:
        h, w = mixed_size(int(Path(row["source"]).stem))
        ran_h, ran_w = map(int, row["input"].split("x"))
        assert row["original"] == f"{h}x{w}" and 224 <= min(ran_h, ran_w) and max(ran_h, ran_w) <= 800, row
        assert abs(ran_h / ran_w - h / w) < 0.02 * h / w, row  # aspect ratio kept
        inside = 224 <= min(h, w) and max(h, w) <= 800
        assert row["resize"] == ("none" if inside else "shrink" if max(h, w) > 800 else "upscale"), row
        assert int(row["profile"]) in range(4) and 1 <= int(row["batch"]) <= 4
        assert int(row["top1_index"]) == int(Path(row["source"]).stem) % 3  # red, green, blue in turn
    assert elapsed < 120, f"200 images took {elapsed:.1f} s"


def run_on_a_terminal(*args: str) -> str:
    """``rsz-export ARGS`` with stderr on a pseudo-terminal (stdout piped); what the terminal showed."""
    leader, follower = pty.openpty()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen([sys.executable, "-m", "rsz_export", *args], stdout=subprocess.PIPE,
                               stderr=follower, env=env)
    os.close(follower)
    shown = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the terminal closed with the process
            break
        if not chunk:
            break
        shown += chunk
    process.communicate(timeout=120)
    os.close(leader)
    assert process.returncode == 0, shown
    return shown.decode(errors="replace")


def test_progress_bar_on_a_terminal_only(colour_engines, tmp_path):
    for i in range(6):
        Image.new("RGB", (300 + i, 260), (200, 30, 30)).save(tmp_path / f"{i}.png")
    shown = run_on_a_terminal("predict", str(colour_engines), str(tmp_path))
    assert "images  [" in shown and "6/6" in shown and "#" in shown
    assert "images  [" not in run_on_a_terminal("-q", "predict", str(colour_engines), str(tmp_path))
    assert "images  [" not in run_on_a_terminal("predict", str(colour_engines), str(tmp_path / "0.png"))


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_an_interrupted_folder_keeps_valid_results(colour_engines, mixed_photos, tmp_path, sig):
    out_json, out_csv = tmp_path / "p.json", tmp_path / "p.csv"
    process = start_cli("predict", str(colour_engines), str(mixed_photos), "--json", str(out_json), "--csv",
                        str(out_csv))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not out_csv.exists() or len(read_csv(out_csv)) < 3):
        time.sleep(0.05)
    process.send_signal(sig)
    process.communicate(timeout=120)
    document, rows = json.loads(out_json.read_text()), read_csv(out_csv)  # both always parse
    assert len(rows) >= len(document["predictions"]) >= (3 if sig == signal.SIGINT else 0)
    if process.returncode == 0:  # it finished before the signal arrived
        assert document["complete"] and len(rows) == 200
        return
    assert process.returncode == (130 if sig == signal.SIGINT else -signal.SIGKILL)
    assert not document["complete"] and len(rows) < 200
    if sig == signal.SIGINT:  # the orderly exit writes the last state: both files list the same images
        assert [r["source"] for r in rows] == [p["source"] for p in document["predictions"]]
        assert not list(tmp_path.glob(".*.tmp"))


@pytest.fixture()
def awkward(tmp_path) -> Path:
    """Every kind of awkward image a folder of photos can hold, among good ones."""
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.new("RGB", (500, 400), (30, 200, 40)).save(folder / "good.jpg")
    Image.new("RGB", (1, 1), (200, 30, 30)).save(folder / "one-pixel.png")
    Image.new("RGB", (20000, 10), (200, 30, 30)).save(folder / "panorama.png")
    Image.new("L", (300, 300), 90).save(folder / "grey.jpg")
    Image.new("CMYK", (300, 300), (0, 255, 255, 0)).save(folder / "cmyk.jpg")
    png16(folder / "sixteen.png", [[40000] * 300] * 300)
    palette = Image.new("P", (300, 300), 0)
    palette.putpalette([0, 0, 0, 30, 40, 220] + [0] * 762)
    palette.paste(1, (0, 0, 300, 100))
    palette.save(folder / "transparent.png", transparency=bytes([0] + [255] * 255))
    frames = [Image.new("RGB", (300, 300), c) for c in ((200, 30, 30), (30, 200, 40), (30, 40, 220))]
    frames[0].save(folder / "animated.gif", save_all=True, append_images=frames[1:], duration=40, loop=0)
    Image.new("RGB", (800, 600), (30, 40, 220)).save(folder / "truncated.jpg")
    (folder / "truncated.jpg").write_bytes((folder / "truncated.jpg").read_bytes()[:1500])
    return folder


def test_awkward_images_are_handled_or_refused_one_by_one(colour_engines, awkward):
    result = run_cli("predict", str(colour_engines), str(awkward), "--json", "-")
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    document = json.loads(result.stdout)
    done = {Path(p["source"]).name: p for p in document["predictions"]}
    assert set(done) == {"good.jpg", "one-pixel.png", "grey.jpg", "cmyk.jpg", "sixteen.png", "transparent.png",
                         "animated.gif"}
    assert (done["one-pixel.png"]["input"], done["one-pixel.png"]["resize"]) == ("224x224", "upscale")
    assert done["cmyk.jpg"]["top"][0]["index"] == 0 and done["animated.gif"]["top"][0]["index"] == 0  # red, 1st frame
    assert done["good.jpg"]["top"][0]["index"] == 1
    assert f"skipped {awkward / 'panorama.png'}: a 10x20000 image cannot be resized" in result.stderr
    assert f"skipped {awkward / 'truncated.jpg'}: cannot read image" in result.stderr
    assert {Path(s["source"]).name for s in document["skipped_files"]} == {"panorama.png", "truncated.jpg"}
    assert_clean_failure(run_cli("predict", str(colour_engines), str(awkward / "panorama.png")), 2,
                         "2000.0:1 and the profiles hold at most 3.57:1", "--preprocess crop")
    cropped = run_cli("predict", str(colour_engines), str(awkward / "panorama.png"), "--preprocess", "crop")
    assert cropped.returncode == 0 and "10x20000 cropped to 256x256" in cropped.stdout
    named = run_cli("predict", str(colour_engines), str(awkward / "truncated.jpg"), str(awkward / "good.jpg"))
    assert_clean_failure(named, 4, "1 of the 2 image(s) named could not be used", "truncated.jpg")
    assert "good.jpg: 400x500 at its own size" in named.stdout  # the good one still ran
