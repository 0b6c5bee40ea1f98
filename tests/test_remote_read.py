"""Readers over URLs: only headers, directories and pickles are fetched, and the answers are the
ones the same file gives locally (safetensors, torch zip, legacy torch, a Hugging Face diffusers repo)."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile

import pytest

from sdmodel import inspect, remote
from sdmodel.diffing import diff
from sdmodel.errors import RemoteError
from sdmodel.formats.base import TensorInfo
from sdmodel.remote import RemotePath, measure
from sdmodel.security.scanner import scan
from sdmodel.units import human_bytes
from tests import families as fam
from tests.builders import layout, shrink, with_ema, write_ckpt, write_safetensors, write_sparse_safetensors
from tests.remote_server import ModelServer
from tests.security_corpus import glob, pkl, s, tup


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch):
    for var in ("HF_TOKEN", "CIVITAI_TOKEN", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(var, raising=False)
    remote.forget()
    with ModelServer() as srv:
        monkeypatch.setenv("HF_ENDPOINT", srv.endpoint)
        yield srv
    remote.forget()


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    import os

    return subprocess.run(
        [sys.executable, "-m", "sdmodel", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def same_report(a, b) -> None:
    da, db = a.to_dict(), b.to_dict()
    for key in ("family", "variant", "kind", "components", "ema", "junk", "metadata", "extras", "format", "size_bytes"):
        assert da[key] == db[key], key


def test_safetensors_header_only(server, tmp_path):
    path = write_sparse_safetensors(tmp_path / "sdxl.safetensors", layout("sdxl-base"))  # 6.9 GB, a hole
    server.files["sdxl.safetensors"] = path
    header = 8 + int.from_bytes(path.open("rb").read(8), "little")
    with measure() as m:
        report = inspect(RemotePath(server.url("f", "sdxl.safetensors")))
    same_report(report, inspect(path))
    assert report.size_bytes == path.stat().st_size > 6_000_000_000
    assert m.bytes_read <= header + 64 * 1024 and m.requests <= 2 and m.data_bytes == 0
    assert any("tensor values not fetched" in str(n) for n in report.notes)


def test_cli_info_url_says_what_it_read(server, tmp_path):
    path = write_sparse_safetensors(tmp_path / "sd15.safetensors", fam.sd1())
    server.files["sd15.safetensors"] = path
    url = server.url("redirect", "sd15.safetensors")
    r = cli("info", url)
    assert r.returncode == 0, r.stderr
    assert "read " in r.stdout and f"of {path.stat().st_size / 1e9:.2f} GB in 2 requests" in r.stdout
    r = cli("info", "--json", url)
    d = json.loads(r.stdout)
    assert d["path"] == url and d["family"] == "sd1" and d["remote"]["data_bytes"] == 0
    assert 0 < d["remote"]["bytes_read"] < 200_000


def test_cli_errors_are_one_line(server, tmp_path):
    for url, message in (
        (server.url("f", "missing.safetensors"), "404 Not Found"),
        ("http://127.0.0.1:9/x.safetensors", "cannot connect"),
        ("hf://onlyowner", "expected hf://OWNER/REPO"),
    ):
        r = cli("info", url)
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and message in r.stderr, r.stderr
        assert "Traceback" not in r.stderr
    server.files["big.bin"] = write_sparse_safetensors(tmp_path / "big.safetensors", fam.sd1())
    r = cli("info", server.url("norange", "big.bin"))
    assert r.returncode == 2 and "ignores Range requests" in r.stderr and r.stderr.count("\n") == 1


def test_torch_zip_reads_directory_and_pickle_only(server, tmp_path):
    lay = with_ema(fam.sd1())
    lay["first_stage_model.big"] = ((4096, 1024), "F32")  # 16 MB of values nobody needs
    path = write_ckpt(tmp_path / "sd15.ckpt", shrink(lay, keep=lambda k: k == "first_stage_model.big"))
    server.files["sd15.ckpt"] = path
    with measure() as m:
        report = inspect(RemotePath(server.url("f", "sd15.ckpt")))
    same_report(report, inspect(path))
    with zipfile.ZipFile(path) as z:
        pickle_size = z.getinfo(next(n for n in z.namelist() if n.endswith("data.pkl"))).file_size
    assert m.data_bytes == 0 and m.bytes_read < 16_000_000 // 4
    assert m.requests <= 5, m.requests  # head, tail, directory, the pickle (its local header first)
    assert pickle_size < m.bytes_read


def test_torch_zip_lora_leaves_its_records_unread(server, tmp_path):
    """A LoRA's records are small: fetching every local header (merged, they span the file) would
    fetch the whole file. Only the end of the file, the directory and the pickle are read."""
    lay = fam.lora_kohya()
    for i in range(48):
        k = f"lora_unet_up_blocks_1_attentions_{i}_proj_in"
        lay[k + ".lora_down.weight"] = ((32, 320), "F16")
        lay[k + ".lora_up.weight"] = ((320, 32), "F16")
        lay[k + ".alpha"] = ((), "F16")
    path = write_ckpt(tmp_path / "lora.ckpt", lay, wrap=())
    server.files["lora.ckpt"] = path
    size = path.stat().st_size
    with zipfile.ZipFile(path) as z:
        assert sum(n.split("/")[-2] == "data" for n in z.namelist()) == len(lay)
    with measure() as m:
        report = inspect(RemotePath(server.url("f", "lora.ckpt")))
    same_report(report, inspect(path))
    assert m.data_bytes == 0 and m.bytes_read < size // 5, (m.bytes_read, size)
    r = cli("info", "--json", server.url("f", "lora.ckpt"))
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)["remote"]
    assert d["data_bytes"] == 0 and 0 < d["bytes_read"] < size // 5
    r = cli("info", server.url("f", "lora.ckpt"))
    assert r.returncode == 0 and f"read {human_bytes(d['bytes_read'])} of {human_bytes(size)}" in r.stdout, r.stdout


def test_scan_url_same_verdict_as_local(server, tmp_path):
    bad = tmp_path / "bad.ckpt"
    with zipfile.ZipFile(bad, "w") as z:
        z.writestr("archive/data.pkl", pkl(glob("os", "system") + tup(s("echo pwned")) + b"R"))
        z.writestr("archive/version", "3\n")
    server.files["bad.ckpt"] = bad
    good = write_ckpt(tmp_path / "good.ckpt", shrink(fam.sd1()))
    server.files["good.ckpt"] = good
    for name, local in (("bad.ckpt", bad), ("good.ckpt", good)):
        here, there = scan(local), scan(RemotePath(server.url("f", name)))
        assert there.verdict == here.verdict and there.format == here.format
        assert [f.code for f in there.findings] == [f.code for f in here.findings]
    assert scan(RemotePath(server.url("f", "bad.ckpt"))).verdict == "dangerous"
    r = cli("scan", server.url("f", "bad.ckpt"))
    assert r.returncode == 1 and "dangerous" in r.stdout and "read " in r.stdout
    r = cli("hash", server.url("f", "good.ckpt"))
    assert r.returncode == 2 and "download it" in r.stderr
    missing = scan(RemotePath(server.url("f", "nope.ckpt")))
    assert missing.verdict == "error" and "404" in str(missing.findings[0].message)


def test_legacy_torch_over_http(server, tmp_path):
    path = write_ckpt(tmp_path / "old.ckpt", shrink(fam.sd1()), legacy=True)
    server.files["old.ckpt"] = path
    same_report(inspect(RemotePath(server.url("f", "old.ckpt"))), inspect(path))
    assert scan(RemotePath(server.url("f", "old.ckpt"))).verdict == scan(path).verdict


def test_read_data_fetches_only_the_needed_tensors(server, tmp_path):
    lay = shrink(with_ema(fam.sd1()))
    lay["model.diffusion_model.big"] = ((2048, 1024), "F32")  # 8 MB nobody needs
    path = write_safetensors(tmp_path / "sd15.safetensors", lay)
    server.files["sd15.safetensors"] = path
    local = inspect(path)
    with measure() as m:
        there = inspect(RemotePath(server.url("f", "sd15.safetensors"), read_data=True))
    assert there.vae == local.vae and there.clip_position_ids == local.clip_position_ids
    # the VAE (its metric reads it all) and the CLIP ids, never the 8 MB tensor nobody needs
    vae_bytes = sum(TensorInfo(k, d, s).nbytes for k, (s, d) in lay.items() if k.startswith("first_stage_model."))
    assert local.vae is not None and local.vae.present and 0 < m.data_bytes < vae_bytes + 1_000_000
    without = inspect(RemotePath(server.url("f", "sd15.safetensors")))
    assert without.vae is None and without.clip_position_ids.status == "not-read"


def test_diff_needs_read_data(server, tmp_path):
    lay = shrink(fam.sd1())
    a = write_safetensors(tmp_path / "a.safetensors", lay, seed=1)
    server.files["a.safetensors"] = a
    url = server.url("f", "a.safetensors")
    with pytest.raises(RemoteError, match="--read-data"):
        diff(RemotePath(url), a)
    r = diff(RemotePath(url, read_data=True), a)
    assert r.same and str(r.a) == url
    r = cli("diff", url, str(a))
    assert r.returncode == 2 and "--read-data" in r.stderr
    assert cli("diff", "--read-data", url, str(a)).returncode == 0


def test_hf_diffusers_repo(server, tmp_path):
    from tests.test_diffusers import build_sparse_folder

    root = build_sparse_folder(tmp_path / "pipe", "sd15", layout("sd15"))
    (root / "model_index.json").write_text(
        json.dumps({"_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.21.0", "unet": ["x", "y"]})
    )
    server.repos["acme/sd15"] = {p.relative_to(root).as_posix(): p for p in root.rglob("*") if p.is_file()}
    with measure() as m:
        there = inspect("hf://acme/sd15")
    local = inspect(root)
    for key in ("family", "kind", "components", "ema"):
        assert there.to_dict()[key] == local.to_dict()[key], key
    assert there.size_bytes == local.size_bytes
    assert m.bytes_read < 1_000_000
    # The token goes to the hub (HF_ENDPOINT), never to the storage it redirects to.
    assert all(auth is None for p, _, auth in server.log if p.startswith("/f/"))
    r = cli("info", "--json", "hf://acme/sd15", env={"HF_TOKEN": server.token})
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["family"] == "sd1" and server.token not in r.stdout + r.stderr


def test_batch_over_urls(server, tmp_path):
    for i in range(3):
        server.files[f"m{i}.safetensors"] = write_sparse_safetensors(tmp_path / f"m{i}.safetensors", fam.lora_kohya())
    listing = tmp_path / "urls.txt"
    urls = [server.url("f", f"m{i}.safetensors") for i in range(3)] + [server.url("f", "gone.safetensors")]
    listing.write_text("\n".join(urls))
    r = cli("scan", "--from", str(listing), "--json-lines", "--jobs", "2")
    records = {x["path"]: x for x in map(json.loads, r.stdout.splitlines())}
    assert set(records) == set(urls) and r.returncode == 2
    assert records[urls[0]]["verdict"] == "safe" and records[urls[0]]["remote"]["bytes_read"] > 0
    assert records[urls[3]]["verdict"] == "error"
