#!/usr/bin/env bash
# Install Parley with its test tools into .venv and run the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[dev]'
# The console's browser tests drive Debian's Chromium (with Playwright, from the dev extra); the code
# execution tests run model-written code in Debian's bubblewrap sandbox.
missing=""
command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
command -v bwrap >/dev/null 2>&1 || missing="$missing bubblewrap"
if [ -n "$missing" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq $missing >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq $missing >/dev/null; }
  else
    echo "scripts/test.sh: the tests need Debian's$missing (sudo apt-get install$missing)" >&2
  fi
fi
set +e
# One pytest worker per core (at most 4), each test file on one worker (its module's servers start once); the
# suite's tests wait for conditions, never for time, so they pass beside each other.  `-n 0` runs in one process.
.venv/bin/python -m pytest -n auto --maxprocesses 4 --dist loadfile "$@"
status=$?
set -e
# pytest's 5 means it collected no tests (for example a -k filter that matched nothing): say so, not fail.
if [ "$status" -eq 5 ]; then echo "pytest collected no tests"; exit 0; fi
exit "$status"
