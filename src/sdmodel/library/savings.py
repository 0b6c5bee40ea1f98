"""``library plan``: per file, the conversion the seed article recommends and the bytes it saves.

Generating (the default): the precision ``advice.generating_dtype`` chooses (fp16 for fp32 weights;
files already in 16 or fewer bits keep theirs), one UNet weight set (no EMA), junk dropped. Training folders
(``--train-folder``): safetensors keeping the EMA set and the file's precision (fp32 stays fp32; an
fp16 file is not up-cast, that cannot restore precision). Files already optimal are skipped.

Smaller forms (``--smaller Q4_K_S``, remembered): for generating, the files whose advice offers that
GGUF or scaled-fp8 form (``advice.smaller_forms``: families ComfyUI loads that way) are planned to it;
the others keep the default. GGUF holds only the diffusion model, so only diffusion-model files
(kind ``unet``) become GGUF; training folders never get a smaller form.
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from sdmodel.advice import SMALLER_FORMS, generating_dtype, weight_dtypes
from sdmodel.i18n import Msg, Size, msg_n
from sdmodel.library.catalog import Catalog
from sdmodel.sidecars import stem_of

CONVERTIBLE_KINDS = frozenset(
    {"checkpoint", "unet", "vae", "text_encoder", "controlnet", "t2i_adapter", "lora", "lycoris"}
)
# A conversion must save at least this share of the file to be worth it (unless it removes a pickle).
MIN_SAVING = 0.01
_PRECISION_TOKEN = re.compile(r"(?i)(?<![a-z0-9])(fp32|float32)(?![a-z0-9])")
_EMA_TOKEN = re.compile(r"(?i)[-_. ](with[-_]?ema|full[-_]?ema|ema)(?![a-z0-9])")


@dataclass(frozen=True)
class PlanItem:
    """One proposed conversion (catalog.store_plan keeps the fields a run needs)."""

    file_id: int
    src: str
    dst: str
    root: str
    name: str
    kind: str
    family: str | None
    mode: Literal["generate", "train"]
    dtype: str  # a precision, "keep", a scaled-fp8 format, or "gguf:<TYPE>" (smaller_target)
    ema: Literal["keep", "drop"]
    target: str | Msg  # what the output will be, in words
    format: str | None
    precision: str | None
    src_size: int
    src_mtime_ns: int
    before_bytes: int
    after_bytes: int
    saves_bytes: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"target": str(self.target)}


ALREADY_OPTIMAL = Msg("already optimal")


@dataclass(frozen=True)
class Skipped:
    """A file the plan leaves as it is, and why."""

    path: str
    reason: str | Msg

    def to_dict(self) -> dict[str, str]:
        return {"path": self.path, "reason": str(self.reason)}


@dataclass(frozen=True)
class SmallerOffer:
    """What planning with ``--smaller TARGET`` would give: the files it applies to and their bytes."""

    target: str  # a SMALLER_TARGETS key
    files: int
    before_bytes: int
    after_bytes: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Plan:
    items: list[PlanItem] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    offers: list[SmallerOffer] = field(default_factory=list)  # smaller forms not chosen

    @property
    def before(self) -> int:
        return sum(i.before_bytes for i in self.items)

    @property
    def after(self) -> int:
        return sum(i.after_bytes for i in self.items)

    def summary(self) -> Msg:
        """``14 files, 61.2 GB -> 29.8 GB`` (and what it saves)."""
        n = len(self.items)
        return msg_n(
            "{n} file, {before} -> {after} (saves {saves})",
            "{n} files, {before} -> {after} (saves {saves})",
            n,
            n=n,
            before=Size(self.before),
            after=Size(self.after),
            saves=Size(self.before - self.after),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "items": [i.to_dict() for i in self.items],
            "skipped": [s.to_dict() for s in self.skipped],
            "before_bytes": self.before,
            "after_bytes": self.after,
            "saves_bytes": self.before - self.after,
            "summary": str(self.summary()),
            "offers": [o.to_dict() for o in self.offers],
        }


def new_stem(stem: str, dtype: str, drop_ema: bool = False) -> str:
    """The output's base name: a precision token follows the new precision (``model-fp32`` ->
    ``model-fp16``) and an ``ema`` token goes with the EMA weights; otherwise the name stays, so
    prompts and sidecars that use it keep working."""
    if dtype == "fp16":
        stem = _PRECISION_TOKEN.sub(
            lambda m: _same_case("fp16" if m.group(1).lower() == "fp32" else "float16", m.group(1)), stem
        )
    if drop_ema:
        shorter = _EMA_TOKEN.sub("", stem)
        stem = shorter or stem
    return stem


def _same_case(word: str, like: str) -> str:
    return word.upper() if like.isupper() else word


def in_folders(path: str, folders: list[str]) -> bool:
    p = os.path.abspath(path)
    return any(p.startswith(os.path.abspath(f).rstrip(os.sep) + os.sep) for f in folders)


def plan_file(
    f: dict[str, Any], train_folders: list[str], smaller: str | None = None
) -> tuple[PlanItem | None, Msg | None]:
    """The plan item for one catalogued file, or (None, why it is skipped); (None, None) for files
    the plan does not concern (errors, embeddings, unknown files). ``smaller``: a SMALLER_TARGETS
    key to plan generating files to where their advice offers it."""
    kind = f.get("kind")
    if f.get("error") or kind not in CONVERTIBLE_KINDS:
        return None, None
    if f.get("verdict") in ("dangerous", "suspicious"):
        return None, Msg("scan verdict {verdict}: not converted (delete it)", verdict=f["verdict"])
    if f.get("is_dir"):
        return None, Msg("diffusers folder: not converted in batch")
    rep = f.get("report") or {}
    quant = rep.get("quantization") or {}
    if quant.get("quantized"):
        return None, Msg(
            "quantized storage ({storage}): already the small form (converting would up-cast)",
            storage=quant.get("storage"),
        )
    advice = rep.get("advice") or {}
    precision = f.get("precision")
    size = f["size"]
    mode: Literal["generate", "train"] = "train" if in_folders(f["path"], train_folders) else "generate"
    form = smaller_offer(f, smaller) if mode == "generate" and smaller else None
    if form is not None:
        return _smaller_item(f, smaller or "", form)
    if mode == "generate":
        components = rep.get("components") or {}
        weights = weight_dtypes({part: (c.get("dtypes") or {}) for part, c in components.items()})
        dtype = generating_dtype(weights) or "keep"
        ema: Literal["keep", "drop"] = "drop" if f.get("ema") else "keep"
        gen = advice.get("generate") or {}
        after = gen.get("bytes_after") if dtype == "fp16" else None
        if after is None:
            after = size - f.get("junk_bytes", 0) - (_ema_bytes(rep) if ema == "drop" else 0)
        words = precision if dtype == "keep" else dtype
        target = (
            Msg("{precision} safetensors, no EMA", precision=words)
            if f.get("ema")
            else Msg("{precision} safetensors", precision=words)
        )
    else:
        dtype = "keep"
        ema = "keep"
        train = advice.get("train") or {}
        after = train.get("bytes_after") if precision == "fp32" else None
        if after is None:
            after = size - f.get("junk_bytes", 0)
        if f.get("ema"):
            target = Msg("{precision} safetensors with EMA (training)", precision=precision or Msg("same precision"))
        else:
            target = Msg("{precision} safetensors (training)", precision=precision or Msg("same precision"))
    after = int(min(after, size))
    is_pickle = f.get("format") != "safetensors"
    if not is_pickle and size - after < max(size * MIN_SAVING, 1):
        return None, ALREADY_OPTIMAL
    src = Path(f["path"])
    dst = src.with_name(new_stem(stem_of(src.name), dtype, drop_ema=ema == "drop") + ".safetensors")
    if dst != src and dst.exists():
        return None, Msg("{name} already exists beside it", name=dst.name)
    if f.get("junk_bytes"):
        target = Msg("{target}, junk dropped", target=target)
    return PlanItem(
        file_id=f["id"],
        src=str(src),
        dst=str(dst),
        root=f["root"],
        name=f["name"],
        kind=kind,
        family=f.get("family"),
        mode=mode,
        dtype=dtype,
        ema=ema,
        target=target,
        format=f.get("format"),
        precision=precision,
        src_size=size,
        src_mtime_ns=f["mtime_ns"],
        before_bytes=size,
        after_bytes=after,
        saves_bytes=size - after,
    ), None


# ``--smaller`` targets (named by their last convert option) and the convert options of each.
SMALLER_TARGETS: dict[str, tuple[str, ...]] = {form.options[-1]: form.options for form in SMALLER_FORMS}


def check_smaller(target: str | None) -> str | None:
    if target is not None and target not in SMALLER_TARGETS:
        raise ValueError(
            Msg("--smaller must be one of {targets}, not {target!r}", targets=", ".join(SMALLER_TARGETS), target=target)
        )
    return target


def smaller_offer(f: dict[str, Any], target: str) -> dict[str, Any] | None:
    """The file's advice entry for ``target`` (a GGUF form only for a diffusion-model file: the
    other parts of a checkpoint would be lost), or None when it is not offered."""
    options = list(SMALLER_TARGETS[target])
    if "gguf" in options and f.get("kind") != "unet":
        return None
    offers = ((f.get("report") or {}).get("advice") or {}).get("smaller") or []
    return next((o for o in offers if o.get("options") == options), None)


def _smaller_item(f: dict[str, Any], target: str, form: dict[str, Any]) -> tuple[PlanItem | None, Msg | None]:
    src = Path(f["path"])
    gguf = "gguf" in SMALLER_TARGETS[target]
    stem = _PRECISION_TOKEN.sub("", stem_of(src.name)).rstrip("-_.") or stem_of(src.name)
    dst = src.with_name(f"{stem}-{target}.gguf" if gguf else f"{stem}-{target}.safetensors")
    if dst.exists():
        return None, Msg("{name} already exists beside it", name=dst.name)
    size = f["size"]
    after = int(form["bytes_after"])
    if size - after < max(size * MIN_SAVING, 1):
        return None, ALREADY_OPTIMAL
    return PlanItem(
        file_id=f["id"],
        src=str(src),
        dst=str(dst),
        root=f["root"],
        name=f["name"],
        kind=f["kind"],
        family=f.get("family"),
        mode="generate",
        dtype=f"gguf:{target}" if gguf else target,
        ema="keep",
        target=str(form["target"]),
        format=f.get("format"),
        precision=f.get("precision"),
        src_size=size,
        src_mtime_ns=f["mtime_ns"],
        before_bytes=size,
        after_bytes=after,
        saves_bytes=size - after,
    ), None


def smaller_offers(files: list[dict[str, Any]], train_folders: list[str], chosen: str | None) -> list[SmallerOffer]:
    """Per target not chosen, the generating files it applies to and their bytes before and after."""
    out = []
    for target in SMALLER_TARGETS:
        if target == chosen:
            continue
        hits = [
            (f["size"], int(o["bytes_after"]))
            for f in files
            if not f.get("error") and not in_folders(f["path"], train_folders)
            for o in [smaller_offer(f, target)]
            if o is not None
        ]
        if hits:
            out.append(SmallerOffer(target, len(hits), sum(b for b, _ in hits), sum(a for _, a in hits)))
    return out


def _ema_bytes(rep: dict[str, Any]) -> int:
    return int(((rep.get("components") or {}).get("ema") or {}).get("bytes") or 0)


def compute_plan(catalog: Catalog, train_folders: list[str] | None = None) -> Plan:
    """The savings plan for the whole catalog (``train_folders``: None = the ones stored)."""
    folders = catalog.get_meta("train_folders", []) if train_folders is None else train_folders
    smaller = check_smaller(catalog.get_meta("smaller", None))
    plan = Plan()
    files = list(catalog.all_files())
    for f in files:
        item, why = plan_file(f, folders, smaller)
        if item is not None:
            plan.items.append(item)
        elif why:
            plan.skipped.append(Skipped(f["path"], why))
    plan.items.sort(key=lambda i: (-i.saves_bytes, i.src))
    plan.offers = smaller_offers(files, folders, smaller)
    return plan
