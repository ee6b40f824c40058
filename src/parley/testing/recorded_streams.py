"""Upstream streams in the shapes real servers send, as the SSE lines of a :class:`~parley.testing.Reply`
(``raw``): the text relay and the translator must write the same bytes for each
(``tests/contract/test_text_relay.py``).  Each is ``(name, lines, request extras)``."""

from __future__ import annotations

import json
from typing import Any


def _data(chunk: dict[str, Any] | str, **extra: Any) -> str:
    if isinstance(chunk, str):
        return f"data: {chunk}\n"
    return "data: " + json.dumps({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1,
                                  "model": "m", **extra, **chunk}) + "\n"


def _delta(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
    return _data({"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}, **extra)


USAGE = _data({"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 9, "total_tokens": 16}})
TEXTS = ["Hello", ", wörld", " 🦙", ' "quoted" \\ back', "\nnew\tline", "\u2028", "日本", "\x00\x1f", "</script>"]

VLLM = [_delta({"role": "assistant", "content": ""}), *(_delta({"content": t}) for t in TEXTS),
        _delta({}, "stop"), USAGE, _data("[DONE]")]

# OpenAI's own chunks: a service tier, a fingerprint and obfuscation padding in each, null fields in the delta
OPENAI = [_delta({"role": "assistant", "content": "", "refusal": None}, service_tier="default",
                 system_fingerprint="fp_1", obfuscation="xy"),
          *(_data({"choices": [{"index": 0, "delta": {"content": t}, "logprobs": None, "finish_reason": None}]},
                  service_tier="priority" if i == 3 else "default", system_fingerprint="fp_1", obfuscation="abc")
            for i, t in enumerate(TEXTS)),
          _delta({}, "stop", service_tier="default"), USAGE, _data("[DONE]")]

# JSON escapes the relay must decode and write as the translator does: \u escapes, a surrogate pair, \/
ESCAPES = [_delta({"content": "start"}),
           'data: {"choices":[{"index":0,"delta":{"content":"caf\\u00e9 \\ud83e\\udd99 a\\/b \\u0000"}}]}\n',
           'data: {"choices":[{"index":0,"delta":{"content":"\\t\\"tab\\"\\\\"}}]}\n',
           _delta({}, "stop"), _data("[DONE]")]

# reasoning, then text, then a call of the client's function, then text again in a second message
MIXED = [_delta({"reasoning_content": "Let me think"}), _delta({"reasoning_content": " about it."}),
         _delta({"content": "I will "}), _delta({"content": "check."}), _delta({"content": ""}),
         _delta({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                                 "function": {"name": "get_weather", "arguments": ""}}]}),
         _delta({"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\": \"Paris\"}"}}]}),
         _delta({"content": "More "}), _delta({"content": "text."}), _delta({}, "tool_calls"), _data("[DONE]")]

# a refusal between texts, a chunk whose text ends the answer, comments, blank fields, CRLF line ends
ODD = [_delta({"content": "Sure"}), ": keep-alive\n", _delta({"content": "ly"}).replace("\n", "\r\n"),
       "event: message\n", _delta({"refusal": "I can't"}), _delta({"refusal": " do that."}),
       _delta({"content": "But "}), 'data:{"choices":[{"index":0,"delta":{"content":"no space"}}]}\n',
       _delta({"content": None}), _delta({}), _delta({"content": "last"}, "stop"), _data("[DONE]")]

# two choices per chunk (n=2: only the first is the answer), and a second choice alone
CHOICES = [_data({"choices": [{"index": 0, "delta": {"content": "one"}}, {"index": 1, "delta": {"content": "x"}}]}),
           _delta({"content": " two"}), _data({"choices": [{"index": 1, "delta": {"content": "y"}}]}),
           _delta({"content": " three"}), _delta({}, "stop"), _data("[DONE]")]

# logprobs on each chunk (the request asks for them)
LOGPROBS = [_data({"choices": [{"index": 0, "delta": {"content": t},
                                "logprobs": {"content": [{"token": t, "logprob": -0.25, "bytes": None,
                                                          "top_logprobs": []}]}}]}) for t in ("A", "B", "C")] + [
            _delta({}, "stop"), _data("[DONE]")]

# the answer cut short by the length limit, text in the finishing chunk too
LENGTH = [_delta({"content": "cut"}), _delta({"content": " off"}), _delta({"content": " here"}, "length"),
          USAGE, _data("[DONE]")]

# a lone surrogate: not valid text, on either path
BROKEN = [_delta({"content": "fine"}), 'data: {"choices":[{"index":0,"delta":{"content":"bad \\ud800"}}]}\n',
          _delta({}, "stop"), _data("[DONE]")]

# the stream breaks off in the middle of the text
CUT = [_delta({"content": "partial"}), _delta({"content": " answer"})]

FUNCTION = {"tools": [{"type": "function", "name": "get_weather",
                       "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]}

STREAMS: list[tuple[str, list[str], dict[str, Any]]] = [
    ("vllm", VLLM, {}), ("openai", OPENAI, {}), ("escapes", ESCAPES, {}), ("mixed", MIXED, FUNCTION),
    ("odd", ODD, {}), ("choices", CHOICES, {}), ("logprobs", LOGPROBS, {"top_logprobs": 0,
                                                                         "include": ["message.output_text.logprobs"]}),
    ("length", LENGTH, {}), ("broken", BROKEN, {}), ("cut", CUT, {}),
]
