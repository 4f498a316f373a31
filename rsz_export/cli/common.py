"""Pieces every command shares: the error-to-exit-code wrapper, logging verbosity, common options."""

from __future__ import annotations

import functools
import os
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


out_dir_argument = click.argument("out_dir", required=False, default="engines", type=click.Path(file_okay=False))
