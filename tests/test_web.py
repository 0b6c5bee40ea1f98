"""The library web page: routes, HTML escaping, path traversal, Host/token checks, list latency."""

from __future__ import annotations

import http.client
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sdmodel.library.catalog import Catalog
from sdmodel.library.scanning import scan_library
from sdmodel.web.server import LibraryServer, make_server
from tests.builders import layout, shrink, with_dtype, write_ckpt, write_safetensors, write_sparse_safetensors

EVIL_NAME = "<img src=x onerror=alert('x')>&\".safetensors"


def start(db: Path) -> LibraryServer:
    server = make_server(db, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def request(
    server: LibraryServer,
    path: str,
    method: str = "GET",
    body: str | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    host, port = server.server_address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=10)
    hdrs = {"Content-Type": "application/x-www-form-urlencoded"} if body is not None else {}
    conn.request(method, path, body=body, headers={**hdrs, **(headers or {})})
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data


@pytest.fixture()
def library(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[LibraryServer, Catalog, Path]]:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    root = tmp_path / "models"
    sd = root / "Stable-diffusion"
    sd.mkdir(parents=True)
    write_safetensors(sd / "mix.safetensors", shrink(layout("sd15")), metadata={"note": "<b>bold</b>"})
    (sd / "mix.preview.png").write_bytes(b"\x89PNG\r\n\x1a\nfake")
    (sd / "mix.yaml").write_text("model: {}\n")
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret")
    os.symlink(secret, sd / "mix.png")  # a "preview" pointing outside the root
    write_sparse_safetensors(sd / EVIL_NAME, with_dtype(layout("sdxl-base"), "F16"))
    cat = Catalog(tmp_path / "lib.db")
    scan_library(cat, [(root, "a1111")], jobs=1)
    server = start(tmp_path / "lib.db")
    yield server, cat, tmp_path
    server.shutdown()
    server.server_close()
    cat.close()


def _id(cat: Catalog, name: str) -> int:
    return cat.get_by_path(next(f["path"] for f in cat.all_files() if f["name"] == name))["id"]


def test_pages_render_and_escape(library) -> None:
    server, cat, _ = library
    status, headers, body = request(server, "/")
    html = body.decode()
    assert status == 200 and "mix.safetensors" in html
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(&#x27;x&#x27;)&gt;&amp;&quot;" in html
    assert "script-src 'self'" in headers["content-security-policy"]
    status, _, body = request(server, "/?kind=checkpoint&family=sdxl&q=onerror")
    assert status == 200 and b"1 matching file<" in body and b"mix.safetensors" not in body
    evil = _id(cat, EVIL_NAME)
    status, _, body = request(server, f"/model/{evil}")
    assert status == 200 and b"<img src=x" not in body
    mix = _id(cat, "mix.safetensors")
    status, _, body = request(server, f"/model/{mix}")
    page = body.decode()
    assert status == 200 and "&lt;b&gt;bold&lt;/b&gt;" in page and "<b>bold</b>" not in page
    assert f"/sidecar/{mix}/mix.preview.png" in page and "Advice" in page and "not hashed yet" in page
    for path in ("/duplicates", "/problems", "/plan", "/static/style.css", "/static/app.js"):
        assert request(server, path)[0] == 200, path
    progress = json.loads(request(server, "/api/progress")[2])
    assert progress["state"] == "idle"
    assert request(server, "/model/999999")[0] == 404
    assert request(server, "/model/abc")[0] == 404
    assert request(server, "/nope")[0] == 404


def test_sidecars_are_served_only_from_inside_the_roots(library) -> None:
    server, cat, tmp = library
    mix = _id(cat, "mix.safetensors")
    status, headers, body = request(server, f"/sidecar/{mix}/mix.preview.png")
    assert status == 200 and headers["content-type"] == "image/png" and body.startswith(b"\x89PNG")
    status, headers, body = request(server, f"/sidecar/{mix}/mix.yaml")
    assert (
        status == 200
        and headers["content-type"].startswith("text/plain")
        and "sandbox" in headers["content-security-policy"]
    )
    secret = str(tmp / "secret.txt")
    attempts = [
        f"/sidecar/{mix}/../../secret.txt",
        f"/sidecar/{mix}/..%2f..%2fsecret.txt",
        f"/sidecar/{mix}/%2e%2e%2f%2e%2e%2fsecret.txt",
        f"/sidecar/{mix}/%2e%2e",
        f"/sidecar/{mix}/{secret}",
        f"/sidecar/{mix}/{secret.replace('/', '%2f')}",
        f"/sidecar/{mix}/mix.safetensors",  # the model itself is not a sidecar
        f"/sidecar/{mix}/mix.preview.png%00.txt",
        f"/sidecar/{mix}/..\\..\\secret.txt",
        "/static/../../../../etc/passwd",
        "/static/%2e%2e/%2e%2e/etc/passwd",
        "/static//etc/passwd",
        "//etc/passwd",
        "/etc/passwd",
    ]
    for path in attempts:
        status, _, body = request(server, path)
        assert status in (403, 404), path
        assert b"top secret" not in body and b"root:" not in body, path
    # The symlinked "preview" is a recorded sidecar, but it resolves outside the root.
    assert "mix.png" in cat.get(mix)["sidecars"]
    status, _, body = request(server, f"/sidecar/{mix}/mix.png")
    assert status == 403 and b"top secret" not in body


def test_host_header_and_token_protect_the_server(library) -> None:
    server, _, _ = library
    assert request(server, "/", headers={"Host": "attacker.example"})[0] == 421
    assert request(server, "/", headers={"Host": "localhost:1234"})[0] == 200
    assert request(server, "/plan/run", "POST", "token=wrong")[0] == 403
    assert request(server, "/plan/run", "POST", "")[0] == 403
    assert (
        request(server, "/plan/run", "POST", f"token={server.token}", {"Origin": "http://attacker.example"})[0] == 403
    )
    assert server.runner.snapshot()["state"] == "idle"


def test_plan_runs_from_the_page_with_progress(library) -> None:
    server, _, tmp = library
    status, headers, _ = request(server, "/plan/run", "POST", f"token={server.token}")
    assert status == 303 and headers["location"] == "/plan"
    deadline = time.time() + 60
    while server.runner.snapshot()["state"] != "finished" and time.time() < deadline:
        time.sleep(0.05)
    state = json.loads(request(server, "/api/progress")[2])
    assert state["state"] == "finished" and state["done"] == 1 and state["failed"] == 0, state
    assert state["overall_done"] == state["overall_total"] > 0
    assert (tmp / "models" / ".sdmodel-trash" / "Stable-diffusion" / "mix.safetensors").is_file()
    page = request(server, "/plan")[2].decode()
    assert "Last run" in page and 'class="badge done"' in page


def test_list_page_is_fast_with_10000_rows(tmp_path: Path) -> None:
    cat = Catalog(tmp_path / "big.db")
    kinds = ["checkpoint", "lora", "vae", "embedding", "controlnet"]
    families = ["sd1", "sdxl", "sd2", None]
    rows = [
        {
            "path": f"/lib/models/f{i % 40}/model-{i:05d}.safetensors",
            "root": "/lib/models",
            "folder": f"models/f{i % 40}",
            "category": "Lora",
            "name": f"model-{i:05d}.safetensors",
            "is_dir": 0,
            "size": 1000 + i,
            "mtime_ns": i,
            "format": "safetensors",
            "kind": kinds[i % 5],
            "family": families[i % 4],
            "precision": "fp16",
            "ema": 0,
            "junk_bytes": 0,
            "verdict": "safe",
            "sidecars": "[]",
            "scanned_at": 0.0,
        }
        for i in range(10_000)
    ]
    cat.upsert_many(rows)
    server = start(tmp_path / "big.db")
    try:
        request(server, "/")  # warm up
        for path in ("/", "/?page=150", "/?kind=lora&family=sdxl&q=model-09", "/?q=nothing-matches"):
            t0 = time.perf_counter()
            status, _, _ = request(server, path)
            elapsed = time.perf_counter() - t0
            assert status == 200 and elapsed < 0.3, (path, elapsed)
        assert b"10,000 matching files" in request(server, "/")[2]
        assert b"model-07499" in request(server, "/?page=150")[2]
    finally:
        server.shutdown()
        server.server_close()
        cat.close()


def test_model_page_looks_for_twins_in_its_own_folder_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Two installs have a folder of the same name: a safetensors "twin" under the other root is not
    # beside the pickle.
    from sdmodel.web import pages

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    a, b = tmp_path / "a" / "models", tmp_path / "b" / "models"
    (a / "Stable-diffusion").mkdir(parents=True)
    (b / "Stable-diffusion").mkdir(parents=True)
    write_ckpt(a / "Stable-diffusion" / "old.ckpt", shrink(layout("sd15")), seed=3)
    write_sparse_safetensors(b / "Stable-diffusion" / "old.safetensors", with_dtype(layout("sd15"), "F16"))
    with Catalog(tmp_path / "lib.db") as cat:
        scan_library(cat, [(a, "a1111"), (b, "a1111")], jobs=1)
        f = cat.get(_id(cat, "old.ckpt"))
        assert "safetensors twin" not in pages.model_page(cat, f)
        write_sparse_safetensors(a / "Stable-diffusion" / "old.safetensors", with_dtype(layout("sd15"), "F16"))
        scan_library(cat, [(a, "a1111")], jobs=1)
        assert "safetensors twin" in pages.model_page(cat, f)
