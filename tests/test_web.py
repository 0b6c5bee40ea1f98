"""The library web page: routes, HTML escaping, path traversal, Host/token checks, list latency."""

from __future__ import annotations

import base64
import http.client
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sdmodel.library.catalog import CARD_COLUMNS, Catalog, Filters
from sdmodel.library.scanning import scan_library
from sdmodel.web import server as server_module
from sdmodel.web.server import LibraryServer, make_server
from tests.builders import (
    layout,
    png_bytes,
    shrink,
    with_dtype,
    write_civitai_info,
    write_ckpt,
    write_safetensors,
    write_sparse_safetensors,
)
from tests.test_library_fits import lora_report, row
from tests.test_library_trees import lora_layout

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


@pytest.fixture()
def cards(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[LibraryServer, Catalog, Path]]:
    """A LoRA folder the way model managers leave it: previews, Civitai records, a ModelSpec thumbnail."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    root = tmp_path / "models"
    lora = root / "Lora"
    lora.mkdir(parents=True)
    write_sparse_safetensors(lora / "pony-style.safetensors", lora_layout())
    (lora / "pony-style.preview.png").write_bytes(png_bytes(8, 8, (200, 40, 40), (40, 40, 200)))
    write_civitai_info(
        lora / "pony-style.civitai.info",
        version="v2.0",
        base="Pony",
        words=["shiny style", "<b>bold</b>"],
        model="Shiny Style",
        creator="ann",
    )
    thumb = "data:image/png;base64," + base64.b64encode(png_bytes(4, 4, (0, 0, 0), (255, 255, 255))).decode()
    write_sparse_safetensors(
        lora / "thumbed.safetensors", lora_layout(), metadata={"modelspec.thumbnail": thumb, "modelspec.author": "bo"}
    )
    (lora / "thumbed.cm-info.json").write_text(json.dumps({"BaseModel": "SDXL 1.0", "TrainedWords": ["thumb word"]}))
    write_sparse_safetensors(lora / "fake.safetensors", lora_layout())
    (lora / "fake.jpg").write_text("<svg onload=alert(1)></svg>")  # a "picture" that is not one
    write_sparse_safetensors(lora / "big.safetensors", lora_layout())
    (lora / "big.png").write_bytes(png_bytes(64, 64, (1, 2, 3), (4, 5, 6)))
    with Catalog(tmp_path / "lib.db") as cat:
        scan_library(cat, [(root, "a1111")], jobs=1)
    server = start(tmp_path / "lib.db")
    cat = Catalog(tmp_path / "lib.db")
    yield server, cat, tmp_path
    server.shutdown()
    server.server_close()
    cat.close()


def test_pictures_are_served_safely(cards, monkeypatch: pytest.MonkeyPatch) -> None:
    server, cat, _ = cards
    pony, thumbed, fake, big = (_id(cat, f"{n}.safetensors") for n in ("pony-style", "thumbed", "fake", "big"))
    status, headers, body = request(server, f"/preview/{pony}")
    assert status == 200 and headers["content-type"] == "image/png" and body.startswith(b"\x89PNG")
    assert headers["x-content-type-options"] == "nosniff" and "sandbox" in headers["content-security-policy"]
    status, headers, body = request(server, f"/preview/{thumbed}")  # the ModelSpec thumbnail, decoded
    assert status == 200 and headers["content-type"] == "image/png" and body.startswith(b"\x89PNG")
    # Named like a picture, but its bytes are not one: never served as an image (nor as SVG).
    assert request(server, f"/preview/{fake}")[0] == 404
    status, _, body = request(server, f"/sidecar/{fake}/fake.jpg")
    assert status == 415 and b"svg" not in body
    monkeypatch.setattr(server_module, "MAX_SIDECAR_BYTES", 100)
    assert request(server, f"/preview/{big}")[0] == 404
    assert request(server, f"/sidecar/{big}/big.png")[0] == 413
    assert request(server, "/preview/999999")[0] == 404
    assert request(server, "/preview/../../etc/passwd")[0] == 404


def test_preview_symlinked_out_of_the_roots_is_refused(library) -> None:
    server, cat, _ = library
    mix = _id(cat, "mix.safetensors")
    assert cat.get(mix)["preview"] == "mix.png"  # A1111 looks at <stem>.png first: here a symlink out
    status, _, body = request(server, f"/preview/{mix}")
    assert status == 404 and b"top secret" not in body


def test_cards_show_and_filter(cards) -> None:
    server, cat, _ = cards
    pony = _id(cat, "pony-style.safetensors")
    page = request(server, f"/model/{pony}")[2].decode()
    assert f'src="/preview/{pony}"' in page
    for text in ("Shiny Style", "v2.0", "Pony", "ann", "shiny style", "&lt;b&gt;bold&lt;/b&gt;"):
        assert text in page, text
    assert "<b>bold</b>" not in page
    listing = request(server, "/")[2].decode()
    assert f'src="/preview/{pony}"' in listing and f'src="/preview/{_id(cat, "thumbed.safetensors")}"' in listing
    for query, names in (
        ("base_model=Pony", ["pony-style"]),
        ("creator=bo", ["thumbed"]),
        ("trigger=thumb", ["thumbed"]),
        ("trigger=STYLE", ["pony-style"]),
        ("base_model=-", ["fake", "big"]),
    ):
        html = request(server, f"/?{query}")[2].decode()
        shown = {n for n in ("pony-style", "thumbed", "fake", "big") if f">{n}.safetensors<" in html}
        assert shown == set(names), (query, shown)


def test_usage_page_draws_the_space(cards) -> None:
    server, _, _ = cards
    status, _, body = request(server, "/usage")
    html = body.decode()
    assert status == 200 and 'class="active">Disk usage' in html
    assert html.count("<svg") == 3 and "Nothing to save" in html  # LoRAs already in fp16: no plan bars
    for chart in ("chart-family", "chart-kind", "chart-precision"):
        assert f'id="{chart}" role="img" aria-labelledby="{chart}-t {chart}-d"' in html
    assert "<desc" in html and ">lora<" in html and ">fp16<" in html and "73.26 KB, 4 files" in html


def test_usage_page_draws_the_plan_before_and_after(library) -> None:
    server, _, _ = library
    html = request(server, "/usage")[2].decode()
    assert 'id="chart-plan"' in html and "all planned files" in html and ">mix.safetensors<" in html
    assert html.count('<rect class="before"') == html.count('<rect class="after"') == 3  # legend, total, mix
    assert "<img src=x" not in html  # the evil name is escaped in the SVG too


def test_the_page_speaks_russian(cards) -> None:
    server, _, _ = cards
    status, headers, body = request(server, "/?lang=ru&trigger=style")
    html = body.decode()
    assert status == 200 and '<html lang="ru">' in html and "sdmodel_lang=ru" in headers["set-cookie"]
    assert "Найден 1 файл" in html and "Модели" in html and "Место на диске" in html
    html = request(server, "/", headers={"Cookie": "sdmodel_lang=ru"})[2].decode()
    assert '<html lang="ru">' in html and "Найдено 4 файла" in html and "Триггерное слово" in html
    html = request(server, "/usage", headers={"Cookie": "sdmodel_lang=ru"})[2].decode()
    assert "Место по семействам" in html and "4 файла" in html and "\u00a0КБ" in html
    status, headers, body = request(server, "/?lang=en", headers={"Cookie": "sdmodel_lang=ru"})
    assert '<html lang="en">' in body.decode() and "sdmodel_lang=en" in headers["set-cookie"]
    assert request(server, "/", headers={"Cookie": "sdmodel_lang=xx; other=1"})[0] == 200
    status, _, body = request(server, "/nope", headers={"Cookie": "sdmodel_lang=ru"})
    assert status == 404 and "не найдено" in body.decode()
    assert json.loads(request(server, "/api/progress")[2])["state"] == "idle"


def test_server_language_is_the_default(tmp_path: Path) -> None:
    with Catalog(tmp_path / "lib.db"):
        pass
    server = make_server(tmp_path / "lib.db", "127.0.0.1", 0, language="ru")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        html = request(server, "/")[2].decode()
        assert '<html lang="ru">' in html and "Найдено 0 файлов" in html
        assert '<html lang="en">' in request(server, "/?lang=en")[2].decode()
    finally:
        server.shutdown()
        server.server_close()


def test_a_lora_page_lists_the_models_it_fits(tmp_path: Path) -> None:
    with Catalog(tmp_path / "lib.db") as cat:
        cat.upsert_many(
            [
                row("/m/sd15.safetensors", "checkpoint", "sd1", {"components": {"unet": {}, "text_encoder": {}}}),
                row("/m/sd15-unet.safetensors", "unet", "sd1"),
                row("/m/xl.safetensors", "checkpoint", "sdxl", {"components": {"unet": {}, "text_encoder": {}}}),
                row("/m/detail.safetensors", "lora", "sd1", lora_report(["diffusion model", "text encoder"])),
                row("/m/vague.safetensors", "lora", None, lora_report(["diffusion model"])),
                row("/m/flux-style.safetensors", "lycoris", "flux", lora_report(["diffusion model"])),
            ]
        )
        lora, sd15, unet = (_id(cat, n) for n in ("detail.safetensors", "sd15.safetensors", "sd15-unet.safetensors"))
        vague, flux = _id(cat, "vague.safetensors"), _id(cat, "flux-style.safetensors")
    server = start(tmp_path / "lib.db")
    try:
        html = request(server, f"/model/{lora}")[2].decode()
        section = html[html.index("<h2>Fits these models</h2>") :]
        assert f'<a href="/model/{sd15}">/m/sd15.safetensors</a>' in section and "xl.safetensors" not in html
        assert f'<a href="/model/{unet}">' in section and section.count("text encoders missing") == 1
        assert "Fits these models" not in request(server, f"/model/{sd15}")[2].decode()
        html = request(server, f"/model/{flux}")[2].decode()
        assert "No catalogued model of its family (flux)" in html
        assert "Its base family is unknown" in request(server, f"/model/{vague}")[2].decode()
        html = request(server, f"/model/{lora}?lang=ru")[2].decode()
        assert "<h2>К каким моделям подходит</h2>" in html and "нет текстовых энкодеров" in html
    finally:
        server.shutdown()
        server.server_close()


def test_old_catalogs_gain_the_card_columns(tmp_path: Path) -> None:
    with Catalog(tmp_path / "old.db") as cat:
        cat.db.execute("DROP INDEX files_base_model")
        cat.db.execute("DROP INDEX files_creator")
        for column in CARD_COLUMNS:
            cat.db.execute(f"ALTER TABLE files DROP COLUMN {column}")
    with Catalog(tmp_path / "old.db") as cat:
        have = {r[1] for r in cat.db.execute("PRAGMA table_info(files)")}
        assert set(CARD_COLUMNS) <= have and cat.count(Filters(creator="x", trigger="y")) == 0


def test_card_fields_from_each_model_manager() -> None:
    from sdmodel.sidecars import card_from, preview_of

    card = card_from(
        [
            (".civitai.info", {"name": "v3", "trainedWords": ["a, b", "c"], "model": {"creator": {"username": "m"}}}),
            (".cm-info.json", {"ModelName": "SM name", "BaseModel": "Flux.1 D", "TrainedWords": ["c", "d"]}),
            (".metadata.json", {"model_name": "LM", "base_model": "Illustrious", "civitai": {"trainedWords": ["e"]}}),
            (".json", {"sd version": "SDXL", "activation text": "f, g"}),
        ],
        {"modelspec.title": "Spec", "modelspec.author": "spec author", "modelspec.trigger_phrase": "h"},
    )
    assert (card.title, card.version, card.base_model, card.creator) == ("SM name", "v3", "Flux.1 D", "m")
    assert card.triggers == ("a, b", "c", "d", "e", "f", "g", "h") and not card.thumbnail
    assert card_from([(".json", {"sd version": 3, "activation text": ["x", 4]})], {}).triggers == ("x",)
    sidecars = ["m.preview.png", "m.PNG", "m.civitai.info"]
    assert preview_of("m.safetensors", sidecars) == "m.PNG"  # A1111's order: <stem>.png first
    assert preview_of("m.safetensors", ["m.civitai.info", "m.preview.webp"]) == "m.preview.webp"
    assert preview_of("m.safetensors", ["m.txt"]) is None
