"""``sdmodel meta``: show and edit a safetensors or GGUF file's metadata."""

from __future__ import annotations

import click
from rich.table import Table

from sdmodel.cli.common import console, print_json
from sdmodel.metadata import FileMetadata, MetaEditResult, edit_metadata, parse_assignments, read_metadata
from sdmodel.units import human_bytes

_VALUE_WIDTH = 100


def _shown(value: object) -> str:
    """A value as a person reads it: long lists and data URIs summarised."""
    if isinstance(value, list):
        kinds = {type(v).__name__ for v in value}
        return f"[{len(value):,} {'/'.join(sorted(kinds)) or 'items'}]" if len(value) > 8 else repr(value)
    text = str(value)
    if text.startswith("data:image/"):
        return f"{text.split(';', 1)[0]} ({human_bytes(len(text))} inline image)"
    return text if len(text) <= _VALUE_WIDTH else text[: _VALUE_WIDTH - 3] + "..."


def _render(meta: FileMetadata) -> None:
    if not meta.entries:
        console.print(f"{meta.path}: no metadata ({meta.format})")
        return
    table = Table(title=f"{meta.path} ({meta.format}, header {human_bytes(meta.header_bytes)})", title_justify="left")
    table.add_column("key", style="bold")
    table.add_column("value", overflow="fold")
    for key in sorted(meta.entries):
        table.add_row(key, _shown(meta.entries[key]))
    console.print(table)


def _render_edit(result: MetaEditResult) -> None:
    for w in result.warnings:
        click.echo(f"sdmodel: warning: {w.message}", err=True)
    what = ", ".join([*(f"set {k}" for k in result.changed), *(f"removed {k}" for k in result.removed)])
    if result.mode == "unchanged":
        console.print(f"{result.path}: nothing to change")
    elif result.mode == "in-place":
        console.print(
            f"{result.path}: {what}; written in place (header {human_bytes(result.header_after)}, no tensor byte moved)"
        )
    else:
        console.print(
            f"{result.path}: {what}; rewritten: header {human_bytes(result.header_before)} -> "
            f"{human_bytes(result.header_after)}, data section byte-identical (AutoV3 unchanged)"
        )


@click.command("meta")
@click.argument("path", type=click.Path())
@click.option("--set", "set_items", multiple=True, metavar="KEY=VALUE", help="Set a metadata key (repeatable).")
@click.option("--unset", "unset_keys", multiple=True, metavar="KEY", help="Remove a metadata key (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print the metadata (or what the edit did) as JSON.")
def meta_command(path: str, set_items: tuple[str, ...], unset_keys: tuple[str, ...], as_json: bool) -> None:
    """Show or edit the metadata of a safetensors or GGUF file, without rewriting its tensors.

    An edit is written in place when the new header fits in the old one, otherwise the file is
    rewritten with its data section copied byte for byte; either way atomically.
    """
    if not set_items and not unset_keys:
        meta = read_metadata(path)
        if as_json:
            print_json(meta.to_dict())
        else:
            _render(meta)
        return
    result = edit_metadata(path, parse_assignments(set_items), unset_keys)
    if as_json:
        print_json(result.to_dict())
    else:
        _render_edit(result)


COMMANDS = [meta_command]
