"""Compare ``sdmodel scan`` with picklescan, modelscan and fickling on the adversarial corpus.

    .venv/bin/python bench/scan_compare.py [--out bench/_work/scan_compare.md] [--detail] [--section 43]

Creates its own virtual env under bench/_work/venv (``pip install picklescan modelscan fickling``;
the table says when one cannot be installed), writes the corpus of tests/security_corpus.py into
bench/_work/corpus, runs every tool on every file (each in its own process, with a timeout) and
prints a Markdown table per SECURITY.md case plus totals. Then it times a scan of a full-size
SD1.5 checkpoint with EMA (7.7 GB torch zip, storages written sparse) to show that only the pickle
is read.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
import venv
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sdmodel.security.scanner import scan  # noqa: E402
from tests.security_corpus import (  # noqa: E402
    CASES,
    DANGEROUS,
    ERROR,
    NOTES,
    PARSES,
    SAFE,
    Member,
    ckpt_pickle,
    odict,
    s,
    tensor,
    verdict_matches,
    write_zip,
)

WORK = ROOT / "bench" / "_work"
VENV = WORK / "venv"
TOOLS = ("picklescan", "modelscan", "fickling")
TIMEOUT = 120

# fickling's CLI only reads raw pickles; this driver applies the dispatch of fickling's own
# Hugging Face scanner (zip -> scan_zip_archive, tar/7z/numpy -> skipped, else scan_file) without
# its torch-only ``polyglot`` module.
FICKLING_DRIVER = r"""
import json, sys, zipfile
from fickling.analysis import Severity
from fickling.loader import scan_file, scan_zip_archive
path = sys.argv[1]
head = open(path, 'rb').read(512)
if head[:6] == b'7z\xbc\xaf\x27\x1c' or head[257:262] == b'ustar' or head[:6] == b'\x93NUMPY':
    print(json.dumps({'verdict': 'skipped'})); sys.exit()
if zipfile.is_zipfile(path):
    results = list(scan_zip_archive(path, graceful=True).values())
    if not results:
        print(json.dumps({'verdict': 'skipped'})); sys.exit()
else:
    results = [scan_file(path, graceful=True)]
sev = max((r.severity for r in results), default=Severity.LIKELY_SAFE)
errors = [e for r in results for e in r.errors]
if sev >= Severity.LIKELY_UNSAFE:
    v = 'dangerous'
elif sev > Severity.LIKELY_SAFE:
    v = 'suspicious'
else:
    v = 'error' if errors else 'safe'
print(json.dumps({'verdict': v, 'severity': sev.name}))
"""


def ensure_venv() -> dict[str, str]:
    """The scanners' virtual env; returns {tool: problem} for tools that could not be installed."""
    py = VENV / "bin" / "python"
    if not py.exists():
        venv.create(VENV, with_pip=True)
    problems: dict[str, str] = {}
    for tool, extra in (("picklescan", []), ("modelscan", []), ("fickling", ["typing_extensions"])):
        if subprocess.run([str(py), "-c", f"import {tool}"], capture_output=True).returncode == 0:
            continue
        r = subprocess.run([str(py), "-m", "pip", "install", "-q", tool, *extra], capture_output=True, text=True)
        if r.returncode != 0 or subprocess.run([str(py), "-c", f"import {tool}"], capture_output=True).returncode:
            problems[tool] = "not installable: " + (r.stderr.strip().splitlines() or ["?"])[-1][:100]
    return problems


def versions() -> dict[str, str]:
    out = {}
    py = str(VENV / "bin" / "python")
    for tool in TOOLS:
        r = subprocess.run(
            [py, "-c", f"import importlib.metadata as m; print(m.version('{tool}'))"], capture_output=True, text=True
        )
        out[tool] = r.stdout.strip() or "?"
    return out


def run_tool(tool: str, path: Path) -> str:
    """One tool's verdict on one file: safe/suspicious/dangerous/error/skipped/timeout."""
    bindir = VENV / "bin"
    try:
        if tool == "picklescan":
            r = subprocess.run(
                [str(bindir / "picklescan"), "-p", str(path)], capture_output=True, text=True, timeout=TIMEOUT
            )
            out = r.stdout + r.stderr
            scanned = re.search(r"Scanned files: (\d+)", out)
            infected = re.search(r"Infected files: (\d+)", out)
            suspicious = re.search(r"Suspicious globals: (\d+)", out)
            if (infected and int(infected.group(1))) or r.returncode == 1:
                return "dangerous"
            if r.returncode == 2 or not scanned:
                return "error"
            if int(scanned.group(1)) == 0:
                return "skipped"
            return "suspicious" if suspicious and int(suspicious.group(1)) else "safe"
        if tool == "modelscan":
            r = subprocess.run(
                [str(bindir / "modelscan"), "-p", str(path)], capture_output=True, text=True, timeout=TIMEOUT
            )
            out = r.stdout + r.stderr
            if r.returncode == 1:
                return "dangerous" if re.search(r"Severity: (CRITICAL|HIGH)", out) else "suspicious"
            if r.returncode == 3:
                return "skipped"
            if r.returncode != 0 or "--- Errors ---" in out:
                return "error"
            return "safe"
        r = subprocess.run(
            [str(bindir / "python"), "-c", FICKLING_DRIVER, str(path)], capture_output=True, text=True, timeout=TIMEOUT
        )
        try:
            return json.loads(r.stdout.strip().splitlines()[-1])["verdict"]
        except (IndexError, ValueError, KeyError):
            return "crash"
    except subprocess.TimeoutExpired:
        return "timeout"


def caught(expect: str, verdict: str) -> bool:
    """Whether a tool's verdict meets the expectation (skipped = said nothing = safe)."""
    v = {"skipped": "safe", "timeout": "error", "crash": "error"}.get(verdict, verdict)
    return verdict_matches(expect, v)


def compare(detail: bool, problems: dict[str, str], cases: list) -> list[str]:
    corpus = WORK / "corpus"
    if corpus.exists():
        for p in sorted(corpus.rglob("*"), reverse=True):
            p.unlink() if p.is_file() else p.rmdir()
    corpus.mkdir(parents=True, exist_ok=True)
    files = [(c, c.write(corpus)) for c in cases]
    tools = [t for t in TOOLS if t not in problems]
    results: dict[tuple[str, str], str] = {}
    for c, p in files:
        results[(c.id, "sdmodel")] = scan(p).verdict
    jobs = [(t, c.id, p) for c, p in files for t in tools]
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        for (t, cid, _), v in zip(jobs, pool.map(lambda j: run_tool(j[0], j[2]), jobs), strict=True):
            results[(cid, t)] = v
    for t in problems:
        for c, _ in files:
            results[(c.id, t)] = "n/a"
    names = ("sdmodel", *TOOLS)
    lines = []

    def mark(expect: str, v: str) -> str:
        return v if v == "n/a" else (v if caught(expect, v) else f"**{v}** ✗")

    if detail:
        lines += ["| case | § | expected | " + " | ".join(names) + " |", "|" + "---|" * (3 + len(names))]
        for c, _ in files:
            row = [mark(c.expect, results[(c.id, n)]) for n in names]
            lines.append(f"| {c.id} | {c.section or '-'} | {c.expect} | " + " | ".join(row) + " |")
        lines.append("")
    # One row per SECURITY.md section ("other": honest safetensors/npy/pickle files and the yaml
    # sidecars): cases meeting the expectation / cases.
    groups: dict[str, list] = defaultdict(list)
    for c, _ in files:
        groups[f"{c.section:02d}" if c.section else "other"].append(c)
    lines += ["| § | cases | expected | " + " | ".join(names) + " |", "|" + "---|" * (3 + len(names))]
    for key in sorted(groups):
        cs = groups[key]
        exp = "/".join(sorted({c.expect for c in cs}))
        cells = []
        for n in names:
            if results[(cs[0].id, n)] == "n/a":
                cells.append("n/a")
                continue
            ok = sum(caught(c.expect, results[(c.id, n)]) for c in cs)
            misses = [c.id for c in cs if not caught(c.expect, results[(c.id, n)])]
            cell = f"{ok}/{len(cs)}"
            if misses and len(misses) <= 2:
                cell += " (misses " + ", ".join(m.split("-", 1)[1] for m in misses) + ")"
            cells.append(cell if ok == len(cs) else f"**{cell}**")
        lines.append(f"| {key} | {len(cs)} | {exp} | " + " | ".join(cells) + " |")
    lines.append("")
    # Totals.
    dangerous = [c for c, _ in files if c.expect == DANGEROUS]
    not_safe = [c for c, _ in files if c.expect not in (SAFE, NOTES, PARSES)]
    honest = [c for c, _ in files if c.expect in (SAFE, NOTES)]
    unscannable = [c for c, _ in files if c.expect == ERROR]
    lines += ["| total | " + " | ".join(names) + " |", "|" + "---|" * (1 + len(names))]

    def total(label: str, cases: list, pred: object) -> None:
        if not cases:
            return
        row = []
        for n in names:
            if results[(cases[0].id, n)] == "n/a":
                row.append("n/a")
            else:
                row.append(f"{sum(pred(c, results[(c.id, n)]) for c in cases)}/{len(cases)}")  # type: ignore[operator]
        lines.append(f"| {label} | " + " | ".join(row) + " |")

    total("dangerous files reported dangerous", dangerous, lambda c, v: v == "dangerous")
    total("dangerous files flagged at all (not safe)", dangerous, lambda c, v: v not in ("safe", "skipped"))
    total("must-not-be-safe files not called safe", not_safe, lambda c, v: v not in ("safe", "skipped"))
    total("unscannable files reported as errors", unscannable, lambda c, v: v in ("error", "crash", "timeout"))
    total("honest files flagged (false alarms)", honest, lambda c, v: v not in ("safe",))
    return lines


def build_big(path: Path) -> Path:
    """A full-size SD1.5 checkpoint with EMA (fp32, torch zip, Zip64) whose storages are holes."""
    from tests.builders import layout, with_ema

    lay = with_ema(layout("sd15"))
    stypes = {
        "F32": ("FloatStorage", 4),
        "F16": ("HalfStorage", 2),
        "I64": ("LongStorage", 8),
        "I32": ("IntStorage", 4),
    }
    pairs, members = [], []
    arch = path.stem
    for n, (name, (shape, dtype)) in enumerate(lay.items()):
        stype, item = stypes[dtype]
        numel = 1
        for d in shape:
            numel *= d
        pairs.append((s(name), tensor(str(n), stype, numel, tuple(shape))))
        members.append(Member(f"{arch}/data/{n}", sparse_size=numel * item))
    data = ckpt_pickle(odict(pairs))
    recs = [
        Member(f"{arch}/data.pkl", data),
        Member(f"{arch}/byteorder", b"little"),
        *members,
        Member(f"{arch}/version", b"3\n"),
    ]
    return write_zip(path, recs)


def big_timing(problems: dict[str, str]) -> list[str]:
    path = WORK / "sd15-ema-full.ckpt"
    if not path.exists():
        build_big(path)
    size = path.stat().st_size
    times = []
    for _ in range(3):
        t = time.perf_counter()
        report = scan(path)
        times.append(time.perf_counter() - t)
    lines = [
        f"Full-size SD1.5 + EMA checkpoint: {size / 1e9:.2f} GB torch zip (storages sparse), "
        f"verdict `{report.verdict}`.",
        "",
        "| tool | wall time |",
        "|---|---|",
        f"| sdmodel scan (in process, best of 3) | {min(times) * 1000:.0f} ms |",
    ]
    for tool in TOOLS:
        if tool in problems:
            continue
        t = time.perf_counter()
        v = run_tool(tool, path)
        lines.append(f"| {tool} (CLI process, verdict {v}) | {time.perf_counter() - t:.2f} s |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, help="also write the Markdown to this file")
    ap.add_argument("--detail", action="store_true", help="one row per corpus file as well")
    ap.add_argument("--no-big", action="store_true", help="skip the 7.7 GB timing")
    ap.add_argument("--section", type=int, help="only the corpus cases of this section (43: loader differentials)")
    args = ap.parse_args()
    cases = [c for c in CASES if args.section is None or c.section == args.section]
    WORK.mkdir(parents=True, exist_ok=True)
    problems = ensure_venv()
    vers = versions()
    lines = [
        f"Corpus: {len(cases)} files from tests/security_corpus.py (SECURITY.md section 6 plus honest files). "
        "Tools: " + ", ".join(f"{t} {vers[t]}" if t not in problems else f"{t}: {problems[t]}" for t in TOOLS) + ".",
        "",
        "Cells: cases meeting the expectation / cases (**bold** = not all). `dangerous` must be reported "
        "dangerous; `not-safe` anything but safe; `error` unscannable; `safe`/`notes` no alarm; `parses` "
        "safe or suspicious. A tool that skips a file counts as saying safe.",
        "",
    ]
    started = time.perf_counter()
    lines += compare(args.detail, problems, cases)
    lines.append(
        f"Comparison wall time: {time.perf_counter() - started:.0f} s (every tool in its own process "
        "per file, in parallel)."
    )
    lines.append("")
    if not args.no_big:
        lines += big_timing(problems)
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
