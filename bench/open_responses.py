"""The Open Responses compliance checks (all eleven, the optional file-search and offline-web-search on).

    python bench/open_responses.py                      # against parley serve over the scripted backend
    python bench/open_responses.py --db postgresql+asyncpg://…
    python bench/open_responses.py --base-url http://host:8321/v1 --model M --vector-store-id vs_… --offline-web-search

Without ``--base-url`` it starts the scripted backend, the loopback search service and ``parley serve`` on a
fresh SQLite file (or ``--db``), makes a vector store and one live search for the optional tests, and runs the
checks of :mod:`parley.testing.open_responses`.  Exits 1 if any test fails.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
from pathlib import Path

from parley.testing.open_responses import Outcome, run_suite, scripted_stack


def report(outcomes: list[Outcome]) -> int:
    for outcome in outcomes:
        print(f"{outcome.status:8} {outcome.id:26} {outcome.seconds * 1000:7.0f} ms  {'; '.join(outcome.errors)}")
    passed = sum(o.status == "passed" for o in outcomes)
    print(f"{passed}/{len(outcomes)} passed")
    return 0 if passed == len(outcomes) else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url")
    parser.add_argument("--api-key", default="none")
    parser.add_argument("--model", default="scripted")
    parser.add_argument("--vector-store-id")
    parser.add_argument("--offline-web-search", action="store_true")
    parser.add_argument("--db")
    args = parser.parse_args()
    if args.base_url:
        return report(run_suite(args.base_url, api_key=args.api_key, model=args.model,
                                vector_store_id=args.vector_store_id, offline_web_search=args.offline_web_search))
    with contextlib.ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        base_url, store_id = stack.enter_context(scripted_stack(args.db or f"sqlite:///{folder / 'suite.db'}"))
        return report(run_suite(base_url, model=args.model, vector_store_id=store_id, offline_web_search=True))


if __name__ == "__main__":
    sys.exit(main())
