"""``sdmodel lora check LORA MODEL``: does every target of a LoRA land on a model weight of the
right shape? What a UI reports as ``lora key not loaded`` are the missing targets here."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from sdmodel.formats import open_model
from sdmodel.formats.base import TensorInfo, TensorSource
from sdmodel.i18n import Join, Msg, msg_n
from sdmodel.identify import family_label, identify
from sdmodel.lora.info import COMPONENT_LABELS, describe
from sdmodel.lora.keys import Target, delta_shape, parse
from sdmodel.lora.modelmap import Dest, ModelMap
from sdmodel.lora.names import locate

Status = Literal["found", "missing", "mismatch"]
EXAMPLES = 10  # missing / mismatched targets listed


@dataclass
class TargetCheck:
    stem: str
    component: str
    status: Status
    model_key: str | None = None
    rows: tuple[int, int] | None = None
    lora_shape: tuple[int, ...] | None = None
    model_shape: tuple[int, ...] | None = None


@dataclass
class CheckResult:
    lora: str
    model: str
    lora_family: str | None
    model_family: str | None
    model_kind: str
    targets: int
    found: int
    missing: int
    mismatched: int
    unused_keys: int  # LoRA tensors that belong to no target
    by_part: dict[str, dict[str, int]]
    verdict: Msg
    examples_missing: list[str] = field(default_factory=list)
    examples_mismatched: list[dict[str, Any]] = field(default_factory=list)
    remote: dict[str, dict[str, int]] | None = None  # bytes and requests per remote side (CLI)

    @property
    def exit_code(self) -> int:
        return 0 if self.targets and self.found == self.targets else 1

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["verdict"] = str(self.verdict)
        if self.remote is None:
            del d["remote"]
        return d


def fits(dest: Dest, shape: tuple[int, ...] | None, model: TensorInfo) -> bool:
    """A change of ``shape`` applies to the model tensor (or its rows): same output rows and the
    same number of values (a linear LoRA on a 1x1 conv is fine, as loaders reshape)."""
    if shape is None:
        return True
    rows = dest.rows[1] if dest.rows else model.shape[0]
    per_row = math.prod(model.shape[1:])
    return shape[0] == rows and math.prod(shape) == rows * per_row


def match_targets(targets: dict[str, Target], lora: dict[str, TensorInfo], mm: ModelMap) -> list[TargetCheck]:
    out = []
    for stem, t in targets.items():
        loc = locate(stem)
        dest = mm.get(loc.key)
        shape = delta_shape(t, lora)
        if dest is None:
            out.append(TargetCheck(stem, loc.component, "missing", lora_shape=shape))
            continue
        info = mm.tensors[dest.key]
        status: Status = "found" if fits(dest, shape, info) else "mismatch"
        out.append(TargetCheck(stem, loc.component, status, dest.key, dest.rows, shape, info.shape))
    return out


def _label(family: str | None) -> str | Msg:
    return family_label(family, None) if family else Msg("an unknown family")


def verdict(checks: list[TargetCheck], lora_family: str | None, model_family: str | None, mm: ModelMap) -> Msg:
    total = len(checks)
    if not total:
        return Msg("not a LoRA: no target found in the file")
    missing = [c for c in checks if c.status == "missing"]
    bad = [c for c in checks if c.status == "mismatch"]
    if not missing and not bad:
        return Msg("applies fully to this model")
    if lora_family and model_family and lora_family != model_family and len(missing) + len(bad) > total // 2:
        return Msg("for {lora}, this is {model}", lora=_label(lora_family), model=_label(model_family))
    parts: list[Msg] = []
    if missing:
        by: dict[str, int] = {}
        for c in missing:
            by[c.component] = by.get(c.component, 0) + 1
        why: list[Msg] = []
        for comp, n in by.items():
            label = Msg(COMPONENT_LABELS.get(comp, comp))
            if comp not in mm.components:
                why.append(Msg("{part} not in this model", part=label))
            else:
                why.append(Msg("{n} in the {part}", n=n, part=label))
        parts.append(
            msg_n(
                "{n} of {total} target missing: {why}",
                "{n} of {total} targets missing: {why}",
                total,
                n=len(missing),
                total=total,
                why=Join(tuple(why)),
            )
        )
    if bad:
        parts.append(
            msg_n(
                "{n} of {total} target has another shape than the model's weight",
                "{n} of {total} targets have another shape than the model's weight",
                total,
                n=len(bad),
                total=total,
            )
        )
    return parts[0] if len(parts) == 1 else Msg("{missing}; {mismatched}", missing=parts[0], mismatched=parts[1])


@dataclass
class ModelTargets:
    """A model opened for checking: its family and its LoRA target map (built once, reused for
    every LoRA checked against it)."""

    path: Path
    family: str | None
    kind: str
    map: ModelMap

    @classmethod
    def of(cls, model: TensorSource) -> ModelTargets:
        ident = identify(model)
        return cls(model.path, ident.family, ident.kind, ModelMap(model.tensors, ident.family))


def check_sources(lora: TensorSource, model: TensorSource | ModelTargets) -> CheckResult:
    """Check an open LoRA against an open model (or one prepared with ``ModelTargets.of``)."""
    target = model if isinstance(model, ModelTargets) else ModelTargets.of(model)
    mm = target.map
    keys = parse(lora.tensors)
    checks = match_targets(keys.targets, lora.tensors, mm)
    applies = bool(checks) and all(c.status == "found" for c in checks)
    # The LoRA's own family only matters to explain a misfit (and costs a rule walk).
    info = None if applies else describe(lora, keys, read_alphas=False)
    lora_family = info.family if info else (target.family if applies else None)
    by_part: dict[str, dict[str, int]] = {}
    for c in checks:
        label = COMPONENT_LABELS.get(c.component, c.component)
        row = by_part.setdefault(label, {"found": 0, "missing": 0, "mismatch": 0})
        row[c.status] += 1
    return CheckResult(
        lora=str(lora.path),
        model=str(target.path),
        lora_family=lora_family,
        model_family=target.family,
        model_kind=target.kind,
        targets=len(checks),
        found=sum(c.status == "found" for c in checks),
        missing=sum(c.status == "missing" for c in checks),
        mismatched=sum(c.status == "mismatch" for c in checks),
        unused_keys=len(keys.other),
        by_part=by_part,
        verdict=verdict(checks, lora_family, target.family, mm),
        examples_missing=[c.stem for c in checks if c.status == "missing"][:EXAMPLES],
        examples_mismatched=[
            {"target": c.stem, "model_key": c.model_key, "lora_shape": c.lora_shape, "model_shape": c.model_shape}
            for c in checks
            if c.status == "mismatch"
        ][:EXAMPLES],
    )


def check(lora: str | Path, model: str | Path) -> CheckResult:
    """Check a LoRA file against a model file (any format sdmodel reads). Raises ModelReadError."""
    with open_model(lora) as lsrc, open_model(model) as msrc:
        return check_sources(lsrc, msrc)
