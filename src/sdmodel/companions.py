"""Find a lone diffusion model's companions (text encoders, VAE) on disk: in the folders of the
UI install the model sits in, identified from their headers (names and shapes only)."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from sdmodel.errors import SdmodelError
from sdmodel.formats import open_model
from sdmodel.identify import identify
from sdmodel.placement import Companions, ui_of_path

# The folders each UI keeps text encoders and VAEs in (relative to the folder holding ``models``).
_COMPANION_DIRS = {
    "comfyui": ("models/text_encoders", "models/clip", "models/vae"),
    "a1111": ("models/text_encoder", "models/VAE"),
    "swarmui": ("Models/clip", "Models/VAE"),
}
MAX_FILES = 200  # headers read at most: a big install's folders stay cheap to look through
_EXTENSIONS = (".safetensors", ".sft", ".gguf")


def find_companions(model_path: str | Path, companions: Companions) -> Companions:
    """``companions`` with ``found`` filled from the UI install ``model_path`` sits in (unchanged
    when the path names no UI)."""
    located = ui_of_path(str(model_path))
    if located is None:
        return companions
    ui, folder = located
    path = Path(model_path)
    base = next((p for p in path.parents if p / folder in path.parents), None)
    if base is None:
        return companions
    wanted = {*companions.text_encoders, *([companions.vae] if companions.vae else [])}
    found: dict[str, str] = {}
    seen = 0
    for sub in _COMPANION_DIRS[ui]:
        for f in _model_files(base / sub):
            if seen >= MAX_FILES or wanted <= found.keys():
                break
            seen += 1
            cid = _companion_id(f)
            if cid in wanted and cid not in found:
                found[cid] = os.path.relpath(f, base)
    return replace(companions, found=tuple(sorted(found.items())))


def _model_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in _EXTENSIONS and p.is_file())


def _companion_id(path: Path) -> str | None:
    """The registry id (text-encoder or VAE variant) of a file, from its header."""
    try:
        with open_model(path) as source:
            ident = identify(source)
    except (SdmodelError, OSError):
        return None
    return ident.variant if ident.kind in ("text_encoder", "vae") else None
