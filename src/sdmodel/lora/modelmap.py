"""Where each LoRA target lands in a model: every spelling a LoRA may use for a model weight,
mapped to the model's tensor (and the rows of it, for fused q/k/v weights).

Built from the model's own tensor names, as ComfyUI does (``comfy/lora.py``: every model key
yields the LoRA names that may target it). The model is read under sdmodel's names: single-file
(LDM / BFL / ComfyUI) names, a checkpoint's components under their prefixes. Covered spellings:

- every diffusion model: its own module paths (kohya ``lora_unet_`` + path with ``_``, ComfyUI
  ``diffusion_model.``, bare, musubi-tuner, ``transformer.`` when the model has diffusers names);
- SD1/SD2/SDXL UNets: also the diffusers module names (sdmodel.formats.diffusers_map);
- the DiTs of sdmodel.lora.namings (Flux, SD3, Wan, LTX-Video...) stored under single-file names:
  also their diffusers names, ``to_q``/``to_k``/``to_v`` as rows of a fused ``qkv``/``linear1``
  (ComfyUI ``comfy/utils.py`` ``flux_to_diffusers``), ``norm_out.linear`` with scale and shift swapped;
- text encoders: HF CLIP names (``text_model.encoder.layers.N...``), OpenCLIP checkpoints' fused
  ``in_proj_weight`` split into q/k/v rows; T5 under its own names as ``te3`` (and ``te2`` when
  there is no CLIP-G, as OneTrainer writes for Flux).
"""

from __future__ import annotations

from dataclasses import dataclass

from sdmodel.formats.base import TensorInfo
from sdmodel.formats.diffusers_map import UNET_SD1, UNET_SDXL, UnetStructure, openclip_ldm_to_hf, unet_table
from sdmodel.lora.names import flat
from sdmodel.lora.namings import NAMES, DiffusersNames, swaps


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
        dit = NAMES.get(self.family or "") or next(
            (t for t in NAMES.values() if t.signature and t.signature in names), None
        )
        if dit is not None:
            self._diffusers_names(dit, names)

    def _diffusers_names(self, table: DiffusersNames, names: dict[str, str]) -> None:
        """The diffusers module names of a model stored under its single-file names."""
        for rest, key in names.items():
            if not rest.endswith(".weight"):
                continue
            out = table.to_diffusers(_stem(rest))
            if out is None:
                continue
            paths, swapped = out
            shape = self.tensors[key].shape
            if len(paths) == 1:
                swap = len(shape) == 2 and swaps(swapped, shape[0], shape[1])
                self._add("diffusion", paths[0], Dest(key, swap=swap))
                continue
            mapped = table.to_native(paths[0])
            assert mapped is not None and mapped.fused is not None
            start = 0
            for path, size in zip(paths, mapped.fused.sizes(shape[0], shape[1]), strict=True):
                self._add("diffusion", path, Dest(key, (start, size)))
                start += size

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
