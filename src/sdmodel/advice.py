"""What to keep and what to convert to, for generating and for training (the seed article's
summary, made executable), with the bytes each conversion would save."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from sdmodel.dtypes import FP8_DTYPES, PRECISION_NAMES, is_float
from sdmodel.errors import SdmodelError
from sdmodel.formats.base import TensorSource
from sdmodel.i18n import N_, Msg, Number, Size, msg_n
from sdmodel.parts import NON_WEIGHT_PARTS
from sdmodel.placement import advice_line
from sdmodel.plan import build_plan
from sdmodel.registry import label

if TYPE_CHECKING:
    from sdmodel.inspection import ModelReport

ADAPTER_KINDS = ("lora", "lycoris", "embedding")
# Other single networks converted like a ControlNet (16 bits for generating).
NETWORK_KINDS = ("t2i_adapter", "ip_adapter", "image_encoder")
# The kinds in words, for the placement sentence.
KIND_WORDS = {
    "checkpoint": N_("checkpoint"),
    "unet": N_("diffusion model"),
    "vae": "VAE",
    "text_encoder": N_("text encoder"),
    "lora": "LoRA",
    "lycoris": "LyCORIS",
    "embedding": N_("embedding"),
    "controlnet": "ControlNet",
    "t2i_adapter": "T2I-Adapter",
    "ip_adapter": "IP-Adapter",
    "image_encoder": N_("image encoder (CLIP vision)"),
    "upscaler": N_("super-resolution (upscale) model"),
}
# Weights in 16 or fewer bits: converting them for generating saves nothing.
SMALL_DTYPES = frozenset({"F16", "BF16", *FP8_DTYPES})


def weight_dtypes(dtypes_by_part: Mapping[str, Iterable[str]]) -> set[str]:
    """Floating dtypes of the weights, from the dtypes of each part (schedules, markers and junk
    are not weights: they stay fp32, are integers, or are dropped)."""
    return {d for part, dtypes in dtypes_by_part.items() if part not in NON_WEIGHT_PARTS for d in dtypes if is_float(d)}


def generating_dtype(weights: set[str]) -> str | None:
    """The precision to convert to for generating (``fp16``), or None to keep the file's: weights
    already in 16 or fewer bits keep theirs (bf16 is not re-rounded to fp16; fp8 would double in
    size), and so does a file with some fp8 weights. The output is never larger than the file."""
    if not weights or weights <= SMALL_DTYPES or weights & FP8_DTYPES:
        return None
    return PRECISION_NAMES["F16"]


def planned_bytes(source: TensorSource, **options: Any) -> int:
    """Tensor bytes the conversion with these options would write (the real conversion plan:
    schedules stay fp32, integers and markers keep their dtype)."""
    return build_plan(source, **options).out_bytes


def _command(path: str, options: list[str]) -> str:
    return " ".join(["sdmodel convert", f'"{path}"', *options])


@dataclass(frozen=True)
class Option:
    """One recommendation: the target in words, the convert options and command, and the bytes
    (``options`` None: nothing to convert to, only the reasons)."""

    target: str | Msg | None
    command: str | None
    why: list[Msg]
    options: list[str] | None = None
    bytes_after: int | None = None
    saves_bytes: int | None = None  # negative: the file grows
    already_optimal: bool | None = None  # for generating only

    def to_dict(self) -> dict[str, Any]:
        target = None if self.target is None else str(self.target)
        why = [str(w) for w in self.why]
        if self.options is None:
            return {"target": target, "command": self.command, "why": why}
        out: dict[str, Any] = {
            "target": target,
            "options": self.options,
            "command": self.command,
            "bytes_after": self.bytes_after,
            "saves_bytes": self.saves_bytes,
            "why": why,
        }
        if self.already_optimal is not None:
            out["already_optimal"] = self.already_optimal
        return out


@dataclass(frozen=True)
class Advice:
    """What to convert to for generating and for training (None: no advice for this file)."""

    generate: Option | None
    train: Option | None
    notes: list[str | Msg] | None = None  # lineage settings are plain text (sdmodel.lineage)
    smaller: list[Option] | None = None  # GGUF / scaled-fp8 forms for generating (smaller_forms)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "generate": self.generate.to_dict() if self.generate else None,
            "train": self.train.to_dict() if self.train else None,
        }
        if self.notes is not None:
            out["notes"] = [str(n) for n in self.notes]
        if self.smaller is not None:
            out["smaller"] = [o.to_dict() for o in self.smaller]
        return out


def advise(report: ModelReport, source: TensorSource) -> Advice:
    """Advice for generating and for training, each with the options, the command and the bytes
    it would save (negative = the file grows), and where the file goes (placement notes)."""
    advice = _advise(report, source)
    placing = _placement_notes(report)
    if not placing:
        return advice
    return replace(advice, notes=[*(advice.notes or []), *placing])


def kind_words(kind: str, family: str | None = None, variant: str | None = None) -> Msg:
    """The model in words: ``SD 1.x checkpoint`` (``checkpoint`` when the family is unknown)."""
    words = Msg(KIND_WORDS.get(kind, kind))
    if not family:
        return words
    return Msg("{family} {kind}", family=label(family, variant), kind=words)


def _placement_notes(report: ModelReport) -> list[str | Msg]:
    """Where to put the file and what to pair it with (sdmodel.placement), and the sampler
    settings its lineage needs."""
    notes: list[str | Msg] = []
    ident = report.identity
    if report.placement is not None:
        line = advice_line(report.placement, kind_words(ident.kind, ident.family, ident.variant))
        if line:
            notes.append(line)
    if report.lineage is not None:
        notes.extend(report.lineage.settings)
    return notes


def _advise(report: ModelReport, source: TensorSource) -> Advice:
    kind = report.kind
    floats = weight_dtypes({part: c.dtypes for part, c in report.components.items()})
    reasons: list[Msg] = []
    if report.format != "safetensors":
        reasons.append(
            Msg(
                "safetensors cannot run code when loaded and loads faster: convert rather than keep a {format} file",
                format=report.format,
            )
        )
    if kind == "upscaler":
        # A1111 lists only .pt / .pth upscalers (modules/esrgan_model.py find_models ext_filter).
        return Advice(None, None, [Msg("no conversion advice for an upscale model: keep the file as it is")])
    if kind not in ("checkpoint", "unet", "vae", "text_encoder", "controlnet", *NETWORK_KINDS, *ADAPTER_KINDS):
        return Advice(None, None, [Msg("no advice for an unidentified file")])
    if report.quantization.get("quantized"):
        return _quantized_advice(report, source)

    # Generating: 16 bits (generating_dtype), one UNet weight set (the non-EMA one A1111 uses), no junk.
    dtype = generating_dtype(floats)
    gen_opts = ["--dtype", dtype] if dtype else []
    if report.ema.present:
        gen_opts += ["--ema", "drop"]
        reasons.append(
            Msg(
                "generating uses one UNet weight set: A1111 uses the non-EMA one when both are present "
                "(for merges keep non-EMA; for trained models compare with --ema only)"
            )
        )
    if report.junk.tensors:
        gen_opts.append("--prune")
        n = report.junk.tensors
        reasons.append(msg_n("{n} junk tensor no loader uses", "{n} junk tensors no loader uses", n, n=n))
    if report.clip_position_ids.status == "broken":
        reasons.append(
            Msg(
                "CLIP position ids are broken: --fix-clip restores 0..76 (changes outputs back to what "
                "the model was trained with)"
            )
        )
    if dtype:
        if floats - SMALL_DTYPES == {"F64"}:
            reasons.append(
                Msg("fp16 takes a quarter of the bytes of these weights and makes practically the same pictures")
            )
        else:
            reasons.append(Msg("fp16 takes half of the bytes of these weights and makes practically the same pictures"))
    generate = _option(
        report,
        _generating_target(dtype, report.ema.present),
        gen_opts,
        planned_bytes(
            source, dtype=dtype, ema="drop" if report.ema.present else "keep", prune=bool(report.junk.tensors)
        ),
        reasons,
        already_optimal=(
            report.format == "safetensors" and not report.ema.present and not report.junk.tensors and dtype is None
        ),
    )

    # Training: fp32 with the EMA set kept (trainers start from the smoothest weights).
    if floats and floats <= SMALL_DTYPES:
        train = Option(
            None,
            None,
            [
                Msg(
                    "this file holds no fp32 weights and up-casting cannot restore the precision: for training, "
                    "download the fp32 release if there is one"
                )
            ],
        )
    else:
        train_opts, train_why = ["--dtype", "fp32"], []
        if report.ema.present:
            train_opts += ["--ema", "keep"]
            train_why.append(Msg("keep the EMA set for training (or --ema only for a clean fp32 EMA file)"))
        train = _option(
            report,
            Msg("fp32 safetensors with EMA") if report.ema.present else "fp32 safetensors",
            train_opts,
            planned_bytes(source, dtype="fp32"),
            train_why,
        )
    return Advice(generate, train, smaller=smaller_forms(report, source, generate) or None)


def _generating_target(dtype: str | None, drop_ema: bool) -> Msg:
    """``fp16 safetensors, no EMA`` / ``same precision safetensors``."""
    if dtype:
        if drop_ema:
            return Msg("{dtype} safetensors, no EMA", dtype=dtype)
        return Msg("{dtype} safetensors", dtype=dtype)
    return Msg("same precision safetensors, no EMA") if drop_ema else Msg("same precision safetensors")


def _option(
    report: ModelReport,
    target: str | Msg,
    options: list[str],
    tensor_bytes: int,
    why: list[Msg],
    already_optimal: bool | None = None,
) -> Option:
    after = tensor_bytes + _overhead(report)
    return Option(
        target=target,
        command=_command(report.path, options),
        why=why,
        options=options,
        bytes_after=after,
        saves_bytes=report.size_bytes - after,
        already_optimal=already_optimal,
    )


def _overhead(report: ModelReport) -> int:
    """Header and metadata size of the output, roughly: 100 bytes per tensor plus metadata."""
    return 8 + 100 * report.tensor_count + sum(len(k) + len(v) for k, v in report.metadata.items())


# Storage at about 8 bits per weight: generating with it is practically the same as bf16.
NEAR_LOSSLESS_BITS = 8.0


def _quantized_advice(report: ModelReport, source: TensorSource) -> Advice:
    """A quantized file is already the small form of its model: keep it for generating (never
    propose a larger file); training wants the bf16/fp32 release, which dequantizing cannot give."""
    q = report.quantization
    storage, bits = q["storage"], q["bits_per_weight"] or 0.0
    why = []
    if bits >= NEAR_LOSSLESS_BITS - 0.5:
        why.append(
            Msg(
                "{storage}: about {bits} bits per weight, near-lossless for generating (fp8 and Q8_0 make "
                "practically the same pictures as bf16): keep it",
                storage=storage,
                bits=Number(bits, 1),
            )
        )
    else:
        why.append(
            Msg(
                "{storage}: {bits} bits per weight, smaller than fp8/Q8_0 with a visible cost in detail and "
                "prompt following; keep it if it is what fits your VRAM, else prefer a Q8_0 or fp8 copy",
                storage=storage,
                bits=Number(bits, 1),
            )
        )
    if q.get("dequantizable"):
        try:
            grows = planned_bytes(source, dtype="bf16") + _overhead(report) - report.size_bytes
            why.append(
                Msg(
                    "'sdmodel convert --dtype bf16' dequantizes it exactly but makes it {size} larger: "
                    "only for a tool that cannot load this form",
                    size=Size(grows),
                )
            )
        except SdmodelError:
            pass
    else:
        why.append(Msg("sdmodel cannot dequantize it: {needs}", needs=q.get("needs")))
    generate = Option(
        Msg("keep this file"),
        None,
        why,
        options=[],
        bytes_after=report.size_bytes,
        saves_bytes=0,
        already_optimal=not q.get("problems"),
    )
    train = Option(
        None,
        None,
        [
            Msg(
                "training wants bf16 or fp32 weights: dequantizing gives back rounded values, not the lost "
                "precision; download the bf16/fp32 release of this model"
            )
        ],
    )
    return Advice(generate, train)


@dataclass(frozen=True)
class SmallerForm:
    """A quantized target ComfyUI loads, offered beside the 16-bit one for generating."""

    target: str
    options: tuple[str, ...]
    quality: str  # N_-marked


SMALLER_FORMS = (
    SmallerForm("GGUF Q8_0", ("--format", "gguf", "--quant", "Q8_0"), N_("near-lossless (8.5 bits per weight)")),
    SmallerForm(
        "fp8 e4m3fn scaled",
        ("--dtype", "fp8_e4m3fn_scaled"),
        N_("near-lossless (8 bits, a float32 scale per layer)"),
    ),
    SmallerForm("GGUF Q5_K_S", ("--format", "gguf", "--quant", "Q5_K_S"), N_("small visible cost in detail")),
    SmallerForm(
        "GGUF Q4_K_S", ("--format", "gguf", "--quant", "Q4_K_S"), N_("visible cost in detail and prompt following")
    ),
)
# Kinds whose diffusion model ComfyUI loads from a GGUF or scaled-fp8 file.
SMALLER_KINDS = ("checkpoint", "unet")
# Offered only for models larger than this in their generating form: smaller ones fit any GPU.
SMALLER_FROM_BYTES = 4 * 10**9
GPU_SIZES_GB = (6, 8, 12, 16, 24)
GPU_HEADROOM = 1.5 * 2**30  # activations, the VAE and the framework beside the weights


def fits_gpu(nbytes: int) -> int | None:
    """The smallest common GPU memory (GB) that holds ``nbytes`` of weights with room to run."""
    return next((gb for gb in GPU_SIZES_GB if nbytes + GPU_HEADROOM <= gb * 2**30), None)


def _smaller_args(options: tuple[str, ...]) -> dict[str, str]:
    return {options[i].removeprefix("--"): options[i + 1] for i in range(0, len(options), 2)}


def smaller_forms(report: ModelReport, source: TensorSource, generate: Option | None) -> list[Option]:
    """GGUF and scaled-fp8 copies for generating, with their sizes, where ComfyUI loads them: the
    diffusion model of a family ComfyUI-GGUF knows (the conversion plan's own rule refuses the
    others), weights above 8 bits, a model large enough for GPU memory to matter. Offered beside
    the 16-bit form, never for training."""
    floats = weight_dtypes({part: c.dtypes for part, c in report.components.items()})
    if report.kind not in SMALLER_KINDS or not floats or floats & FP8_DTYPES or generate is None:
        return []
    if (generate.bytes_after or 0) < SMALLER_FROM_BYTES:
        return []
    out = []
    for form in SMALLER_FORMS:
        try:
            tensor_bytes = planned_bytes(source, **_smaller_args(form.options))
        except SdmodelError:
            return []  # a family ComfyUI-GGUF cannot load: none of them
        quality = Msg(form.quality)
        option = _option(report, form.target, list(form.options), tensor_bytes, [quality])
        gpu = fits_gpu(option.bytes_after or 0)
        why = [Msg("{quality}, fits {gb} GB GPUs", quality=quality, gb=gpu) if gpu else quality]
        if report.kind == "checkpoint" and "gguf" in form.options:
            why.append(Msg("holds the diffusion model only: load the text encoders and VAE from their own files"))
        out.append(replace(option, why=why))
    return out
