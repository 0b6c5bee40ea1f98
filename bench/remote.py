"""Remote reading and checking at a model host's scale, against a local HTTP server (127.0.0.1).

    .venv/bin/python -m bench.remote [--files 10000] [--skip-big]

1. One big file over HTTP: ``sdmodel info URL`` (bytes read, requests, time) against the common
   alternative, downloading the file whole (to /dev/null, so the disk does not count).
2. Embeddings and LoRAs at their real size, as safetensors and torch zip: ``scan URL`` against
   downloading the file whole and scanning the copy.
3. N small model files (embeddings and small LoRAs, safetensors and torch zip) served by the local
   server: ``scan --from LIST`` in files per second with ``--jobs 1``, ``--jobs 2`` and a local Ray,
   at 1k and N files (time growth), and the alternative of downloading each file whole and scanning
   it locally (``--jobs 1``, 1k files).

The server runs in its own process so that it does not share the driver's interpreter.
"""

from __future__ import annotations

import argparse
import io
import multiprocessing
import os
import tempfile
import time
from pathlib import Path

from bench.common import print_table, sd15_ema_ckpt, work_dir


def _serve(files: dict[str, bytes | Path], port_out: multiprocessing.Queue, stop: multiprocessing.Event) -> None:
    from tests.remote_server import ModelServer

    with ModelServer() as server:
        server.files.update(files)
        port_out.put(server.port)
        stop.wait()


class Served:
    """The test server in a child process, serving ``files`` under ``/f/NAME``."""

    def __init__(self, files: dict[str, bytes | Path]) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._q: multiprocessing.Queue = ctx.Queue()
        self._stop = ctx.Event()
        self._proc = ctx.Process(target=_serve, args=(files, self._q, self._stop), daemon=True)

    def __enter__(self) -> Served:
        self._proc.start()
        self.port = self._q.get(timeout=60)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._proc.join(10)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/f/{name}"


def download_whole(url: str) -> int:
    import httpx

    n = 0
    with httpx.stream("GET", url, timeout=60) as r:
        for chunk in r.iter_raw(1 << 20):
            n += len(chunk)
    return n


# ------------------------------------------------------------------------------------------- 1. one big file


def big_files() -> list[Path]:
    from tests.builders import layout, write_sparse_safetensors

    sdxl = work_dir() / "sdxl-base-sparse.safetensors"
    if not sdxl.exists():
        write_sparse_safetensors(sdxl, layout("sdxl-base"))
    return [sdxl, sd15_ema_ckpt()]


def bench_big(paths: list[Path]) -> None:
    from sdmodel import inspect, remote

    rows = []
    with Served({p.name: p for p in paths}) as srv:
        for p in paths:
            url = srv.url(p.name)
            remote.forget()
            t = time.perf_counter()
            with remote.measure() as m:
                report = inspect(url)
            ours = time.perf_counter() - t
            assert report.kind == "checkpoint"
            t = time.perf_counter()
            got = download_whole(url)
            peer = time.perf_counter() - t
            assert got == p.stat().st_size
            rows.append(
                [
                    f"{p.name} ({report.format})",
                    m.summary(p.stat().st_size),
                    f"{ours:.3f}",
                    f"{peer:.2f}",
                    f"{peer / ours:.0f}x",
                ]
            )
    print_table(
        "sdmodel info URL vs downloading the file (local server, loopback)",
        ["file", "sdmodel read", "info s", "download s", "download / info"],
        rows,
    )


# ------------------------------------------------------------------------------------------- 2. many small files


def sd15_lora(rank: int = 8) -> dict[str, tuple[tuple[int, ...], str]]:
    """A kohya LoRA for SD 1.5 at its real size: every attention and feed-forward linear of the UNet
    and of the CLIP text encoder, fp16 down/up matrices and an alpha each."""
    from tests.builders import layout

    out: dict[str, tuple[tuple[int, ...], str]] = {}
    unet, te = "model.diffusion_model.", "cond_stage_model.transformer."
    for name, (shape, _) in layout("sd15").items():
        if not name.endswith(".weight") or len(shape) != 2:
            continue
        if name.startswith(unet) and (".attn" in name or ".ff." in name):
            key = "lora_unet_" + name[len(unet) : -len(".weight")].replace(".", "_")
        elif name.startswith(te + "text_model.encoder.") and ("self_attn" in name or ".mlp." in name):
            key = "lora_te_" + name[len(te) : -len(".weight")].replace(".", "_")
        else:
            continue
        out[key + ".lora_down.weight"] = ((rank, shape[1]), "F16")
        out[key + ".lora_up.weight"] = ((shape[0], rank), "F16")
        out[key + ".alpha"] = ((), "F16")
    return out


def model_files(lora: dict[str, tuple[tuple[int, ...], str]]) -> dict[str, bytes]:
    """The kinds of file a host receives most: a textual-inversion embedding and a LoRA, each as
    safetensors and as torch zip."""
    import torch
    from safetensors.numpy import save

    from tests import families as fam
    from tests.builders import arrays

    out: dict[str, bytes] = {}
    for i, (kind, lay) in enumerate((("embedding", fam.embedding()), ("lora", lora))):
        values = arrays(lay, seed=i)
        out[f"{kind}.safetensors"] = save(values, metadata={"ss_network_dim": "8"} if kind == "lora" else None)
        buf = io.BytesIO()
        torch.save({k: torch.from_numpy(v) for k, v in values.items()}, buf)
        out[f"{kind}.pt"] = buf.getvalue()
    return out


def bench_kinds() -> None:
    """Per kind of file at its real size: scan over HTTP against downloading it whole and scanning."""
    import httpx

    from sdmodel import remote
    from sdmodel.security.scanner import scan

    contents = model_files(sd15_lora())
    rows = []
    with Served(contents) as srv, tempfile.TemporaryDirectory() as tmp, httpx.Client() as client:  # type: ignore[arg-type]
        for name, data in sorted(contents.items()):
            ours, peer = [], []
            for _ in range(5):
                remote.forget()
                t = time.perf_counter()
                with remote.measure() as m:
                    assert scan(srv.url(name)).verdict == "safe"
                ours.append(time.perf_counter() - t)
                t = time.perf_counter()
                local = Path(tmp) / name
                local.write_bytes(client.get(srv.url(name)).content)
                assert scan(local).verdict == "safe"
                peer.append(time.perf_counter() - t)
            rows.append(
                [
                    f"{name} ({len(data) / 1e3:,.0f} KB)",
                    m.summary(len(data)),
                    f"{min(ours) * 1e3:.0f}",
                    f"{min(peer) * 1e3:.0f}",
                ]
            )
    print_table(
        "scan URL vs download + scan, per kind of file (real SD 1.5 sizes; best of 5)",
        ["file", "sdmodel read", "scan URL ms", "download + scan ms"],
        rows,
    )


def bench_many(n: int) -> None:
    from sdmodel import batch
    from tests import families as fam

    contents = model_files(fam.lora_kohya())  # small files: the runners' own cost shows
    kinds = sorted(contents)
    names = {f"{i:05d}-{kinds[i % len(kinds)]}": contents[kinds[i % len(kinds)]] for i in range(n)}
    sizes = [1000, n] if n > 1000 else [n]
    rows = []
    with Served(names) as srv:  # type: ignore[arg-type]
        urls = [srv.url(k) for k in names]
        options = batch.BatchOptions("scan")
        for count in sizes:
            for label, jobs, ray in (("--jobs 1", 1, None), ("--jobs 2", 2, None), ("--ray (local)", 1, "local")):
                got: list[dict] = []
                t = time.perf_counter()
                summary = batch.run(options, urls[:count], got.append, jobs=jobs, ray_address=ray)
                wall = time.perf_counter() - t
                assert summary.done == count and summary.failed == 0, summary
                read = sum(r["remote"]["bytes_read"] for r in got)
                rows.append([f"{count:,}", label, f"{wall:.1f}", f"{count / wall:.0f}", f"{read / count / 1e3:.1f} KB"])
        # The alternative: download each file whole, then scan the local copy (1k files, one process).
        count = min(1000, n)
        from sdmodel.security.scanner import scan

        with tempfile.TemporaryDirectory() as tmp:
            import httpx

            t = time.perf_counter()
            total = 0
            with httpx.Client() as client:
                for k, url in zip(list(names)[:count], urls[:count], strict=True):
                    local = Path(tmp) / k
                    data = client.get(url).content
                    total += len(data)
                    local.write_bytes(data)
                    assert scan(local).verdict == "safe"
                    local.unlink()
            wall = time.perf_counter() - t
        rows.append(
            [
                f"{count:,}",
                "download whole + scan (1 process)",
                f"{wall:.1f}",
                f"{count / wall:.0f}",
                f"{total / count / 1e3:.1f} KB",
            ]
        )
    print_table(
        "scan over HTTP: " + ", ".join(f"{k} ({len(v) / 1e3:,.0f} KB)" for k, v in sorted(contents.items())),
        ["files", "runner", "wall s (start-up included)", "files/s", "fetched per file"],
        rows,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--skip-big", action="store_true", help="skip part 1 (it builds a 7.7 GB checkpoint once)")
    args = parser.parse_args()
    os.environ.pop("HTTP_PROXY", None)
    if not args.skip_big:
        bench_big(big_files())
    bench_kinds()
    bench_many(args.files)


if __name__ == "__main__":
    main()
