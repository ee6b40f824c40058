"""A checker for the grammar of a Responses event stream, usable against any endpoint.

:func:`check_stream` takes the events of one streamed response (parsed with the SDK's
types) and raises :class:`StreamGrammarError` naming the first rule broken: created
first, then in_progress, exactly one terminal event at the end, ``sequence_number`` from
0 rising by one, items added in ``output_index`` order and each finished before the
next, content parts opened before their deltas, deltas adding up to the done text and
to the terminal response.
"""

from __future__ import annotations

from typing import Any

TERMINAL = {"response.completed", "response.incomplete", "response.failed"}
ITEM_EVENT_PREFIXES = ("response.output_text.", "response.refusal.", "response.function_call_arguments.",
                       "response.content_part.", "response.reasoning_text.", "response.mcp_", "response.web_search_call.",
                       "response.file_search_call.",
                       "response.custom_tool_call_input.", "response.reasoning_summary", "response.shell_call_command.",
                       "response.code_interpreter_call", "response.shell_call_output_content.")


class StreamGrammarError(AssertionError):
    pass


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise StreamGrammarError(message)


def _check_lifecycle(events: list[Any]) -> None:
    _require(bool(events), "the stream is empty")
    _require(events[0].type == "response.created", f"first event is {events[0].type}, not response.created")
    _require(len(events) > 1 and events[1].type == "response.in_progress", "second event is not response.in_progress")
    terminals = [i for i, e in enumerate(events) if e.type in TERMINAL]
    _require(len(terminals) == 1, f"expected exactly one terminal event, got {len(terminals)}")
    _require(terminals[0] == len(events) - 1, "the terminal event is not the last event")
    for i, event in enumerate(events):
        _require(event.sequence_number == i, f"event {i} ({event.type}) has sequence_number {event.sequence_number}")
    ids = {e.response.id for e in events if hasattr(e, "response")}
    _require(len(ids) == 1, f"response ids differ between lifecycle events: {ids}")


class _ItemTracker:
    """Follows one output item from added to done, collecting its streamed text."""

    def __init__(self, event: Any) -> None:
        self.item = event.item
        self.done: Any = None
        self.parts: dict[int, str] = {}
        self.open_parts: set[int] = set()
        self.arguments = ""
        self.part_done: dict[int, Any] = {}
        self.summary: str | None = None  # the reasoning summary part being streamed
        self.code: str | None = None  # a code_interpreter call's streamed code
        self.commands: dict[int, str] = {}  # a shell call's streamed commands
        self.streams: dict[int, dict[str, str]] = {}  # a shell call output's streamed stdout and stderr

    def feed(self, event: Any) -> None:
        kind = event.type
        index = getattr(event, "content_index", None)
        if kind == "response.content_part.added":
            _require(index not in self.parts, f"content part {index} added twice")
            self.parts[index] = ""
            self.open_parts.add(index)
        elif kind in ("response.output_text.delta", "response.refusal.delta", "response.reasoning_text.delta"):
            _require(index in self.open_parts, f"{kind} before content_part.added for part {index}")
            self.parts[index] += event.delta
        elif kind in ("response.output_text.done", "response.reasoning_text.done"):
            _require(event.text == self.parts.get(index), f"{kind} text differs from its deltas")
        elif kind == "response.refusal.done":
            _require(event.refusal == self.parts.get(index), "refusal.done differs from its deltas")
        elif kind == "response.content_part.done":
            _require(index in self.open_parts, f"content_part.done for part {index} that is not open")
            self.open_parts.discard(index)
            self.part_done[index] = event.part
        elif kind == "response.reasoning_summary_part.added":
            _require(self.summary is None, "a second reasoning summary part opened before the first was done")
            self.summary = ""
        elif kind == "response.reasoning_summary_text.delta":
            _require(self.summary is not None, f"{kind} before reasoning_summary_part.added")
            self.summary = (self.summary or "") + event.delta
        elif kind == "response.reasoning_summary_text.done":
            _require(event.text == self.summary, f"{kind} text differs from its deltas")
        elif kind == "response.reasoning_summary_part.done":
            _require(event.part.text == self.summary, f"{kind} part differs from its deltas")
            self.summary = None
        elif kind in ("response.function_call_arguments.delta", "response.mcp_call_arguments.delta",
                      "response.custom_tool_call_input.delta"):
            self.arguments += event.delta
        elif kind in ("response.function_call_arguments.done", "response.mcp_call_arguments.done"):
            _require(event.arguments == self.arguments, f"{kind} differs from its deltas")
        elif kind == "response.code_interpreter_call_code.delta":
            self.code = (self.code or "") + event.delta
        elif kind == "response.code_interpreter_call_code.done":
            _require(event.code == (self.code or ""), f"{kind} differs from its deltas")
        elif kind == "response.shell_call_command.delta":
            self.commands[event.command_index] = self.commands.get(event.command_index, "") + event.delta
        elif kind == "response.shell_call_command.done":
            _require(event.command == self.commands.get(event.command_index, ""), f"{kind} differs from its deltas")
        elif kind == "response.shell_call_output_content.delta":
            streams = self.streams.setdefault(event.command_index, {"stdout": "", "stderr": ""})
            streams["stdout"] += event.delta.stdout or ""
            streams["stderr"] += event.delta.stderr or ""
        elif kind == "response.shell_call_output_content.done":
            streams = self.streams.get(event.command_index, {"stdout": "", "stderr": ""})
            _require([(o.stdout, o.stderr) for o in event.output] == [(streams["stdout"], streams["stderr"])],
                     f"{kind} differs from its deltas")

    def finish(self, event: Any) -> None:
        _require(not self.open_parts, f"item {self.item.id} done with open content parts {self.open_parts}")
        _require(self.summary is None, f"item {self.item.id} done with an open summary part")
        self.done = event.item
        _require(self.done.id == self.item.id, "output_item.done id differs from output_item.added")
        if self.done.type == "message":
            for index, text in self.parts.items():
                part = self.done.content[index]
                got = part.text if part.type == "output_text" else part.refusal
                _require(got == text, f"message part {index} differs from its deltas")
        if self.done.type == "function_call":
            _require(self.done.arguments == self.arguments, "function_call arguments differ from their deltas")
        if self.done.type == "code_interpreter_call" and self.code is not None:
            _require(self.done.code == self.code, "code_interpreter_call code differs from its deltas")
        if self.done.type == "shell_call" and self.commands:
            _require(self.done.action.commands == [self.commands[i] for i in sorted(self.commands)],
                     "shell_call commands differ from their deltas")
        if self.done.type == "shell_call_output" and self.streams:
            _require([(o.stdout, o.stderr) for o in self.done.output] ==
                     [(self.streams[i]["stdout"], self.streams[i]["stderr"]) for i in sorted(self.streams)],
                     "shell_call_output differs from its deltas")


# Items whose status the protocol gives only final values (a program's output comes whole).
FINISHED_WHEN_ADDED = {"program_output"}


def _plain(item: Any) -> Any:
    """An item as data, without the fields the SDK's stream helper adds to its own copies (``parsed``; a function
    call's ``parsed_arguments``, and its ``async`` field a second time under the wire name)."""
    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in ("parsed", "parsed_arguments") and
                    not (k == "async" and "async_" in value)}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    return strip(item.model_dump())


def check_stream(events: list[Any]) -> Any:
    """Check the grammar and return the terminal response."""
    _check_lifecycle(events)
    trackers: list[_ItemTracker] = []
    current: _ItemTracker | None = None
    for event in events[2:-1]:
        if event.type == "response.output_item.added":
            _require(current is None, "an item was added before the previous one was done")
            _require(event.output_index == len(trackers), f"output_index {event.output_index} is not contiguous")
            _require(getattr(event.item, "status", "in_progress") in ("in_progress", None) or
                     event.item.type in FINISHED_WHEN_ADDED, "an added item is not in_progress")
            current = _ItemTracker(event)
            trackers.append(current)
        elif event.type == "response.output_item.done":
            _require(current is not None and event.output_index == len(trackers) - 1, "output_item.done out of order")
            current.finish(event)  # type: ignore[union-attr]
            current = None
        elif event.type.startswith(ITEM_EVENT_PREFIXES):
            _require(current is not None, f"{event.type} outside an item")
            _require(event.output_index == len(trackers) - 1, f"{event.type} has the wrong output_index")
            if hasattr(event, "item_id"):
                _require(event.item_id == current.item.id, f"{event.type} has the wrong item_id")  # type: ignore
            current.feed(event)  # type: ignore[union-attr]
    _require(current is None, "the stream ended with an item still open")
    final = events[-1].response
    _require(len(final.output) == len(trackers), "the terminal response's output differs from the streamed items")
    for tracker, item in zip(trackers, final.output):
        _require(_plain(item) == _plain(tracker.done), f"final item {item.id} differs from output_item.done")
    return final
