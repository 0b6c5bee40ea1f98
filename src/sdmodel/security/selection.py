"""Which files ``sdmodel scan`` looks at inside folders (explicit paths are always scanned)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from sdmodel.formats import sniff
from sdmodel.remote import as_path, is_remote
from sdmodel.sidecars import CONFIG_SUFFIXES

SCAN_SUFFIXES = frozenset(
    {".ckpt", ".pt", ".pth", ".bin", ".pkl", ".pickle", ".safetensors", ".sft", ".npy", ".joblib", ".7z"}
)
# Content that makes any file worth scanning, whatever its name: zip, pickle PROTO 0-5, 7z, numpy.
WORTH_SCANNING = frozenset({"torch-zip", "torch-legacy", "7z", "npy"})


def _sniffs_as_model(path: Path) -> bool:
    try:
        return sniff(path) in WORTH_SCANNING
    except OSError:
        return False


def iter_scan_files(paths: Iterable[str]) -> Iterator[Path]:
    """Files to scan: explicit paths as given; inside folders, model-like names, standalone configs
    (a ``.yaml`` beside a model is scanned with it) and anything whose content looks like a pickle,
    zip, 7z or numpy file."""
    for p in map(as_path, paths):
        if is_remote(p) or not p.is_dir():
            yield p
            continue
        for root, dirs, files in os.walk(p):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            rootp = Path(root)
            stems = {Path(n).stem for n in files if Path(n).suffix.lower() in SCAN_SUFFIXES}
            for name in sorted(files):
                f = rootp / name
                suffix = f.suffix.lower()
                if name.startswith(".") or not f.is_file():
                    continue
                if suffix in CONFIG_SUFFIXES:
                    wanted = f.stem not in stems  # a sidecar is scanned with its model
                else:
                    wanted = suffix in SCAN_SUFFIXES or _sniffs_as_model(f)
                if wanted:
                    yield f
