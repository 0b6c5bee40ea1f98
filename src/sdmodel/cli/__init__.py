"""The ``sdmodel`` command: a thin layer over the Python API.

Each sub-module registers its commands on ``main``. Every error becomes one line on stderr and a
non-zero exit status, never a traceback (set SDMODEL_DEBUG=1 to see one).
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import click

from sdmodel.cli.common import sigterm_as_interrupt
from sdmodel.errors import SdmodelError, error_text
from sdmodel.i18n import LANGUAGES, N_, Language, _, current_language, module_gettext, parse_language, set_language


def language_from_args(args: list[str]) -> Language | None:
    """``--lang ru`` / ``--lang=ru`` among the arguments: read before the commands are built, so
    their help texts are in that language too."""
    for i, arg in enumerate(args):
        if arg == "--lang" and i + 1 < len(args):
            return parse_language(args[i + 1])
        if arg.startswith("--lang="):
            return parse_language(arg.split("=", 1)[1])
    return None


set_language(language_from_args(sys.argv[1:]))


@contextmanager
def _speaking(args: Sequence[str] | None) -> Iterator[None]:
    """Messages in the language of ``--lang`` (or the environment's), Click's own texts (usage,
    option help, usage errors) included: their Russian is in our catalog (``sdmodel.cli.click_texts``)."""
    lang = language_from_args(list(sys.argv[1:] if args is None else args))
    if lang is not None:
        set_language(lang)
    with module_gettext(current_language()):
        yield


class _Group(click.Group):
    def main(self, args: Sequence[str] | None = None, *rest: Any, **kwargs: Any) -> Any:
        with _speaking(args):
            return super().main(args, *rest, **kwargs)


@click.group(
    cls=_Group,
    context_settings={"help_option_names": ["-h", "--help"]},
    help=_("Read, identify, check, convert and catalog Stable Diffusion model files."),
)
@click.version_option(
    package_name="sdmodel", message=_("%(prog)s, version %(version)s"), help=_("Show the version and exit.")
)
@click.option(
    "--lang",
    type=click.Choice(LANGUAGES),
    help=_("Language of messages (default: from LANG / LC_ALL). JSON output is the same in every language."),
)
def main_group(lang: Language | None) -> None:
    if lang is not None:
        set_language(lang)


def _register() -> None:
    # After set_language: the commands' help texts are translated when their modules are imported.
    from sdmodel.cli import convert, explain, info, library, lora, meta, scan  # noqa: PLC0415 - after set_language

    for module in (info, convert, scan, meta, explain, library, lora):
        for command in module.COMMANDS:
            main_group.add_command(command)


_register()


# The OS errors people meet, in their language (the C library words the others, in English).
OS_ERRORS = {
    errno.ENOSPC: N_("disk full"),
    errno.ENOENT: N_("no such file or folder"),
    errno.EACCES: N_("permission denied"),
    errno.EPERM: N_("operation not permitted"),
    errno.EISDIR: N_("is a folder"),
    errno.ENOTDIR: N_("not a folder"),
    errno.EROFS: N_("read-only file system"),
    errno.EEXIST: N_("already exists"),
    errno.EIO: N_("input/output error (a failing disk or a network share?)"),
}


def main(argv: list[str] | None = None) -> None:
    """Console entry point."""
    with _speaking(argv):
        _run(argv)


def _run(argv: list[str] | None) -> None:
    try:
        with sigterm_as_interrupt():
            main_group.main(args=argv, prog_name="sdmodel", standalone_mode=False)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.ClickException as e:
        e.show()
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo(_("sdmodel: interrupted"), err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        click.echo(_("sdmodel: interrupted"), err=True)
        sys.exit(130)
    except BrokenPipeError:  # `sdmodel info --json ... | head`: the reader has gone, say nothing
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(141)
    except SdmodelError as e:
        click.echo(f"sdmodel: error: {error_text(e)}", err=True)
        sys.exit(2)
    except OSError as e:
        if os.environ.get("SDMODEL_DEBUG"):
            raise
        known = OS_ERRORS.get(e.errno) if e.errno is not None else None
        what = _(known) if known else (e.strerror or str(e))
        where = f": {e.filename}" if e.filename else ""
        click.echo(f"sdmodel: error: {what}{where}", err=True)
        sys.exit(2)
    except Exception as e:  # last line of defence: one line, never a traceback
        if os.environ.get("SDMODEL_DEBUG"):
            raise
        text = _("internal error: {error} (set SDMODEL_DEBUG=1 for details)").format(error=f"{type(e).__name__}: {e}")
        click.echo(f"sdmodel: {text}", err=True)
        sys.exit(3)
