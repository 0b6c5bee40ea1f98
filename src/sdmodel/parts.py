"""Which part of a single-file model a tensor belongs to, as data: the key prefixes of the original
LDM/SGM checkpoints, as A1111, ComfyUI (comfy/supported_models.py) and diffusers
(loaders/single_file_utils.py) read them."""

from __future__ import annotations

from sdmodel.i18n import N_

# Single-file key prefixes of each component, per pipeline family.
UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
SD1_TEXT_PREFIX = "cond_stage_model.transformer."  # CLIP ViT-L (transformers names)
SD2_TEXT_PREFIX = "cond_stage_model.model."  # OpenCLIP ViT-H
SDXL_TEXT_PREFIX = "conditioner.embedders.0.transformer."  # CLIP ViT-L
SDXL_TEXT2_PREFIX = "conditioner.embedders.1.model."  # OpenCLIP ViT-bigG
REFINER_TEXT2_PREFIX = "conditioner.embedders.0.model."  # the refiner's only text encoder: OpenCLIP ViT-bigG
EMA_PREFIX = "model_ema."

# Part name -> key prefixes, most specific first. A standalone file (a VAE, a UNet...) is one part
# whose name is its kind; see ``part_of``.
PART_PREFIXES: dict[str, tuple[str, ...]] = {
    "ema": (EMA_PREFIX,),
    "unet": (UNET_PREFIX,),
    "vae": (VAE_PREFIX, "vae."),
    "text_encoder": ("cond_stage_model.", "conditioner.embedders.0.", "text_encoders.clip_l."),
    "text_encoder_2": ("conditioner.embedders.1.", "text_encoders.clip_g."),
    "text_encoder_3": ("text_encoders.t5xxl.",),
    "controlnet": ("control_model.",),
    "depth": ("depth_model.",),
    "image_encoder": ("embedder.", "noise_augmentor."),
}

# Top-level noise-schedule buffers of LDM saves: always kept in fp32.
SCHEDULE_KEYS: frozenset[str] = frozenset(
    {
        "betas",
        "alphas_cumprod",
        "alphas_cumprod_prev",
        "sqrt_alphas_cumprod",
        "sqrt_one_minus_alphas_cumprod",
        "log_one_minus_alphas_cumprod",
        "sqrt_recip_alphas_cumprod",
        "sqrt_recipm1_alphas_cumprod",
        "posterior_variance",
        "posterior_log_variance_clipped",
        "posterior_mean_coef1",
        "posterior_mean_coef2",
        "logvar",
    }
)

# Marker tensors that loaders read: never junk, never cast.
MARKER_KEYS: frozenset[str] = frozenset(
    {
        "v_pred",
        "ztsnr",
        "edm_mean",
        "edm_std",
        "edm_vpred.sigma_max",
        "edm_vpred.sigma_min",
        "model.diffusion_model.scaled_fp8",
        "scaled_fp8",
    }
)

# Keys no loader uses (training state left in a checkpoint): (prefix, why).
JUNK_PREFIXES: tuple[tuple[str, str], ...] = (
    ("embedding_manager.", N_("textual-inversion training leftover")),
    ("lora_te_", N_("LoRA weights merged into the checkpoint by accident")),
    ("lora_te1_", N_("LoRA weights merged into the checkpoint by accident")),
    ("lora_te2_", N_("LoRA weights merged into the checkpoint by accident")),
    ("lora_unet_", N_("LoRA weights merged into the checkpoint by accident")),
    ("first_stage_model.loss.", N_("VAE training discriminator")),
    ("vae.loss.", N_("VAE training discriminator")),
    ("optimizer.", N_("optimizer state")),
    ("optimizer_states.", N_("optimizer state")),
)

EMA_SCALARS: frozenset[str] = frozenset({"model_ema.decay", "model_ema.num_updates"})

# Where a CLIP ViT-L text encoder lives in the files that hold one (single-file SD1 and SDXL, ComfyUI's
# text_encoders layout, a standalone transformers CLIPTextModel).
CLIP_L_PREFIXES: tuple[str, ...] = (
    SD1_TEXT_PREFIX,
    SDXL_TEXT_PREFIX,
    "text_encoders.clip_l.",
    "text_model.",
)

CLIP_L_POSITION_IDS: tuple[str, ...] = (
    "cond_stage_model.transformer.text_model.embeddings.position_ids",
    "cond_stage_model.transformer.embeddings.position_ids",
    "conditioner.embedders.0.transformer.text_model.embeddings.position_ids",
    "conditioner.embedders.0.transformer.embeddings.position_ids",
    "text_encoders.clip_l.transformer.text_model.embeddings.position_ids",
    "text_model.embeddings.position_ids",
)

# Parts that are not weights: their dtype says nothing of the model's precision (schedules stay
# fp32, markers are integers, junk is dropped).
NON_WEIGHT_PARTS: frozenset[str] = frozenset({"schedule", "marker", "junk"})


# The order parts are shown in (CLI tables); parts not listed (a standalone file's kind) come last.
PART_ORDER = (
    "unet",
    "ema",
    "vae",
    "text_encoder",
    "text_encoder_2",
    "text_encoder_3",
    "controlnet",
    "depth",
    "image_encoder",
    "schedule",
    "marker",
    "junk",
    "other",
)


def part_rank(part: str) -> int:
    """Sort key of a part for display (see PART_ORDER)."""
    return PART_ORDER.index(part) if part in PART_ORDER else len(PART_ORDER)


def junk_reason(name: str) -> str | None:
    """Why a key is junk, or None if it is not."""
    for prefix, why in JUNK_PREFIXES:
        if name.startswith(prefix):
            return why
    return None


def part_of(name: str, whole_file_part: str | None = None) -> str:
    """The part a tensor belongs to: ``unet``, ``vae``, ``text_encoder``..., ``ema``, ``schedule``,
    ``marker``, ``junk`` or ``other``. Files holding one part (a standalone VAE...) pass its name as
    ``whole_file_part``: every non-marker tensor then belongs to it."""
    if name in MARKER_KEYS:
        return "marker"
    if whole_file_part is not None:
        return whole_file_part
    if name in SCHEDULE_KEYS:
        return "schedule"
    if junk_reason(name):
        return "junk"
    for part, prefixes in PART_PREFIXES.items():
        if name.startswith(prefixes):
            return part
    return "other"


def ema_key(unet_key: str) -> str:
    """EMA name of a UNet key: ``model.diffusion_model.a.b`` -> ``model_ema.diffusion_modelab``."""
    return EMA_PREFIX + unet_key[len("model.") :].replace(".", "")
