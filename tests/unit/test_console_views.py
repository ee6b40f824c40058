"""The console's pure parts: a run's timeline and its time split, the timeline's page order, the charts."""

from __future__ import annotations

import json
from types import SimpleNamespace

from parley.console import charts
from parley.console.views import item_view, time_split, timeline
from parley.engine.timeline import Timeline


def test_tool_time_counts_parallel_calls_once_and_the_rest_is_parley_s() -> None:
    line = Timeline(origin=0.0)
    line.model_call(0.010, 0.012, 0.030, messages=2, items=[], usage={"prompt_tokens": 5, "completion_tokens": 1})
    call = SimpleNamespace(id="mcp_1", type="mcp_call", status="completed")
    line.tool_call(0.030, 0.080, call)  # two calls of one step, run together
    line.tool_call(0.030, 0.060, SimpleNamespace(id="mcp_2", type="mcp_call", status="failed"))
    line.model_call(0.085, None, 0.095, messages=4, items=["msg_1"], usage=None)
    summary = line.summary(now=0.100)
    assert summary["total_ms"] == 100.0 and summary["model_ms"] == 30.0 and summary["tool_ms"] == 50.0
    assert summary["parley_ms"] == 20.0  # 100 − (20 model + 50 tools + 10 model)
    first, tool, _, second = summary["steps"]
    assert first == {"kind": "model", "start_ms": 10.0, "ms": 20.0, "messages": 2, "items": [],
                     "first_chunk_ms": 2.0, "usage": {"prompt_tokens": 5, "completion_tokens": 1}}
    assert tool == {"kind": "tool", "start_ms": 30.0, "ms": 50.0, "item": "mcp_1", "type": "mcp_call",
                    "status": "completed"}
    assert "first_chunk_ms" not in second and json.loads(line.serialized())["parley_ms"] >= 0


def test_the_timeline_puts_each_model_call_before_what_it_produced_and_the_tools_it_asked_for() -> None:
    output = [{"id": "mcpl_1", "type": "mcp_list_tools", "server_label": "s", "tools": [{"name": "add"}]},
              {"id": "mcp_1", "type": "mcp_call", "server_label": "s", "name": "add", "arguments": '{"a": 1}',
               "output": "2"},
              {"id": "msg_1", "type": "message", "role": "assistant",
               "content": [{"type": "output_text", "text": "It is 2.", "annotations": [
                   {"type": "url_citation", "url": "https://example.org/", "title": "Example"}]}]}]
    trace = {"steps": [{"kind": "tool", "start_ms": 1.0, "ms": 5.0, "item": "mcpl_1"},
                       {"kind": "model", "start_ms": 7.0, "ms": 10.0, "items": []},
                       {"kind": "tool", "start_ms": 18.0, "ms": 30.0, "item": "mcp_1"},
                       {"kind": "model", "start_ms": 49.0, "ms": 12.0, "items": ["msg_1"]}]}
    entries = timeline(output, trace)
    assert [(e["entry"], e.get("number") or e["item"]["id"]) for e in entries] == [
        ("item", "mcpl_1"), ("model", 1), ("item", "mcp_1"), ("model", 2), ("item", "msg_1")]
    assert entries[2]["ms"] == 30.0 and entries[4]["ms"] is None
    assert entries[4]["item"]["parts"][0]["citations"] == [{"label": "Example", "url": "https://example.org/"}]
    # a response stored before timelines were kept: its items, untimed, in order
    assert [e["item"]["id"] for e in timeline(output, None)] == ["mcpl_1", "mcp_1", "msg_1"]
    # a model call that failed before producing anything still shows
    assert [e["entry"] for e in timeline([], {"steps": [{"kind": "model", "start_ms": 0, "ms": 3.0,
                                                         "items": [], "error": "boom"}]})] == ["model"]


def test_items_show_their_fields_and_inline_data_is_shortened() -> None:
    image = item_view({"type": "message", "role": "user", "content": [
        {"type": "input_text", "text": "what is this?"}, {"type": "input_image", "image_url": "data:image/png;base64,"
                                                          + "A" * 5000}]})
    assert image["title"] == "user" and image["parts"][0]["text"] == "what is this?"
    assert len(image["parts"][1]["url"]) < 120 and "5,022 characters" in image["parts"][1]["url"]
    call = item_view({"type": "mcp_call", "server_label": "s", "name": "add", "arguments": '{"a":1}',
                      "error": "tool failed", "output": None})
    assert call["arguments"] == '{\n  "a": 1\n}' and call["error"] == "tool failed"
    search = item_view({"type": "web_search_call", "action": {"type": "search", "query": "parley", "sources": [
        {"type": "url", "url": "https://a.example/"}]}})
    assert search["query"] == "parley" and search["sources"] == ["https://a.example/"]


def test_the_time_split_shares_add_up() -> None:
    split = time_split({"total_ms": 200.0, "model_ms": 100.0, "tool_ms": 50.0, "parley_ms": 50.0}, 200.0)
    assert [(p["name"], p["share"]) for p in split] == [("model", 50.0), ("tools", 25.0), ("parley", 25.0)]
    assert time_split(None, 10.0) == []


def test_charts_escape_their_text_and_break_lines_at_gaps() -> None:
    svg = charts.lines("<p99>", ["a", "b", "c"], {"p50": [1.0, None, 3.0]}, " ms")
    assert "<p99>" not in svg and "&lt;p99&gt;" in svg
    assert svg.count("<circle") == 2 and "<polyline" not in svg  # two runs of one point each
    bars = charts.stacked_bars("Responses", ["x", "y"], {"ok": [2, 0], "failed": [1, 3]})
    assert bars.count("<rect") == 3


def test_code_execution_items_show_their_code_commands_and_output() -> None:
    call = item_view({"type": "code_interpreter_call", "id": "ci_1", "status": "completed", "container_id": "cntr_1",
                      "code": "print(6 * 7)", "outputs": [{"type": "logs", "logs": "42\n"},
                                                          {"type": "image", "url": "data:image/png;base64,AA"}]})
    assert (call["title"], call["arguments"], call["output"]) == ("code interpreter · cntr_1", "print(6 * 7)",
                                                                  "42\n\n[1 image(s)]")
    shell = item_view({"type": "shell_call", "id": "sh_1", "call_id": "c", "status": "completed",
                       "action": {"commands": ["ls", "pwd"]},
                       "environment": {"type": "container_reference", "container_id": "cntr_1"}})
    assert (shell["title"], shell["arguments"]) == ("shell · cntr_1", "ls\npwd")
    output = item_view({"type": "shell_call_output", "id": "sho_1", "call_id": "c", "output": [
        {"stdout": "a\n", "stderr": "", "outcome": {"type": "exit", "exit_code": 0}}]})
    assert output["output"] == "a\n"
