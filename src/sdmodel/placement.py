"""Where a model file goes and what loads it: the folder for A1111/Forge, ComfyUI and SwarmUI, the
ComfyUI loader node (a custom node for GGUF, bitsandbytes NF4/FP4 and Nunchaku files), and for a
lone diffusion model the companions it needs (text encoders and VAE by registry id, from the
family's record). Pure logic: the caller says what the file is and how it is stored.

Folders: ComfyUI folder_paths.py (``folder_names_and_paths``; ``unet`` is an alias of
``diffusion_models`` and ``clip`` of ``text_encoders``), A1111 modules/shared / paths
(``models/Stable-diffusion``, ``models/VAE``, ``models/Lora``, ``embeddings``, ``models/ESRGAN``;
``models/ControlNet`` by the sd-webui-controlnet extension; Forge adds ``models/text_encoder`` and
loads lone diffusion models, GGUF and NF4 from ``models/Stable-diffusion``), SwarmUI's model
folders (``Models/Stable-Diffusion``, ``Models/diffusion_models``, ``Models/Lora``, ``Models/VAE``,
``Models/clip``, ``Models/Embeddings``, ``Models/controlnet``, ``Models/clip_vision``,
``Models/upscale_models``). Node names: ComfyUI nodes.py, city96/ComfyUI-GGUF nodes.py,
comfyanonymous/ComfyUI_bitsandbytes_NF4, mit-han-lab/ComfyUI-nunchaku,
cubiq/ComfyUI_IPAdapter_plus.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any, Literal, get_args

from sdmodel import registry
from sdmodel.i18n import N_, Join, Msg

Ui = Literal["a1111", "comfyui", "swarmui"]
Storage = Literal["plain", "gguf", "bnb_4bit", "nunchaku", "scaled_fp8", "comfy_quant"]
UIS: tuple[Ui, ...] = get_args(Ui)

# Quantization schemes (sdmodel.quant.storage) to the storage that decides the loader.
_SCHEME_STORAGE: dict[str, Storage] = {
    "gguf": "gguf",
    "bnb_4bit": "bnb_4bit",
    "nunchaku": "nunchaku",
    "comfy_scaled_fp8": "scaled_fp8",
    "musubi_fp8": "scaled_fp8",
    "fp8_weight_scale": "scaled_fp8",
    "comfy_quant": "comfy_quant",
}


def storage_of(file_format: str | None, scheme: str | None) -> Storage:
    """The storage that decides the loader, from the file format and the quantization scheme."""
    if file_format == "gguf":
        return "gguf"
    return _SCHEME_STORAGE.get(scheme or "", "plain")


@dataclass(frozen=True)
class Target:
    """Where one UI wants the file and what loads it (``folder`` None: this UI cannot load it,
    ``reason`` says why)."""

    ui: Ui
    folder: str | None
    loader: str | None = None  # node / menu id (ComfyUI class name, "checkpoint_menu"...)
    loader_label: Msg | None = None  # as the UI shows it
    custom_node: str | None = None  # repository of the custom node the loader comes from
    clip_type: str | None = None  # ComfyUI CLIPLoader type for a text encoder
    reason: Msg | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "ui": self.ui,
            "folder": self.folder,
            "loader": self.loader,
            "loader_label": None if self.loader_label is None else str(self.loader_label),
            "custom_node": self.custom_node,
            "clip_type": self.clip_type,
            "reason": None if self.reason is None else str(self.reason),
        }


@dataclass(frozen=True)
class Companions:
    """What a lone diffusion model needs beside it, and how ComfyUI loads its text encoders."""

    text_encoders: tuple[str, ...]
    vae: str | None
    clip_loader: str | None  # ComfyUI node class (None: no text-encoder loader for this family)
    clip_type: str | None
    found: tuple[tuple[str, str], ...] = ()  # (companion id, path of a file found for it)

    def path_of(self, companion: str) -> str | None:
        return next((p for c, p in self.found if c == companion), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "text_encoders": list(self.text_encoders),
            "vae": self.vae,
            "clip_loader": self.clip_loader,
            "clip_type": self.clip_type,
            "found": dict(self.found),
        }


@dataclass(frozen=True)
class Placement:
    """Where a file goes in each UI, with its companions (lone diffusion models only)."""

    kind: str
    family: str | None
    storage: Storage
    targets: tuple[Target, ...] = ()
    companions: Companions | None = None
    notes: tuple[Msg, ...] = field(default_factory=tuple)

    def target(self, ui: Ui) -> Target | None:
        return next((t for t in self.targets if t.ui == ui), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "family": self.family,
            "storage": self.storage,
            "targets": {t.ui: t.to_dict() for t in self.targets},
            "companions": self.companions.to_dict() if self.companions else None,
            "notes": [str(n) for n in self.notes],
        }


# (folder, loader id, loader label) per kind and UI; None: the UI has no place for it.
_Row = tuple[str, str | None, str | None] | None
_CHECKPOINT_MENU = N_("Stable Diffusion checkpoint menu")
_FOLDERS: dict[str, dict[Ui, _Row]] = {
    "checkpoint": {
        "a1111": ("models/Stable-diffusion", "checkpoint_menu", _CHECKPOINT_MENU),
        "comfyui": ("models/checkpoints", "CheckpointLoaderSimple", "Load Checkpoint"),
        "swarmui": ("Models/Stable-Diffusion", None, None),
    },
    "unet": {
        "a1111": ("models/Stable-diffusion", "checkpoint_menu", N_("Stable Diffusion checkpoint menu (Forge)")),
        "comfyui": ("models/diffusion_models", "UNETLoader", "Load Diffusion Model"),
        "swarmui": ("Models/diffusion_models", None, None),
    },
    "vae": {
        "a1111": ("models/VAE", "vae_menu", N_("SD VAE menu")),
        "comfyui": ("models/vae", "VAELoader", "Load VAE"),
        "swarmui": ("Models/VAE", None, None),
    },
    "text_encoder": {
        "a1111": ("models/text_encoder", "vae_menu", N_("VAE / Text Encoder menu (Forge)")),
        "comfyui": ("models/text_encoders", "CLIPLoader", "Load CLIP"),
        "swarmui": ("Models/clip", None, None),
    },
    "lora": {
        "a1111": ("models/Lora", "lora_prompt", N_("<lora:name:weight> in the prompt")),
        "comfyui": ("models/loras", "LoraLoader", "Load LoRA"),
        "swarmui": ("Models/Lora", None, None),
    },
    "embedding": {
        "a1111": ("embeddings", "embedding_prompt", N_("its file name in the prompt")),
        "comfyui": ("models/embeddings", "embedding_prompt", N_("embedding:name in the prompt")),
        "swarmui": ("Models/Embeddings", None, None),
    },
    "controlnet": {
        "a1111": ("models/ControlNet", "controlnet_extension", N_("ControlNet extension (sd-webui-controlnet)")),
        "comfyui": ("models/controlnet", "ControlNetLoader", "Load ControlNet Model"),
        "swarmui": ("Models/controlnet", None, None),
    },
    "ip_adapter": {
        "a1111": ("models/ControlNet", "controlnet_extension", N_("ControlNet extension (sd-webui-controlnet)")),
        "comfyui": ("models/ipadapter", "IPAdapterModelLoader", "IPAdapter Model Loader"),
        "swarmui": None,
    },
    "image_encoder": {
        "a1111": None,
        "comfyui": ("models/clip_vision", "CLIPVisionLoader", "Load CLIP Vision"),
        "swarmui": ("Models/clip_vision", None, None),
    },
    "upscaler": {
        "a1111": ("models/ESRGAN", "upscaler_menu", N_("Upscaler menu")),
        "comfyui": ("models/upscale_models", "UpscaleModelLoader", "Load Upscale Model"),
        "swarmui": ("Models/upscale_models", None, None),
    },
}
_FOLDERS["lycoris"] = _FOLDERS["lora"]
_FOLDERS["t2i_adapter"] = _FOLDERS["controlnet"]
# A1111's own folders for two upscaler architectures (modules/dat_model.py, extensions-builtin/
# SwinIR); its ESRGAN upscaler loads any architecture spandrel knows (modules/modelloader.py
# load_spandrel_model only warns when it is not ESRGAN), so models/ESRGAN suits the others.
_A1111_UPSCALER_FOLDERS = {"swinir": "models/SwinIR", "dat": "models/DAT"}

_NO_PLACE: dict[tuple[str, Ui], str] = {
    ("ip_adapter", "swarmui"): N_("SwarmUI fetches the IP-Adapter models it uses itself"),
    ("image_encoder", "a1111"): N_("the ControlNet extension downloads the CLIP vision model it needs itself"),
}

# Custom loader nodes for quantized storage, per kind (ComfyUI core loads scaled fp8 and comfy_quant).
_CUSTOM: dict[tuple[Storage, str], tuple[str, str, str]] = {
    ("gguf", "unet"): ("UnetLoaderGGUF", "Unet Loader (GGUF)", "city96/ComfyUI-GGUF"),
    ("gguf", "text_encoder"): ("CLIPLoaderGGUF", "CLIPLoader (GGUF)", "city96/ComfyUI-GGUF"),
    ("bnb_4bit", "checkpoint"): (
        "CheckpointLoaderNF4",
        "CheckpointLoaderNF4",
        "comfyanonymous/ComfyUI_bitsandbytes_NF4",
    ),
    ("nunchaku", "unet"): ("NunchakuFluxDiTLoader", "Nunchaku FLUX DiT Loader", "mit-han-lab/ComfyUI-nunchaku"),
}
# A1111 (not Forge) loads none of these; Forge loads GGUF and NF4 diffusion models.
_FORGE_ONLY: frozenset[Storage] = frozenset({"gguf", "bnb_4bit"})

_GGUF_CLIP_NODES = {
    "CLIPLoader": "CLIPLoaderGGUF",
    "DualCLIPLoader": "DualCLIPLoaderGGUF",
    "TripleCLIPLoader": "TripleCLIPLoaderGGUF",
    "QuadrupleCLIPLoader": "QuadrupleCLIPLoaderGGUF",
}
_CLIP_LABELS = {
    "CLIPLoader": "Load CLIP",
    "DualCLIPLoader": "DualCLIPLoader",
    "TripleCLIPLoader": "TripleCLIPLoader",
    "QuadrupleCLIPLoader": "QuadrupleCLIPLoader",
}


def place(kind: str, family: str | None, variant: str | None = None, storage: Storage = "plain") -> Placement:
    """Where a file of this kind and family goes in each UI, and what loads it. An unknown kind
    gets no folder; a lone diffusion model gets its companions from its family's record."""
    if storage not in get_args(Storage):
        raise ValueError(f"storage {storage!r}: expected one of {', '.join(get_args(Storage))}")
    rows = _FOLDERS.get(kind)
    if rows is None:
        return Placement(kind, family, storage, notes=(Msg("not identified: no folder can be said for it"),))
    fam = registry.family(family)
    notes: list[Msg] = []
    a1111 = rows["a1111"]
    if kind == "upscaler" and a1111 is not None and variant in _A1111_UPSCALER_FOLDERS:
        rows = {**rows, "a1111": (_A1111_UPSCALER_FOLDERS[variant], *a1111[1:])}
    targets = tuple(_target(ui, kind, fam, storage, rows[ui]) for ui in UIS)
    companions = None
    if kind == "unet":
        if fam is None:
            notes.append(Msg("family unknown: its text encoders and VAE cannot be named"))
        else:
            encoders, vae, clip_type = fam.companions(variant)
            companions = Companions(tuple(encoders), vae, fam.comfy_clip_loader, clip_type)
    return Placement(kind, family, storage, targets, companions, tuple(notes))


def _target(ui: Ui, kind: str, fam: registry.Family | None, storage: Storage, row: _Row) -> Target:
    if row is None:
        return Target(ui, None, reason=Msg(_NO_PLACE.get((kind, ui), N_("this UI has no folder for it"))))
    folder, loader, name = row
    label = None if name is None else Msg(name)
    if ui == "a1111":
        if fam is not None and fam.area == "video":
            return Target(ui, None, reason=Msg("A1111/Forge do not generate video"))
        if storage == "nunchaku" or storage == "comfy_quant":
            return Target(ui, None, reason=Msg("A1111/Forge cannot load {storage} weights", storage=storage))
        if storage in _FORGE_ONLY and kind in ("checkpoint", "unet"):
            menu = Msg(_CHECKPOINT_MENU)  # not the unet label: its own "(Forge)" would repeat
            return Target(ui, folder, loader, Msg("{label} (Forge; A1111 cannot load it)", label=menu))
        return Target(ui, folder, loader, label)
    if ui == "comfyui":
        custom = _CUSTOM.get((storage, kind))
        if custom is not None:
            node, node_label, repo = custom
            clip_type = fam.comfy_clip_type if kind == "text_encoder" and fam is not None else None
            return Target(ui, folder, node, Msg(node_label), repo, clip_type)
        if storage in ("gguf", "bnb_4bit", "nunchaku"):
            return Target(
                ui, None, reason=Msg("no ComfyUI loader reads a {storage} {kind}", storage=storage, kind=kind)
            )
        if kind == "text_encoder":
            return Target(ui, folder, loader, label, clip_type=fam.comfy_clip_type if fam is not None else None)
    return Target(ui, folder, loader, label)


def companion_label(companion_id: str) -> str:
    """Human name of a text-encoder or VAE id (its signature's description), else the id."""
    sig = next(
        (s for s in registry.SIGNATURES if s.network in ("text_encoder", "vae") and s.default_variant == companion_id),
        None,
    )
    return sig.description if sig is not None else companion_id


def clip_loader_text(companions: Companions, storage: Storage = "plain") -> Msg | None:
    """``DualCLIPLoader (type flux)``: how ComfyUI loads these text encoders (GGUF encoders:
    the ComfyUI-GGUF twin of the node)."""
    node = companions.clip_loader
    if node is None:
        return None
    name = _GGUF_CLIP_NODES[node] if storage == "gguf" else _CLIP_LABELS[node]
    return Msg("{loader} (type {type})", loader=name, type=companions.clip_type) if companions.clip_type else Msg(name)


# A UI's model folders as they appear in a path (case tells A1111's ``models/VAE`` from ComfyUI's
# ``models/vae``), and the folders each UI treats as one (ComfyUI folder_paths.py aliases).
_PATH_UI: dict[str, Ui] = {
    **dict.fromkeys(
        (
            "Stable-diffusion",
            "VAE",
            "Lora",
            "LyCORIS",
            "ControlNet",
            "ESRGAN",
            "RealESRGAN",
            "SwinIR",
            "DAT",
            "text_encoder",
        ),
        "a1111",
    ),
    **dict.fromkeys(
        (
            "checkpoints",
            "diffusion_models",
            "unet",
            "text_encoders",
            "clip",
            "vae",
            "loras",
            "controlnet",
            "t2i_adapter",
            "clip_vision",
            "ipadapter",
            "upscale_models",
            "embeddings",
        ),
        "comfyui",
    ),
}
_SWARM = frozenset(
    (
        "Stable-Diffusion",
        "diffusion_models",
        "Lora",
        "VAE",
        "clip",
        "Embeddings",
        "controlnet",
        "clip_vision",
        "upscale_models",
    )
)
_SAME_FOLDER = {
    "models/unet": "models/diffusion_models",
    "models/clip": "models/text_encoders",
    "models/t2i_adapter": "models/controlnet",
    "models/LyCORIS": "models/Lora",
    # A1111 loads every upscaler architecture from any of these (see _A1111_UPSCALER_FOLDERS)
    "models/SwinIR": "models/ESRGAN",
    "models/DAT": "models/ESRGAN",
}


def ui_of_path(path: str) -> tuple[Ui, str] | None:
    """(UI, the UI folder the file sits in, e.g. ``models/checkpoints``) when the path's folders
    name one UI's model folder (``models/<x>``, SwarmUI ``Models/<x>``, A1111 ``embeddings``),
    else None. The innermost such folder wins; subfolders below it are allowed."""
    parts = PurePath(path).parts[:-1]
    for i in range(len(parts) - 1, -1, -1):
        name = parts[i]
        parent = parts[i - 1] if i else ""
        if parent == "Models" and name in _SWARM:
            return "swarmui", f"Models/{name}"
        if parent == "models" and name in _PATH_UI:
            return _PATH_UI[name], f"models/{name}"
        if name == "embeddings" and parent != "models" and i > 0:
            return "a1111", "embeddings"
    return None


def same_folder(a: str, b: str) -> bool:
    """Whether two UI folders are one to the UI (ComfyUI ``unet`` is ``diffusion_models``)."""
    return _SAME_FOLDER.get(a, a) == _SAME_FOLDER.get(b, b)


UI_LABELS: dict[Ui, str] = {"a1111": "A1111/Forge", "comfyui": "ComfyUI", "swarmui": "SwarmUI"}


def folder_problem(path: str, placement: Placement) -> Msg | None:
    """Why the file sits in the wrong folder for the UI its path names (None: right folder, or
    the path names no UI, or the file is not identified)."""
    found = ui_of_path(path)
    if found is None:
        return None
    ui, folder = found
    target = placement.target(ui)
    if target is None:
        return None
    what = f"{placement.kind} ({placement.family})" if placement.family else placement.kind
    if target.folder is None:
        return Msg(
            "a {what} in {ui}'s {folder}: {ui} cannot load it ({reason})",
            what=what,
            ui=UI_LABELS[ui],
            folder=folder,
            reason=target.reason,
        )
    if same_folder(folder, target.folder):
        return None
    return Msg(
        "a {what} in {ui}'s {folder}: it goes in {target}",
        what=what,
        ui=UI_LABELS[ui],
        folder=folder,
        target=target.folder,
    )


def advice_line(placement: Placement, what: Msg | str, ui: Ui = "comfyui") -> Msg | None:
    """One sentence: where to put the file in a UI, what loads it and, for a lone diffusion model,
    what to pair it with (and where each companion was found). ``what``: the model in words."""
    target = placement.target(ui)
    if target is None or target.folder is None:
        return None
    where = f"{UI_LABELS[ui]}/{target.folder}" if ui == "comfyui" else f"{target.folder} ({UI_LABELS[ui]})"
    loader = _loader_words(target)
    if loader is None:
        line = Msg("this is a {what}: put it in {where}", what=what, where=where)
    else:
        line = Msg("this is a {what}: put it in {where}, load it with {loader}", what=what, where=where, loader=loader)
    comp = placement.companions
    if comp is None or not (comp.text_encoders or comp.vae):
        return line
    encoders = None
    if comp.text_encoders:
        names = Join(tuple(_found(comp, c, c) for c in comp.text_encoders), " + ")
        clip = clip_loader_text(comp)
        encoders = Msg("{encoders} (loaded with {loader})", encoders=names, loader=clip) if clip else names
    vae = Msg("the {vae}", vae=_found(comp, comp.vae, companion_label(comp.vae))) if comp.vae else None
    if encoders is not None and vae is not None:
        return Msg("{line}, and pair it with {encoders} and {vae}", line=line, encoders=encoders, vae=vae)
    return Msg("{line}, and pair it with {companions}", line=line, companions=encoders or vae)


def _loader_words(target: Target) -> Msg | None:
    """``Unet Loader (GGUF) (custom node city96/ComfyUI-GGUF)``, ``Load CLIP type flux``."""
    if target.loader_label is None:
        return None
    node = target.loader_label
    if target.custom_node:
        node = Msg("{loader} (custom node {repo})", loader=node, repo=target.custom_node)
    return Msg("{loader} type {type}", loader=node, type=target.clip_type) if target.clip_type else node


def _found(comp: Companions, companion: str, name: str) -> Msg | str:
    """A companion's name, with the path of the file found for it."""
    path = comp.path_of(companion)
    return Msg("{name} (found: {path})", name=name, path=path) if path else name
