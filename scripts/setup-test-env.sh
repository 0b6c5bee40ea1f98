#!/usr/bin/env bash
# Installs what the tests need into the virtual environment given as $1:
# the test extras (pytest, ruff, torch==2.13.0 from the local CPU wheel, playwright's Python driver).
set -euo pipefail
venv=${1:-.venv}
"$venv/bin/pip" install -q -e '.[test]'
