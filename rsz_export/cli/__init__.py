"""The ``rsz-export`` command line: a Click group over the library, one module per command group. Each command
parses its options, calls the library, and renders the result; shared options are in ``options``."""

from __future__ import annotations

import importlib

import click

from rsz_export import __version__
from rsz_export.cli.common import Console
from rsz_export.cli.options import QUIET_HELP, VERBOSE_HELP, verbosity_options

COMMAND_MODULES = (
    "rsz_export.cli.plan",
    "rsz_export.cli.build",
    "rsz_export.cli.validate",
    "rsz_export.cli.bench",
    "rsz_export.cli.predict",
    "rsz_export.cli.sweep",
    "rsz_export.cli.triton",
    "rsz_export.cli.serve",
)
"""Each module defines Click commands listed in its ``COMMANDS`` tuple; imported only for their Click objects."""


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="rsz-export")
@click.option("-v", "--verbose", count=True, help=VERBOSE_HELP)
@click.option("-q", "--quiet", is_flag=True, help=QUIET_HELP)
@click.pass_context
def main(ctx: click.Context, verbose: int, quiet: bool) -> None:
    """ResNet-50 at any input resolution: export, plan, build, validate and benchmark engines over a range.

    Exit codes: 0 ok, 1 a check failed, 2 bad usage, 3 missing backend/GPU/weights,
    4 missing/corrupt/tampered file, 5 output not writable or locked, 130 interrupted.
    """
    ctx.obj = Console(-1 if quiet else verbose)


for _name in COMMAND_MODULES:
    for _command in importlib.import_module(_name).COMMANDS:
        _command.params += verbosity_options()  # accepted after the subcommand too, and listed in its help
        main.add_command(_command)
