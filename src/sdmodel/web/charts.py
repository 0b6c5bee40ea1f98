"""Bar charts drawn on the server as inline SVG: no script and no front-end build. Each chart has a
title and a description for screen readers, and every bar says its value in text beside it. Every
label goes through ``e()`` (the same HTML escaping as the pages: SVG in HTML is parsed as HTML)."""

from __future__ import annotations

from dataclasses import dataclass

from sdmodel.i18n import format_size
from sdmodel.web.escape import e

WIDTH = 760
LABEL_W = 230
VALUE_W = 190
BAR_W = WIDTH - LABEL_W - VALUE_W - 16
ROW_H = 22
PAIR_H = 34
LABEL_CHARS = 34


@dataclass(frozen=True)
class Bar:
    label: str
    value: int
    text: str  # the value in words, shown beside the bar


def _short(label: str) -> str:
    return label if len(label) <= LABEL_CHARS else label[: LABEL_CHARS - 1] + "…"


def _length(value: int, top: int) -> float:
    return 0.0 if top <= 0 else max(1.0, BAR_W * value / top) if value > 0 else 0.0


def _svg(title: str, desc: str, chart_id: str, height: int, rows: list[str], cls: str) -> str:
    return (
        f'<svg class="chart {cls}" id="{e(chart_id)}" role="img" aria-labelledby="{e(chart_id)}-t {e(chart_id)}-d" '
        f'viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}" xmlns="http://www.w3.org/2000/svg">'
        f'<title id="{e(chart_id)}-t">{e(title)}</title><desc id="{e(chart_id)}-d">{e(desc)}</desc>'
        + "".join(rows)
        + "</svg>"
    )


def bar_chart(title: str, bars: list[Bar], chart_id: str) -> str:
    """One horizontal bar per value, the longest for the biggest."""
    top = max((b.value for b in bars), default=0)
    rows = []
    for n, b in enumerate(bars):
        y = n * ROW_H
        length = _length(b.value, top)
        rows.append(
            f'<g class="bar"><title>{e(b.label)}: {e(b.text)}</title>'
            f'<text class="label" x="{LABEL_W - 8}" y="{y + 15}" text-anchor="end">{e(_short(b.label))}</text>'
            f'<rect x="{LABEL_W}" y="{y + 4}" width="{length:.1f}" height="{ROW_H - 8}" rx="2"></rect>'
            f'<text class="value" x="{LABEL_W + length + 6:.1f}" y="{y + 15}">{e(b.text)}</text></g>'
        )
    desc = "; ".join(f"{b.label}: {b.text}" for b in bars)
    return _svg(title, desc, chart_id, max(ROW_H, ROW_H * len(bars)), rows, "bars")


def pair_chart(title: str, pairs: list[tuple[str, int, int]], before: str, after: str, chart_id: str) -> str:
    """Two bars per item, before and after (the same scale for all): what a plan changes."""
    top = max((max(a, b) for _label, a, b in pairs), default=0)
    rows = [
        f'<g class="legend"><rect class="before" x="{LABEL_W}" y="4" width="12" height="12"></rect>'
        f'<text x="{LABEL_W + 18}" y="15">{e(before)}</text>'
        f'<rect class="after" x="{LABEL_W + 120}" y="4" width="12" height="12"></rect>'
        f'<text x="{LABEL_W + 138}" y="15">{e(after)}</text></g>'
    ]
    for n, (label, old, new) in enumerate(pairs):
        y = ROW_H + n * PAIR_H
        a, b = _length(old, top), _length(new, top)
        text_old, text_new = format_size(old), format_size(new)
        rows.append(
            f'<g class="pair"><title>{e(label)}: {e(before)} {e(text_old)}, {e(after)} {e(text_new)}</title>'
            f'<text class="label" x="{LABEL_W - 8}" y="{y + 20}" text-anchor="end">{e(_short(label))}</text>'
            f'<rect class="before" x="{LABEL_W}" y="{y + 3}" width="{a:.1f}" height="12" rx="2"></rect>'
            f'<text class="value" x="{LABEL_W + a + 6:.1f}" y="{y + 13}">{e(text_old)}</text>'
            f'<rect class="after" x="{LABEL_W}" y="{y + 17}" width="{b:.1f}" height="12" rx="2"></rect>'
            f'<text class="value" x="{LABEL_W + b + 6:.1f}" y="{y + 27}">{e(text_new)}</text></g>'
        )
    desc = "; ".join(f"{label}: {before} {format_size(a)}, {after} {format_size(b)}" for label, a, b in pairs)
    return _svg(title, desc, chart_id, ROW_H + PAIR_H * len(pairs), rows, "pairs")
