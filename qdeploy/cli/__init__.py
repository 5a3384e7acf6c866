"""The ``qdeploy`` command line (click). One module per command; every command
is a thin layer over a documented Python function.

Errors in the user's input are :class:`~qdeploy.errors.QDeployError`: printed as
one line ``error: ...`` on stderr with exit code 2, never a traceback. click's own
usage errors (a bad option value, a missing argument, an unknown option) get the
same one line, and so does running out of memory. Ctrl-C and SIGTERM print
``interrupted`` (exit 130 / 143) from the first line of start-up on
(:mod:`qdeploy.interrupt`).
"""
from __future__ import annotations

from .. import interrupt

_startup_handlers = interrupt.early()   # before click, numpy, onnx and onnxruntime load

import sys  # noqa: E402

import click  # noqa: E402

from .. import __version__  # noqa: E402
from ..errors import QDeployError  # noqa: E402


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def exit_on_fail(report: dict | None) -> None:
    """Exit code 1 after a FAIL verdict of ``quantize`` or ``report`` (the artefacts are
    written and valid: the accuracy is what fell short of --max-drop/--min-sqnr); 0 on
    PASS or when nothing was evaluated."""
    if report and report["verdict"]["pass"] is False:
        sys.exit(1)


def _fail(message: str, code: int = QDeployError.exit_code):
    click.echo(f"error: {_one_line(message)}", err=True)
    sys.exit(code)


class _Group(click.Group):
    """The top group: every way a command can end badly becomes one line."""

    def main(self, *args, **kwargs):
        with interrupt.handling():
            try:
                return super().main(*args, **kwargs)
            except KeyboardInterrupt as e:   # raised while click parses (its own catch is in invoke)
                click.echo("interrupted", err=True)
                sys.exit(getattr(e, "exit_code", 130))

    def make_context(self, *args, **kwargs):
        try:
            return super().make_context(*args, **kwargs)
        except click.exceptions.NoArgsIsHelpError:
            raise
        except click.UsageError as e:
            _usage(e)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except QDeployError as e:
            _fail(str(e))
        except click.exceptions.NoArgsIsHelpError:
            raise
        except click.UsageError as e:
            _usage(e)
        except MemoryError:
            _fail("out of memory; use a smaller input (--size, --limit, --batch-size) or a machine "
                  "with more memory")
        except KeyboardInterrupt as e:
            click.echo("interrupted", err=True)
            sys.exit(getattr(e, "exit_code", 130))


def _usage(e: click.UsageError):
    """click's usage error as one line, with where to read the usage."""
    path = e.ctx.command_path if e.ctx is not None else "qdeploy"
    _fail(f"{_one_line(e.format_message()).rstrip('.')}; see '{path} --help'")


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
    from .report_cmd import report
    main.add_command(report)


_register()
if not interrupt.is_console_script():   # imported by Python code: leave its signal handling alone
    interrupt.restore(_startup_handlers)
