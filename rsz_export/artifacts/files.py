"""File effects: sha256, atomic writes (temp file then rename), and locks (a build folder's, readers', one file's)."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

from rsz_export.errors import IntegrityError, OutputError, os_reason

_CHUNK = 1 << 20
_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes; IntegrityError if it cannot be read."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb", opener=_regular_only) as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
    except FileNotFoundError:
        raise IntegrityError(f"file {path} is missing") from None
    except OSError as exc:
        raise IntegrityError(f"cannot read {path}: {os_reason(exc)}") from None
    return digest.hexdigest()


def _regular_only(path: str, flags: int) -> int:
    """An ``open`` opener that refuses anything but a regular file (a device or pipe would never end), without
    waiting on a pipe."""
    fd = os.open(path, flags | os.O_NONBLOCK)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, "not a regular file", path)
    return fd


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _output_error(path: Path, exc: OSError) -> OutputError:
    if exc.errno in _FULL:
        return OutputError(
            f"no space left on the device while writing {path}", hint="free some space, or write somewhere else"
        )
    return OutputError(f"cannot write {path}: {exc.strerror or exc}", hint="choose a writable folder")


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed onto ``path``, on failure removed.

    Readers never see a half-written file: the rename is atomic on the same filesystem.
    """
    path = Path(path)
    if _is_special(path):
        yield from _write_in_place(path)
        return
    if path.is_symlink():  # replace the file the link points to, not the link
        path = Path(os.path.realpath(path))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
    except OSError as exc:
        raise _output_error(path, exc) from None
    tmp = Path(tmp_name)
    try:
        try:
            yield tmp
        except OSError as exc:
            if exc.errno in _FULL:  # the writer ran out of room: an output problem, not a bug
                raise _output_error(path, exc) from None
            raise
        try:
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the permissions open() would
            os.replace(tmp, path)
        except OSError as exc:
            raise _output_error(path, exc) from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _is_special(path: Path) -> bool:
    """A device, pipe or descriptor link (/dev/full, /dev/stdout, a FIFO): renaming a temp file onto it would
    replace the node or the link itself, so writers write to it in place."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    if path.is_symlink() and os.path.realpath(path).startswith(("/proc/", "/dev/")) or str(path).startswith("/dev/"):
        return True
    return stat.S_ISCHR(mode) or stat.S_ISFIFO(mode) or stat.S_ISBLK(mode) or stat.S_ISSOCK(mode)


def _write_in_place(path: Path) -> Iterator[Path]:
    """Writers write straight to a special file (there is nothing to rename); write errors still name it."""
    try:
        yield path
    except OSError as exc:
        raise _output_error(path, exc) from None


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, flushed to disk before the rename."""
    with atomic_path(path) as tmp:
        try:
            with open(tmp, "wb") as handle:
                handle.write(data)
                handle.flush()
                if tmp.is_file():  # fsync is for files; a pipe or device (--json /dev/stdout) refuses it
                    os.fsync(handle.fileno())
        except OSError as exc:
            raise _output_error(Path(path), exc) from None


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def ensure_writable_dir(path: str | Path) -> Path:
    """Create ``path`` if needed and prove it writable; OutputError naming it otherwise."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"cannot write into {path}: it is a file, not a directory", hint="choose another location")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise _output_error(path, exc) from None
    return path


def check_output_target(path: str | Path) -> None:
    """OutputError now, before a long run, when a report at ``path`` could not be written at its end (its
    folder cannot be created or written, or ``path`` is a directory). Devices and pipes are written in place."""
    path = Path(path)
    if _is_special(path):
        return
    if path.is_dir():
        raise OutputError(f"cannot write {path}: it is a directory", hint="give a file name")
    ensure_writable_dir(path.parent)


@contextlib.contextmanager
def directory_lock(path: str | Path, what: str = "build", created: bool = False) -> Iterator[None]:
    """Hold an exclusive, non-blocking lock on ``path/.rsz-export.lock`` for the duration of a writing run.

    The lock is an fcntl lock, so a killed process releases it; a second writer gets an OutputError
    naming the directory instead of corrupting it. Readers do not take it. ``created``: the run made ``path``;
    when it fails with nothing else written there, the folder and its lock file are removed (still locked).
    """
    lock_path = Path(path) / ".rsz-export.lock"
    try:
        handle = open(lock_path, "a+")
    except OSError as exc:
        raise _output_error(lock_path, exc) from None
    try:
        if not _locked_exclusively(handle):
            raise OutputError(
                f"another rsz-export {what} is writing to {path}",
                hint="wait for it to finish, or write to another folder",
            )
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        try:
            yield
        except BaseException:
            if created:
                _remove_if_unused(Path(path), lock_path)
            raise
    finally:
        handle.close()


def _remove_if_unused(path: Path, lock_path: Path) -> None:
    """Remove a folder this run created when it holds nothing but the lock file."""
    with contextlib.suppress(OSError):
        if [p.name for p in path.iterdir()] == [lock_path.name]:
            lock_path.unlink()
            path.rmdir()


@contextlib.contextmanager
def exclusive_lock(path: str | Path) -> Iterator[None]:
    """Wait for, then hold, an exclusive fcntl lock on the file ``path`` (created if needed): for a
    read-modify-write of a file that several runs share. A killed process releases it."""
    import fcntl

    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a+")
    except OSError as exc:
        raise _output_error(path, exc) from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        handle.close()


READERS_LOCK = ".rsz-export.readers"


def _locked_exclusively(handle) -> bool:
    """Take an exclusive fcntl lock on an open file without waiting; False when someone else holds it."""
    import fcntl

    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _open_for_lock(path: Path):
    for mode in ("a+", "r"):  # a read-only engines folder still lets readers lock an existing file
        with contextlib.suppress(OSError):
            return open(path, mode)
    return None


@contextlib.contextmanager
def readers_lock(path: str | Path) -> Iterator[None]:
    """Shared lock held by readers (validate, predict, bench) of ``path`` for as long as they use its files.

    Readers never wait for each other, nor for a build in progress: only a build's clean-up of files the new
    manifest no longer lists checks it (``stale_cleanup_allowed``) and defers the clean-up while any reader
    holds it. Where the lock file can neither be created nor opened, readers go on without it.
    """
    import fcntl

    path = Path(path)
    # Create the lock file only in a built folder; elsewhere (a wrong path) leave no trace.
    handle = _open_for_lock(path / READERS_LOCK) if (path / "manifest.json").is_file() else None
    try:
        if handle is not None:
            fcntl.flock(handle, fcntl.LOCK_SH)  # waits only while a build is deleting stale files
        yield
    finally:
        if handle is not None:
            handle.close()


@contextlib.contextmanager
def stale_cleanup_allowed(path: str | Path) -> Iterator[bool]:
    """For a writer about to delete unreferenced files: True (holding the readers' lock exclusively) when no
    reader is active, False when one is (the clean-up is left to the next build)."""
    handle = _open_for_lock(Path(path) / READERS_LOCK)
    if handle is None:
        yield True
        return
    try:
        yield _locked_exclusively(handle)
    finally:
        handle.close()
