"""artifacts.files: atomic writes keep links and special files."""

from __future__ import annotations

import os

from tests.helpers import assert_no_temp_files


def test_atomic_writes_keep_links_and_special_files(tmp_path):
    """A report written to a symlink replaces the file it points to, and one written to a pipe or device goes
    into it: the link, pipe or device node itself is never replaced by a renamed temp file."""
    import threading

    from rsz_export.artifacts.files import atomic_write_text

    target, link = tmp_path / "real.json", tmp_path / "link.json"
    target.write_text("old")
    link.symlink_to(target)
    atomic_write_text(link, "new")
    assert link.is_symlink() and target.read_text() == "new"
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_text()))
    reader.start()
    atomic_write_text(fifo, "through the pipe")
    reader.join(timeout=10)
    assert received == ["through the pipe"] and fifo.is_fifo()
    assert_no_temp_files(tmp_path)
