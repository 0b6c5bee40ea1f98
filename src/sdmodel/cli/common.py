"""Helpers shared by the CLI modules: consoles, sizes, JSON output, progress bars."""

from __future__ import annotations

import json
import sys
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
