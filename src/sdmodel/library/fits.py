"""Which catalogued models a catalogued LoRA fits, from what the catalog already holds (the LoRA's
base family and what it trains, each model's kind, family and components): no file is read again.

A LoRA fits a whole checkpoint or a lone diffusion model of its base family. The family is the one
its key names (or, failing them, its metadata) give; a LoRA whose keys several families share
(``lora.candidates`` in its report) fits the models of each. ``sdmodel lora check LORA MODEL`` is
the exact test: it matches every target against the model's tensors.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from sdmodel.errors import SdmodelError
from sdmodel.i18n import Msg
from sdmodel.library.catalog import Catalog, Filters

LORA_KINDS = ("lora", "lycoris")
MODEL_KINDS = ("checkpoint", "unet")  # what a LoRA is applied to
DIFFUSION = "diffusion model"  # the label sdmodel.lora.info gives the diffusion model's targets
TEXT_ENCODER_PARTS = ("text_encoder", "text_encoder_2", "text_encoder_3")  # checkpoint components


@dataclass(frozen=True)
class Fit:
    """A catalogued model a LoRA fits; ``partial`` when the model lacks parts the LoRA trains (its
    text encoders, for a lone diffusion model or a checkpoint without them): those targets go unused.
    ``id`` is its catalog row (the web page links to it); ``to_dict``, the CLI's JSON, leaves it out."""

    id: int
    path: str
    name: str
    kind: str
    family: str
    partial: bool

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "name": self.name, "kind": self.kind, "family": self.family, "partial": self.partial}


def lora_families(lora: dict[str, Any]) -> list[str]:
    """The base families of a catalogued LoRA row: its family, else its report's candidates."""
    if lora.get("family"):
        return [lora["family"]]
    info = (lora.get("report") or {}).get("lora") or {}
    return [str(f) for f in info.get("candidates") or []]


def _trains_text_encoders(lora: dict[str, Any]) -> bool:
    info = (lora.get("report") or {}).get("lora") or {}
    return any(part != DIFFUSION for part in info.get("trains") or {})


def _has_text_encoders(model: dict[str, Any]) -> bool:
    components = (model.get("report") or {}).get("components") or {}
    return any(part in components for part in TEXT_ENCODER_PARTS)


def models_fitting(cat: Catalog, lora: dict[str, Any]) -> list[Fit]:
    """The catalogued models ``lora`` (a catalog row with its report, as ``Catalog.get`` gives it)
    fits, whole fits first, then by name. Raises SdmodelError when the row is not a LoRA."""
    if lora.get("kind") not in LORA_KINDS:
        raise SdmodelError(
            Msg("{path}: not a LoRA (kind {kind})", path=lora.get("path"), kind=lora.get("kind") or "unknown")
        )
    te = _trains_text_encoders(lora)
    fits: list[Fit] = []
    for family in lora_families(lora):
        for kind in MODEL_KINDS:
            for row in cat.list_files(Filters(kind=kind, family=family), limit=-1):
                partial = te and (kind == "unet" or not _has_text_encoders(cat.get(row["id"]) or {}))
                fits.append(Fit(row["id"], row["path"], row["name"], kind, family, partial))
    return sorted(fits, key=lambda f: (f.partial, f.name.lower(), f.path))


def find_lora(cat: Catalog, ref: str) -> dict[str, Any]:
    """A catalogued file by path or by file name (a name must be unique). Raises SdmodelError."""
    for path in dict.fromkeys((ref, os.path.abspath(ref), os.path.realpath(ref))):
        row = cat.get_by_path(path)
        if row is not None:
            return row
    rows = [r for r in cat.list_files(Filters(text=ref), limit=-1) if r["name"] == ref or r["path"].endswith(ref)]
    if not rows:
        raise SdmodelError(Msg("{ref}: not in the catalog", ref=ref))
    if len(rows) > 1:
        raise SdmodelError(
            Msg(
                "{ref}: {count} files in the catalog match, e.g. {path}; give the path",
                ref=ref,
                count=len(rows),
                path=rows[0]["path"],
            )
        )
    found = cat.get(rows[0]["id"])
    assert found is not None
    return found
