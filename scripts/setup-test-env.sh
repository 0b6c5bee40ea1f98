#!/usr/bin/env bash
# Installs what the tests need into the virtual environment given as $1:
# the test extras (pytest, ruff, torch==2.13.0 from the local CPU wheel, playwright's Python driver).
set -euo pipefail
venv=${1:-.venv}
"$venv/bin/pip" install -q -e '.[test]'
# Headless Chromium for the web page's end-to-end test (tests/test_web_e2e.py): Debian's package,
# driven by Playwright through its executable path (never `playwright install`: no browser downloads).
if [ ! -x /usr/bin/chromium ]; then
    apt-get update -qq && apt-get install -y -qq chromium
fi
