"""One run of a model's program (programmatic tool calling), in a sandbox of its own made for the run and
removed after it: the driver (:mod:`parley.sandbox.program_main`) runs the program in QuickJS there, never in
the server's process."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from parley.ids import new_id
from parley.sandbox.base import Limits, Sandbox, SandboxError

DRIVER = Path(__file__).with_name("program_main.py").read_text(encoding="utf-8")
SPEC, OUTCOME = "program.json", "outcome.json"
MEMORY_BYTES = 256 * 1024 ** 2  # the sandbox process (Python, QuickJS and the program)
PROGRAM_MEMORY_BYTES = 128 * 1024 ** 2  # what the program's own values may hold
MAX_OUTCOME_BYTES = 4 * 1024 ** 2


@dataclass(frozen=True)
class Call:
    """A tool call a program made, by the tool's name: its arguments (JSON, or a custom tool's text)."""

    name: str
    arguments: str


@dataclass(frozen=True)
class Outcome:
    """How a run ended: ``completed`` (with its result), ``failed`` (with what went wrong, as the result), or
    ``pending`` (with the calls it waits for)."""

    status: str
    result: str = ""
    calls: list[Call] = field(default_factory=list)


def failed(text: str) -> Outcome:
    return Outcome("failed", f"Error: {text}")


def _outcome(data: bytes, tools: dict[str, str], max_calls: int) -> Outcome:
    """The driver's outcome file, checked (the sandbox is not trusted to write what the driver meant)."""
    try:
        raw = json.loads(data)
        status = raw["status"]
        if status == "pending":
            calls = [Call(str(c["name"]), str(c["arguments"])) for c in raw["calls"]]
            if calls and len(calls) <= max_calls and all(c.name in tools for c in calls):
                return Outcome("pending", calls=calls)
        elif status in ("completed", "failed") and isinstance(raw["result"], str):
            return Outcome(status, raw["result"])
    except (ValueError, KeyError, TypeError):
        pass
    return failed("the program's sandbox gave back an outcome that is not one.")


async def run_program(sandbox: Sandbox, limits: Limits, *, code: str, tools: dict[str, str],
                      recorded: list[dict[str, str]], seed: int, now_ms: int, max_calls: int) -> Outcome:
    """Run ``code`` once from its start, with the outputs ``recorded`` for its first calls (``tools``: the
    callable tools' names and kinds, ``function`` or ``custom``)."""
    container_id = new_id("prog")
    spec = {"code": code, "tools": tools, "recorded": recorded, "seed": seed, "now": now_ms,
            "memory_bytes": PROGRAM_MEMORY_BYTES, "max_calls": max_calls}
    try:
        session = await sandbox.open(container_id, replace(limits, memory_bytes=MEMORY_BYTES))
    except SandboxError as exc:
        return failed(f"the program's sandbox did not start ({exc}).")
    try:
        await session.write(SPEC, json.dumps(spec).encode())
        # (relative paths: a session starts in its workspace, which is /mnt/data only in the bwrap sandbox)
        cell = await session.python(f"{DRIVER}\nmain({SPEC!r}, {OUTCOME!r})\n")
        if cell.timed_out:
            return failed(f"the program ran longer than {limits.call_timeout_s:g} seconds and was stopped.")
        if cell.error:
            return failed(f"the program's sandbox failed ({cell.error}): {cell.logs[-2000:]}")
        return _outcome(await session.read(OUTCOME, MAX_OUTCOME_BYTES), tools, max_calls)
    except SandboxError as exc:
        return failed(f"the program's sandbox failed ({exc}).")
    finally:
        await session.close()
        await sandbox.discard(container_id)

