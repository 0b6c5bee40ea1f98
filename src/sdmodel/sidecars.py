"""Files that go with a model file: its config yaml, a baked VAE, previews, notes; and the yaml rule.

A1111 loads ``<model stem>.yaml`` beside a checkpoint as its config
(AUTOMATIC1111/stable-diffusion-webui, modules/sd_models_config.py); an SD2 checkpoint needs one.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
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


# Preview images beside a model, in the order A1111 looks for them (modules/ui_extra_networks.py,
# find_preview: ``<stem>.<ext>`` then ``<stem>.preview.<ext>`` for png, jpg, jpeg, webp, gif); the
# Civitai Helper extension, Stability Matrix and ComfyUI-Lora-Manager write the same names.
PREVIEW_SUFFIXES = tuple(
    suffix for ext in ("png", "jpg", "jpeg", "webp", "gif") for suffix in (f".{ext}", f".preview.{ext}")
)
# Sidecars that describe a model as JSON: Civitai's model-version record (Civitai Helper's
# ``.civitai.info``), Stability Matrix's ``.cm-info.json``, ComfyUI-Lora-Manager's ``.metadata.json``
# and A1111's own user metadata ``.json`` (ui_extra_networks_user_metadata.py).
CARD_SUFFIXES = (".civitai.info", ".cm-info.json", ".metadata.json", ".json")
CARD_METADATA = ("modelspec.title", "modelspec.author", "modelspec.trigger_phrase", "modelspec.thumbnail")
MAX_JSON_BYTES = 4 << 20  # a sidecar is a few KB; a bigger one is not read


def preview_of(model_name: str, sidecars: list[str]) -> str | None:
    """The sidecar A1111 would show as the model's picture, if there is one."""
    stem = stem_of(model_name)
    names = {name.lower(): name for name in sidecars}
    return next((names[key] for s in PREVIEW_SUFFIXES if (key := (stem + s).lower()) in names), None)


def read_json(path: Path) -> dict[str, object]:
    """A JSON object from a sidecar; {} when it is missing, too big or not an object."""
    try:
        if path.stat().st_size > MAX_JSON_BYTES:
            return {}
        doc = json.loads(path.read_text(encoding="utf-8", errors="replace"))
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


@dataclass(frozen=True)
class ModelCard:
    """What a model manager shows of a model: its title, version, base model, creator and trigger
    words, from the JSON sidecars beside it and the ModelSpec metadata inside it."""

    title: str | None = None
    version: str | None = None
    base_model: str | None = None
    creator: str | None = None
    triggers: tuple[str, ...] = ()
    thumbnail: bool = False  # the metadata holds a ``modelspec.thumbnail`` picture


def _text(value: object) -> str | None:
    return value.strip()[:200] or None if isinstance(value, str) else None


def _words(value: object) -> list[str]:
    """Trigger words from a list (Civitai ``trainedWords``) or a comma-separated text."""
    items = value if isinstance(value, list) else value.split(",") if isinstance(value, str) else []
    return [w.strip()[:200] for w in items if isinstance(w, str) and w.strip()]


def _dig(doc: dict[str, object], *keys: str) -> object:
    for key in keys:
        if not isinstance(doc, dict):
            return None
        doc = doc.get(key)  # type: ignore[assignment]
    return doc


def card_from(docs: list[tuple[str, dict[str, object]]], metadata: dict[str, str]) -> ModelCard:
    """A model's card from its JSON sidecars ((suffix, document) pairs, most trusted first) and its
    metadata. Field names: Civitai's model-version API (``name``, ``baseModel``, ``trainedWords``,
    ``model.name``, ``creator.username``), Stability Matrix (``ModelName``, ``VersionName``,
    ``BaseModel``, ``TrainedWords``), ComfyUI-Lora-Manager (``model_name``, ``base_model``, its
    ``civitai`` record), A1111 (``sd version``, ``activation text``), ModelSpec (``modelspec.title``,
    ``modelspec.author``, ``modelspec.trigger_phrase``)."""
    titles: list[object] = []
    versions: list[object] = []
    bases: list[object] = []
    creators: list[object] = []
    words: list[str] = []
    for suffix, doc in docs:
        civitai = _dig(doc, "civitai") if suffix == ".metadata.json" else doc if suffix == ".civitai.info" else None
        if isinstance(civitai, dict):
            titles.append(_dig(civitai, "model", "name"))
            versions.append(civitai.get("name"))
            bases.append(civitai.get("baseModel"))
            creators += [_dig(civitai, "creator", "username"), _dig(civitai, "model", "creator", "username")]
            words += _words(civitai.get("trainedWords"))
        if suffix == ".cm-info.json":
            titles.append(doc.get("ModelName"))
            versions.append(doc.get("VersionName"))
            bases.append(doc.get("BaseModel"))
            words += _words(doc.get("TrainedWords"))
        elif suffix == ".metadata.json":
            titles.append(doc.get("model_name"))
            bases.append(doc.get("base_model"))
        elif suffix == ".json":
            bases.append(doc.get("sd version"))
            words += _words(doc.get("activation text"))
    titles.append(metadata.get("modelspec.title"))
    creators.append(metadata.get("modelspec.author"))
    words += _words(metadata.get("modelspec.trigger_phrase"))

    def first(values: list[object]) -> str | None:
        return next((t for v in values if (t := _text(v))), None)

    return ModelCard(
        title=first(titles),
        version=first(versions),
        base_model=first(bases),
        creator=first(creators),
        triggers=tuple(dict.fromkeys(words))[:50],
        thumbnail=bool(metadata.get("modelspec.thumbnail")),
    )


def read_card(model: Path, sidecars: list[str], metadata: dict[str, str]) -> ModelCard:
    """The card of ``model`` from the JSON sidecars named in ``sidecars`` and its metadata."""
    stem = stem_of(model.name).lower()
    docs = []
    lowered = {name.lower(): name for name in sidecars}
    for suffix in CARD_SUFFIXES:
        name = lowered.get(stem + suffix)
        if name is not None:
            docs.append((suffix, read_json(model.parent / name)))
    return card_from(docs, metadata)
