"""Finding model roots (A1111, Forge, ComfyUI installs) and the model files under them.

Install discovery (``find_installs``) looks, in this order, at the current directory and each of
its parents, then at these folders of the home directory: ``stable-diffusion-webui``,
``stable-diffusion-webui-forge``, ``stable-diffusion-webui-reForge``, ``sd-webui-forge``, ``webui``,
``ComfyUI``, ``comfyui``, ``ComfyUI_windows_portable/ComfyUI``, ``Documents/ComfyUI``. A folder
is an A1111/Forge install when it has ``models/Stable-diffusion``; a ComfyUI install when it has
``models/checkpoints`` (its ``extra_model_paths.yaml`` adds more roots). Model roots are
``models/`` (and A1111's top-level ``embeddings/``), as A1111 (modules/paths.py, modules/shared.py)
and ComfyUI (folder_paths.py) lay them out.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from sdmodel.errors import SdmodelError
from sdmodel.files import is_diffusers_dir, is_model_file
from sdmodel.i18n import Msg
from sdmodel.sidecars import assign_sidecars

TRASH_DIR = ".sdmodel-trash"

HOME_CANDIDATES = (
    "stable-diffusion-webui",
    "stable-diffusion-webui-forge",
    "stable-diffusion-webui-reForge",
    "sd-webui-forge",
    "webui",
    "ComfyUI",
    "comfyui",
    "ComfyUI_windows_portable/ComfyUI",
    "Documents/ComfyUI",
)

# Folder name (lower case) -> the kinds that belong there (A1111 and ComfyUI folder names).
FOLDER_KINDS: dict[str, frozenset[str]] = {
    "stable-diffusion": frozenset({"checkpoint", "unet"}),
    "checkpoints": frozenset({"checkpoint"}),
    "diffusion_models": frozenset({"unet"}),
    "unet": frozenset({"unet"}),
    "vae": frozenset({"vae"}),
    "lora": frozenset({"lora", "lycoris"}),
    "lycoris": frozenset({"lora", "lycoris"}),
    "loras": frozenset({"lora", "lycoris"}),
    "embeddings": frozenset({"embedding"}),
    "controlnet": frozenset({"controlnet", "t2i_adapter"}),
    "t2i_adapter": frozenset({"t2i_adapter"}),
    "text_encoder": frozenset({"text_encoder"}),
    "text_encoders": frozenset({"text_encoder"}),
    "clip": frozenset({"text_encoder"}),
    "esrgan": frozenset({"upscaler"}),
    "realesrgan": frozenset({"upscaler"}),
    "swinir": frozenset({"upscaler"}),
    "dat": frozenset({"upscaler"}),
    "upscale_models": frozenset({"upscaler"}),
}


@dataclass(frozen=True)
class Install:
    """A UI install and the model roots it uses."""

    path: Path
    ui: str  # "a1111" (also Forge) or "comfyui"
    roots: tuple[Path, ...]


@dataclass
class FoundFile:
    """A model file (or diffusers folder) seen by the walk, with its sidecars' names."""

    path: Path
    root: Path
    size: int
    mtime_ns: int
    is_dir: bool = False
    sidecars: list[str] = field(default_factory=list)


def detect_install(folder: Path) -> Install | None:
    """The install at ``folder``, or None if it is not one."""
    models = folder / "models"
    if (models / "Stable-diffusion").is_dir():
        roots = [models]
        if (folder / "embeddings").is_dir():
            roots.append(folder / "embeddings")
        return Install(folder, "a1111", tuple(roots))
    if (models / "checkpoints").is_dir():
        return Install(folder, "comfyui", (models, *_comfy_extra_roots(folder)))
    return None


def _comfy_extra_roots(folder: Path) -> list[Path]:
    """Roots named in ComfyUI's ``extra_model_paths.yaml`` (read as data only)."""
    cfg = folder / "extra_model_paths.yaml"
    if not cfg.is_file():
        return []
    try:
        data = yaml.safe_load(cfg.read_text(encoding="utf-8", errors="replace"))
    except (OSError, yaml.YAMLError):
        return []
    roots: list[Path] = []
    for section in (data or {}).values() if isinstance(data, dict) else ():
        if not isinstance(section, dict):
            continue
        base = Path(os.path.expanduser(str(section.get("base_path", ""))))
        if not base.is_absolute():
            base = folder / base
        for key, value in section.items():
            if key in ("base_path", "is_default") or not isinstance(value, str):
                continue
            for line in value.splitlines():
                p = base / os.path.expanduser(line.strip())
                if line.strip() and p.is_dir():
                    roots.append(p)
    return roots


def find_installs(cwd: Path | None = None, home: Path | None = None) -> list[Install]:
    """A1111/Forge/ComfyUI installs in the usual places (see the module docstring)."""
    cwd = Path.cwd() if cwd is None else Path(cwd)
    home = Path.home() if home is None else Path(home)
    candidates = [cwd, *cwd.parents, *(home / c for c in HOME_CANDIDATES)]
    found: list[Install] = []
    seen: set[Path] = set()
    for c in candidates:
        try:
            real = c.resolve()
        except OSError:
            continue
        if real in seen:
            continue
        seen.add(real)
        inst = detect_install(c)
        if inst is not None:
            found.append(inst)
    return found


def scan_roots(
    dirs: list[Path], known: list[Path], on_install: Callable[[Install], None] | None = None
) -> list[tuple[Path, str]]:
    """The roots a library scan walks, each with its UI ("" when unknown): the folders given (an
    install folder stands for its model roots), or else the installs found nearby
    (``find_installs``, each announced to ``on_install``) and the roots already catalogued
    (``known``). Raises SdmodelError for a given path that is no folder, or when nothing is found."""
    roots: list[tuple[Path, str]] = []
    for d in dirs:
        if not d.is_dir():
            raise SdmodelError(Msg("{d}: not a directory", d=d))
        inst = detect_install(d)
        if inst is None:
            roots.append((d, ""))
        else:
            roots.extend((r, inst.ui) for r in inst.roots)
    if not dirs:
        for inst in find_installs():
            if on_install is not None:
                on_install(inst)
            roots.extend((r, inst.ui) for r in inst.roots)
        roots.extend((r, "") for r in known)
        if not roots:
            raise SdmodelError(
                Msg(
                    "no A1111, Forge or ComfyUI install found here or in the usual places; give the model folders: sdmodel library scan DIR..."
                )
            )
    uis = {os.path.abspath(r): ui for r, ui in roots if ui}
    return [(r, uis.get(str(r), "")) for r in normalize_roots([r for r, _ in roots])]


def normalize_roots(roots: list[Path]) -> list[Path]:
    """Absolute, deduplicated roots, dropping any root inside another one."""
    absolute = sorted({Path(os.path.abspath(r)) for r in roots}, key=lambda p: len(p.parts))
    kept: list[Path] = []
    for r in absolute:
        if not any(r == k or k in r.parents for k in kept):
            kept.append(r)
    return sorted(kept)


def walk_root(root: Path) -> Iterator[FoundFile]:
    """Every model file (and diffusers folder) under ``root``, recursively. Hidden folders (the
    trash among them) are skipped; symlinked folders are followed once (no cycles)."""
    root = Path(root)
    seen_dirs: set[tuple[int, int]] = set()
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            st = folder.stat()
        except OSError:
            continue
        if (st.st_dev, st.st_ino) in seen_dirs:
            continue
        seen_dirs.add((st.st_dev, st.st_ino))
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        if folder != root and is_diffusers_dir(folder):
            yield _diffusers_entry(folder, root)
            continue
        models: dict[str, FoundFile] = {}
        others: list[str] = []
        subdirs: list[Path] = []
        for e in entries:
            if e.name.startswith("."):
                continue
            try:
                if e.is_dir():
                    subdirs.append(Path(e.path))
                    continue
                if not e.is_file():
                    continue
                if is_model_file(e.name):
                    s = e.stat()
                    models[e.name] = FoundFile(Path(e.path), root, s.st_size, s.st_mtime_ns)
                else:
                    others.append(e.name)
            except OSError:
                continue
        for name, sidecars in assign_sidecars(list(models), others).items():
            models[name].sidecars = sidecars
        yield from models.values()
        stack.extend(sorted(subdirs, reverse=True))


def _diffusers_entry(folder: Path, root: Path) -> FoundFile:
    """A diffusers folder counts as one model: total size, newest mtime."""
    size = 0
    mtime = 0
    for dirpath, _dirs, files in os.walk(folder):
        for name in files:
            try:
                s = os.stat(os.path.join(dirpath, name))
            except OSError:
                continue
            size += s.st_size
            mtime = max(mtime, s.st_mtime_ns)
    return FoundFile(folder, root, size, mtime, is_dir=True)


def category_of(path: Path, root: Path) -> str:
    """The UI folder a file sits in (``Stable-diffusion``, ``Lora``, ``vae``...) or ``""``: the
    first folder, from the root down, whose name is in FOLDER_KINDS."""
    try:
        rel = Path(path).relative_to(root)
    except ValueError:
        return ""
    for part in (root.name, *rel.parts[:-1]):
        if part.lower() in FOLDER_KINDS:
            return part
    return ""


def expected_kinds(category: str) -> frozenset[str] | None:
    return FOLDER_KINDS.get(category.lower()) if category else None
