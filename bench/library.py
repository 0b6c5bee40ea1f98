"""Library benchmark: a synthetic library of 10,000 small model files across nested folders.

Times the first scan (every file read, on every core), the second scan (nothing changed; target
< 10% of the first) and the web list page with 10,000 rows (target < 300 ms), prints a table and
writes it with the command to BENCHMARKS-library.md.

    .venv/bin/python bench/library.py [--files 10000] [--jobs 2] [--out BENCHMARKS-library.md]
"""

from __future__ import annotations

import argparse
import http.client
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sdmodel.formats.base import TensorInfo  # noqa: E402
from sdmodel.formats.safetensors import header_bytes, reference_order  # noqa: E402
from sdmodel.library.catalog import Catalog  # noqa: E402
from sdmodel.library.scanning import scan_library  # noqa: E402
from sdmodel.web.server import make_server  # noqa: E402
from tests.builders import layout, renamed, with_dtype  # noqa: E402


def small_layouts() -> dict[str, tuple[str, dict]]:
    """Folder -> (file prefix, layout): LoRAs, LyCORIS, embeddings with a few tensors, plus VAEs
    and checkpoints whose data is a hole (header only on disk)."""
    lora = {}
    for i in range(2):
        base = f"lora_unet_down_blocks_0_attentions_{i}_transformer_blocks_0_attn2_to_k"
        lora |= {
            base + ".lora_down.weight": ((4, 768), "F16"),
            base + ".lora_up.weight": ((320, 4), "F16"),
            base + ".alpha": ((), "F16"),
        }
    loha = {}
    for i in range(2):
        base = f"lora_unet_down_blocks_0_attentions_{i}_transformer_blocks_0_attn2_to_k"
        loha |= {base + s: ((4, 768), "F16") for s in (".hada_w1_a", ".hada_w2_a")}
        loha |= {base + s: ((320, 4), "F16") for s in (".hada_w1_b", ".hada_w2_b")}
        loha[base + ".alpha"] = ((), "F16")
    vae = renamed(
        with_dtype(layout("sd15"), "F16"),
        lambda k: k[len("first_stage_model.") :] if k.startswith("first_stage_model.") else None,
    )
    return {
        "Lora": ("lora", lora),
        "LyCORIS": ("loha", loha),
        "embeddings": ("emb", {"emb_params": ((4, 768), "F32")}),
        "VAE": ("vae", vae),
        "Stable-diffusion": ("ckpt", with_dtype(layout("sd15"), "F16")),
    }


# Share of the files per folder.
MIX = {"Lora": 0.45, "LyCORIS": 0.15, "embeddings": 0.25, "VAE": 0.10, "Stable-diffusion": 0.05}


def build(root: Path, n: int) -> None:
    heads = {}
    for folder, (prefix, lay) in small_layouts().items():
        infos = reference_order([TensorInfo(k, d, s) for k, (s, d) in lay.items()])
        head, _ = header_bytes(infos, {"ss_output_name": prefix})
        heads[folder] = (prefix, head, len(head) + sum(t.nbytes for t in infos))
    made = 0
    for folder, share in MIX.items():
        prefix, head, total = heads[folder]
        count = round(n * share) if folder != "Stable-diffusion" else n - made
        for i in range(count):
            d = root / "models" / folder / f"author{i % 25:02d}" / f"set{i % 8}"
            d.mkdir(parents=True, exist_ok=True)
            p = d / f"{prefix}-{i:05d}.safetensors"
            with open(p, "wb") as f:
                f.write(head)
            os.truncate(p, total)
        made += count


def get(server, path: str) -> float:
    host, port = server.server_address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=30)
    t0 = time.perf_counter()
    conn.request("GET", path)
    resp = conn.getresponse()
    resp.read()
    elapsed = time.perf_counter() - t0
    conn.close()
    assert resp.status == 200, (path, resp.status)
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=10_000)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", default=str(ROOT / "BENCHMARKS-library.md"))
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sdmodel-library-bench-"))
    os.environ["XDG_CACHE_HOME"] = str(work / "cache")
    try:
        t0 = time.perf_counter()
        build(work / "lib", args.files)
        t_build = time.perf_counter() - t0
        db = work / "library.db"
        roots = [(work / "lib" / "models", "a1111")]
        with Catalog(db) as cat:
            first = scan_library(cat, roots, jobs=args.jobs)
            second = scan_library(cat, roots, jobs=args.jobs)
            assert first.examined == args.files and second.examined == 0, (first, second)
            assert first.errors == 0, first
            rows = cat.count()
        server = make_server(db, "127.0.0.1", 0)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            get(server, "/")
            pages = {
                "list, page 1": "/",
                "list, page 100": "/?page=100",
                "list, filtered (kind + text)": "/?kind=lora&q=author07",
            }
            latency = {name: statistics.median(get(server, p) for _ in range(15)) for name, p in pages.items()}
        finally:
            server.shutdown()
            server.server_close()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    ratio = second.seconds / first.seconds
    table = [
        ("files in the library", f"{args.files:,}", ""),
        ("building the library", f"{t_build:.1f} s", ""),
        (f"first scan ({args.jobs} workers)", f"{first.seconds:.2f} s", f"{args.files / first.seconds:,.0f} files/s"),
        ("second scan (nothing changed)", f"{second.seconds:.3f} s", f"{ratio:.1%} of the first (target < 10%)"),
        *(
            (f"web {name}, {rows:,} rows (median of 15)", f"{v * 1000:.1f} ms", "target < 300 ms")
            for name, v in latency.items()
        ),
    ]
    width = max(len(r[0]) for r in table)
    lines = [f"| {'measure':<{width}} | result | note |", f"|{'-' * (width + 2)}|--------|------|"]
    lines += [f"| {a:<{width}} | {b} | {c} |" for a, b, c in table]
    text = "\n".join(lines)
    print(text)
    ok = ratio < 0.10 and all(v < 0.3 for v in latency.values())
    print("targets met" if ok else "TARGET MISSED")
    cmd = (
        "python bench/library.py"
        + (f" --files {args.files}" if args.files != 10_000 else "")
        + (f" --jobs {args.jobs}" if args.jobs != 2 else "")
    )
    Path(args.out).write_text(
        "## Library (`sdmodel library`)\n\n"
        f"Command: `{cmd}` ({os.cpu_count()} cores). A synthetic A1111 `models/` tree of {args.files:,} safetensors "
        "files in 5 folders x 25 authors x 8 sets: LoRAs, LyCORIS, embeddings (a few tensors each) and VAEs "
        "and SD1.5 checkpoints whose data section is a hole (real header, no disk). The first scan reads every "
        "header (inspect + security scan) in worker processes; the second finds nothing changed from "
        "(path, size, mtime_ns) alone; the list page is the web UI's paginated, filtered list served from the "
        "SQLite catalog.\n\n" + text + "\n\n" + ("All targets met.\n" if ok else "A target was missed.\n"),
        encoding="utf-8",
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
