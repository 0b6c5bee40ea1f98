"""The ``sdmodel`` command: a thin layer over the Python API.

Each sub-module registers its commands on ``main``. Every error becomes one line on stderr and a
non-zero exit status, never a traceback (set SDMODEL_DEBUG=1 to see one).
"""

from __future__ import annotations

import errno
import os
import sys

import click

from sdmodel.errors import SdmodelError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="sdmodel")
def main_group() -> None:
    """Read, identify, check, convert and catalog Stable Diffusion model files."""


def _register() -> None:
    from sdmodel.cli import convert, info, library, lora, scan

    for module in (info, convert, scan, library, lora):
        for command in module.COMMANDS:
            main_group.add_command(command)


_register()


def main(argv: list[str] | None = None) -> None:
    """Console entry point."""
    try:
        main_group.main(args=argv, prog_name="sdmodel", standalone_mode=False)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.ClickException as e:
        e.show()
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo("sdmodel: interrupted", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        click.echo("sdmodel: interrupted", err=True)
        sys.exit(130)
    except BrokenPipeError:  # `sdmodel info --json ... | head`: the reader has gone, say nothing
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(141)
    except SdmodelError as e:
        click.echo(f"sdmodel: error: {e}", err=True)
        sys.exit(2)
    except OSError as e:
        if os.environ.get("SDMODEL_DEBUG"):
            raise
        what = "disk full" if e.errno == errno.ENOSPC else (e.strerror or str(e))
        where = f": {e.filename}" if e.filename else ""
        click.echo(f"sdmodel: error: {what}{where}", err=True)
        sys.exit(2)
    except Exception as e:  # last line of defence: one line, never a traceback
        if os.environ.get("SDMODEL_DEBUG"):
            raise
        click.echo(f"sdmodel: internal error: {type(e).__name__}: {e} (set SDMODEL_DEBUG=1 for details)", err=True)
        sys.exit(3)
