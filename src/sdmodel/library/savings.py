"""``library plan``: per file, the conversion the seed article recommends and the bytes it saves.

Generating (the default): the precision ``advice.generating_dtype`` chooses (fp16 for fp32 weights;
files already in 16 or fewer bits keep theirs), one UNet weight set (no EMA), junk dropped. Training folders
(``--train-folder``): safetensors keeping the EMA set and the file's precision (fp32 stays fp32; an
fp16 file is not up-cast, that cannot restore precision). Files already optimal are skipped.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sdmodel.advice import generating_dtype, weight_dtypes
from sdmodel.library.catalog import Catalog
from sdmodel.sidecars import stem_of
from sdmodel.units import human_bytes, plural

CONVERTIBLE_KINDS = frozenset(
    {"checkpoint", "unet", "vae", "text_encoder", "controlnet", "t2i_adapter", "lora", "lycoris"}
)
# A conversion must save at least this share of the file to be worth it (unless it removes a pickle).
MIN_SAVING = 0.01
_PRECISION_TOKEN = re.compile(r"(?i)(?<![a-z0-9])(fp32|float32)(?![a-z0-9])")
_EMA_TOKEN = re.compile(r"(?i)[-_. ](with[-_]?ema|full[-_]?ema|ema)(?![a-z0-9])")


@dataclass
class Plan:
    items: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)

    @property
    def before(self) -> int:
        return sum(i["before_bytes"] for i in self.items)

    @property
    def after(self) -> int:
        return sum(i["after_bytes"] for i in self.items)

    def summary(self) -> str:
        """``14 files, 61.2 GB -> 29.8 GB`` (and what it saves)."""
        n = len(self.items)
        return (
            f"{plural(n, 'file')}, {human_bytes(self.before)} -> {human_bytes(self.after)} "
            f"(saves {human_bytes(self.before - self.after)})"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "items": self.items,
            "skipped": self.skipped,
            "before_bytes": self.before,
            "after_bytes": self.after,
            "saves_bytes": self.before - self.after,
            "summary": self.summary(),
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


def plan_file(f: dict[str, Any], train_folders: list[str]) -> tuple[dict[str, Any] | None, str | None]:
    """The plan item for one catalogued file, or (None, why it is skipped); (None, None) for files
    the plan does not concern (errors, embeddings, unknown files)."""
    kind = f.get("kind")
    if f.get("error") or kind not in CONVERTIBLE_KINDS:
        return None, None
    if f.get("verdict") in ("dangerous", "suspicious"):
        return None, f"scan verdict {f['verdict']}: not converted (delete it)"
    if f.get("is_dir"):
        return None, "diffusers folder: not converted in batch"
    rep = f.get("report") or {}
    advice = rep.get("advice") or {}
    precision = f.get("precision")
    size = f["size"]
    mode = "train" if in_folders(f["path"], train_folders) else "generate"
    if mode == "generate":
        components = rep.get("components") or {}
        weights = weight_dtypes({part: (c.get("dtypes") or {}) for part, c in components.items()})
        dtype = generating_dtype(weights) or "keep"
        ema = "drop" if f.get("ema") else "keep"
        gen = advice.get("generate") or {}
        after = gen.get("bytes_after") if dtype == "fp16" else None
        if after is None:
            after = size - f.get("junk_bytes", 0) - (_ema_bytes(rep) if ema == "drop" else 0)
        target = f"{precision if dtype == 'keep' else dtype} safetensors" + (", no EMA" if f.get("ema") else "")
    else:
        dtype = "keep"
        ema = "keep"
        train = advice.get("train") or {}
        after = train.get("bytes_after") if precision == "fp32" else None
        if after is None:
            after = size - f.get("junk_bytes", 0)
        target = f"{precision or 'same precision'} safetensors" + (" with EMA" if f.get("ema") else "") + " (training)"
    after = int(min(after, size))
    is_pickle = f.get("format") != "safetensors"
    if not is_pickle and size - after < max(size * MIN_SAVING, 1):
        return None, "already optimal"
    src = Path(f["path"])
    dst = src.with_name(new_stem(stem_of(src.name), dtype, drop_ema=ema == "drop") + ".safetensors")
    if dst != src and dst.exists():
        return None, f"{dst.name} already exists beside it"
    if f.get("junk_bytes"):
        target += ", junk dropped"
    return {
        "file_id": f["id"],
        "src": str(src),
        "dst": str(dst),
        "root": f["root"],
        "name": f["name"],
        "kind": kind,
        "family": f.get("family"),
        "mode": mode,
        "dtype": dtype,
        "ema": ema,
        "target": target,
        "format": f.get("format"),
        "precision": precision,
        "src_size": size,
        "src_mtime_ns": f["mtime_ns"],
        "before_bytes": size,
        "after_bytes": after,
        "saves_bytes": size - after,
    }, None


def _ema_bytes(rep: dict[str, Any]) -> int:
    return int(((rep.get("components") or {}).get("ema") or {}).get("bytes") or 0)


def compute_plan(catalog: Catalog, train_folders: list[str] | None = None) -> Plan:
    """The savings plan for the whole catalog (``train_folders``: None = the ones stored)."""
    folders = catalog.get_meta("train_folders", []) if train_folders is None else train_folders
    plan = Plan()
    for f in catalog.all_files():
        item, why = plan_file(f, folders)
        if item is not None:
            plan.items.append(item)
        elif why:
            plan.skipped.append({"path": f["path"], "reason": why})
    plan.items.sort(key=lambda i: (-i["saves_bytes"], i["src"]))
    return plan
