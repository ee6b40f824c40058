#!/usr/bin/env bash
# Install Parley with its test tools into .venv and run the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[dev]'
set +e
.venv/bin/python -m pytest "$@"
status=$?
set -e
# pytest's 5 means it collected no tests (for example a -k filter that matched nothing): say so, not fail.
if [ "$status" -eq 5 ]; then echo "pytest collected no tests"; exit 0; fi
exit "$status"
