"""Where each LoRA target lands in a model: every spelling a LoRA may use for a model weight,
mapped to the model's tensor (and the rows of it, for fused q/k/v weights).

Built from the model's own tensor names, as ComfyUI does (``comfy/lora.py``: every model key
yields the LoRA names that may target it). The model is read under sdmodel's names: single-file
(LDM / BFL / ComfyUI) names, a checkpoint's components under their prefixes. Covered spellings:

- every diffusion model: its own module paths (kohya ``lora_unet_`` + path with ``_``, ComfyUI
  ``diffusion_model.``, bare, musubi-tuner, ``transformer.`` when the model has diffusers names);
- SD1/SD2/SDXL UNets: also the diffusers module names (sdmodel.formats.diffusers_map);
- Flux (BFL names): also diffusers' ``transformer_blocks``/``single_transformer_blocks`` names,
  ``to_q``/``to_k``/``to_v`` as rows of the fused ``qkv``/``linear1`` (ComfyUI ``comfy/utils.py``
  ``flux_to_diffusers``), ``norm_out.linear`` with scale and shift swapped;
- text encoders: HF CLIP names (``text_model.encoder.layers.N...``), OpenCLIP checkpoints' fused
  ``in_proj_weight`` split into q/k/v rows; T5 under its own names as ``te3`` (and ``te2`` when
  there is no CLIP-G, as OneTrainer writes for Flux).
"""

from __future__ import annotations

from dataclasses import dataclass

from sdmodel.formats.base import TensorInfo
from sdmodel.formats.diffusers_map import UNET_SD1, UNET_SDXL, UnetStructure, openclip_ldm_to_hf, unet_table
from sdmodel.lora.names import FLUX_DOUBLE, FLUX_SINGLE, FLUX_TOP, flat


@dataclass(frozen=True)
class Dest:
    """A model tensor a target changes: ``rows`` (start, count) of dim 0 for a fused weight;
    ``swap`` when the target's two output halves are stored the other way round (Flux norm_out)."""

    key: str
    rows: tuple[int, int] | None = None
    swap: bool = False


DIFFUSION_ROOTS = ("model.diffusion_model.", "diffusion_model.")
# Single-file text encoder prefixes -> (LoRA component, OpenCLIP names?).
TE_ROOTS: tuple[tuple[str, str, bool], ...] = (
    ("cond_stage_model.transformer.", "te1", False),
    ("cond_stage_model.model.", "te1", True),
    ("conditioner.embedders.0.transformer.", "te1", False),
    ("conditioner.embedders.0.model.", "te1", True),  # SDXL refiner: OpenCLIP bigG only
    ("conditioner.embedders.1.model.", "te2", True),
    ("text_encoders.clip_l.transformer.", "te1", False),
    ("text_encoders.clip_g.transformer.", "te2", False),
    ("text_encoders.t5xxl.transformer.", "te3", False),
)
NOT_DIFFUSION = (
    "first_stage_model.",
    "vae.",
    "cond_stage_model.",
    "conditioner.",
    "text_encoders.",
    "model_ema.",
    "control_model.",
)
REFINER = UnetStructure((False, True, True, False), (False, True, True, False))
UNET_STRUCTURES: dict[str, UnetStructure] = {
    "sd1": UNET_SD1,
    "sd2": UNET_SD1,
    "sdxl": UNET_SDXL,
    "sdxl_refiner": REFINER,
}
_OLD_CLIP = ("embeddings.", "encoder.", "final_layer_norm.")


def _stem(key: str) -> str:
    return key[: -len(".weight")] if key.endswith(".weight") else key


class ModelMap:
    """``component:flat path`` -> Dest for every weight of a model."""

    def __init__(self, tensors: dict[str, TensorInfo], family: str | None) -> None:
        self.tensors = tensors
        self.family = family
        self.map: dict[str, Dest] = {}
        self.components: set[str] = set()
        root = next((r for r in DIFFUSION_ROOTS if any(k.startswith(r) for k in tensors)), "")
        self.root = root
        diffusion = {
            k[len(root) :]: k for k in tensors if k.startswith(root) and (root or not k.startswith(NOT_DIFFUSION))
        }
        if diffusion:
            self._diffusion(diffusion)
        self._text_encoders()

    def get(self, key: str) -> Dest | None:
        return self.map.get(key)

    def _add(self, component: str, path: str, dest: Dest) -> None:
        self.components.add(component)
        self.map.setdefault(f"{component}:{flat(path)}", dest)

    def _diffusion(self, names: dict[str, str]) -> None:
        components = ("diffusion", "prior") if self.family == "stable_cascade" else ("diffusion",)
        for rest, key in names.items():
            for c in components:
                self._add(c, _stem(rest), Dest(key))
        structure = UNET_STRUCTURES.get(self.family or "")
        if structure is not None and any(r.startswith("input_blocks.") for r in names):
            table = unet_table(structure)
            for rest, key in names.items():
                d = table.to_diffusers(rest)
                if d is not None:
                    self._add("diffusion", _stem(d), Dest(key))
        if "double_blocks.0.img_attn.qkv.weight" in names:
            self._flux(names)

    def _flux(self, names: dict[str, str]) -> None:
        hidden = self.tensors[names["double_blocks.0.img_attn.qkv.weight"]].shape[1]

        def add(diffusers: str, bfl: str, rows: tuple[int, int] | None = None, swap: bool = False) -> None:
            key = names.get(bfl + ".weight")
            if key is not None:
                self._add("diffusion", diffusers, Dest(key, rows, swap))

        for d, b in FLUX_TOP.items():
            add(d, b)
        add("norm_out.linear", "final_layer.adaLN_modulation.1", swap=True)
        i = 0
        while f"double_blocks.{i}.img_attn.qkv.weight" in names:
            src, dst = f"transformer_blocks.{i}.", f"double_blocks.{i}."
            for n, c in enumerate("qkv"):
                add(f"{src}attn.to_{c}", dst + "img_attn.qkv", (n * hidden, hidden))
                add(f"{src}attn.add_{c}_proj", dst + "txt_attn.qkv", (n * hidden, hidden))
            for d, b in FLUX_DOUBLE.items():
                add(src + d, dst + b)
            i += 1
        i = 0
        while f"single_blocks.{i}.linear1.weight" in names:
            src, dst = f"single_transformer_blocks.{i}.", f"single_blocks.{i}."
            for n, c in enumerate("qkv"):
                add(f"{src}attn.to_{c}", dst + "linear1", (n * hidden, hidden))
            mlp = self.tensors[names[dst + "linear1.weight"]].shape[0] - 3 * hidden
            add(src + "proj_mlp", dst + "linear1", (3 * hidden, mlp))
            for d, b in FLUX_SINGLE.items():
                add(src + d, dst + b)
            i += 1

    def _text_encoders(self) -> None:
        has_clip_g = any(k.startswith(("conditioner.embedders.1.", "text_encoders.clip_g.")) for k in self.tensors)
        for prefix, component, openclip in TE_ROOTS:
            names = [k for k in self.tensors if k.startswith(prefix)]
            if not names:
                continue
            components = [component]
            if component == "te3" and not has_clip_g:
                components.append("te2")
            for key in names:
                rest = key[len(prefix) :]
                for c in components:
                    if openclip:
                        self._openclip(c, rest, key)
                    else:
                        if rest.startswith(_OLD_CLIP):
                            rest = "text_model." + rest
                        self._add(c, _stem(rest), Dest(key))

    def _openclip(self, component: str, rest: str, key: str) -> None:
        hf = openclip_ldm_to_hf(rest)
        if hf is None:
            self._add(component, _stem(rest), Dest(key))
        elif isinstance(hf, tuple):
            if rest.endswith("in_proj_weight"):
                width = self.tensors[key].shape[0] // 3
                for n, name in enumerate(hf):
                    self._add(component, _stem(name), Dest(key, (n * width, width)))
        else:
            self._add(component, _stem(hf), Dest(key))
