"""Runs the scenarios, prints a pass / fail / skip table, optionally writes JSON."""

from __future__ import annotations

import contextlib
import json
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
import openai

from parley.testing.search_server import SearchTestServer
from parley.testing.strict import ValidatingTransport
from parley.verify.scenarios import SCENARIOS, Context, Skip


@dataclass
class Outcome:
    name: str
    status: str  # pass, fail or skip
    reason: str
    seconds: float


def _run_one(name: str, ctx: Context) -> Outcome:
    start = time.perf_counter()
    try:
        SCENARIOS[name](ctx)
        status, reason = "pass", ""
    except Skip as skip:
        status, reason = "skip", str(skip)
    except AssertionError as failure:
        status, reason = "fail", str(failure) or traceback.format_exc(limit=2).strip().splitlines()[-1]
    except Exception as error:  # an SDK exception, a parse error…: the endpoint misbehaved
        status, reason = "fail", f"{type(error).__name__}: {error}"[:500]
    return Outcome(name, status, reason.replace("\n", " ")[:500], round(time.perf_counter() - start, 2))


def table(outcomes: list[Outcome]) -> str:
    lines = ["| scenario | result | reason |", "| --- | --- | --- |"]
    lines += [f"| {o.name} | {o.status} | {o.reason.replace('|', '/')} |" for o in outcomes]
    counts = {s: sum(o.status == s for o in outcomes) for s in ("pass", "fail", "skip")}
    lines.append("")
    lines.append(f"{counts['pass']} passed, {counts['fail']} failed, {counts['skip']} skipped")
    return "\n".join(lines)


def run_verify(base_url: str, model: str, api_key: str = "parley-verify", only: list[str] | None = None,
               json_path: Path | None = None, search_port: int | None = None, web_search: bool = False
               ) -> list[Outcome]:
    """Run the scenarios; with ``search_port``, a search server for the endpoint is started on that port.

    ``web_search`` says the endpoint has a search provider of its own (OpenAI's hosted search, say).
    """
    names = only or list(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        raise ValueError(f"unknown scenarios {unknown}; known: {', '.join(SCENARIOS)}")
    base_url = base_url.rstrip("/")
    http_client = httpx.Client(transport=ValidatingTransport(), timeout=120)
    client = openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0, http_client=http_client)
    with contextlib.ExitStack() as stack:
        if search_port is not None:
            stack.enter_context(SearchTestServer(port=search_port))
        ctx = Context(base_url, model, api_key, client, search_available=web_search or search_port is not None)
        outcomes = [_run_one(name, ctx) for name in names]
    if json_path is not None:
        json_path.write_text(json.dumps([asdict(o) for o in outcomes], indent=2))
    return outcomes
