"""Finding model files on disk: which files under a folder are models, and which folders are
diffusers models (read as one model)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from sdmodel.remote import as_path, is_remote

MODEL_SUFFIXES = frozenset({".safetensors", ".sft", ".gguf", ".ckpt", ".pt", ".pth", ".bin"})


def is_diffusers_dir(path: Path) -> bool:
    """A diffusers pipeline (model_index.json) or a single diffusers component (config.json with
    weights beside it)."""
    if (path / "model_index.json").is_file():
        return True
    if (path / "config.json").is_file():
        return any(f.suffix in (".safetensors", ".bin") for f in path.iterdir() if f.is_file())
    return False


def is_model_file(path: str | Path) -> bool:
    """A model file by its name (A1111's ``x.vae.pt`` VAE sidecars included)."""
    return Path(path).suffix.lower() in MODEL_SUFFIXES


def iter_model_files(paths: Iterable[str | Path]) -> Iterator[Path]:
    """Model files and diffusers folders under ``paths``, recursively, in a stable order.
    Paths given explicitly are yielded as they are (even with an unusual extension)."""
    for p in map(as_path, paths):
        if not p.is_dir() or is_remote(p):  # a remote folder is a diffusers model or nothing
            yield p
            continue
        if is_diffusers_dir(p):
            yield p
            continue
        for root, dirs, files in os.walk(p):
            rootp = Path(root)
            dirs.sort()
            keep = []
            for d in dirs:
                if d.startswith("."):
                    continue
                if is_diffusers_dir(rootp / d):
                    yield rootp / d
                else:
                    keep.append(d)
            dirs[:] = keep
            for name in sorted(files):
                f = rootp / name
                if not name.startswith(".") and is_model_file(f):
                    yield f
