"""``sdmodel meta``: show and edit a safetensors or GGUF file's metadata."""

from __future__ import annotations

import click
from rich.markup import escape
from rich.table import Table

from sdmodel.cli.common import console, print_json
from sdmodel.i18n import _, format_number, format_size, tr
from sdmodel.metadata import FileMetadata, MetaEditResult, edit_metadata, parse_assignments, read_metadata

_VALUE_WIDTH = 100


def _shown(value: object) -> str:
    """A value as a person reads it: long lists and data URIs summarised."""
    if isinstance(value, list):
        kinds = {type(v).__name__ for v in value}
        if len(value) <= 8:
            return repr(value)
        return f"[{format_number(len(value))} {'/'.join(sorted(kinds)) or _('items')}]"
    text = str(value)
    if text.startswith("data:image/"):
        return _("{type} ({size} inline image)").format(type=text.split(";", 1)[0], size=format_size(len(text)))
    return text if len(text) <= _VALUE_WIDTH else text[: _VALUE_WIDTH - 3] + "..."


def _render(meta: FileMetadata) -> None:
    if not meta.entries:
        console.print(_("{path}: no metadata ({format})").format(path=meta.path, format=meta.format), markup=False)
        return
    title = _("{path} ({format}, header {size})").format(
        path=meta.path, format=meta.format, size=format_size(meta.header_bytes)
    )
    table = Table(title=escape(title), title_justify="left")
    table.add_column(_("key"), style="bold")
    table.add_column(_("value"), overflow="fold")
    for key in sorted(meta.entries):
        table.add_row(key, _shown(meta.entries[key]))
    console.print(table)


def _render_edit(result: MetaEditResult) -> None:
    for w in result.warnings:
        click.echo(_("sdmodel: warning: {message}").format(message=tr(w.message)), err=True)
    what = ", ".join(
        [
            *(_("set {key}").format(key=k) for k in result.changed),
            *(_("removed {key}").format(key=k) for k in result.removed),
        ]
    )
    if result.mode == "unchanged":
        text = _("{path}: nothing to change")
    elif result.mode == "in-place":
        text = _("{path}: {what}; written in place (header {after}, no tensor byte moved)")
    else:
        text = _(
            "{path}: {what}; rewritten: header {before} -> {after}, data section byte-identical (AutoV3 unchanged)"
        )
    before, after = format_size(result.header_before), format_size(result.header_after)
    console.print(text.format(path=result.path, what=what, before=before, after=after), markup=False)


@click.command(
    "meta",
    help=_(
        "Show or edit the metadata of a safetensors or GGUF file, without rewriting its tensors.\n"
        "\n"
        "An edit is written in place when the new header fits in the old one, otherwise the file is\n"
        "rewritten with its data section copied byte for byte; either way atomically."
    ),
)
@click.argument("path", type=click.Path())
@click.option("--set", "set_items", multiple=True, metavar="KEY=VALUE", help=_("Set a metadata key (repeatable)."))
@click.option("--unset", "unset_keys", multiple=True, metavar="KEY", help=_("Remove a metadata key (repeatable)."))
@click.option("--json", "as_json", is_flag=True, help=_("Print the metadata (or what the edit did) as JSON."))
def meta_command(path: str, set_items: tuple[str, ...], unset_keys: tuple[str, ...], as_json: bool) -> None:
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
