"""The ``qdeploy`` command line (click). One module per command; every command
is a thin layer over a documented Python function.

Errors in the user's input are :class:`~qdeploy.errors.QDeployError`: printed as
one line ``error: ...`` on stderr with exit code 2, never a traceback.
"""
from __future__ import annotations

import sys

import click

from .. import __version__
from ..errors import QDeployError


class _Group(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except QDeployError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(QDeployError.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="qdeploy")
def main():
    """qdeploy: post-training INT8 quantization and deployment of CNNs."""


def _register():
    from .inspect_cmd import inspect
    main.add_command(inspect)
    from .calib_cmd import calib
    main.add_command(calib)
    from .targets_cmd import targets
    main.add_command(targets)
    from .quantize_cmd import quantize
    main.add_command(quantize)
    from .run_cmd import run
    main.add_command(run)


_register()
