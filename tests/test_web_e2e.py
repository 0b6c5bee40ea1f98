"""End to end in headless Chromium (Debian's ``chromium``, driven by Playwright; scripts/setup-test-env.sh
installs it): list, filter, model page, run the savings plan and watch its progress, screenshot."""

from __future__ import annotations

import os
import re
import shutil
import threading
from pathlib import Path

import pytest

from sdmodel.library.catalog import Catalog
from sdmodel.library.scanning import scan_library
from sdmodel.web.server import make_server
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
SCREENSHOT = Path(__file__).resolve().parent.parent / "docs" / "web-screenshot.png"

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
    # The README's screenshot: written when missing or on request (SDMODEL_UPDATE_SCREENSHOT=1), so
    # that test runs do not rewrite a committed file.
    if not SCREENSHOT.exists() or os.environ.get("SDMODEL_UPDATE_SCREENSHOT"):
        SCREENSHOT.parent.mkdir(exist_ok=True)
        shutil.copyfile(shot, SCREENSHOT)
