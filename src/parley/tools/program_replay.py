"""What a program (programmatic tool calling) has done so far, read back from the items of its conversation.

A program that calls a client's tool stops the response: the ``program`` item, then a ``function_call`` (or
``custom_tool_call``) for each call it waits for, with ``caller: {"type": "program", "caller_id": …}``.  The
client's outputs come back in a later request, and the program runs again from its start with them (see
:mod:`parley.sandbox.program_main`).  The record is the items themselves, wherever the conversation keeps them
(earlier responses of the chain, a conversation's items, or the input of a client that keeps its own history);
the program's call ids say which program made them and in which order (``pcall_<program>_<n>``).

The ``fingerprint`` the client round-trips holds the program's seed and start time, sealed with the server's
key, so that every run of one program sees the same ``Math.random`` and ``Date`` and runs the code it was
given first.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from parley.errors import InvalidRequest
from parley.replayed_items import field_of

PROGRAM = "program"  # the function a Chat model calls to run a program
INNER = "pcall_"  # the call ids of the tool calls programs make
MAX_PROGRAM_CALLS = 256  # a program's tool calls over all its runs


@dataclass
class RecordedCall:
    call_id: str
    name: str
    arguments: str
    output: str | None = None


@dataclass
class PendingProgram:
    """A program that waits for its calls' outputs: its item (``call_id``: the model's call that made it)."""

    item_id: str
    call_id: str
    code: str
    fingerprint: str
    calls: list[RecordedCall] = field(default_factory=list)
    seed: int = 0  # what its fingerprint holds (read_fingerprint)
    now_ms: int = 0


def inner_call_id(item_id: str, index: int) -> str:
    """The call id of a program's ``index``-th tool call (from 0)."""
    return f"{INNER}{item_id.removeprefix('prog_')}_{index}"


def is_inner(call_id: str | None) -> bool:
    return bool(call_id) and call_id.startswith(INNER)  # type: ignore[union-attr]


def by_program(item: Any) -> bool:
    """Whether an item (any shape) is a program's tool call or its output: never a message of the chat."""
    caller = field_of(item, "caller")
    return field_of(caller, "type") == "program" or is_inner(field_of(item, "call_id"))


def new_fingerprint(cipher: Any, call_id: str, code: str) -> tuple[str, int, int]:
    """A new program's fingerprint, seed and start time (milliseconds)."""
    seed, now_ms = secrets.randbits(32), int(time.time() * 1000)
    sealed = json.dumps({"call_id": call_id, "code": hashlib.sha256(code.encode()).hexdigest(), "seed": seed,
                         "now": now_ms})
    if cipher is not None:
        return cipher.encrypt(sealed), seed, now_ms
    return base64.urlsafe_b64encode(sealed.encode()).decode(), seed, now_ms


def read_fingerprint(cipher: Any, program: PendingProgram) -> None:
    """Set the seed and start time the program's fingerprint holds; a 400 when it is not this server's, or was
    made for other code."""
    text = cipher.decrypt(program.fingerprint) if cipher is not None else _unsealed(program.fingerprint)
    try:
        sealed = json.loads(text or "")
        if sealed["call_id"] == program.call_id and \
                sealed["code"] == hashlib.sha256(program.code.encode()).hexdigest():
            program.seed, program.now_ms = int(sealed["seed"]), int(sealed["now"])
            return
    except (ValueError, KeyError, TypeError):
        pass
    raise InvalidRequest(f"The fingerprint of program '{program.item_id}' was not made by this server for its "
                         f"code; send the program item back as it was given.", param="input",
                         code="invalid_fingerprint")


def _unsealed(text: str) -> str | None:
    try:
        return base64.urlsafe_b64decode(text.encode()).decode()
    except (ValueError, UnicodeDecodeError):
        return None


def _text(output: Any) -> str:
    if isinstance(output, str):
        return output
    return "".join(str(field_of(part, "text") or "") for part in output or [])


def program_call_ids(items: list[Any]) -> set[str]:
    """The model call ids of the program items among ``items`` (of any shape)."""
    return {str(field_of(item, "call_id")) for item in items if field_of(item, "type") == "program"}


def pending_programs(items: list[Any], waiting: set[str]) -> list[PendingProgram]:
    """The programs of ``items`` (oldest first, of any shape) whose model calls are in ``waiting`` (unanswered
    in the chat), each with the calls it made and the outputs given so far."""
    programs: dict[str, PendingProgram] = {}
    calls: dict[str, RecordedCall] = {}
    for item in items:
        kind = field_of(item, "type")
        if kind == "program" and field_of(item, "call_id") in waiting:
            program = PendingProgram(str(field_of(item, "id")), str(field_of(item, "call_id")), str(field_of(item, "code")),
                                     str(field_of(item, "fingerprint")))
            programs[program.item_id.removeprefix("prog_")] = program
        elif kind in ("function_call", "custom_tool_call") and is_inner(field_of(item, "call_id")):
            call_id = str(field_of(item, "call_id"))
            owner = programs.get(call_id[len(INNER):].rsplit("_", 1)[0])
            if owner is not None and call_id not in calls:
                arguments = field_of(item, "arguments") if kind == "function_call" else field_of(item, "input")
                calls[call_id] = RecordedCall(call_id, str(field_of(item, "name")), str(arguments or ""))
                owner.calls.append(calls[call_id])
        elif kind in ("function_call_output", "custom_tool_call_output") and field_of(item, "call_id") in calls:
            calls[field_of(item, "call_id")].output = _text(field_of(item, "output"))
    for program in programs.values():
        program.calls.sort(key=lambda c: int(c.call_id.rsplit("_", 1)[1]))
    return list(programs.values())


def check_answered(program: PendingProgram) -> None:
    """A 400 naming the first of a program's calls the request gives no output for."""
    for call in program.calls:
        if call.output is None:
            raise InvalidRequest(f"No tool output found for function call {call.call_id} (made by program "
                                 f"'{program.item_id}').", param="input", code="invalid_value")
