"""File effects: sha256, atomic writes (temp file then rename), and a directory lock."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from rsz_export.errors import IntegrityError, OutputError

_CHUNK = 1 << 20


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes; IntegrityError if it cannot be read."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
    except FileNotFoundError:
        raise IntegrityError(f"file {path} is missing") from None
    except OSError as exc:
        raise IntegrityError(f"cannot read {path}: {exc.strerror or exc}") from None
    return digest.hexdigest()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _output_error(path: Path, exc: OSError) -> OutputError:
    if exc.errno == errno.ENOSPC:
        return OutputError(f"no space left on the device while writing {path}", hint="free some space or choose --out elsewhere")
    return OutputError(f"cannot write {path}: {exc.strerror or exc}", hint="choose a writable --out directory")


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed onto ``path``, on failure removed.

    Readers never see a half-written file: the rename is atomic on the same filesystem.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
    except OSError as exc:
        raise _output_error(path, exc) from None
    tmp = Path(tmp_name)
    try:
        yield tmp
        try:
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the permissions open() would
            os.replace(tmp, path)
        except OSError as exc:
            raise _output_error(path, exc) from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, flushed to disk before the rename."""
    with atomic_path(path) as tmp:
        try:
            with open(tmp, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as exc:
            raise _output_error(Path(path), exc) from None


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def ensure_writable_dir(path: str | Path) -> Path:
    """Create ``path`` if needed and prove it writable; OutputError naming it otherwise."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise _output_error(path, exc) from None
    return path


@contextlib.contextmanager
def directory_lock(path: str | Path, what: str = "build") -> Iterator[None]:
    """Hold an exclusive, non-blocking lock on ``path/.rsz-export.lock`` for the duration of a writing run.

    The lock is an fcntl lock, so a killed process releases it; a second writer gets an OutputError
    naming the directory instead of corrupting it. Readers do not take it.
    """
    import fcntl

    lock_path = Path(path) / ".rsz-export.lock"
    try:
        handle = open(lock_path, "a+")
    except OSError as exc:
        raise _output_error(lock_path, exc) from None
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OutputError(
                f"another rsz-export {what} is writing to {path}",
                hint="wait for it to finish, or use another --out directory",
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield
    finally:
        handle.close()
