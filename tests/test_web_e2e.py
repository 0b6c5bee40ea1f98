"""End to end in headless Chromium (Debian's ``chromium``, driven by Playwright; scripts/setup-test-env.sh
installs it): list, filter, model page, run the savings plan and watch its progress; pictures, cards,
the disk-usage page and the language switch. Screenshots for the README are written only when
SDMODEL_SCREENSHOTS names their folder (``SDMODEL_SCREENSHOTS=docs/screenshots``), so test runs do not
rewrite committed files."""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path
from typing import Any

import pytest

from sdmodel.library.catalog import Catalog
from sdmodel.library.scanning import scan_library
from sdmodel.web.server import make_server
from tests.builders import png_bytes, write_civitai_info
from tests.test_library_trees import a1111_tree

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

if os.environ.get("CI"):  # CI's set-up installs both: their absence there is a failure, not a skip
    assert CHROMIUM.exists(), "no /usr/bin/chromium: scripts/setup-test-env.sh did not install it"
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is a test dependency")
if not CHROMIUM.exists():
    pytest.skip("no /usr/bin/chromium: run scripts/setup-test-env.sh", allow_module_level=True)


def test_browse_filter_and_run_the_plan(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    inst = a1111_tree(tmp_path)
    with Catalog(tmp_path / "lib.db") as cat:
        scan_library(cat, [(inst / "models", "a1111"), (inst / "embeddings", "a1111")], jobs=1)
    server = make_server(tmp_path / "lib.db", "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1180, "height": 720})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.goto(server.url)
            assert page.locator("table.models tbody tr").count() == 11
            assert page.inner_text("#count") == "11 matching files"

            # Filter by kind and text.
            page.select_option("#f-kind", "checkpoint")
            page.fill("#f-q", "dream")
            page.click("#f-apply")
            page.wait_for_url(re.compile(r"kind=checkpoint"))
            rows = page.locator("table.models tbody tr")
            assert rows.count() == 1 and page.inner_text("#count") == "1 matching file"

            # The model page.
            rows.first.locator("a").click()
            page.wait_for_url(re.compile(r"/model/\d+$"))
            assert page.inner_text("h1") == "dream-fp32-ema.safetensors"
            body = page.inner_text("main")
            assert "checkpoint" in body and "sd1" in body and "For generating" in body
            assert page.locator(".previews img").count() == 1

            # Run the plan and watch the progress until it finishes (the page then reloads).
            page.click("text=Savings plan")
            page.wait_for_url(re.compile(r"/plan$"))
            assert page.inner_text("#plan-summary").startswith("1 file, ")
            page.click("#run-plan")
            # (a selector wait: the page's CSP forbids the eval that wait_for_function needs)
            page.wait_for_selector('#progress[data-state="finished"]', state="attached", timeout=60_000)
            page.wait_for_selector("table.runs .badge.done", timeout=30_000)
            assert "0 files" in page.inner_text("#plan-summary")
            assert (inst / "models" / "Stable-diffusion" / "dream-fp16.safetensors").is_file()

            page.goto(server.url)
            assert page.locator("text=dream-fp16.safetensors").count() == 1
            shot = tmp_path / "web-screenshot.png"
            page.screenshot(path=str(shot))
            assert not errors, errors
            browser.close()
    finally:
        server.shutdown()
        server.server_close()
    assert 0 < shot.stat().st_size < 300_000


def _screenshot(page: Any, name: str, full_page: bool = False) -> None:
    folder = os.environ.get("SDMODEL_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=full_page)


def test_pictures_usage_and_language(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    inst = a1111_tree(tmp_path)
    sd, lora = inst / "models" / "Stable-diffusion", inst / "models" / "Lora"
    (sd / "dream-fp32-ema.preview.png").write_bytes(png_bytes(96, 96, (255, 183, 77), (94, 53, 177)))
    (sd / "xl-base.png").write_bytes(png_bytes(96, 96, (129, 212, 250), (13, 71, 161)))
    (lora / "detail.preview.png").write_bytes(png_bytes(96, 96, (165, 214, 167), (27, 94, 32)))
    write_civitai_info(
        lora / "detail.civitai.info",
        version="v1.5",
        base="SD 1.5",
        words=["add_detail", "intricate"],
        model="Detail Tweaker",
        creator="artist",
    )
    with Catalog(tmp_path / "lib.db") as cat:
        scan_library(cat, [(inst / "models", "a1111"), (inst / "embeddings", "a1111")], jobs=1)
    server = make_server(tmp_path / "lib.db", "127.0.0.1", 0, language="en")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1180, "height": 760})
            errors: list[str] = []
            pictures: list[tuple[int, str]] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on(
                "response",
                lambda r: (
                    pictures.append((r.status, r.headers.get("content-type", ""))) if "/preview/" in r.url else None
                ),
            )
            page.goto(server.url)
            page.wait_for_load_state("networkidle")
            assert page.locator("img.thumb").count() == 3
            assert pictures and all(p == (200, "image/png") for p in pictures), pictures
            _screenshot(page, "list")

            # The model page: its picture and what its Civitai record says; the creator link filters.
            page.click("text=detail.safetensors")
            page.wait_for_url(re.compile(r"/model/\d+$"))
            card = page.inner_text(".card")
            for text in ("Detail Tweaker", "v1.5", "SD 1.5", "artist", "add_detail", "intricate"):
                assert text in card, text
            assert page.locator(".card img.preview").count() == 1
            _screenshot(page, "model")
            page.click(".card a.filter-link >> text=artist")
            page.wait_for_url(re.compile(r"creator=artist"))
            assert page.inner_text("#count") == "1 matching file"
            page.fill("#f-trigger", "intricate")
            page.select_option("#f-creator", "")
            page.click("#f-apply")
            page.wait_for_url(re.compile(r"trigger=intricate"))
            assert page.inner_text("#count") == "1 matching file"

            # Disk usage: one chart per grouping and the plan's before/after bars, values in text.
            page.click("header nav >> text=Disk usage")
            page.wait_for_url(re.compile(r"/usage$"))
            assert page.locator("svg.chart").count() == 4
            assert "all planned files" in (page.text_content("#chart-plan") or "")
            assert page.get_attribute("#chart-family", "role") == "img"
            _screenshot(page, "usage", full_page=True)

            # Russian: the switch in the header, remembered in a cookie on the next pages.
            page.click("#lang-ru")
            page.wait_for_url(re.compile(r"lang=ru"))
            assert page.inner_text("h1") == "Место на диске"
            assert page.get_attribute("html", "lang") == "ru"
            page.click("header nav >> text=Модели")
            page.wait_for_url(re.compile(r"/$"))
            assert page.inner_text("#count") == "Найдено 11 файлов"
            _screenshot(page, "list-ru")
            page.click("#lang-en")
            page.wait_for_url(re.compile(r"lang=en"))
            assert page.inner_text("#count") == "11 matching files"
            assert not errors, errors
            browser.close()
    finally:
        server.shutdown()
        server.server_close()
