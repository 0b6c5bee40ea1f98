"""Files that go with a model file: its config yaml, a baked VAE, previews, notes; and the yaml rule.

A1111 loads ``<model stem>.yaml`` beside a checkpoint as its config
(AUTOMATIC1111/stable-diffusion-webui, modules/sd_models_config.py); an SD2 checkpoint needs one.
"""

from __future__ import annotations

import os
from pathlib import Path

from sdmodel.registry import needs_yaml
from sdmodel.remote import as_path

SIDECAR_KINDS = (
    (".yaml", "config"),
    (".yml", "config"),
    (".vae.safetensors", "vae"),
    (".vae.pt", "vae"),
    (".vae.ckpt", "vae"),
    (".civitai.info", "civitai"),
    (".preview.png", "preview"),
    (".png", "preview"),
    (".jpg", "preview"),
    (".jpeg", "preview"),
    (".webp", "preview"),
    (".json", "notes"),
    (".txt", "notes"),
)
CONFIG_SUFFIXES = tuple(suffix for suffix, kind in SIDECAR_KINDS if kind == "config")


def stem_of(name: str) -> str:
    """A model file's base name: ``x.safetensors`` -> ``x``."""
    return os.path.splitext(name)[0]


def config_beside(model: Path) -> Path:
    """Where A1111 looks for the config of ``model``: ``<stem>.yaml`` beside it."""
    model = as_path(model)  # a URL's sidecars are looked up beside it (sdmodel.remote)
    return model.parent / f"{stem_of(model.name)}.yaml"


def existing_config(model: Path) -> Path | None:
    """The config yaml beside a model file, if there is one."""
    candidate = config_beside(model)
    return candidate if as_path(model).is_file() and candidate.is_file() else None


def needs_config(kind: str | None, family: str | None) -> bool:
    """A1111 needs a config yaml beside this model to load it (SD2 checkpoints)."""
    return kind == "checkpoint" and needs_yaml(family)


def is_config(name: str) -> bool:
    return name.lower().endswith(CONFIG_SUFFIXES)


def find_sidecars(path: Path) -> list[dict[str, str]]:
    """The files beside ``path`` named ``<stem><known suffix>`` (SIDECAR_KINDS), with their kind."""
    if not path.is_file():
        return []
    stem = path.name[: -len(path.suffix)] if path.suffix else path.name
    found = []
    try:
        siblings = sorted(path.parent.iterdir())
    except OSError:
        return []
    for f in siblings:
        if f == path or not f.is_file() or not f.name.startswith(stem + "."):
            continue
        rest = f.name[len(stem) :].lower()
        kind = next((k for suffix, k in SIDECAR_KINDS if rest == suffix), None)
        if kind is not None:
            found.append({"path": str(f), "kind": kind})
    return found


def assign_sidecars(models: list[str], others: list[str]) -> dict[str, list[str]]:
    """The sidecars of each model among the file names of one folder: every non-model file goes to
    the model with the longest stem it starts with (``a.b.png`` belongs to ``a.b.safetensors``
    rather than ``a.safetensors``). ``x.vae.safetensors`` is both a model and a sidecar of ``x``.
    Returns model name -> sorted sidecar names."""
    by_stem: dict[str, str] = {}
    for name in models:
        by_stem.setdefault(stem_of(name), name)
    owned: dict[str, list[str]] = {name: [] for name in models}
    for name in others + [n for n in models if ".vae." in n.lower()]:
        cut = name
        while "." in cut:
            cut = cut.rsplit(".", 1)[0]
            owner = by_stem.get(cut)
            if owner is not None and owner != name:
                owned[owner].append(name)
                break
    for names in owned.values():
        names.sort()
    return owned
