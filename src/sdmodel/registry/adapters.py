"""Adapter files (LoRA, LyCORIS, textual inversion): the key patterns that tell their kind and base
family. The base family by widths comes from the ``Family`` records (see ``family_by_context_width``)."""

from __future__ import annotations

import re

# A key that marks a file as an adapter, regardless of base family.
LORA_KEY = re.compile(r"(^lora_(unet|te\d?|transformer)_.*\.lora_(down|up)\.weight$)|(\.lora_[AB]\.weight$)")
LYCORIS_KEY = re.compile(
    r"\.(hada_w1_a|hada_w2_a|lokr_w1|lokr_w1_a|lokr_w2|lokr_w2_a|oft_blocks|oft_diag|diff|diff_b)$"
)
EMBEDDING_KEYS: tuple[str, ...] = ("string_to_param.*", "emb_params", "clip_l", "clip_g")

# Adapter keys whose last dimension is the cross-attention (text context) width.
CONTEXT_WIDTH_KEY = re.compile(
    r"attn2[._]to_k[._.]*.*\.(lora_down\.weight|lora_A\.weight|hada_w1_b|hada_w2_b|lokr_w2|lokr_w2_b)$"
)
# Adapter key patterns that name the base family directly.
ADAPTER_FAMILY_KEYS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^lora_te[12]_"), "sdxl"),
    (re.compile(r"double_blocks|single_blocks"), "flux"),
    (re.compile(r"joint_blocks"), "sd3"),
    (re.compile(r"^lora_te_text_model_encoder_layers_(1[2-9]|2\d)_"), "sd2"),
)

# ModelSpec suffixes for adapters (kohya's sai_model_spec convention: "<base>/<adapter>").
ADAPTER_MODELSPEC: dict[str, str] = {
    "lora": "lora",
    "lycoris": "lora",
    "embedding": "textual-inversion",
    "controlnet": "controlnet",
    "t2i_adapter": "t2i-adapter",
}
