"""Server-rendered pages of the library web UI. Every value that comes from a file, a path or the
query string goes through ``e()`` (HTML escaping) before it reaches the page."""

from __future__ import annotations

import json
import math
import os
from contextvars import ContextVar
from importlib import resources
from string import Template
from typing import Any
from urllib.parse import quote, urlencode

from sdmodel.i18n import LANGUAGES, N_, _, current_language, format_number, format_size, ngettext, tr
from sdmodel.library.catalog import Catalog, Filters
from sdmodel.library.fits import LORA_KINDS, lora_families, models_fitting
from sdmodel.library.placing import CompanionIndex, companions_of, placement_of, placement_problems
from sdmodel.library.report import (
    DUPLICATE_LEVELS,
    PROBLEM_TITLES,
    SEVERITY,
    build_report,
    duplicate_groups,
    problems_of,
)
from sdmodel.library.savings import Plan, compute_plan
from sdmodel.placement import UI_LABELS
from sdmodel.web.charts import Bar, bar_chart, pair_chart
from sdmodel.web.escape import e

PER_PAGE = 50
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".gif")
FILTER_FIELDS = (
    ("kind", N_("Kind")),
    ("family", N_("Family")),
    ("category", N_("Folder")),
    ("precision", N_("Precision")),
    ("verdict", N_("Scan")),
    ("base_model", N_("Base model")),
    ("creator", N_("Creator")),
)
NAV = (
    ("list", "/", N_("Models")),
    ("duplicates", "/duplicates", N_("Duplicates")),
    ("problems", "/problems", N_("Problems")),
    ("plan", "/plan", N_("Savings plan")),
    ("usage", "/usage", N_("Disk usage")),
)

ACTIVE = ' class="active"'
_BASE = Template(resources.files("sdmodel.web").joinpath("templates/base.html").read_text(encoding="utf-8"))
# The page being answered (path and query), set per request by the server: the language links
# return to it.
_here: ContextVar[tuple[str, dict[str, str]]] = ContextVar("sdmodel_web_here", default=("/", {}))


def set_request(path: str, query: dict[str, str]) -> None:
    _here.set((path, query))


def _language_links() -> str:
    path, query = _here.get()
    links = []
    for lang in LANGUAGES:
        url = f"{path}?{urlencode({**query, 'lang': lang})}"
        current = f' aria-current="true"{ACTIVE}' if lang == current_language() else ""
        links.append(f'<a href="{e(url)}" id="lang-{lang}" lang="{lang}"{current}>{lang.upper()}</a>')
    return " | ".join(links)


def layout(catalog: Catalog, title: str, body: str, active: str) -> str:
    count, size = catalog.totals()
    nav = "".join(f'<a href="{url}"{ACTIVE if key == active else ""}>{e(_(label))}</a>' for key, url, label in NAV)
    return _BASE.substitute(
        lang=current_language(),
        title=e(title),
        brand=e(_("sdmodel library")),
        nav=nav,
        languages=_language_links(),
        language_label=e(_("Language")),
        body=body,
        stats=e(files_text(count) + " · " + format_size(size)),
        catalog=e(_("catalog: {path}").format(path=catalog.path)),
    )


def files_text(n: int) -> str:
    return ngettext("{n} file", "{n} files", n).format(n=format_number(n))


# Scan verdicts, finding severities and run statuses: the id is the CSS class, the word is translated.
STATUS_WORDS = {
    "safe": N_("safe"),
    "suspicious": N_("suspicious"),
    "dangerous": N_("dangerous"),
    "error": N_("error"),
    "warning": N_("warning"),
    "info": N_("info"),
    "pending": N_("pending"),
    "running": N_("running"),
    "done": N_("done"),
    "failed": N_("failed"),
    "skipped": N_("skipped"),
}


def status_text(value: Any) -> str:
    return _(STATUS_WORDS[value]) if value in STATUS_WORDS else str(value)


def badge(value: Any) -> str:
    return f'<span class="badge {e(value)}">{e(status_text(value))}</span>' if value else ""


def table(headers: list[str], rows: list[list[str]], num: set[int] | None = None, cls: str = "") -> str:
    """An HTML table; headers are plain text (escaped here), cells already-escaped HTML."""
    num = num or set()
    head = "".join(f"<th{' class=num' if i in num else ''}>{e(h)}</th>" for i, h in enumerate(headers))
    body = "".join(
        "<tr>" + "".join(f"<td{' class=num' if i in num else ''}>{c}</td>" for i, c in enumerate(r)) + "</tr>"
        for r in rows
    )
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def kv_table(pairs: list[tuple[str, str]]) -> str:
    return '<table class="kv">' + "".join(f"<tr><th>{e(k)}</th><td>{v}</td></tr>" for k, v in pairs) + "</table>"


def model_link(file_id: int, text: str) -> str:
    return f'<a href="/model/{int(file_id)}">{e(text)}</a>'


def tag(name: str, text: str, cls: str = "") -> str:
    """``<name class=cls>text</name>``, the text escaped (and kept out of f-strings, where Babel
    would not find the messages)."""
    attr = f' class="{cls}"' if cls else ""
    return f"<{name}{attr}>{e(text)}</{name}>"


def muted(text: str) -> str:
    return f'<span class="muted">{e(text)}</span>'


def preview_img(f: dict[str, Any], cls: str = "thumb") -> str:
    """The model's picture (a preview beside it, or its ModelSpec thumbnail) served by /preview."""
    if not (f.get("preview") or f.get("thumbnail")):
        return ""
    alt = _("picture of {name}").format(name=f["name"])
    return f'<img class="{cls}" src="/preview/{int(f["id"])}" alt="{e(alt)}" loading="lazy">'


# -- list ----------------------------------------------------------------------------------------
def list_page(catalog: Catalog, query: dict[str, str]) -> str:
    filters = Filters(
        text=query.get("q", "").strip()[:200],
        trigger=query.get("trigger", "").strip()[:200],
        **{k: query.get(k, "")[:200] for k, _label in FILTER_FIELDS},
    )
    total = catalog.count(filters)
    pages = max(1, math.ceil(total / PER_PAGE))
    try:
        page = min(max(1, int(query.get("page", "1"))), pages)
    except ValueError:
        page = 1
    rows = catalog.list_files(filters, offset=(page - 1) * PER_PAGE, limit=PER_PAGE)
    selects = []
    everything = _("all")
    for field, label in FILTER_FIELDS:
        current = getattr(filters, field)
        opts = [f'<option value="">{e(everything)}</option>']
        for value, count in catalog.facet(field):
            v = value or "-"
            sel = " selected" if v == current else ""
            shown = status_text(value) if field == "verdict" and value else value or _("(none)")
            opts.append(f'<option value="{e(v)}"{sel}>{e(shown)} ({format_number(count)})</option>')
        selects.append(f'<label>{e(_(label))}<select name="{field}" id="f-{field}">{"".join(opts)}</select></label>')
    search, placeholder, trigger = _("Search"), _("name or path"), _("Trigger word")
    apply, reset = _("Filter"), _("reset")
    form = (
        '<form class="filters" method="get" action="/">'
        f'<label>{e(search)}<input type="search" name="q" id="f-q" value="{e(filters.text)}" '
        f'placeholder="{e(placeholder)}"></label>'
        f'<label>{e(trigger)}<input type="search" name="trigger" id="f-trigger" value="{e(filters.trigger)}"></label>'
        + "".join(selects)
        + f'<button type="submit" id="f-apply">{e(apply)}</button> <a href="/">{e(reset)}</a></form>'
    )
    body_rows = []
    for r in rows:
        kind = e(r["kind"]) if r["kind"] else tag("span", _("error"), "error") if r["error"] else ""
        family = e(r["family"]) + (" " + muted(r["variant"]) if r["variant"] and r["variant"] != "base" else "")
        if r["base_model"]:
            family += "<br>" + muted(r["base_model"])
        body_rows.append(
            [
                preview_img(r),
                model_link(r["id"], r["name"]) + ("<br>" + muted(r["title"]) if r["title"] else ""),
                muted(r["folder"]),
                kind,
                family,
                e(r["precision"]),
                "EMA" if r["ema"] else "",
                e(format_size(r["size"])),
                badge(r["verdict"]),
            ]
        )
    params = {k: v for k, v in query.items() if k not in ("page", "lang") and v}
    matching = ngettext("{n} matching file", "{n} matching files", total).format(n=format_number(total))
    pager = f'<div class="pager"><span id="count">{e(matching)}</span>'
    back_text, next_text = _("previous"), _("next")
    if page > 1:
        pager += f'<a href="/?{e(urlencode({**params, "page": page - 1}))}">&larr; {e(back_text)}</a>'
    pager += tag("span", _("page {page} of {pages}").format(page=page, pages=pages))
    if page < pages:
        pager += f'<a href="/?{e(urlencode({**params, "page": page + 1}))}" id="next">{e(next_text)} &rarr;</a>'
    pager += "</div>"
    headers = [
        _("Picture"),
        _("Name"),
        _("Folder"),
        _("Kind"),
        _("Family"),
        _("Precision"),
        "EMA",
        _("Size"),
        _("Scan"),
    ]
    body = (
        tag("h1", _("Models"))
        + form
        + pager
        + table(headers, body_rows, {7}, "models")
        + (pager if len(rows) > 20 else "")
    )
    return layout(catalog, _("Models"), body, "list")


# -- one model -----------------------------------------------------------------------------------
def _components(rep: dict[str, Any]) -> str:
    rows = []
    for part, c in (rep.get("components") or {}).items():
        dtypes = ", ".join(f"{e(d)}×{format_number(int(n))}" for d, n in (c.get("dtypes") or {}).items())
        rows.append(
            [
                e(part),
                e(format_number(c.get("tensors") or 0)),
                e(format_number(c.get("params") or 0)),
                e(format_size(c.get("bytes", 0))),
                dtypes,
            ]
        )
    headers = [_("Part"), _("Tensors"), _("Parameters"), _("Bytes"), _("Dtypes")]
    return table(headers, rows, {1, 2, 3}) if rows else ""


def _advice(rep: dict[str, Any]) -> str:
    adv = rep.get("advice") or {}
    out = []
    for purpose, title in (("generate", N_("For generating")), ("train", N_("For training"))):
        a = adv.get(purpose)
        if not isinstance(a, dict):
            continue
        saves = a.get("saves_bytes")
        pairs = [(_("target"), e(tr(a.get("target") or ""))), (_("command"), f"<code>{e(a.get('command'))}</code>")]
        if isinstance(saves, int):
            text = format_size(saves) if saves >= 0 else _("grows by {size}").format(size=format_size(-saves))
            pairs.append((_("saves"), e(text)))
        why = a.get("why") or []
        if why:
            pairs.append((_("why"), "<br>".join(e(tr(w)) for w in why)))
        out.append(f"<h3>{e(_(title))}</h3>" + kv_table(pairs))
    for note in adv.get("notes") or []:
        out.append(f'<p class="muted">{e(tr(note))}</p>')
    return "".join(out)


def _metadata(meta: dict[str, Any]) -> str:
    if not meta:
        return tag("p", _("none"), "muted")
    rows = []
    for k in sorted(meta):
        v = meta[k] if isinstance(meta[k], str) else json.dumps(meta[k])
        cell = (
            f"<details><summary>{e(v[:120])}…</summary><code>{e(v)}</code></details>"
            if len(v) > 160
            else f"<code>{e(v)}</code>"
        )
        rows.append([f"<code>{e(k)}</code>", cell])
    return table([_("Key"), _("Value")], rows)


def _sidecars(f: dict[str, Any]) -> str:
    names = f.get("sidecars") or []
    if not names:
        return tag("p", _("none"), "muted")
    images, others = [], []
    for name in names:
        url = f"/sidecar/{int(f['id'])}/{quote(name, safe='')}"
        if name.lower().endswith(IMAGE_EXTENSIONS):
            images.append(f'<a href="{e(url)}"><img src="{e(url)}" alt="{e(name)}" loading="lazy"></a>')
        others.append(f'<li><a href="{e(url)}">{e(name)}</a></li>')
    return (f'<div class="previews">{"".join(images)}</div>' if images else "") + f"<ul>{''.join(others)}</ul>"


def _card(f: dict[str, Any]) -> str:
    """The picture and what the sidecars and metadata say: title, version, base model, creator,
    trigger words (each a link to the list filtered by it)."""
    pairs = []
    for key, label in (
        ("title", N_("title")),
        ("version_name", N_("version")),
        ("base_model", N_("base model")),
        ("creator", N_("creator")),
    ):
        value = f.get(key)
        if value and key in ("base_model", "creator"):  # a link to the list of the models sharing it
            pairs.append((_(label), f'<a href="/?{e(urlencode({key: value}))}" class="filter-link">{e(value)}</a>'))
        elif value:
            pairs.append((_(label), e(value)))
    words = [w for w in (f.get("triggers") or "").split("\n") if w]
    if words:
        chips = " ".join(f'<code class="trigger">{e(w)}</code>' for w in words)
        pairs.append((_("trigger words"), chips))
    picture = preview_img(f, "preview")
    if not pairs and not picture:
        return ""
    return f'<div class="card">{picture}{kv_table(pairs) if pairs else ""}</div>'


def _placement(catalog: Catalog, f: dict[str, Any]) -> str:
    """Where the file goes in each UI, its companions as links, its lineage (library.placing)."""
    placement = placement_of(f)
    if placement is None:
        return ""
    rows = [
        (tr(UI_LABELS[t.ui]), e(t.folder + (f", {tr(t.loader_label)}" if t.loader_label else "")))
        if t.folder
        else (tr(UI_LABELS[t.ui]), muted(_("cannot load it: {reason}").format(reason=tr(t.reason or ""))))
        for t in placement.targets
    ]
    index = CompanionIndex.from_catalog(catalog)
    problems = [p for p in placement_problems(f, index) if p["code"] == "misplaced"]
    rows += [(_("wrong folder"), f'<span class="error">{e(tr(p["message"]))}</span>') for p in problems]
    for c in companions_of(placement, index):
        links = ", ".join(model_link(x["id"], x["path"]) for x in c["files"])
        missing = tag("span", _("not in the catalog"), "error")
        rows.append((_("needs {what}").format(what=c["id"]), links or missing))
    lineage = (f.get("report") or {}).get("lineage") or {}
    if lineage.get("base"):
        rows.append(
            (
                _("lineage"),
                e(_("{value} (from {source})").format(value=lineage["base"], source=lineage.get("base_source"))),
            )
        )
    if lineage.get("v_prediction") is not None:
        pred = _("v-prediction") if lineage["v_prediction"] else _("epsilon")
        rows.append(
            (_("trained as"), e(_("{value} (from {source})").format(value=pred, source=lineage.get("v_source"))))
        )
    if lineage.get("zsnr"):
        rows.append(("ZSNR", e(_("{value} (from {source})").format(value=_("yes"), source=lineage.get("zsnr_source")))))
    rows += [(_("sampler"), e(tr(s))) for s in lineage.get("settings") or []]
    return tag("h2", _("Where it goes")) + kv_table(rows)


def _fits(catalog: Catalog, f: dict[str, Any]) -> str:
    """For a LoRA: the catalogued models of its base family, as links (library.fits)."""
    if f.get("kind") not in LORA_KINDS:
        return ""
    fits = models_fitting(catalog, f)
    heading = tag("h2", _("Fits these models"))
    if not fits:
        families = " | ".join(lora_families(f))
        text = (
            _("No catalogued model of its family ({family})").format(family=families)
            if families
            else _("Its base family is unknown: sdmodel cannot tell which models it fits")
        )
        return heading + tag("p", text, "muted")
    rows = [
        [
            model_link(x.id, x.path),
            e(x.kind),
            e(x.family),
            muted(_("text encoders missing")) if x.partial else e(_("whole")),
        ]
        for x in fits
    ]
    return heading + table([_("Model"), _("Kind"), _("Family"), _("Fit")], rows, cls="fits")


def _summary(f: dict[str, Any]) -> list[tuple[str, str]]:
    rep = f.get("report") or {}
    ema = rep.get("ema") or {}
    clip = rep.get("clip_position_ids") or {}
    junk = rep.get("junk") or {}
    size = f["size"]
    ema_text = (
        _("present: {tensors} tensors, covers {covered} of {total} UNet tensors").format(
            tensors=format_number(ema.get("tensors", 0)),
            covered=format_number(ema.get("unet_covered", 0)),
            total=format_number(ema.get("unet_total", 0)),
        )
        if ema.get("present")
        else _("no")
    )
    clip_text = e(clip.get("status"))
    if clip.get("broken"):
        clip_text = e(_("{status} at {where}").format(status=clip.get("status"), where=clip.get("broken")))
    junk_bytes = format_size(junk.get("bytes", 0))
    junk_text = ngettext("{n} tensor, {size}", "{n} tensors, {size}", junk.get("tensors", 0)).format(
        n=format_number(junk.get("tensors", 0)), size=junk_bytes
    )
    summary = [
        (_("path"), f"<code>{e(f['path'])}</code>"),
        (_("folder"), e(f["folder"]) + (" " + muted(f"({f['category']})") if f["category"] else "")),
        (_("format"), e(f.get("format"))),
        (
            _("size"),
            e(
                ngettext("{size} ({n} byte)", "{size} ({n} bytes)", size).format(
                    size=format_size(size), n=format_number(size)
                )
            ),
        ),
        (_("kind"), e(f.get("kind"))),
        (_("family"), e(f.get("family"))),
        (_("variant"), e(f.get("variant"))),
        (_("prediction"), e(f.get("prediction"))),
        (_("precision"), e(f.get("precision"))),
        ("EMA", e(ema_text)),
        (_("CLIP position ids"), clip_text),
        (_("junk"), e(junk_text)),
        (_("markers"), e(", ".join(rep.get("markers") or []) or _("none"))),
        (_("A1111 config"), e(rep.get("a1111_config"))),
        (_("ModelSpec architecture"), e(rep.get("modelspec_architecture"))),
        (_("scan verdict"), badge(f.get("verdict"))),
    ]
    if f.get("error"):
        summary.insert(1, (_("error"), f'<span class="error">{e(tr(f["error"]))}</span>'))
    return summary


def model_page(catalog: Catalog, f: dict[str, Any]) -> str:
    rep = f.get("report") or {}
    scan = f.get("scan") or {}
    hashes = f.get("hashes") or {}
    hash_rows = [(k, f"<code>{e(v)}</code>") for k, v in hashes.items() if v]
    if f.get("fingerprint"):
        hash_rows.append(
            (
                _("content fingerprint (fp16 / bf16 rounding)"),
                f"<code>{e(f['fingerprint'])}</code> / <code>{e(f.get('fingerprint_bf16') or '-')}</code>",
            )
        )
    findings = scan.get("findings") or []
    finding_rows = [[badge(x.get("severity")), e(tr(x.get("message") or ""))] for x in findings]
    # The models beside it: same root and folder (the folder alone may repeat under another root).
    names = catalog.names_in_folder(f["root"], f["folder"])
    probs = problems_of(f, names)
    dup_groups = _groups_with(catalog, f)
    body = [f"<h1>{e(f['name'])}</h1>", _card(f), kv_table(_summary(f))]
    if probs:
        items = "".join(f"<li><b>{e(_problem_title(p['code']))}</b>: {e(tr(p['message']))}</li>" for p in probs)
        body.append(tag("h2", _("Problems")) + f"<ul>{items}</ul>")
    body.append(_placement(catalog, f))
    body.append(_fits(catalog, f))
    none = tag("p", _("none"), "muted")
    body.append(tag("h2", _("Parts")) + (_components(rep) or tag("p", _("no report"), "muted")))
    body.append(tag("h2", _("Advice")) + (_advice(rep) or none))
    not_hashed = e(_("not hashed yet: run {command}")).format(command="<code>sdmodel library scan --hash</code>")
    body.append(tag("h2", _("Hashes")) + (kv_table(hash_rows) if hash_rows else f'<p class="muted">{not_hashed}</p>'))
    if dup_groups:
        groups = []
        for g in dup_groups:
            others = [model_link(i, p) for i, p in zip(g["ids"], g["files"], strict=True) if i != f["id"]]
            groups.append(f"<li>{e(tr(DUPLICATE_LEVELS[g['level']]))}: {', '.join(others)}</li>")
        body.append(tag("h2", _("Duplicates")) + "<ul>" + "".join(groups) + "</ul>")
    body.append(tag("h2", _("Sidecars")) + _sidecars(f))
    body.append(tag("h2", _("Metadata")) + _metadata(rep.get("metadata") or {}))
    no_findings = " " + muted(_("no findings"))
    body.append(
        tag("h2", _("Security scan"))
        + badge(f.get("verdict"))
        + (table([_("Severity"), _("Finding")], finding_rows) if finding_rows else no_findings)
    )
    if rep.get("notes"):
        body.append(tag("h2", _("Notes")) + "<ul>" + "".join(f"<li>{e(tr(n))}</li>" for n in rep["notes"]) + "</ul>")
    return layout(catalog, f["name"], "".join(body), "list")


def _problem_title(code: str) -> str:
    return tr(PROBLEM_TITLES[code]) if code in PROBLEM_TITLES else code


def _groups_with(catalog: Catalog, f: dict[str, Any]) -> list[dict[str, Any]]:
    """The duplicate groups this file is in (all hashed files: model groups link transitively)."""
    if not any(f.get(c) for c in ("sha256", "autov3", "fingerprint")):
        return []
    return [g for g in duplicate_groups(catalog.hashed_files()) if f["id"] in g["ids"]]


# -- duplicates, problems ------------------------------------------------------------------------
def duplicates_page(catalog: Catalog) -> str:
    rows = catalog.hashed_files()
    groups = duplicate_groups(rows)
    hashed = len(rows)
    body = [tag("h1", _("Duplicates"))]
    if not hashed:
        text = e(_("No file is hashed yet: run {command} to find duplicates.")).format(
            command="<code>sdmodel library scan --hash</code>"
        )
        body.append(f'<p class="muted">{text}</p>')
    elif not groups:
        text = ngettext("No duplicates among {n} hashed file.", "No duplicates among {n} hashed files.", hashed)
        body.append(f'<p class="muted">{e(text.format(n=format_number(hashed)))}</p>')
    wasted = sum(g["wasted_bytes"] for g in groups if g["level"] != "model")
    if groups:
        text = ngettext("{n} group; exact copies waste {size}", "{n} groups; exact copies waste {size}", len(groups))
        body.append(f'<p class="summary">{e(text.format(n=format_number(len(groups)), size=format_size(wasted)))}</p>')
    for level, title in DUPLICATE_LEVELS.items():
        mine = [g for g in groups if g["level"] == level]
        if not mine:
            continue
        body.append(f"<h2>{e(tr(title))}</h2>")
        for g in mine:
            items = "".join(f"<li>{model_link(i, p)}</li>" for i, p in zip(g["ids"], g["files"], strict=True))
            n = len(g["files"])
            where = ngettext("{size} in {n} file", "{size} in {n} files", n).format(
                size=format_size(g["bytes"]), n=format_number(n)
            )
            body.append(
                f'<div class="group dup-{e(level)}"><b>{e(g["kind"])} {e(g["family"])}</b> '
                f"{muted(where)}<ul>{items}</ul></div>"
            )
    return layout(catalog, _("Duplicates"), "".join(body), "duplicates")


def problems_page(catalog: Catalog) -> str:
    report = build_report(catalog)
    ids = catalog.ids_by_path()
    body = [tag("h1", _("Problems"))]
    if not report["problems"]:
        body.append(tag("p", _("No problems found."), "muted"))
    by_code: dict[str, list[dict[str, Any]]] = {}
    for p in report["problems"]:
        by_code.setdefault(p["code"], []).append(p)
    for code in sorted(by_code, key=lambda c: SEVERITY.get(c, 9)):
        rows = [
            [model_link(ids[p["path"]], p["path"]) if p["path"] in ids else e(p["path"]), e(tr(p["message"]))]
            for p in by_code[code]
        ]
        title = _("{title} ({n})").format(title=_problem_title(code), n=format_number(len(rows)))
        body.append(f'<h2 id="p-{e(code)}">{e(title)}</h2>' + table([_("File"), _("What")], rows))
    return layout(catalog, _("Problems"), "".join(body), "problems")


# -- plan ----------------------------------------------------------------------------------------
def plan_summary(plan: Plan) -> str:
    """``14 files, 61.2 GB -> 29.8 GB (saves 31.4 GB)`` in the reader's language."""
    n = len(plan.items)
    return ngettext(
        "{n} file, {before} -> {after} (saves {saves})", "{n} files, {before} -> {after} (saves {saves})", n
    ).format(
        n=format_number(n),
        before=format_size(plan.before),
        after=format_size(plan.after),
        saves=format_size(plan.before - plan.after),
    )


def plan_page(catalog: Catalog, state: dict[str, Any], token: str) -> str:
    plan = compute_plan(catalog)
    ids = catalog.ids_by_path()
    body = [tag("h1", _("Savings plan"))]
    folders = catalog.get_meta("train_folders", [])
    if folders:
        train = e(_("Training folders (fp32 kept, EMA kept): {folders}.")).format(
            folders=", ".join(f"<code>{e(x)}</code>" for x in folders)
        )
    else:
        train = e(_("No training folder set ({command}).")).format(
            command="<code>sdmodel library plan --train-folder DIR</code>"
        )
    intro = e(_("For generating: fp16 safetensors, no EMA, junk dropped."))
    trash = e(_("Originals go to {trash} in their root after the output is verified.")).format(
        trash="<code>.sdmodel-trash</code>"
    )
    body.append(f'<p class="muted">{intro} {train} {trash}</p>')
    body.append(f'<p class="summary" id="plan-summary">{e(plan_summary(plan))}</p>')
    running = state.get("state") == "running"
    run, starting = _("Run the plan"), _("Starting...")
    disabled = " disabled" if running or not plan.items else ""
    body.append(
        '<form method="post" action="/plan/run" id="run-form">'
        f'<input type="hidden" name="token" value="{e(token)}">'
        f'<button type="submit" id="run-plan"{disabled}>{e(run)}</button></form>'
        f'<div id="progress" data-state="{e(state.get("state", "idle"))}" data-starting="{e(starting)}">'
        '<div class="progress"><div></div></div>'
        f'<span id="progress-text" class="muted">{e(state_text(state))}</span></div>'
    )
    rows = [
        [
            model_link(ids[i.src], i.name) if i.src in ids else e(i.name),
            e(_(PURPOSES[i.mode])),
            e(tr(i.target)),
            e(os.path.basename(i.dst)),
            e(format_size(i.before_bytes)),
            e(format_size(i.after_bytes)),
            e(format_size(i.saves_bytes)),
        ]
        for i in plan.items
    ]
    if rows:
        headers = [_("File"), _("For"), _("Convert to"), _("New name"), _("Before"), _("After"), _("Saves")]
        body.append(tag("h2", _("Proposed conversions")) + table(headers, rows, {4, 5, 6}, "plan"))
    if plan.skipped:
        n = len(plan.skipped)
        summary = ngettext("{n} file skipped", "{n} files skipped", n).format(n=format_number(n))
        body.append(
            f"<details><summary>{e(summary)}</summary>"
            + table([_("File"), _("Why")], [[e(s.path), e(tr(s.reason))] for s in plan.skipped])
            + "</details>"
        )
    last = catalog.plan_items()
    if last:
        rows = [
            [e(i["src"]), badge(i["status"]), e(i["dst"] if i["status"] == "done" else ""), e(tr(i["error"] or ""))]
            for i in last
        ]
        headers = [_("File"), _("Status"), _("Output"), _("Error")]
        body.append(tag("h2", _("Last run")) + table(headers, rows, cls="runs"))
    return layout(catalog, _("Savings plan"), "".join(body), "plan")


PURPOSES = {"generate": N_("generating"), "train": N_("training")}


def state_text(state: dict[str, Any]) -> str:
    """The batch run's progress in words (the page and /api/progress for its script)."""
    if state.get("state") == "running":
        return _("Converting {index} of {items}: {name} ({done} of {total})").format(
            index=format_number(state.get("index", 0) + 1),
            items=format_number(state.get("items", 0)),
            name=state.get("current") or "",
            done=format_size(state.get("overall_done", 0)),
            total=format_size(state.get("overall_total", 0)),
        )
    if state.get("state") == "finished":
        done, failed = state.get("done", 0), state.get("failed", 0)
        text = ngettext(
            "Last run finished: {done} converted, {failed} failed; saved {saved}.",
            "Last run finished: {done} converted, {failed} failed; saved {saved}.",
            done,
        ).format(done=format_number(done), failed=format_number(failed), saved=format_size(state.get("saved_bytes", 0)))
        if state.get("error"):
            text += " " + _("Error: {error}").format(error=tr(state["error"]))
        return text
    return ""


# -- disk usage ----------------------------------------------------------------------------------
USAGE_GROUPS = (
    ("family", N_("Space by family")),
    ("kind", N_("Space by kind")),
    ("precision", N_("Space by storage (precision or quantization)")),
)
MAX_PLAN_BARS = 25


def usage_page(catalog: Catalog) -> str:
    """Where the space goes (by family, kind, storage) and what the savings plan would change, as
    bar charts drawn on the server (inline SVG: no script, no build step)."""
    count, size = catalog.totals()
    body = [tag("h1", _("Disk usage"))]
    body.append(tag("p", _("{files} in {size}").format(files=files_text(count), size=format_size(size)), "summary"))
    for column, title in USAGE_GROUPS:
        bars = [
            Bar(
                value or _("(none)"), nbytes, _("{size}, {files}").format(size=format_size(nbytes), files=files_text(n))
            )
            for value, n, nbytes in catalog.usage(column)
        ]
        body.append(f'<h2 id="by-{column}">{e(_(title))}</h2>' + bar_chart(_(title), bars, f"chart-{column}"))
    plan = compute_plan(catalog)
    body.append(f'<h2 id="savings">{e(_("Savings plan: before and after"))}</h2>')
    if not plan.items:
        body.append(tag("p", _("Nothing to save: every file is already in its best form."), "muted"))
    else:
        body.append(f'<p class="summary">{e(plan_summary(plan))}</p>')
        items = sorted(plan.items, key=lambda i: -i.saves_bytes)[:MAX_PLAN_BARS]
        pairs = [(_("all planned files"), plan.before, plan.after)] + [
            (i.name, i.before_bytes, i.after_bytes) for i in items
        ]
        body.append(pair_chart(_("Savings plan: before and after"), pairs, _("before"), _("after"), "chart-plan"))
        if len(plan.items) > MAX_PLAN_BARS:
            more = len(plan.items) - MAX_PLAN_BARS
            body.append(
                tag(
                    "p",
                    ngettext("and {n} more file", "and {n} more files", more).format(n=format_number(more)),
                    "muted",
                )
            )
    return layout(catalog, _("Disk usage"), "".join(body), "usage")


def not_found_page(catalog: Catalog, what: str) -> str:
    return layout(catalog, _("Not found"), f"<h1>{e(_('Not found'))}</h1><p>{e(what)}</p>", "")
