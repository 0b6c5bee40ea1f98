#!/usr/bin/env bash
# Installs what the tests need into the virtual environment given as $1:
# the test extras (pytest, ruff, torch==2.13.0 from the local CPU wheel, playwright's Python driver).
set -euo pipefail
venv=${1:-.venv}
"$venv/bin/pip" install -q -e '.[test]'
# GGML's reference quantizers (tests/test_ggml_quantize.py): GGML's source from the llama-cpp-python
# sdist on PyPI, only ggml-quants.c compiled, into ~/.cache/sdmodel-test (never into the repository).
"$venv/bin/python" -m tests.ggml_reference
# Headless Chromium for the web page's end-to-end test (tests/test_web_e2e.py): Debian's package,
# driven by Playwright through its executable path (never `playwright install`: no browser downloads).
if [ ! -x /usr/bin/chromium ]; then
    apt-get update -qq && apt-get install -y -qq chromium
fi
