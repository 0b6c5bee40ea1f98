"""``library report``: totals, problems and duplicates of the catalog."""

from __future__ import annotations

import os
from collections import defaultdict
from typing import Any

from sdmodel.i18n import N_, Msg, msg_n
from sdmodel.library.catalog import Catalog
from sdmodel.library.placing import PLACEMENT_PROBLEMS, CompanionIndex, placement_problems
from sdmodel.library.walk import expected_kinds
from sdmodel.quant.sketch import Sketch
from sdmodel.sidecars import is_config, needs_config, stem_of

PICKLE_FORMATS = frozenset({"torch-zip", "torch-legacy"})

# Titles and levels are N_-marked: shown with tr() (CLI, web page), English in JSON.
PROBLEM_TITLES = {
    "dangerous": N_("dangerous file (malicious pickle)"),
    "suspicious": N_("suspicious file"),
    "unreadable": N_("cannot be read"),
    "broken_clip": N_("broken CLIP position ids"),
    "sd2_without_yaml": N_("SD2 checkpoint without its .yaml"),
    "wrong_folder": N_("in the wrong folder for its kind"),
    "ckpt_twin": N_("pickle checkpoint with a safetensors twin"),
    "unrecognized": N_("not recognised as a model"),
    **PLACEMENT_PROBLEMS,
}
SEVERITY = {
    "dangerous": 0,
    "suspicious": 1,
    "unreadable": 2,
    "broken_clip": 3,
    "sd2_without_yaml": 3,
    "wrong_folder": 4,
    "ckpt_twin": 4,
    "unrecognized": 5,
    "misplaced": 4,
    "missing_companions": 4,
}

DUPLICATE_LEVELS = {
    "bytes": N_("the same bytes (SHA256)"),
    "tensors": N_("the same tensors with another header or metadata (AutoV3)"),
    "model": N_("the same model in another format or precision (content fingerprint)"),
}


def _add(totals: dict[str, dict[str, int]], key: str | None, size: int) -> None:
    t = totals.setdefault(key or "-", {"files": 0, "bytes": 0})
    t["files"] += 1
    t["bytes"] += size


def _sorted(totals: dict[str, dict[str, int]]) -> list[dict[str, Any]]:
    return [{"name": k, **v} for k, v in sorted(totals.items(), key=lambda kv: (-kv[1]["bytes"], kv[0]))]


def problems_of(f: dict[str, Any], names_in_dir: set[str]) -> list[dict[str, Any]]:
    """The problems of one catalogued file (``names_in_dir``: the model names beside it).
    ``message`` is a Msg (or the stored error text): English in JSON, translated where shown."""
    out: list[dict[str, Any]] = []

    def add(code: str, message: str | Msg) -> None:
        out.append({"code": code, "path": f["path"], "message": message})

    verdict = f.get("verdict")
    if verdict in ("dangerous", "suspicious"):
        findings = (f.get("scan") or {}).get("findings") or []
        findings = sorted(findings, key=lambda x: SEVERITY.get(x.get("severity"), 9))
        what = findings[0].get("message", "") if findings else ""
        if what:
            add(verdict, Msg("scan verdict {verdict}: {finding}; do not load it", verdict=verdict, finding=what))
        else:
            add(verdict, Msg("scan verdict {verdict}; do not load it", verdict=verdict))
    if f.get("error"):
        add("unreadable", f["error"])
        return out
    kind = f.get("kind")
    rep = f.get("report") or {}
    if f.get("clip") == "broken":
        broken = (rep.get("clip_position_ids") or {}).get("broken") or []
        add(
            "broken_clip",
            msg_n(
                "CLIP position ids are broken at {n} position; 'sdmodel convert --fix-clip' restores 0..76",
                "CLIP position ids are broken at {n} positions; 'sdmodel convert --fix-clip' restores 0..76",
                len(broken),
                n=len(broken),
            ),
        )
    if needs_config(kind, f.get("family")):
        sidecars = f.get("sidecars") or []
        if not any(is_config(s) for s in sidecars):
            cfg = rep.get("a1111_config")
            yaml = f"{stem_of(f['name'])}.yaml"
            if cfg:
                add("sd2_without_yaml", Msg("A1111 needs {yaml} beside it (a copy of {config})", yaml=yaml, config=cfg))
            else:
                add(
                    "sd2_without_yaml",
                    Msg(
                        "A1111 needs {yaml} beside it (v2-inference-v.yaml for 768-v models, v2-inference.yaml "
                        "for 512 epsilon models; 'sdmodel convert --prediction v|epsilon' writes it)",
                        yaml=yaml,
                    ),
                )
    wanted = expected_kinds(f.get("category") or "")
    is_vae_sidecar = kind == "vae" and ".vae." in f["name"].lower()
    if wanted is not None and kind and kind != "unknown" and kind not in wanted and not is_vae_sidecar:
        add(
            "wrong_folder",
            Msg(
                "{kind} file in {folder}/ (that folder is for {kinds})",
                kind=kind,
                folder=f["category"],
                kinds=", ".join(sorted(wanted)),
            ),
        )
    if f.get("format") in PICKLE_FORMATS:
        stem = stem_of(f["name"])
        twins = sorted(n for n in names_in_dir if stem_of(n) == stem and n.lower().endswith((".safetensors", ".sft")))
        if twins:
            add("ckpt_twin", Msg("{twin} beside it holds the same model safely; the pickle can go", twin=twins[0]))
    if kind in (None, "unknown"):
        add("unrecognized", Msg("no known model layout (kept in the catalog, not converted)"))
    return out


def _same_model_key(files: list[dict[str, Any]]) -> dict[int, str]:
    """File id -> a key shared by every file linked through either content fingerprint (fp16- or
    bf16-rounded): an fp16 and a bf16 copy of one fp32 model meet through the fp32 file; or
    through their precision sketches: an fp8-scaled or Q8_0 copy meets its bf16 original."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    sketches: dict[str, list[tuple[str, Sketch]]] = {}
    for f in files:
        prints = [
            f"fp16:{f['fingerprint']}" if f.get("fingerprint") else None,
            f"bf16:{f['fingerprint_bf16']}" if f.get("fingerprint_bf16") else None,
        ]
        linked = [p for p in prints if p]
        for p in linked[1:]:
            parent[find(p)] = find(linked[0])
        if linked and f.get("sketch"):
            sk = Sketch.decode(f["sketch"])
            sketches.setdefault(sk.key, []).append((linked[0], sk))
    # fp8 and 8-bit block copies: same sampled weights within both copies' rounding (quant.sketch).
    for group in sketches.values():
        for i, (pa, a) in enumerate(group):
            for pb, b in group[i + 1 :]:
                if find(pa) != find(pb) and a.same_model(b):
                    parent[find(pb)] = find(pa)
    return {f["id"]: find(f"fp16:{f['fingerprint']}") for f in files if f.get("fingerprint")}


def duplicate_groups(files: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Groups of files holding the same thing, at three levels: ``bytes`` (same SHA256),
    ``tensors`` (same AutoV3 but not the same bytes), ``model`` (same content fingerprint but not
    the same tensors: another format or precision). Needs ``scan --hash``."""
    groups: list[dict[str, Any]] = []
    model_key = _same_model_key(files)
    levels = (
        ("bytes", lambda f: f.get("sha256"), "sha256"),
        ("tensors", lambda f: f.get("autov3"), "autov3"),
        ("model", lambda f: model_key.get(f["id"]), None),
    )
    finer = None
    for level, key_of, name in levels:
        by_key: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for f in files:
            key = key_of(f)
            if key:
                by_key[key].append(f)
        for value, members in sorted(by_key.items()):
            if len(members) < 2:
                continue
            # Report a coarser level only if it says more than the finer one already did.
            if finer and len({m.get(finer) or m["path"] for m in members}) < 2:
                continue
            members.sort(key=lambda m: m["path"])
            sizes = [m["size"] for m in members]
            groups.append(
                {
                    "level": level,
                    "key": value.split(":", 1)[-1],
                    "files": [m["path"] for m in members],
                    "ids": [m["id"] for m in members],
                    "bytes": sum(sizes),
                    "wasted_bytes": sum(sizes) - max(sizes) if level == "bytes" else sum(sizes) - min(sizes),
                    "kind": members[0].get("kind"),
                    "family": members[0].get("family"),
                }
            )
        finer = name
    return groups


def _placement_problems(files: list[dict[str, Any]], found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Wrong folder for the UI and missing companions (library.placing); a file already reported
    in the wrong folder for its kind is not reported twice."""
    index = CompanionIndex.of(files)
    wrong = {p["path"] for p in found if p["code"] == "wrong_folder"}
    out = [p for f in files for p in placement_problems(f, index)]
    return [p for p in out if not (p["code"] == "misplaced" and p["path"] in wrong)]


def build_report(catalog: Catalog) -> dict[str, Any]:
    """Everything ``library report`` shows, as JSON-ready data."""
    files = list(catalog.all_files())
    totals: dict[str, dict[str, Any]] = {"folder": {}, "kind": {}, "family": {}, "precision": {}, "format": {}}
    by_dir: dict[str, set[str]] = defaultdict(set)
    for f in files:
        by_dir[os.path.dirname(f["path"])].add(f["name"])
    problems: list[dict[str, Any]] = []
    total_bytes = 0
    hashed = 0
    for f in files:
        total_bytes += f["size"]
        hashed += bool(f.get("sha256"))
        _add(totals["folder"], f["folder"], f["size"])
        _add(totals["kind"], f.get("kind") or ("error" if f.get("error") else None), f["size"])
        _add(totals["family"], f.get("family"), f["size"])
        _add(totals["precision"], f.get("precision"), f["size"])
        _add(totals["format"], f.get("format"), f["size"])
        problems.extend(problems_of(f, by_dir[os.path.dirname(f["path"])]))
    problems.extend(_placement_problems(files, problems))
    problems.sort(key=lambda p: (SEVERITY.get(p["code"], 9), p["path"]))
    duplicates = duplicate_groups(files)
    return {
        "catalog": str(catalog.path),
        "roots": [str(r) for r in catalog.roots()],
        "files": len(files),
        "bytes": total_bytes,
        "hashed_files": hashed,
        "totals": {k: _sorted(v) for k, v in totals.items()},
        "problems": problems,
        "duplicates": duplicates,
        "duplicate_bytes": sum(g["wasted_bytes"] for g in duplicates if g["level"] != "model"),
    }
