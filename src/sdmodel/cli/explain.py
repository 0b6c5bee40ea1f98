"""``sdmodel explain``: the glossary of the seed article, made executable."""

from __future__ import annotations

from pathlib import Path

import click

from sdmodel.cli.common import console
from sdmodel.glossary import TERMS, Term, find_term
from sdmodel.i18n import _
from sdmodel.inspection import inspect


def _entry(term: Term, report: dict[str, object] | None) -> None:
    console.print(f"[bold]{_(term.title)}[/bold]  [dim](sdmodel explain {term.id})[/dim]")
    console.print(_(term.what), highlight=False)
    console.print(_("For generating: {text}").format(text=_(term.generating)), highlight=False)
    console.print(_("For training: {text}").format(text=_(term.training)), highlight=False)
    if report is not None:
        about = term.about(report)
        if about:
            console.print("[bold]" + _("This file: {text}").format(text=about) + "[/bold]", highlight=False)
    console.print()


@click.command(
    "explain",
    help=_(
        "Explain the words of a model's download page (fp16, EMA, pruned, baked VAE, Q4_K_S...).\n"
        "\n"
        "With no word, list them. With a file, say what that file is on each point."
    ),
)
@click.argument("words", nargs=-1)
def explain_command(words: tuple[str, ...]) -> None:
    term_words = [w for w in words if not Path(w).exists()]
    files = [w for w in words if Path(w).exists()]
    if len(files) > 1:
        raise click.UsageError(_("explain takes at most one file"))
    report = inspect(files[0]).to_dict() if files else None
    terms: list[Term] = []
    for word in term_words:
        term = find_term(word)
        if term is None:
            known = ", ".join(t.id for t in TERMS)
            raise click.UsageError(_("no entry for {word!r}; known: {known}").format(word=word, known=known))
        terms.append(term)
    if not terms and report is None:
        for term in TERMS:
            console.print(f"[bold]{term.id:16}[/bold] {_(term.title)}", highlight=False)
        console.print(_("'sdmodel explain TERM [FILE]' tells more; with a file, what that file is."))
        return
    for term in terms or [t for t in TERMS if report is not None and t.about(report)]:
        _entry(term, report)


COMMANDS = [explain_command]
