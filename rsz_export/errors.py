"""One small error hierarchy, and the checks at the edge of user input that raise it: ranges, small input files
read bounded (``read_small_file``), and names shown escaped in messages (``shown``).

Each expected problem carries its exit code and a message that says how to fix it.

Exit codes (documented in the README):
    0  success
    1  a check failed (parity, export verification)
    2  usage: a bad option value, range, size string or profile file
    3  environment: a backend, GPU or weights file that this machine does not have
    4  input integrity: a missing, corrupt or tampered file (weights, ONNX, engine, manifest)
    5  output: the output directory cannot be written, is full, or is locked by another run
  130  interrupted (SIGINT/SIGTERM); nothing half-written is left behind
"""

from __future__ import annotations

import math
import os
import stat
from pathlib import Path

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_USAGE = 2
EXIT_ENVIRONMENT = 3
EXIT_INTEGRITY = 4
EXIT_OUTPUT = 5
EXIT_INTERRUPTED = 130


class RszError(Exception):
    """An expected problem: printed as one message, no traceback, with ``exit_code``."""

    exit_code = EXIT_USAGE

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"


class UsageError(RszError):
    """A value given by the user is outside what is allowed."""

    exit_code = EXIT_USAGE


class CheckFailed(RszError):
    """A numerical check (export verification, parity) did not pass."""

    exit_code = EXIT_CHECK_FAILED


class EnvironmentProblem(RszError):
    """Something this machine lacks: a backend, a GPU, a weights file that cannot be downloaded."""

    exit_code = EXIT_ENVIRONMENT


class IntegrityError(RszError):
    """A file to be read is missing, corrupt, tampered with, or of another kind than expected."""

    exit_code = EXIT_INTEGRITY


class OutputError(RszError):
    """The output location cannot be written (permissions, disk full, locked by another run)."""

    exit_code = EXIT_OUTPUT


def shown(value: object) -> str:
    """A name or path as human-readable output shows it: as it is when every character is printable, else quoted
    with its control and invisible characters escaped (Python's repr), so that a file or class name cannot add a
    line to the output or move a terminal's cursor. Machine-readable output (JSON, CSV) quotes by its own rules."""
    text = str(value)
    return text if text.isprintable() else repr(text)


SMALL_FILE_BYTES = 16 << 20
"""The most a small text input (class names, a profile file, a manifest, a calibration file) may hold."""


def read_small_file(path: str | Path, what: str, error: type[RszError] = UsageError,
                    limit: int = SMALL_FILE_BYTES) -> bytes:
    """The bytes of a small input file, from a regular file only and at most ``limit`` of them: a device
    (``/dev/zero``), a FIFO or a socket is refused without reading (a FIFO is opened without waiting for a
    writer), and so is a file over the limit. ``what`` names it in messages (``--labels x.txt``); every problem
    is ``error``. FileNotFoundError is left to the caller, who knows what a missing file means."""
    data = read_regular_file(path, what, error, limit)
    if len(data) > limit:
        raise error(f"{what} is larger than the {limit >> 20} MiB such a file may hold")
    return data


def read_regular_file(path: str | Path, what: str, error: type[RszError], limit: int) -> bytes:
    """At most ``limit + 1`` bytes of ``path``, from a regular file only (see ``read_small_file``): one byte
    more than the limit says the file is longer, without reading the rest."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise error(f"{what} cannot be read: {os_reason(exc)}") from None
    kind = os.fstat(fd).st_mode
    if not stat.S_ISREG(kind):
        os.close(fd)
        raise error(f"{what} is not a regular file (it is {_kind_name(kind)})",
                    hint="give a regular file: devices and pipes are never read")
    with os.fdopen(fd, "rb") as handle:
        try:
            return handle.read(limit + 1)
        except OSError as exc:
            raise error(f"{what} cannot be read: {os_reason(exc)}") from None


def os_reason(exc: OSError) -> str:
    """An OSError in words, permission problems named as such."""
    return "permission denied" if isinstance(exc, PermissionError) else exc.strerror or str(exc)


def _kind_name(mode: int) -> str:
    kinds = ((stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
             (stat.S_ISFIFO, "a named pipe"), (stat.S_ISSOCK, "a socket"))
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def _in_range(value: object, kinds: type | tuple, low: float, high: float) -> bool:
    # Booleans are refused although Python counts them as ints: ``--batch True`` is a mistake, not 1.
    number = not isinstance(value, bool) and isinstance(value, kinds) and math.isfinite(value)
    return number and low <= value <= high


def check_int(value: object, name: str, low: int, high: int) -> int:
    """``value`` when it is a whole number in low..high, else a UsageError naming ``name`` and the range."""
    if not _in_range(value, int, low, high):
        raise UsageError(f"{name} must be a whole number in {low}..{high}, got {value!r}")
    return value


def check_number(value: object, name: str, low: float, high: float = math.inf) -> float:
    """``value`` when it is a finite real number (int or float) in low..high, else a UsageError."""
    if not _in_range(value, (int, float), low, high):
        span = f">= {low:g}" if high == math.inf else f"in {low:g}..{high:g}"
        raise UsageError(f"{name} must be a finite number {span}, got {value!r}")
    return float(value)


def close_matches(word: str, choices) -> list[str]:
    """The one or two ``choices`` that look like a mistyping of ``word`` (difflib's similarity ratio >= 0.75: a
    letter or two off in a short name), closest first."""
    import difflib

    return difflib.get_close_matches(word, list(choices), n=2, cutoff=0.75)


def did_you_mean(word: str, choices, shown=str) -> str | None:
    """``did you mean X?`` (or ``X or Y``) for the ``choices`` close to ``word``, each rendered by ``shown``;
    None when nothing is close."""
    found = close_matches(word, choices)
    return f"did you mean {' or '.join(shown(c) for c in found)}?" if found else None


def check_choice(value: object, name: str, choices) -> object:
    """``value`` when it is one of ``choices``, else a UsageError listing them."""
    if value not in choices:
        raise UsageError(f"unknown {name} {value!r}; choose one of {', '.join(map(str, choices))}")
    return value
