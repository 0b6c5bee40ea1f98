"""The words that travel between layers, as ``Literal`` aliases (for the type checker) with the
tuple of their values (for checks at run time and for messages): one home for each vocabulary."""

from __future__ import annotations

from typing import Literal, get_args

# What the model predicts (SD2 and SDXL v-prediction models need to be told).
Prediction = Literal["v", "epsilon"]
PREDICTIONS: tuple[Prediction, ...] = get_args(Prediction)
# What convert does with EMA weights.
EmaMode = Literal["keep", "drop", "only"]
EMA_MODES: tuple[EmaMode, ...] = get_args(EmaMode)
# Precisions as the CLI names them (dtypes.PRECISIONS maps each to its safetensors dtype).
Precision = Literal["fp64", "fp32", "fp16", "bf16", "fp8_e4m3fn", "fp8_e5m2"]
# Output formats of convert (formats/writers.py has a sink for each).
OutputFormat = Literal["safetensors", "ckpt", "gguf"]
# The parts extract writes as standalone files.
ExtractPart = Literal["vae", "unet", "text_encoder", "text_encoder_2"]
EXTRACT_PARTS: tuple[ExtractPart, ...] = get_args(ExtractPart)
# The scanner's verdicts, least to most severe.
Verdict = Literal["safe", "suspicious", "error", "dangerous"]
# What a file is, as identify says (a "unet" is a lone diffusion model: UNet or DiT).
ModelKind = Literal[
    "checkpoint",
    "unet",
    "controlnet",
    "t2i_adapter",
    "ip_adapter",
    "vae",
    "text_encoder",
    "image_encoder",
    "upscaler",
    "lora",
    "lycoris",
    "embedding",
    "unknown",
]
MODEL_KINDS: tuple[ModelKind, ...] = get_args(ModelKind)
