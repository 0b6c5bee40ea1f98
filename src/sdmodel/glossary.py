"""The words on a model's download page, explained: what each is and what to choose for generating
and for training; with a file, what that file is on that point (``sdmodel explain``).

Each term reads a file's report in its ``info --json`` form, the stable one, so a term is a record:
its texts (marked with ``N_`` and translated where shown) and one function of that report.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sdmodel.i18n import N_, _, ngettext, tr

Report = Mapping[str, Any]

_FLOAT_NAMES = {"F32": "fp32", "F16": "fp16", "BF16": "bf16", "F8_E4M3": "fp8 e4m3", "F8_E5M2": "fp8 e5m2"}


@dataclass(frozen=True)
class Term:
    """One entry of the glossary. ``about`` says what a file is on this point (None: not relevant)."""

    id: str
    aliases: tuple[str, ...]
    title: str
    what: str
    generating: str
    training: str
    about: Callable[[Report], str | None]

    def matches(self, word: str) -> bool:
        w = _norm(word)
        return w == _norm(self.id) or any(w == _norm(a) or re.fullmatch(a, w) for a in self.aliases)


def _norm(word: str) -> str:
    return word.strip().lower().replace("_", "-").replace(" ", "-")


# --- what a file is, per term ----------------------------------------------------------------


def _weight_dtypes(r: Report) -> list[str]:
    counts: dict[str, int] = {}
    for part, comp in (r.get("components") or {}).items():
        if part in ("schedule", "marker"):
            continue
        for dtype, n in (comp.get("dtypes") or {}).items():
            if dtype in _FLOAT_NAMES:
                counts[dtype] = counts.get(dtype, 0) + n
    return [_FLOAT_NAMES[d] for d, _n in sorted(counts.items(), key=lambda kv: -kv[1])]


def _storages(r: Report) -> list[str]:
    return [str(c["storage"]) for c in (r.get("components") or {}).values() if c.get("storage")]


def _about_format(r: Report) -> str:
    fmt = r.get("format", "")
    if fmt == "safetensors":
        return _("safetensors: cannot run code when loaded.")
    if fmt in ("torch-zip", "torch-legacy"):
        return _("a pickle checkpoint (ckpt/pt): run 'sdmodel scan' on it, then convert it to safetensors.")
    if fmt == "gguf":
        return _("GGUF: a quantized file for a GGUF loader.")
    if fmt == "diffusers":
        return _("a diffusers folder: one file per part.")
    return _("format: {format}.").format(format=fmt)


def _about_precision(r: Report) -> str | None:
    names = _weight_dtypes(r)
    if not names:
        return None
    return _("weights stored as {dtypes}.").format(dtypes=", ".join(names))


def _about_quantized(kind: str) -> Callable[[Report], str | None]:
    def about(r: Report) -> str | None:
        found = [s for s in _storages(r) if kind in s.lower()]
        if found:
            return _("storage: {storage}.").format(storage="; ".join(found))
        return _("this file does not use this storage.")

    return about


def _about_ema(r: Report) -> str | None:
    if r.get("kind") not in ("checkpoint", "unet"):
        return None
    ema = r.get("ema") or {}
    if not ema.get("present"):
        return _("one UNet weight set, no EMA copy (no-EMA or EMA-only: the file cannot tell which).")
    if ema.get("complete"):
        return _("both weight sets (full): the normal one and a complete EMA copy.")
    return _("an EMA copy of only part of the UNet ({covered} of {total} tensors).").format(
        covered=ema.get("unet_covered", 0), total=ema.get("unet_total", 0)
    )


def _about_pruned(r: Report) -> str | None:
    junk = (r.get("junk") or {}).get("tensors", 0)
    if junk:
        text = ngettext(
            "{count} leftover tensor that no loader uses ('sdmodel convert --prune' drops it).",
            "{count} leftover tensors that no loader uses ('sdmodel convert --prune' drops them).",
            junk,
        )
        return text.format(count=junk)
    return _("no leftover tensors.")


def _about_vae(r: Report) -> str | None:
    vae = r.get("vae") or {}
    if r.get("kind") not in ("checkpoint", "vae"):
        return None
    if not vae.get("present"):
        return _("no VAE inside: pick one in your UI.")
    name = vae.get("name")
    if name and name != "unknown":
        return _("VAE inside: {name}.").format(name=name)
    return _("a VAE is inside; it matches no VAE sdmodel knows.")


def _about_yaml(r: Report) -> str | None:
    config = r.get("a1111_config")
    if r.get("kind") != "checkpoint" or not config:
        return None
    has_yaml = any(s.get("kind") == "config" for s in r.get("sidecars") or [])
    if r.get("family") != "sd2":
        return _("A1111 picks its config ({config}) by itself.").format(config=config)
    if has_yaml:
        return _("the yaml A1111 needs is beside the file.")
    return _("A1111 needs {config} beside this file under the model's name.").format(config=config)


def _about_prediction(r: Report) -> str | None:
    pred = r.get("prediction")
    if r.get("kind") not in ("checkpoint", "unet", "lora", "lycoris"):
        return None
    source = tr(str(r.get("prediction_source"))) if r.get("prediction_source") else ""
    if pred == "v":
        return _("v-prediction (from {source}): use a v-prediction sampler setting.").format(source=source)
    if pred == "epsilon":
        return _("epsilon prediction (from {source}): the usual setting.").format(source=source)
    if pred == "flow":
        return _("flow matching, fixed by the architecture: the loader knows.")
    return _("the file does not say; most models are epsilon, v-prediction ones say so on their page.")


def _about_lora(r: Report) -> str | None:
    kind = r.get("kind")
    if kind not in ("lora", "lycoris"):
        return _("not a LoRA.")
    family = r.get("family") or _("an unknown model")
    return _("a {kind} for {family}.").format(kind=kind, family=family)


def _about_kind(r: Report) -> str | None:
    kind = r.get("kind")
    if kind == "checkpoint":
        return _("a whole checkpoint: diffusion model, text encoder and VAE in one file.")
    if kind == "unet":
        return _("a lone diffusion model: it needs its text encoders and VAE as separate files.")
    return _("a {kind} file.").format(kind=kind)


# --- the glossary --------------------------------------------------------------------------------

TERMS: tuple[Term, ...] = (
    Term(
        "safetensors",
        ("ckpt", "pt", "pth", "pickle", "pickletensor", "safetensor", "format"),
        N_("ckpt or safetensors"),
        N_(
            "Two ways to store the same weights. A ckpt (also .pt, 'PickleTensor') is a Python pickle: "
            "loading it can run code hidden in the file. safetensors holds only numbers and loads faster. "
            "Pictures are the same."
        ),
        N_("Take safetensors. If there is only a ckpt, scan it ('sdmodel scan') and convert it."),
        N_("The same: safetensors."),
        _about_format,
    ),
    Term(
        "precision",
        ("fp32", "fp16", "bf16", "float", "float16", "float32", "half"),
        N_("fp32, fp16, bf16"),
        N_(
            "How many bits each number takes. fp32 uses 32, fp16 and bf16 use 16, so their files are half "
            "the size. bf16 keeps fp32's range with less precision. UIs compute in 16 bits anyway."
        ),
        N_("fp16 (or bf16): the pictures are practically the same and the file is half the size."),
        N_("fp32 if there is one; bf16 is next best. Training from fp16 works, but less well."),
        _about_precision,
    ),
    Term(
        "fp8",
        ("fp8-e4m3fn", "fp8-e5m2", "e4m3", "e5m2", "float8"),
        N_("fp8"),
        N_(
            "8 bits per number: a quarter of fp32. Without a scale, the small weights lose most of their "
            "precision; e4m3 keeps more precision, e5m2 more range."
        ),
        N_("Fine for big models (Flux, Wan) on small GPUs; prefer a scaled fp8 file."),
        N_("Use bf16 or fp32 weights instead."),
        _about_precision,
    ),
    Term(
        "scaled-fp8",
        ("fp8-scaled", "scaled", "comfy-quant", "mixed-precision", "nvfp4", "mxfp8", "int8"),
        N_("scaled fp8 (fp8_scaled) and ComfyUI mixed precision"),
        N_(
            "fp8 weights stored with a scale per layer: the loader multiplies each weight by its scale, "
            "which keeps much more precision than plain fp8. ComfyUI's newer form (comfy_quant) also "
            "stores nvfp4, mxfp8 and int8 layers. Loaders that ignore the scales make noise."
        ),
        N_("A good choice for ComfyUI on 8-16 GB GPUs; near fp16 quality at half the size."),
        N_("Dequantize first ('sdmodel convert FILE --dtype bf16') or get the bf16 release."),
        _about_quantized("scaled"),
    ),
    Term(
        "gguf",
        (r"q\d(-k)?(-[a-z0-9]+)?", "quant", "k-quant", "iq4-nl", "iq4-xs", "llama-quantize"),
        N_("GGUF quants (Q8_0, Q5_K_M, Q4_K_S...)"),
        N_(
            "A file format from llama.cpp that stores weights in small blocks with their own scales. The "
            "number is bits per weight: Q8_0 is nearly lossless, Q5/Q4 are smaller with a visible cost, "
            "Q3/Q2 lose a lot. _S and _M are mixes that keep some layers at higher precision."
        ),
        N_("Q8_0 if it fits your GPU, otherwise Q5_K_M or Q4_K_S. Needs the ComfyUI-GGUF loader (Unet Loader (GGUF))."),
        N_("Use bf16 or fp32 weights instead."),
        _about_quantized("gguf"),
    ),
    Term(
        "nf4",
        ("fp4", "bitsandbytes", "bnb", "bnb-nf4"),
        N_("NF4 / FP4 (bitsandbytes)"),
        N_("4-bit weights in blocks of 64 with a scale each, as Forge and diffusers save them."),
        N_("Only with a loader that reads bitsandbytes files (Forge, or a ComfyUI custom node)."),
        N_("Use bf16 or fp32 weights instead."),
        _about_quantized("nf4"),
    ),
    Term(
        "ema",
        ("no-ema", "noema", "non-ema", "emaonly", "ema-only", "full", "full-ema", "pruned-emaonly"),
        N_("EMA, no-EMA, EMA-only"),
        N_(
            "Training kept two sets of UNet weights: the normal ones and a smoothed average (EMA). A 'full' "
            "file has both; 'no-EMA' and 'EMA-only' keep one. A1111 uses the normal set when both are there."
        ),
        N_("One set is enough: no-EMA for merges, and for trained models try both. EMA-only merges often make noise."),
        N_("The full file, or EMA-only: fine-tuning starts from the smoother weights."),
        _about_ema,
    ),
    Term(
        "pruned",
        ("prune", "pruning", "junk"),
        N_("pruned"),
        N_(
            "On download pages it rarely means real pruning: a 'pruned' file is usually fp16, one weight set "
            "(no-EMA or EMA-only), or both, and without training leftovers."
        ),
        N_("A pruned fp16 file is what you want."),
        N_("Check what was removed: for training you want fp32 and the EMA set."),
        _about_pruned,
    ),
    Term(
        "vae",
        ("baked-vae", "no-vae", "novae", "baked"),
        N_("VAE: 'no VAE' or 'baked VAE'"),
        N_(
            "The VAE turns the model's latent image into pixels. 'No VAE' files still carry the default VAE "
            "of their base model; 'baked VAE' means the author put another one in. Choosing 'None' in A1111 "
            "means 'the one inside', not 'no VAE'."
        ),
        N_("If you always pick a VAE in your UI, it does not matter which is inside."),
        N_("Train with the base model's VAE."),
        _about_vae,
    ),
    Term(
        "yaml",
        ("config", "sd2-yaml", "v2-inference"),
        N_("the SD2 yaml"),
        N_(
            "A1111 treats every checkpoint as SD 1.x unless a config file (.yaml) with the same name lies "
            "beside it. SD 2.x models need one; it also says whether the model is v-prediction."
        ),
        N_("Keep the .yaml next to the model under the same name ('sdmodel convert' writes one)."),
        N_("The same."),
        _about_yaml,
    ),
    Term(
        "v-prediction",
        ("vpred", "v-pred", "v-parameterization", "zsnr", "ztsnr", "epsilon", "prediction"),
        N_("v-prediction"),
        N_(
            "What the model learned to predict: the noise (epsilon, most models) or a mix of noise and image "
            "(v). A v-prediction model under an epsilon setting makes grey or noisy pictures. ZSNR models "
            "also need zero terminal SNR in the sampler."
        ),
        N_("Use the setting the model was trained with: a v-prediction sampler or its .yaml."),
        N_("Train with the same prediction type as the base."),
        _about_prediction,
    ),
    Term(
        "lora",
        ("lycoris", "locon", "loha", "lokr", "dora", "lyco"),
        N_("LoRA and LyCORIS"),
        N_(
            "A small add-on that changes a base model: it stores only the differences for some layers. "
            "LyCORIS (LoCon, LoHa, LoKr) stores them in other ways. A LoRA works only with models of its "
            "base family."
        ),
        N_("Pick a LoRA made for your base (SD 1.5, SDXL, Pony/Illustrious, Flux...)."),
        N_("Train LoRAs on the base model you will use them with."),
        _about_lora,
    ),
    Term(
        "diffusion-model",
        ("checkpoint", "unet", "transformer", "dit", "diffusion-models", "lone"),
        N_("diffusion model or checkpoint"),
        N_(
            "An SD 1.5 or SDXL checkpoint holds everything: the diffusion model, the text encoder and the "
            "VAE. Flux, SD 3.5, Wan, Qwen-Image files are usually the diffusion model alone: they go in "
            "ComfyUI's diffusion_models folder and need their text encoders and VAE as separate files."
        ),
        N_("Put a lone diffusion model in diffusion_models and load it with Load Diffusion Model."),
        N_("Trainers want the same parts as the UI."),
        _about_kind,
    ),
)


def find_term(word: str) -> Term | None:
    """The entry for ``word`` (an id or an alias such as ``noema`` or ``Q4_K_S``)."""
    return next((t for t in TERMS if t.matches(word)), None)
