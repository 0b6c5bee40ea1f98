"""Baking LoRAs into a model: a plan step (sdmodel.plan) that gives every changed weight a ``fix``
computing ``W + weight * delta`` in float32 (sdmodel.lora.delta); the engine casts once, at the end,
to the step's output dtype. LoRA files become plan sources, read one target at a time."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sdmodel.errors import ConversionError
from sdmodel.formats.base import TensorInfo, TensorSource
from sdmodel.i18n import Msg
from sdmodel.lora.check import match_targets
from sdmodel.lora.delta import UNSUPPORTED, merge_into
from sdmodel.lora.keys import Target, parse, read_peft_alphas
from sdmodel.lora.modelmap import Dest, ModelMap
from sdmodel.lora.names import locate
from sdmodel.plan import Plan, Step

Fix = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class LoraSpec:
    """A LoRA to bake in and its strength (``path:0.8`` on the command line; 1.0 when omitted)."""

    path: Path
    weight: float = 1.0

    def __post_init__(self) -> None:
        if not np.isfinite(self.weight):
            raise ConversionError(
                Msg("{path}: LoRA weight must be a finite number, not {weight}", path=self.path, weight=self.weight)
            )

    @classmethod
    def parse(cls, text: str) -> LoraSpec:
        """``file.safetensors`` or ``file.safetensors:0.7`` (a path may itself contain colons)."""
        head, sep, tail = text.rpartition(":")
        if sep and head:
            try:
                return cls(Path(head), float(tail))
            except ValueError:
                pass
        return cls(Path(text), 1.0)


@dataclass(frozen=True)
class _Patch:
    source: str  # plan source name of the LoRA file
    target: Target
    weight: float
    dest: Dest


def _patched(previous: Fix | None, patches: list[_Patch], plan: Plan) -> Fix:
    def fix(a: np.ndarray) -> np.ndarray:
        if previous is not None:
            a = previous(a)
        w = np.array(a, dtype=np.float32)  # a copy: the source may be a read-only map
        for p in patches:
            read = plan.sources[p.source].read
            if p.dest.rows is None:
                merge_into(w, p.target, read, p.weight, p.dest.swap)
            else:
                start, count = p.dest.rows
                part = np.ascontiguousarray(w[start : start + count])
                w[start : start + count] = merge_into(part, p.target, read, p.weight, p.dest.swap)
        return w

    return fix


def _add_bias(
    patches: dict[str, list[_Patch]],
    infos: dict[str, TensorInfo],
    source: str,
    target: Target,
    weight: float,
    dest: Dest,
    path: Path,
) -> None:
    """A full-diff target's ``diff_b`` is added to the bias beside the weight (ComfyUI ``comfy/lora.py``)."""
    bias = dest.key[: -len(".weight")] + ".bias" if dest.key.endswith(".weight") else None
    diff_b = target.tensors["diff_b"]
    if bias is None or bias not in infos or dest.rows is not None or dest.swap:
        raise ConversionError(
            Msg(
                "{path}: {diff_b} changes a bias the model does not have beside {key}",
                path=path,
                diff_b=diff_b,
                key=dest.key,
            )
        )
    patches.setdefault(bias, []).append(
        _Patch(source, Target(target.stem, "full", {"diff": diff_b}), weight, Dest(bias))
    )


def apply_loras(
    plan: Plan, loras: Sequence[tuple[TensorSource, float]], family: str | None, allow_missing: bool = False
) -> None:
    """Merge each LoRA at its weight into the plan's tensors (matched by output name, so after
    ``--ema only`` the EMA weights are the ones changed). Every target must land on a weight of its
    shape, or ``allow_missing`` lets the missing ones go with a note; mismatched shapes and
    algorithms we cannot merge (OFT, BOFT, GLoRA, IA3) always refuse."""
    steps: dict[str, Step] = {s.out: s for s in plan.steps}
    infos = {s.out: TensorInfo(s.out, s.dtype, s.shape) for s in plan.steps}
    mm = ModelMap(infos, family)
    patches: dict[str, list[_Patch]] = {}
    for i, (source, weight) in enumerate(loras):
        name = f"lora{i + 1}"
        plan.sources[name] = source
        keys = parse(source.tensors)
        read_peft_alphas(keys, source.metadata)
        if not keys.targets:
            raise ConversionError(Msg("{path}: not a LoRA (no LoRA target in the file)", path=source.path))
        odd = sorted({t.algorithm for t in keys.targets.values() if t.algorithm in UNSUPPORTED})
        if odd:
            raise ConversionError(
                Msg("{path}: merging {odd} is not supported", path=source.path, odd=", ".join(a.upper() for a in odd))
            )
        checks = match_targets(keys.targets, source.tensors, mm)
        bad = [c for c in checks if c.status == "mismatch"]
        if bad:
            c = bad[0]
            raise ConversionError(
                Msg(
                    "{path}: {bad_count} targets do not fit the model, e.g. {stem} changes {value}, the model's {model_key} is {value2}",
                    path=source.path,
                    bad_count=len(bad),
                    stem=c.stem,
                    value=list(c.lora_shape or ()),
                    model_key=c.model_key,
                    value2=list(c.model_shape or ()),
                )
            )
        missing = [c for c in checks if c.status == "missing"]
        if missing and not allow_missing:
            raise ConversionError(
                Msg(
                    "{path}: {missing_count} of {checks_count} targets are not in the model, e.g. {stem} (sdmodel lora check shows them; --allow-missing merges the others)",
                    path=source.path,
                    missing_count=len(missing),
                    checks_count=len(checks),
                    stem=missing[0].stem,
                )
            )
        for c in checks:
            if c.status != "found" or c.model_key is None:
                continue
            dest = mm.get(locate(c.stem).key)
            assert dest is not None
            target = keys.targets[c.stem]
            patches.setdefault(c.model_key, []).append(_Patch(name, target, weight, dest))
            if "diff_b" in target.tensors:
                _add_bias(patches, infos, name, target, weight, dest, source.path)
        done = len(checks) - len(missing)
        fields: dict[str, Any] = {"file": source.path.name, "weight": f"{weight:g}", "done": done, "total": len(checks)}
        if missing:
            note = Msg(
                "LoRA: {file} at {weight}: {done} of {total} targets merged; {missing} not in the model "
                "(--allow-missing), e.g. {example}",
                missing=len(missing),
                example=missing[0].stem,
                **fields,
            )
        else:
            note = Msg("LoRA: {file} at {weight}: {done} of {total} targets merged", **fields)
        plan.notes.append(note)
    for key, group in patches.items():
        step = steps[key]
        step.fix = _patched(step.fix, group, plan)
        step.fix_bytes = 4 * math.prod(step.shape)  # the float32 copy the LoRAs are added to
    if patches and any(s.out.startswith("model_ema.") for s in plan.steps):
        plan.notes.append(Msg("LoRA: the EMA weights (model_ema.*) are left as they are (--ema only merges into them)"))
    if patches:
        plan.tag("lora")
        merged = [{"file": src.path.name, "weight": w} for src, w in loras]
        plan.metadata["sdmodel.merged_loras"] = json.dumps(merged)
