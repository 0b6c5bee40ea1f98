"""Server-rendered pages of the library web UI. Every value that comes from a file, a path or the
query string goes through ``e()`` (HTML escaping) before it reaches the page."""

from __future__ import annotations

import html
import json
import math
import os
from importlib import resources
from string import Template
from typing import Any
from urllib.parse import quote, urlencode

from sdmodel.library.catalog import Catalog, Filters
from sdmodel.library.placing import CompanionIndex, companions_of, placement_of, placement_problems
from sdmodel.library.report import (
    DUPLICATE_LEVELS,
    PROBLEM_TITLES,
    SEVERITY,
    build_report,
    duplicate_groups,
    problems_of,
)
from sdmodel.library.savings import compute_plan
from sdmodel.placement import UI_LABELS
from sdmodel.units import human_bytes

PER_PAGE = 50
IMAGE_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
    ".gif": "image/gif",
}
FILTER_FIELDS = (
    ("kind", "Kind"),
    ("family", "Family"),
    ("category", "Folder"),
    ("precision", "Precision"),
    ("verdict", "Scan"),
)

_BASE = Template(resources.files("sdmodel.web").joinpath("templates/base.html").read_text(encoding="utf-8"))


def e(value: Any) -> str:
    """HTML-escape anything (None -> empty)."""
    return "" if value is None else html.escape(str(value), quote=True)


def layout(catalog: Catalog, title: str, body: str, active: str) -> str:
    row = catalog.totals()
    nav = {f"nav_{k}": ' class="active"' if k == active else "" for k in ("list", "duplicates", "problems", "plan")}
    return _BASE.substitute(
        title=e(title),
        body=body,
        stats=e(f"{row[0]} files · {human_bytes(row[1])}"),
        catalog=e(catalog.path),
        **nav,
    )


def badge(value: Any) -> str:
    return f'<span class="badge {e(value)}">{e(value)}</span>' if value else ""


def table(headers: list[str], rows: list[list[str]], num: set[int] | None = None, cls: str = "") -> str:
    """An HTML table; cells are already-escaped HTML."""
    num = num or set()
    head = "".join(f"<th{' class=num' if i in num else ''}>{h}</th>" for i, h in enumerate(headers))
    body = "".join(
        "<tr>" + "".join(f"<td{' class=num' if i in num else ''}>{c}</td>" for i, c in enumerate(r)) + "</tr>"
        for r in rows
    )
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def kv_table(pairs: list[tuple[str, str]]) -> str:
    return '<table class="kv">' + "".join(f"<tr><th>{e(k)}</th><td>{v}</td></tr>" for k, v in pairs) + "</table>"


def model_link(file_id: int, text: str) -> str:
    return f'<a href="/model/{int(file_id)}">{e(text)}</a>'


# -- list ----------------------------------------------------------------------------------------
def list_page(catalog: Catalog, query: dict[str, str]) -> str:
    filters = Filters(text=query.get("q", "").strip()[:200], **{k: query.get(k, "")[:100] for k, _ in FILTER_FIELDS})
    total = catalog.count(filters)
    pages = max(1, math.ceil(total / PER_PAGE))
    try:
        page = min(max(1, int(query.get("page", "1"))), pages)
    except ValueError:
        page = 1
    rows = catalog.list_files(filters, offset=(page - 1) * PER_PAGE, limit=PER_PAGE)
    selects = []
    for field, label in FILTER_FIELDS:
        current = getattr(filters, field)
        opts = ['<option value="">all</option>']
        for value, count in catalog.facet(field):
            v = value or "-"
            sel = " selected" if v == current else ""
            opts.append(f'<option value="{e(v)}"{sel}>{e(value or "(none)")} ({count})</option>')
        selects.append(f'<label>{label}<select name="{field}" id="f-{field}">{"".join(opts)}</select></label>')
    form = (
        '<form class="filters" method="get" action="/">'
        f'<label>Search<input type="search" name="q" id="f-q" value="{e(filters.text)}" '
        'placeholder="name or path"></label>'
        + "".join(selects)
        + '<button type="submit" id="f-apply">Filter</button> <a href="/">reset</a></form>'
    )
    body_rows = []
    for r in rows:
        kind = e(r["kind"]) if r["kind"] else '<span class="error">error</span>' if r["error"] else ""
        body_rows.append(
            [
                model_link(r["id"], r["name"]),
                f'<span class="muted">{e(r["folder"])}</span>',
                kind,
                e(r["family"])
                + (f' <span class="muted">{e(r["variant"])}</span>' if r["variant"] and r["variant"] != "base" else ""),
                e(r["precision"]),
                "EMA" if r["ema"] else "",
                human_bytes(r["size"]),
                badge(r["verdict"]),
            ]
        )
    params = {k: v for k, v in query.items() if k != "page" and v}
    pager = f'<div class="pager"><span id="count">{total} matching files</span>'
    if page > 1:
        pager += f'<a href="/?{e(urlencode({**params, "page": page - 1}))}">&larr; previous</a>'
    pager += f"<span>page {page} of {pages}</span>"
    if page < pages:
        pager += f'<a href="/?{e(urlencode({**params, "page": page + 1}))}" id="next">next &rarr;</a>'
    pager += "</div>"
    body = (
        "<h1>Models</h1>"
        + form
        + pager
        + table(["Name", "Folder", "Kind", "Family", "Precision", "EMA", "Size", "Scan"], body_rows, {6}, "models")
        + (pager if len(rows) > 20 else "")
    )
    return layout(catalog, "Models", body, "list")


# -- one model -----------------------------------------------------------------------------------
def _components(rep: dict[str, Any]) -> str:
    rows = []
    for part, c in (rep.get("components") or {}).items():
        dtypes = ", ".join(f"{e(d)}×{int(n)}" for d, n in (c.get("dtypes") or {}).items())
        rows.append(
            [
                e(part),
                e(c.get("tensors")),
                e(f"{c.get('params', 0):,}"),
                human_bytes(c.get("bytes", 0)),
                dtypes,
            ]
        )
    return table(["Part", "Tensors", "Parameters", "Bytes", "Dtypes"], rows, {1, 2, 3}) if rows else ""


def _advice(rep: dict[str, Any]) -> str:
    adv = rep.get("advice") or {}
    out = []
    for purpose in ("generate", "train"):
        a = adv.get(purpose)
        if not isinstance(a, dict):
            continue
        saves = a.get("saves_bytes")
        pairs = [("target", e(a.get("target"))), ("command", f"<code>{e(a.get('command'))}</code>")]
        if isinstance(saves, int):
            pairs.append(("saves", e(human_bytes(saves)) if saves >= 0 else e(f"grows by {human_bytes(-saves)}")))
        why = a.get("why") or []
        if why:
            pairs.append(("why", "<br>".join(e(w) for w in why)))
        out.append(f"<h3>For {'generating' if purpose == 'generate' else 'training'}</h3>" + kv_table(pairs))
    for note in adv.get("notes") or []:
        out.append(f'<p class="muted">{e(note)}</p>')
    return "".join(out)


def _metadata(meta: dict[str, Any]) -> str:
    if not meta:
        return '<p class="muted">none</p>'
    rows = []
    for k in sorted(meta):
        v = meta[k] if isinstance(meta[k], str) else json.dumps(meta[k])
        cell = (
            f"<details><summary>{e(v[:120])}…</summary><code>{e(v)}</code></details>"
            if len(v) > 160
            else f"<code>{e(v)}</code>"
        )
        rows.append([f"<code>{e(k)}</code>", cell])
    return table(["Key", "Value"], rows)


def _sidecars(f: dict[str, Any]) -> str:
    names = f.get("sidecars") or []
    if not names:
        return '<p class="muted">none</p>'
    images, others = [], []
    for name in names:
        url = f"/sidecar/{int(f['id'])}/{quote(name, safe='')}"
        if os.path.splitext(name)[1].lower() in IMAGE_TYPES:
            images.append(f'<a href="{e(url)}"><img src="{e(url)}" alt="{e(name)}" loading="lazy"></a>')
        others.append(f'<li><a href="{e(url)}">{e(name)}</a></li>')
    return (f'<div class="previews">{"".join(images)}</div>' if images else "") + f"<ul>{''.join(others)}</ul>"


def _placement(catalog: Catalog, f: dict[str, Any]) -> str:
    """Where the file goes in each UI, its companions as links, its lineage (library.placing)."""
    placement = placement_of(f)
    if placement is None:
        return ""
    rows = [
        (UI_LABELS[t.ui], e(t.folder + (f", {t.loader_label}" if t.loader_label else "")))
        if t.folder
        else (UI_LABELS[t.ui], f'<span class="muted">cannot load it: {e(t.reason)}</span>')
        for t in placement.targets
    ]
    index = CompanionIndex.from_catalog(catalog)
    problems = [p for p in placement_problems(f, index) if p["code"] == "misplaced"]
    rows += [("wrong folder", f'<span class="error">{e(p["message"])}</span>') for p in problems]
    for c in companions_of(placement, index):
        links = ", ".join(model_link(x["id"], x["path"]) for x in c["files"])
        rows.append((f"needs {e(c['id'])}", links or '<span class="error">not in the catalog</span>'))
    lineage = (f.get("report") or {}).get("lineage") or {}
    if lineage.get("base"):
        rows.append(("lineage", e(f"{lineage['base']} (from {lineage.get('base_source')})")))
    if lineage.get("v_prediction") is not None:
        pred = "v-prediction" if lineage["v_prediction"] else "epsilon"
        rows.append(("trained as", e(f"{pred} (from {lineage.get('v_source')})")))
    if lineage.get("zsnr"):
        rows.append(("ZSNR", e(f"yes (from {lineage.get('zsnr_source')})")))
    rows += [("sampler", e(s)) for s in lineage.get("settings") or []]
    return "<h2>Where it goes</h2>" + kv_table(rows)


def model_page(catalog: Catalog, f: dict[str, Any]) -> str:
    rep = f.get("report") or {}
    scan = f.get("scan") or {}
    ema = rep.get("ema") or {}
    clip = rep.get("clip_position_ids") or {}
    junk = rep.get("junk") or {}
    summary = [
        ("path", f"<code>{e(f['path'])}</code>"),
        (
            "folder",
            e(f["folder"]) + (f' <span class="muted">({e(f["category"])})</span>' if f["category"] else ""),
        ),
        ("format", e(f.get("format"))),
        ("size", e(f"{human_bytes(f['size'])} ({f['size']:,} bytes)")),
        ("kind", e(f.get("kind"))),
        ("family", e(f.get("family"))),
        ("variant", e(f.get("variant"))),
        ("prediction", e(f.get("prediction"))),
        ("precision", e(f.get("precision"))),
        (
            "EMA",
            e(
                f"present: {ema.get('tensors', 0)} tensors, covers {ema.get('unet_covered', 0)} of "
                f"{ema.get('unet_total', 0)} UNet tensors"
            )
            if ema.get("present")
            else "no",
        ),
        (
            "CLIP position ids",
            e(clip.get("status")) + (f" at {e(clip.get('broken'))}" if clip.get("broken") else ""),
        ),
        ("junk", e(f"{junk.get('tensors', 0)} tensors, {human_bytes(junk.get('bytes', 0))}")),
        ("markers", e(", ".join(rep.get("markers") or []) or "none")),
        ("A1111 config", e(rep.get("a1111_config"))),
        ("ModelSpec architecture", e(rep.get("modelspec_architecture"))),
        ("scan verdict", badge(f.get("verdict"))),
    ]
    if f.get("error"):
        summary.insert(1, ("error", f'<span class="error">{e(f["error"])}</span>'))
    hashes = f.get("hashes") or {}
    hash_rows = [(k, f"<code>{e(v)}</code>") for k, v in hashes.items() if v]
    if f.get("fingerprint"):
        hash_rows.append(
            (
                "content fingerprint (fp16 / bf16 rounding)",
                f"<code>{e(f['fingerprint'])}</code> / <code>{e(f.get('fingerprint_bf16') or '-')}</code>",
            )
        )
    findings = scan.get("findings") or []
    finding_rows = [[e(x.get("severity")), e(x.get("message"))] for x in findings]
    # The models beside it: same root and folder (the folder alone may repeat under another root).
    names = catalog.names_in_folder(f["root"], f["folder"])
    probs = problems_of(f, names)
    dup_groups = _groups_with(catalog, f)
    body = [f"<h1>{e(f['name'])}</h1>", kv_table(summary)]
    if probs:
        body.append(
            "<h2>Problems</h2><ul>"
            + "".join(
                f"<li><b>{e(PROBLEM_TITLES.get(p['code'], p['code']))}</b>: {e(p['message'])}</li>" for p in probs
            )
            + "</ul>"
        )
    body.append(_placement(catalog, f))
    body.append("<h2>Parts</h2>" + (_components(rep) or '<p class="muted">no report</p>'))
    body.append("<h2>Advice</h2>" + (_advice(rep) or '<p class="muted">none</p>'))
    body.append(
        "<h2>Hashes</h2>"
        + (
            kv_table(hash_rows)
            if hash_rows
            else '<p class="muted">not hashed yet: run <code>sdmodel library scan --hash</code></p>'
        )
    )
    if dup_groups:
        items = []
        for g in dup_groups:
            others = [model_link(i, p) for i, p in zip(g["ids"], g["files"], strict=True) if i != f["id"]]
            items.append(f"<li>{e(DUPLICATE_LEVELS[g['level']])}: {', '.join(others)}</li>")
        body.append("<h2>Duplicates</h2><ul>" + "".join(items) + "</ul>")
    body.append("<h2>Sidecars</h2>" + _sidecars(f))
    body.append("<h2>Metadata</h2>" + _metadata(rep.get("metadata") or {}))
    body.append(
        "<h2>Security scan</h2>"
        + badge(f.get("verdict"))
        + (table(["Severity", "Finding"], finding_rows) if finding_rows else ' <span class="muted">no findings</span>')
    )
    if rep.get("notes"):
        body.append("<h2>Notes</h2><ul>" + "".join(f"<li>{e(n)}</li>" for n in rep["notes"]) + "</ul>")
    return layout(catalog, f["name"], "".join(body), "list")


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
    body = ["<h1>Duplicates</h1>"]
    if not hashed:
        body.append(
            '<p class="muted">No file is hashed yet: run <code>sdmodel library scan --hash</code> to find '
            "duplicates.</p>"
        )
    elif not groups:
        body.append(f'<p class="muted">No duplicates among {hashed} hashed files.</p>')
    wasted = sum(g["wasted_bytes"] for g in groups if g["level"] != "model")
    if groups:
        body.append(f'<p class="summary">{len(groups)} groups; exact copies waste {e(human_bytes(wasted))}</p>')
    for level, title in DUPLICATE_LEVELS.items():
        mine = [g for g in groups if g["level"] == level]
        if not mine:
            continue
        body.append(f"<h2>{e(title)}</h2>")
        for g in mine:
            items = "".join(f"<li>{model_link(i, p)}</li>" for i, p in zip(g["ids"], g["files"], strict=True))
            body.append(
                f'<div class="group dup-{e(level)}"><b>{e(g["kind"])} {e(g["family"])}</b> '
                f'<span class="muted">{e(human_bytes(g["bytes"]))} in {len(g["files"])} files</span>'
                f"<ul>{items}</ul></div>"
            )
    return layout(catalog, "Duplicates", "".join(body), "duplicates")


def problems_page(catalog: Catalog) -> str:
    report = build_report(catalog)
    ids = catalog.ids_by_path()
    body = ["<h1>Problems</h1>"]
    if not report["problems"]:
        body.append('<p class="muted">No problems found.</p>')
    by_code: dict[str, list[dict[str, str]]] = {}
    for p in report["problems"]:
        by_code.setdefault(p["code"], []).append(p)
    for code in sorted(by_code, key=lambda c: SEVERITY.get(c, 9)):
        rows = [
            [model_link(ids[p["path"]], p["path"]) if p["path"] in ids else e(p["path"]), e(p["message"])]
            for p in by_code[code]
        ]
        body.append(
            f'<h2 id="p-{e(code)}">{e(PROBLEM_TITLES.get(code, code))} ({len(rows)})</h2>'
            + table(["File", "What"], rows)
        )
    return layout(catalog, "Problems", "".join(body), "problems")


# -- plan ----------------------------------------------------------------------------------------
def plan_page(catalog: Catalog, state: dict[str, Any], token: str) -> str:
    plan = compute_plan(catalog)
    ids = catalog.ids_by_path()
    body = ["<h1>Savings plan</h1>"]
    folders = catalog.get_meta("train_folders", [])
    body.append(
        '<p class="muted">For generating: fp16 safetensors, no EMA, junk dropped. '
        + (
            "Training folders (fp32 kept, EMA kept): " + ", ".join(f"<code>{e(x)}</code>" for x in folders)
            if folders
            else "No training folder set (<code>sdmodel library plan --train-folder DIR</code>)."
        )
        + " Originals go to <code>.sdmodel-trash</code> in their root after the output is verified.</p>"
    )
    body.append(f'<p class="summary" id="plan-summary">{e(plan.summary())}</p>')
    running = state.get("state") == "running"
    disabled = " disabled" if running or not plan.items else ""
    body.append(
        '<form method="post" action="/plan/run" id="run-form">'
        f'<input type="hidden" name="token" value="{e(token)}">'
        f'<button type="submit" id="run-plan"{disabled}>Run the plan</button></form>'
        f'<div id="progress" data-state="{e(state.get("state", "idle"))}">'
        '<div class="progress"><div></div></div>'
        f'<span id="progress-text" class="muted">{e(_state_text(state))}</span></div>'
    )
    rows = [
        [
            model_link(ids[i.src], i.name) if i.src in ids else e(i.name),
            e(i.mode),
            e(i.target),
            e(os.path.basename(i.dst)),
            human_bytes(i.before_bytes),
            human_bytes(i.after_bytes),
            human_bytes(i.saves_bytes),
        ]
        for i in plan.items
    ]
    if rows:
        body.append(
            "<h2>Proposed conversions</h2>"
            + table(["File", "For", "Convert to", "New name", "Before", "After", "Saves"], rows, {4, 5, 6}, "plan")
        )
    if plan.skipped:
        body.append(
            f"<details><summary>{len(plan.skipped)} files skipped</summary>"
            + table(["File", "Why"], [[e(s.path), e(s.reason)] for s in plan.skipped])
            + "</details>"
        )
    last = catalog.plan_items()
    if last:
        body.append(
            "<h2>Last run</h2>"
            + table(
                ["File", "Status", "Output", "Error"],
                [
                    [
                        e(i["src"]),
                        badge(i["status"]),
                        e(i["dst"] if i["status"] == "done" else ""),
                        e(i["error"]),
                    ]
                    for i in last
                ],
                cls="runs",
            )
        )
    return layout(catalog, "Savings plan", "".join(body), "plan")


def _state_text(state: dict[str, Any]) -> str:
    if state.get("state") == "running":
        return f"Converting {state.get('index', 0) + 1} of {state.get('items', 0)}: {state.get('current') or ''}"
    if state.get("state") == "finished":
        return (
            f"Last run finished: {state.get('done', 0)} converted, {state.get('failed', 0)} failed"
            + (f" ({state['error']})" if state.get("error") else "")
            + "."
        )
    return ""


def not_found_page(catalog: Catalog, what: str) -> str:
    return layout(catalog, "Not found", f"<h1>Not found</h1><p>{e(what)}</p>", "")
