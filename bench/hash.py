"""`sdmodel hash` (all hashes, one pass) against hashlib.sha256 alone over the same file, in the
same run. Inputs: the 7.7 GB SD 1.5 torch checkpoint, and a safetensors file of the same size
(where AutoV3 adds a second SHA-256 over the data section).

    .venv/bin/python -m bench.hash
"""

from __future__ import annotations

from bench.common import print_table, sd15_ema_ckpt, timed_subprocess, warm, work_dir

SHA_ALONE = (
    "import hashlib\nh = hashlib.sha256()\nbuf = bytearray(16 << 20)\nmv = memoryview(buf)\n"
    "with open({path!r}, 'rb') as f:\n"
    "    while (n := f.readinto(buf)):\n        h.update(mv[:n])\nh.hexdigest()\n"
)
OURS = "from sdmodel.hashing import compute_hashes\ncompute_hashes({path!r})\n"


def safetensors_copy() -> str:
    """A safetensors file with the checkpoint's tensors (made with our reader + reference writer)."""
    path = work_dir() / "sd15-full-ema.safetensors"
    if not path.exists():
        from safetensors.numpy import save_file

        from sdmodel.formats import open_model

        with open_model(sd15_ema_ckpt()) as src:
            save_file({k: src.read(k) for k in src.tensors}, str(path))
    return str(path)


def main() -> None:
    rows = []
    for path in (str(sd15_ema_ckpt()), safetensors_copy()):
        warm(path)
        size = __import__("os").path.getsize(path) / 1e6
        sha, _ = timed_subprocess(SHA_ALONE.format(path=path))
        ours, rss = timed_subprocess(OURS.format(path=path))
        rows.append(
            [
                path.rsplit("/", 1)[-1],
                f"{size / sha:.0f}",
                f"{size / ours:.0f}",
                f"{sha / ours:.2f}x",
                f"{rss / 1e6:.0f}",
            ]
        )
    print_table(
        "hash throughput, page cache warm (MB/s)",
        ["file", "hashlib.sha256 alone", "sdmodel: all 7 hashes", "ratio", "peak RSS MB"],
        rows,
    )


if __name__ == "__main__":
    main()
