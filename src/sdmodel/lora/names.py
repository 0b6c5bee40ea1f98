"""The namings LoRA files use for their targets, and where a target lands in a model.

A target stem is a naming's prefix plus a module path: ``lora_unet_input_blocks_4_1_proj_in`` (kohya:
``lora_unet_``/``lora_te1_``... then the module path with ``_`` for ``.``), ``unet.down_blocks.1...``
or ``transformer.single_transformer_blocks.0.attn.to_q`` (diffusers/PEFT), ``diffusion_model.double_blocks.0
.img_attn.qkv`` (ComfyUI/BFL), ``lora_transformer_...`` (OneTrainer), ``lycoris_...`` (SimpleTuner).
Prefixes from ComfyUI ``comfy/lora.py`` (``model_lora_keys_unet``/``model_lora_keys_clip``), kohya
sd-scripts ``networks/lora*.py`` and diffusers ``loaders/lora_conversion_utils.py``.

Paths are compared *flat*: dots turned into underscores, as kohya writes them, so one map serves every
naming. Nothing here reads tensor data.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

# Namings ``sdmodel convert --lora-format`` writes.
LoraFormat = Literal["kohya", "diffusers", "comfy"]
LORA_FORMATS: tuple[str, ...] = ("kohya", "diffusers", "comfy")
Naming = Literal["kohya", "diffusers", "peft", "comfy", "onetrainer", "simpletuner", "bare"]
Component = Literal["diffusion", "te1", "te2", "te3", "prior", "prior_te"]


@dataclass(frozen=True)
class Prefix:
    prefix: str
    naming: str
    component: str


# Longest first where one prefix starts another.
PREFIXES: tuple[Prefix, ...] = (
    Prefix("lora_unet_", "kohya", "diffusion"),
    Prefix("lora_te1_", "kohya", "te1"),
    Prefix("lora_te2_", "kohya", "te2"),
    Prefix("lora_te3_", "kohya", "te3"),
    Prefix("lora_te_", "kohya", "te1"),
    Prefix("lora_prior_unet_", "kohya", "prior"),  # Stable Cascade stage C
    Prefix("lora_prior_te_", "kohya", "prior_te"),
    Prefix("lora_transformer_", "onetrainer", "diffusion"),
    Prefix("lycoris_", "simpletuner", "diffusion"),
    Prefix("unet.base_model.model.", "peft", "diffusion"),
    Prefix("base_model.model.", "peft", "diffusion"),
    Prefix("unet.", "diffusers", "diffusion"),
    Prefix("transformer.", "diffusers", "diffusion"),
    Prefix("text_encoder_2.", "diffusers", "te2"),
    Prefix("text_encoder_3.", "diffusers", "te3"),
    Prefix("text_encoder.", "diffusers", "te1"),
    Prefix("model.diffusion_model.", "comfy", "diffusion"),
    Prefix("diffusion_model.", "comfy", "diffusion"),
    Prefix("text_encoders.clip_l.transformer.", "comfy", "te1"),
    Prefix("text_encoders.clip_h.transformer.", "comfy", "te1"),  # SD2's OpenCLIP ViT-H
    Prefix("text_encoders.clip_g.transformer.", "comfy", "te2"),
    Prefix("text_encoders.t5xxl.transformer.", "comfy", "te3"),
)
BARE = Prefix("", "bare", "diffusion")
DIFFUSION_COMPONENTS = ("diffusion", "prior")


@dataclass(frozen=True)
class Location:
    """Where a target stem points: its naming, the model component and the module path."""

    naming: str
    component: str
    path: str  # as written in the stem (dots or underscores)

    @property
    def flat(self) -> str:
        return flat(self.path)

    @property
    def key(self) -> str:
        """``component:flat path``: what family rules and model maps compare."""
        return f"{self.component}:{flat(self.path)}"


@lru_cache(maxsize=1 << 16)
def locate(stem: str) -> Location:
    for p in PREFIXES:
        if stem.startswith(p.prefix):
            return Location(p.naming, p.component, stem[len(p.prefix) :])
    return Location(BARE.naming, BARE.component, stem)


@lru_cache(maxsize=1 << 16)
def flat(path: str) -> str:
    """A module path with ``.`` as ``_``. Old diffusers attention-processor spellings
    (``attn1.processor.to_q``, ``to_out`` for ``to_out.0``) are brought to the module names first."""
    path = path.replace(".processor.", ".")
    if path.endswith(".to_out"):
        path += ".0"
    return path.replace(".", "_")


# Flux modules: diffusers name -> BFL/ComfyUI name (inside a double block, a single block, at the top);
# the fused q/k/v are handled where rows are split or joined.
FLUX_DOUBLE = {
    "attn.to_out.0": "img_attn.proj",
    "attn.to_add_out": "txt_attn.proj",
    "norm1.linear": "img_mod.lin",
    "norm1_context.linear": "txt_mod.lin",
    "ff.net.0.proj": "img_mlp.0",
    "ff.net.2": "img_mlp.2",
    "ff_context.net.0.proj": "txt_mlp.0",
    "ff_context.net.2": "txt_mlp.2",
}
FLUX_SINGLE = {"norm.linear": "modulation.lin", "proj_out": "linear2"}
FLUX_TOP = {
    "x_embedder": "img_in",
    "context_embedder": "txt_in",
    "time_text_embed.timestep_embedder.linear_1": "time_in.in_layer",
    "time_text_embed.timestep_embedder.linear_2": "time_in.out_layer",
    "time_text_embed.text_embedder.linear_1": "vector_in.in_layer",
    "time_text_embed.text_embedder.linear_2": "vector_in.out_layer",
    "time_text_embed.guidance_embedder.linear_1": "guidance_in.in_layer",
    "time_text_embed.guidance_embedder.linear_2": "guidance_in.out_layer",
    "proj_out": "final_layer.linear",
}
