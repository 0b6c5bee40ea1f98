"""Placement in the catalog: each file's folder checked against the UI its path names, and each
lone diffusion model's companions (text encoders, VAE) looked up among the catalogued files."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sdmodel.i18n import N_, Msg
from sdmodel.library.catalog import Catalog, Filters
from sdmodel.placement import Placement, folder_problem, place, storage_of

COMPANION_KINDS = ("text_encoder", "vae")
PLACEMENT_PROBLEMS = {
    "misplaced": N_("in the wrong folder for its UI"),
    "missing_companions": N_("diffusion model without its text encoders or VAE"),
}


@dataclass(frozen=True)
class CompanionIndex:
    """Catalogued text encoders and VAEs by registry id (their variant): (file id, path) pairs."""

    by_id: dict[str, list[tuple[int, str]]]

    @classmethod
    def of(cls, files: Iterable[dict[str, Any]]) -> CompanionIndex:
        by_id: dict[str, list[tuple[int, str]]] = {}
        for f in files:
            if f.get("kind") in COMPANION_KINDS and f.get("variant"):
                by_id.setdefault(f["variant"], []).append((f["id"], f["path"]))
        for found in by_id.values():
            found.sort(key=lambda p: p[1])
        return cls(by_id)

    @classmethod
    def from_catalog(cls, catalog: Catalog) -> CompanionIndex:
        rows: list[dict[str, Any]] = []
        for kind in COMPANION_KINDS:
            filters = Filters(kind=kind)
            rows += catalog.list_files(filters, limit=max(1, catalog.count(filters)))
        return cls.of(rows)


def placement_of(f: dict[str, Any]) -> Placement | None:
    """Where a catalogued file goes (None: not identified)."""
    kind = f.get("kind")
    if not kind or kind == "unknown" or f.get("error"):
        return None
    scheme = ((f.get("report") or {}).get("quantization") or {}).get("scheme")
    return place(kind, f.get("family"), f.get("variant"), storage_of(f.get("format"), scheme))


def companions_of(placement: Placement | None, index: CompanionIndex) -> list[dict[str, Any]]:
    """Each companion a lone diffusion model needs, with the catalogued files that are one
    (``files`` empty: missing)."""
    comp = placement.companions if placement is not None else None
    if comp is None:
        return []
    wanted = [*comp.text_encoders, *([comp.vae] if comp.vae else [])]
    return [
        {
            "id": c,
            "role": "vae" if c == comp.vae else "text_encoder",
            "files": [{"id": i, "path": p} for i, p in index.by_id.get(c, [])],
        }
        for c in wanted
    ]


def placement_problems(f: dict[str, Any], index: CompanionIndex) -> list[dict[str, Any]]:
    """A file in the wrong folder for the UI its path names; a diffusion model whose companions
    are not in the catalog. ``message`` is a Msg (English in JSON, translated where shown)."""
    placement = placement_of(f)
    if placement is None:
        return []
    out: list[dict[str, Any]] = []
    why = folder_problem(f["path"], placement)
    if why:
        out.append({"code": "misplaced", "path": f["path"], "message": why})
    missing = [c["id"] for c in companions_of(placement, index) if not c["files"]]
    if missing:
        out.append(
            {
                "code": "missing_companions",
                "path": f["path"],
                "message": Msg(
                    "no catalogued file for {companions} (it needs them to generate)", companions=", ".join(missing)
                ),
            }
        )
    return out
