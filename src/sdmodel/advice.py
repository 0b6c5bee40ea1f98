"""What to keep and what to convert to, for generating and for training (the seed article's
summary, made executable), with the bytes each conversion would save."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from sdmodel.dtypes import FP8_DTYPES, PRECISION_NAMES, is_float
from sdmodel.formats.base import TensorSource
from sdmodel.parts import NON_WEIGHT_PARTS
from sdmodel.plan import build_plan
from sdmodel.units import plural

if TYPE_CHECKING:
    from sdmodel.inspection import ModelReport

ADAPTER_KINDS = ("lora", "lycoris", "embedding")
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


def advise(report: ModelReport, source: TensorSource) -> dict[str, Any]:
    """Advice for generating and for training, each with the options, the command and the bytes
    it would save (negative = the file grows)."""
    kind = report.kind
    floats = weight_dtypes({part: c.dtypes for part, c in report.components.items()})
    reasons: list[str] = []
    if report.format != "safetensors":
        reasons.append(
            f"safetensors cannot run code when loaded and loads faster: convert rather than keep a {report.format} file"
        )
    if kind not in ("checkpoint", "unet", "vae", "text_encoder", "controlnet", *ADAPTER_KINDS):
        return {"generate": None, "train": None, "notes": ["no advice for an unidentified file"]}

    # Generating: 16 bits (generating_dtype), one UNet weight set (the non-EMA one A1111 uses), no junk.
    dtype = generating_dtype(floats)
    gen_opts = ["--dtype", dtype] if dtype else []
    if report.ema["present"]:
        gen_opts += ["--ema", "drop"]
        reasons.append(
            "generating uses one UNet weight set: A1111 uses the non-EMA one when both are present "
            "(for merges keep non-EMA; for trained models compare with --ema only)"
        )
    if report.junk["tensors"]:
        gen_opts.append("--prune")
        reasons.append(f"{plural(report.junk['tensors'], 'junk tensor')} no loader uses")
    if report.clip_position_ids.get("status") == "broken":
        reasons.append(
            "CLIP position ids are broken: --fix-clip restores 0..76 (changes outputs back to what "
            "the model was trained with)"
        )
    if dtype:
        share = "a quarter" if floats - SMALL_DTYPES == {"F64"} else "half"
        reasons.append(f"fp16 takes {share} of the bytes of these weights and makes practically the same pictures")
    precision = dtype or "same precision"
    generate = _option(
        report,
        f"{precision} safetensors" + (", no EMA" if report.ema["present"] else ""),
        gen_opts,
        planned_bytes(
            source, dtype=dtype, ema="drop" if report.ema["present"] else "keep", prune=bool(report.junk["tensors"])
        ),
        reasons,
    )
    generate["already_optimal"] = (
        report.format == "safetensors" and not report.ema["present"] and not report.junk["tensors"] and dtype is None
    )

    # Training: fp32 with the EMA set kept (trainers start from the smoothest weights).
    if floats and floats <= SMALL_DTYPES:
        train = {
            "target": None,
            "command": None,
            "why": [
                "this file holds no fp32 weights and up-casting cannot restore the precision: for training, "
                "download the fp32 release if there is one"
            ],
        }
    else:
        train_opts, train_why = ["--dtype", "fp32"], []
        if report.ema["present"]:
            train_opts += ["--ema", "keep"]
            train_why.append("keep the EMA set for training (or --ema only for a clean fp32 EMA file)")
        train = _option(
            report,
            "fp32 safetensors" + (" with EMA" if report.ema["present"] else ""),
            train_opts,
            planned_bytes(source, dtype="fp32"),
            train_why,
        )
    return {"generate": generate, "train": train}


def _option(report: ModelReport, target: str, options: list[str], tensor_bytes: int, why: list[str]) -> dict:
    after = tensor_bytes + _overhead(report)
    return {
        "target": target,
        "options": options,
        "command": _command(report.path, options),
        "bytes_after": after,
        "saves_bytes": report.size_bytes - after,
        "why": why,
    }


def _overhead(report: ModelReport) -> int:
    """Header and metadata size of the output, roughly: 100 bytes per tensor plus metadata."""
    return 8 + 100 * report.tensor_count + sum(len(k) + len(v) for k, v in report.metadata.items())
