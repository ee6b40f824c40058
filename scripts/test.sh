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
# pytest's 5 means it collected no tests: a broken suite, reported as a failure with a reason.
if [ "$status" -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi
exit "$status"
