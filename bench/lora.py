"""Benchmark: `sdmodel lora check` on a folder of LoRAs, and `sdmodel merge` of a rank-32 LoRA into
an SDXL checkpoint, each against the common alternative in the same run.

    .venv/bin/python bench/lora.py            # both
    .venv/bin/python bench/lora.py --check    # only the folder check
    .venv/bin/python bench/lora.py --merge    # only the merge (ours, then the torch script unless --no-peer)

Inputs (bench/_work/lora, gitignored): 300 sparse LoRA files with the real names and shapes of
SDXL (kohya, text encoders included), SD 1.5 (kohya) and Flux (ComfyUI) LoRAs; the SDXL base
checkpoint as a sparse file with the release's names, shapes and dtypes (6.9 GB of zeros: the data
is read, the disk holds nothing); a rank-32 SDXL LoRA with random values.

check peer: what a UI does to find "lora key not loaded": load every LoRA with
safetensors.torch.load_file and look its keys up in the model's key set.
merge peer: the usual script: load checkpoint and LoRA with safetensors.torch.load_file, add
alpha/rank * up @ down to each weight in fp32, save_file.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import now, print_table, timed_subprocess, warm, work_dir

CHECK_PEER = r"""
import sys, os, safetensors.torch
from safetensors import safe_open
folder, model = sys.argv[1], sys.argv[2]
with safe_open(model, "pt") as f:
    flat = {k.rsplit(".weight", 1)[0].replace(".", "_"): k for k in f.keys()}
missing = 0
for name in sorted(os.listdir(folder)):
    sd = safetensors.torch.load_file(os.path.join(folder, name))
    for k in sd:
        stem = k.split(".")[0]
        for p in ("lora_unet_", "lora_te1_", "lora_te2_", "lora_te_"):
            if stem.startswith(p):
                missing += stem[len(p):] not in flat
"""

MERGE_PEER = r"""
import sys, torch, safetensors.torch
model, lora, out = sys.argv[1], sys.argv[2], sys.argv[3]
sd = safetensors.torch.load_file(model)
lo = safetensors.torch.load_file(lora)
flat = {k[len("model.diffusion_model."):-len(".weight")].replace(".", "_"): k
        for k in sd if k.startswith("model.diffusion_model.") and k.endswith(".weight")}
for k in lo:
    if not k.endswith(".lora_down.weight"):
        continue
    stem = k[: -len(".lora_down.weight")]
    key = flat[stem[len("lora_unet_"):]]
    down, up = lo[k].float(), lo[stem + ".lora_up.weight"].float()
    scale = lo[stem + ".alpha"].item() / down.shape[0]
    w = sd[key]
    delta = (up.flatten(1) @ down.flatten(1)).reshape(w.shape)
    sd[key] = (w.float() + scale * delta).to(w.dtype)
safetensors.torch.save_file(sd, out)
"""


def _inputs() -> tuple[Path, Path, Path]:
    import numpy as np
    from safetensors.numpy import save_file

    from tests import lora_layouts as L
    from tests.builders import layout, write_sparse_safetensors

    work = work_dir() / "lora"
    folder = work / "loras"
    folder.mkdir(parents=True, exist_ok=True)
    model = work / "sdxl-base-sparse.safetensors"
    if not model.exists():
        write_sparse_safetensors(model, layout("sdxl-base"))
    kinds = [
        (
            "sdxl",
            L.merged(
                L.kohya(L.ldm_unet("sdxl-base")),
                L.kohya(L.clip_hf(768, 12), "lora_te1_"),
                L.kohya(L.clip_hf(1280, 32), "lora_te2_"),
            ),
        ),
        ("sd15", L.merged(L.kohya(L.unet_attn(L.SD1_UNET)), L.kohya(L.clip_hf(768, 12), "lora_te_"))),
        ("flux", L.comfy(L.flux_bfl())),
    ]
    for i in range(300):
        name, lay = kinds[0] if i % 2 == 0 else kinds[1 + (i // 2) % 2]
        path = folder / f"{name}-{i:03d}.safetensors"
        if not path.exists():
            write_sparse_safetensors(path, lay)
    lora = work / "sdxl-rank32.safetensors"
    if not lora.exists():
        rng = np.random.default_rng(0)
        lay = L.kohya(L.ldm_unet("sdxl-base"), rank=32)
        arrays = {}
        for k, (shape, _d) in lay.items():
            arrays[k] = (
                np.array(16.0, np.float16)
                if k.endswith(".alpha")
                else (0.01 * rng.standard_normal(shape)).astype(np.float16)
            )
        save_file(arrays, str(lora))
    return folder, model, lora


def _gb(n: int) -> str:
    return f"{n / 1e9:.2f} GB"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--check", action="store_true", help="only the folder check")
    ap.add_argument("--merge", action="store_true", help="only the merge")
    ap.add_argument("--no-peer", action="store_true", help="skip the torch merge script (12 GB of memory)")
    args = ap.parse_args()
    folder, model, lora = _inputs()
    rows = []
    if not args.merge:
        _check_rows(folder, model, rows)
    if not args.check:
        _merge_rows(folder, model, lora, rows, peer=not args.no_peer)
    print_table(f"LoRA benchmarks ({now()}, {os.cpu_count()} cores)", ["task", "tool", "time", "peak RSS"], rows)


def _check_rows(folder: Path, model: Path, rows: list[list[str]]) -> None:
    ours = (
        "from sdmodel.cli import main\n"
        "try:\n"
        f"    main(['lora', 'check', {str(folder)!r}, {str(model)!r}, '--json'])\n"
        "except SystemExit:\n"
        "    pass\n"
    )
    t, rss = timed_subprocess("import sys, io; sys.stdout = io.StringIO()\n" + ours, repeat=3)
    rows.append(["lora check, 300 LoRAs vs SDXL", "sdmodel lora check", f"{t:.2f} s", _gb(rss)])
    t, rss = timed_subprocess(f"import sys; sys.argv = ['x', {str(folder)!r}, {str(model)!r}]\n" + CHECK_PEER, repeat=3)
    rows.append(["", "load_file each LoRA + key lookup", f"{t:.2f} s", _gb(rss)])


def _merge_rows(folder: Path, model: Path, lora: Path, rows: list[list[str]], peer: bool) -> None:
    warm(model)
    out = folder.parent / "merged.safetensors"
    code = (
        "from sdmodel.cli import main\n"
        f"main(['merge', {str(model)!r}, {str(lora) + ':1.0'!r}, '-o', {str(out)!r}, '--overwrite'])\n"
    )
    t, rss = timed_subprocess(
        "import sys, io; sys.stdout = io.StringIO()\ntry:\n"
        + "".join("    " + ln + "\n" for ln in code.splitlines())
        + "except SystemExit as e:\n    assert not e.code, e.code\n",
        repeat=1,
    )
    rows.append(
        [f"merge rank-32 LoRA into SDXL ({_gb(model.stat().st_size)})", "sdmodel merge", f"{t:.1f} s", _gb(rss)]
    )
    os.remove(out)
    if not peer:
        return
    peer_out = folder.parent / "merged-peer.safetensors"
    t, rss = timed_subprocess(
        f"import sys; sys.argv = ['x', {str(model)!r}, {str(lora)!r}, {str(peer_out)!r}]\n" + MERGE_PEER, repeat=1
    )
    rows.append(["", "torch: load both, merge, save_file", f"{t:.1f} s", _gb(rss)])
    os.remove(peer_out)


if __name__ == "__main__":
    main()
