"""``sdmodel lora check`` over URLs: the LoRA, the model or both read by byte ranges (headers, a
GGUF's header and tensor table), with the bytes each side cost in the report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from sdmodel import remote
from sdmodel.cli import main_group
from sdmodel.formats import open_model
from sdmodel.lora.check import check
from sdmodel.remote import RemotePath, measure
from tests import lora_layouts as L
from tests.builders import layout, write_sparse_safetensors
from tests.quant_files import write_gguf
from tests.remote_server import ModelServer
from tests.test_lora_detect import sdxl_kohya


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch):
    for var in ("HF_TOKEN", "CIVITAI_TOKEN", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(var, raising=False)
    remote.forget()
    with ModelServer() as srv:
        monkeypatch.setenv("HF_ENDPOINT", srv.endpoint)
        yield srv
    remote.forget()


def header_size(path: Path) -> int:
    return 8 + int.from_bytes(path.open("rb").read(8), "little")


def run(*args: str) -> tuple[int, str]:
    remote.forget()  # each command starts without what an earlier one fetched
    r = CliRunner().invoke(main_group, ["lora", "check", *args])
    return r.exit_code, r.output


def test_lora_and_model_urls_read_only_headers(server, tmp_path: Path) -> None:
    model = write_sparse_safetensors(tmp_path / "sdxl.safetensors", layout("sdxl-base"))  # 6.9 GB hole
    lora = write_sparse_safetensors(tmp_path / "lora.safetensors", sdxl_kohya())
    server.files.update({"sdxl.safetensors": model, "lora.safetensors": lora})
    murl, lurl = server.url("f", "sdxl.safetensors"), server.url("redirect", "lora.safetensors")
    with measure() as m:
        r = check(RemotePath(lurl), RemotePath(murl))
    assert r.to_dict() | {"lora": "", "model": ""} == check(lora, model).to_dict() | {"lora": "", "model": ""}
    assert m.data_bytes == 0 and m.bytes_read <= header_size(model) + header_size(lora) + 2 * 64 * 1024

    code, out = run(lurl, murl)
    assert code == 0 and "applies fully to this model" in out
    assert "model: read " in out and "of 6.9" in out and "in 2 requests" in out
    code, out = run("--json", lurl, murl)
    d = json.loads(out)
    assert code == 0 and d["lora"] == lurl and d["model"] == murl
    assert 0 < d["remote"]["lora"]["bytes_read"] <= header_size(lora) + 64 * 1024
    assert 0 < d["remote"]["model"]["bytes_read"] <= header_size(model) + 64 * 1024


def test_hf_lora_against_a_local_model(server, tmp_path: Path) -> None:
    model = write_sparse_safetensors(tmp_path / "sdxl.safetensors", layout("sdxl-base"))
    lora = write_sparse_safetensors(tmp_path / "lora.safetensors", L.kohya(L.unet_attn(L.SD1_UNET)))
    server.repos["someone/loras"] = {"sd1/lora.safetensors": lora}
    code, out = run("--json", "hf://someone/loras/sd1/lora.safetensors", str(model))
    d = json.loads(out)
    assert code == 1 and d["verdict"].startswith("for SD 1.x") and set(d["remote"]) == {"lora"}


def test_gguf_model_over_a_url(server, tmp_path: Path) -> None:
    h = 256
    lay = L.flux_model(double=2, single=2, hidden=h)
    arrays = {k: np.zeros(s, np.float16) for k, (s, _d) in lay.items()}
    model = write_gguf(tmp_path / "flux.gguf", arrays, dict.fromkeys(arrays, "F16"))
    lora = write_sparse_safetensors(tmp_path / "lora.safetensors", L.comfy(L.flux_bfl(2, 2, h)))
    server.files.update({"flux.gguf": model, "lora.safetensors": lora})
    with open_model(model) as src:
        table_end = src.data_start  # header, key-values and tensor table end where the data starts
    with measure() as m:
        r = check(RemotePath(server.url("f", "lora.safetensors")), RemotePath(server.url("f", "flux.gguf")))
    local = check(lora, model)
    assert (r.found, r.missing, r.mismatched, r.verdict) == (
        local.found,
        local.missing,
        local.mismatched,
        local.verdict,
    )
    assert r.targets == r.found > 0
    assert m.data_bytes == 0 and m.bytes_read < table_end + header_size(lora) + 2 * 64 * 1024
    assert m.bytes_read < model.stat().st_size // 4


def test_bad_urls_exit_2(server, tmp_path: Path) -> None:
    lora = write_sparse_safetensors(tmp_path / "lora.safetensors", sdxl_kohya())
    code, out = run(str(lora), server.url("f", "missing.safetensors"))
    assert code == 2 and ("404" in out or "not found" in out.lower()) and len(out.strip().splitlines()) == 1
    server.files["lora.safetensors"] = lora
    code, out = run(server.url("forbidden", "lora.safetensors"), str(lora))
    assert code == 2 and "403" in out and "Traceback" not in out
