"""Pieces every command shares: the error-to-exit-code wrapper, where output goes, and option parsing."""

from __future__ import annotations

import functools
import os
import re
import signal
import sys
from collections.abc import Callable
from typing import Any

import click

from rsz_export.errors import EXIT_INTERRUPTED, RszError, UsageError


class Console:
    """Where commands print: results to stdout, progress and warnings to stderr, quiet with -q."""

    def __init__(self, verbosity: int = 0):
        self.verbosity = verbosity

    def info(self, message: str) -> None:
        if self.verbosity >= 0:
            click.echo(message, err=True)

    def debug(self, message: str) -> None:
        if self.verbosity > 0:
            click.echo(message, err=True)

    def warn(self, message: str) -> None:
        click.secho(f"warning: {message}", err=True, fg="yellow")


def outlined(info: Callable[[str], None], heading: str, indent: int) -> Callable[[str], None]:
    """``info`` for a library's progress lines, shown as an outline: a line matching the regular expression
    ``heading`` (a step) is printed as it is, the lines after one are indented by ``indent`` spaces. The library
    writes plain lines; how they are laid out is the command line's business."""
    pattern = re.compile(heading)
    opened = False

    def log(message: str) -> None:
        nonlocal opened
        if pattern.match(message):
            opened = True
            info(message)
        else:
            info(" " * indent + message if opened else message)

    return log


def console(ctx: click.Context | None = None) -> Console:
    ctx = ctx or click.get_current_context()
    return ctx.find_root().obj or Console()


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so that temp files are removed on the way out, as for Ctrl-C."""


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated


def handles_errors(fn: Callable) -> Callable:
    """Turn expected errors into one message and their exit code; Ctrl-C and SIGTERM into exit 130."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        signal.signal(signal.SIGTERM, _raise_terminated)
        try:
            return fn(*args, **kwargs)
        except RszError as exc:
            click.secho(f"error: {exc}", err=True, fg="red")
            sys.exit(exc.exit_code)
        except (KeyboardInterrupt, Terminated):
            for signum in (signal.SIGINT, signal.SIGTERM):  # a second Ctrl-C must not break the orderly exit
                signal.signal(signum, signal.SIG_IGN)
            click.secho("interrupted: nothing half-written was kept", err=True, fg="red")
            sys.stdout.flush()
            sys.stderr.flush()
            # Temp files are already gone (the finally blocks ran while unwinding). Skip interpreter teardown:
            # library exit hooks seen re-raising SIGINT there would turn exit 130 into a death by signal.
            os._exit(EXIT_INTERRUPTED)

    return wrapper


def parse_or_usage(parser: Callable[[str], Any], value: str | None, option: str) -> Any:
    """Apply a library parser to an option value, prefixing the option name to its UsageError."""
    if value is None:
        return None
    try:
        return parser(value)
    except UsageError as exc:
        raise UsageError(f"{option}: {exc.message}", exc.hint) from None


STDOUT = "-"


def check_writable(*paths: str | None) -> None:
    """Fail now, not after a long run, when a report could not be written at the end (``-`` is stdout)."""
    from rsz_export.artifacts.files import check_output_target

    for path in paths:
        if path and path != STDOUT:
            check_output_target(path)


def write_report(path: str | None, text: str) -> None:
    """Write ``text`` to ``path`` atomically, or to stdout for ``-``; nothing for None."""
    if not path:
        return
    if path == STDOUT:
        click.echo(text, nl=not text.endswith("\n"))
        return
    from rsz_export.artifacts.files import atomic_write_text

    atomic_write_text(path, text)


def emit(table: str, json_path: str | None, json_text) -> None:
    """The result: ``table`` on stdout, unless ``--json -`` puts the JSON there instead; JSON to a file otherwise.

    ``json_text`` is the JSON string, or a callable that makes it (only called when asked for)."""
    if json_path:
        write_report(json_path, json_text() if callable(json_text) else json_text)
    if json_path != STDOUT:
        click.echo(table)
