"""Helpers shared by the CLI modules: consoles, sizes, JSON output, progress bars, SIGTERM."""

from __future__ import annotations

import json
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

console = Console()
err_console = Console(stderr=True)


class Terminated(KeyboardInterrupt):
    """SIGTERM: handled like Ctrl-C (whatever is being written is removed, see sdmodel.atomic)."""


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise Terminated("terminated")


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """While the block runs, SIGTERM raises ``Terminated`` in the main thread, so that a
    conversion cleans up as on Ctrl-C; the previous handler is restored afterwards. The library
    itself never touches signal handlers: the process that owns them (this CLI) decides."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def print_error(message: str) -> None:
    """One line on stderr, never wrapped (scripts grep it)."""
    click.echo(f"sdmodel: error: {message}", err=True)


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n")


def byte_progress(transient: bool = True) -> Progress:
    """A progress bar on stderr: bytes, speed, time left."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=transient,
    )
