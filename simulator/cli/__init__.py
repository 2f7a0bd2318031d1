"""The ``xbarsim`` command line.

Each sub-command lives in its own module in :mod:`simulator.cli.commands`
and exposes a ``click.Command`` named ``command``; they are discovered
automatically. User input errors (:class:`simulator.errors.XbarsimError`)
are printed as one line and exit with code 2.
"""
from __future__ import annotations

import importlib
import logging
import pkgutil
import sys

import click

from simulator.errors import XbarsimError


class _Group(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except XbarsimError as exc:
            click.echo(f"xbarsim: error: {exc}", err=True)
            sys.exit(2)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.version_option(package_name="xbarsim")
def cli(verbose: int) -> None:
    """Accuracy simulator for neural networks on analog compute-in-memory chips."""
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("xbarsim").setLevel(level)


def _register() -> None:
    from simulator.cli import commands

    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda i: i.name):
        module = importlib.import_module(f"simulator.cli.commands.{info.name}")
        cmd = getattr(module, "command", None)
        if isinstance(cmd, click.Command):
            cli.add_command(cmd)


_register()


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    cli.main(args=argv, prog_name="xbarsim")
