"""Create-request validation: honoured, refused-by-name and unknown parameters."""

from __future__ import annotations

import pytest

from parley.errors import InvalidRequest
from parley.request import parse_create


def error_of(body: dict) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as info:
        parse_create(body)
    return info.value


def test_minimal_request_and_defaults() -> None:
    request = parse_create({"model": "m", "input": "hi"})
    assert request.store is True and request.stream is False and request.parallel_tool_calls is True
    assert request.tool_choice == "auto"


def test_nulls_count_as_absent() -> None:
    request = parse_create({"model": "m", "input": "hi", "tools": None, "previous_response_id": None,
                            "instructions": None, "temperature": None})
    assert request.tools == [] and request.previous_response_id is None


def test_unknown_parameter() -> None:
    err = error_of({"model": "m", "input": "hi", "system": "x"})
    assert (err.code, err.param, err.status_code) == ("unknown_parameter", "system", 400)


@pytest.mark.parametrize("name, value", [("response_format", {"type": "json_object"}),
                                         ("max_tokens", 10)])
def test_known_but_unsupported_parameters_are_named(name: str, value: object) -> None:
    err = error_of({"model": "m", "input": "hi", name: value})
    assert err.code == "unsupported_parameter" and err.param == name


def test_conversation_is_an_id_or_an_object_with_one_and_excludes_previous_response_id() -> None:
    from parley.request import parse_create

    assert parse_create({"model": "m", "input": "hi", "conversation": "conv_1"}).conversation == "conv_1"
    assert parse_create({"model": "m", "input": "hi", "conversation": {"id": "conv_2"}}).conversation == "conv_2"
    err = error_of({"model": "m", "input": "hi", "conversation": {"id": "c", "extra": 1}})
    assert err.param == "conversation" and err.status_code == 400
    err = error_of({"model": "m", "input": "hi", "conversation": "c", "previous_response_id": "resp_1"})
    assert (err.param, err.code) == ("conversation", "mutually_exclusive_parameters")


def test_unsupported_tool_type_is_named() -> None:
    err = error_of({"model": "m", "input": "hi", "tools": [{"type": "function", "name": "f"},
                                                           {"type": "teleport"}]})
    assert err.param == "tools[1].type" and "teleport" in err.message


def test_unsupported_include_value() -> None:
    err = error_of({"model": "m", "input": "hi", "include": ["web_search_call.results"]})
    assert err.param == "include"


def test_empty_include_is_fine() -> None:
    assert parse_create({"model": "m", "input": "hi", "include": []}).include == []


@pytest.mark.parametrize("body, param", [
    ({"input": "hi"}, "model"),
    ({"model": "m"}, "input"),
    ({"model": "m", "input": "hi", "temperature": 3}, "temperature"),
    ({"model": "m", "input": "hi", "top_p": "x"}, "top_p"),
    ({"model": "m", "input": "hi", "max_output_tokens": 0}, "max_output_tokens"),
    ({"model": "m", "input": "hi", "metadata": {"k": 1}}, "metadata.k"),
    ({"model": "m", "input": [{"role": "robot", "content": "x"}]}, "input[0].role"),
    ({"model": "m", "input": [{"type": "function_call_output", "output": "x"}]}, "input[0].call_id"),
    ({"model": "m", "input": [{"type": "computer_call_output", "call_id": "c"}]}, "input[0].output"),
    ({"model": "m", "input": [{"type": "mystery_call_output", "call_id": "c"}]}, "input[0].type"),
    ({"model": "m", "input": [{"role": "user", "content": [{"type": "input_audio"}]}]}, "input[0].content[0].type"),
    ({"model": "m", "input": "hi", "tools": [{"type": "function"}]}, "tools[0].name"),
    ({"model": "m", "input": "hi", "tool_choice": {"type": "function", "name": "nope"}}, "tool_choice"),
    ({"model": "m", "input": "hi", "text": {"format": {"type": "json_schema", "name": "x"}}}, "text.format"),
])
def test_bad_values_name_their_parameter(body: dict, param: str) -> None:
    err = error_of(body)
    assert err.status_code == 400
    assert err.param is not None and err.param.startswith(param), (err.param, err.message)


def test_too_much_metadata() -> None:
    err = error_of({"model": "m", "input": "hi", "metadata": {f"k{i}": "v" for i in range(17)}})
    assert err.param == "metadata"


def test_json_schema_format_and_named_tool_choice() -> None:
    request = parse_create({
        "model": "m", "input": "hi",
        "text": {"format": {"type": "json_schema", "name": "person", "schema": {"type": "object"}, "strict": True}},
        "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}, "strict": True}],
        "tool_choice": {"type": "function", "name": "f"},
    })
    assert request.text.format.schema_ == {"type": "object"}
    assert request.tool_choice.name == "f"


@pytest.mark.parametrize("tool, param", [
    ({"type": "web_search", "user_location": {"type": "precise", "city": "Paris"}}, "tools[0].user_location.type"),
    ({"type": "web_search_preview", "search_content_types": ["image"]}, "tools[0].search_content_types"),
    ({"type": "mcp", "server_label": "x", "connector_id": "connector_gmail"}, "tools[0].connector_id"),
    ({"type": "mcp", "server_label": "bad label!", "server_url": "http://h/mcp"}, "tools[0].server_label"),
])
def test_hosted_tool_options_we_cannot_honour_are_named(tool: dict, param: str) -> None:
    err = error_of({"model": "m", "input": "hi", "tools": [tool]})
    assert err.param is not None and err.param.startswith(param), (err.param, err.message)


def test_two_web_search_tools_or_duplicate_mcp_labels_are_refused() -> None:
    assert error_of({"model": "m", "input": "hi", "tools": [{"type": "web_search"},
                                                            {"type": "web_search_preview"}]}).param == "tools"
    mcp = {"type": "mcp", "server_label": "a", "server_url": "http://h/mcp"}
    assert error_of({"model": "m", "input": "hi", "tools": [mcp, mcp]}).param == "tools"


def test_mcp_credentials_are_redacted_in_the_echo() -> None:
    request = parse_create({"model": "m", "input": "hi", "tools": [
        {"type": "mcp", "server_label": "a", "server_url": "http://h/mcp", "authorization": "tok",
         "headers": {"X-Key": "secret"}}]})
    echo = request.tools[0].echo()
    assert echo["authorization"] == "<redacted>" and echo["headers"] == {"X-Key": "<redacted>"}
    assert request.tools[0].connection_headers() == {"X-Key": "secret", "Authorization": "Bearer tok"}


def test_tool_search_and_deferred_tools_are_accepted_once() -> None:
    request = parse_create({"model": "m", "input": "x", "tools": [
        {"type": "function", "name": "f", "defer_loading": True}, {"type": "tool_search", "execution": "client"}]})
    assert [t.type for t in request.tools] == ["function", "tool_search"]
    assert error_of({"model": "m", "input": "x", "tools": [{"type": "tool_search"},
                                                           {"type": "tool_search"}]}).param == "tools"


def test_background_options_take_the_soonest_window_only() -> None:
    body = {"model": "m", "input": "hi", "background": True}
    assert parse_create({**body, "background_options": {"completion_window": "soonest"}}).background
    for options, param in [({"completion_window": "2h"}, "background_options.completion_window"),
                           ({"continuation_id": "c1"}, "background_options.continuation_id"),
                           ({"soon": True}, "background_options.soon")]:
        err = error_of({**body, "background_options": options})
        assert err.status_code == 400 and err.param == param, (options, err.param)
    err = error_of({"model": "m", "input": "hi", "background_options": {}})
    assert err.param == "background_options" and "background" in err.message


PROGRAMS = {"type": "programmatic_tool_calling"}


@pytest.mark.parametrize("tool", [
    {"type": "mcp", "server_label": "a", "server_url": "http://127.0.0.1:9/mcp"},
    {"type": "namespace", "name": "ns", "tools": [{"type": "function", "name": "g"}]},
    {"type": "code_interpreter", "container": {"type": "auto"}}, {"type": "apply_patch"}, {"type": "shell"},
])
def test_allowed_callers_take_direct_and_refuse_programmatic_where_programs_cannot_call(tool: dict) -> None:
    assert parse_create({"model": "m", "input": "hi", "tools": [{**tool, "allowed_callers": ["direct"]}]}).tools
    err = error_of({"model": "m", "input": "hi",
                    "tools": [{**tool, "allowed_callers": ["direct", "programmatic"]}, PROGRAMS]})
    assert err.param == "tools[0].allowed_callers" and "function and custom tools" in err.message


@pytest.mark.parametrize("tool", [{"type": "function", "name": "f"}, {"type": "custom", "name": "c"}])
def test_programs_call_function_and_custom_tools_given_the_programmatic_tool(tool: dict) -> None:
    for callers in (["programmatic"], ["direct", "programmatic"]):
        request = parse_create({"model": "m", "input": "hi", "tools": [{**tool, "allowed_callers": callers}, PROGRAMS]})
        assert request.tools[0].allowed_callers == callers
    err = error_of({"model": "m", "input": "hi", "tools": [{**tool, "allowed_callers": ["programmatic"]}]})
    assert err.param == "tools[0].allowed_callers" and "programmatic_tool_calling" in err.message
    err = error_of({"model": "m", "input": "hi", "tools": [{**tool, "allowed_callers": []}, PROGRAMS]})
    assert err.param == "tools[0].allowed_callers"


def test_programs_need_their_own_function_name_and_top_level_tools() -> None:
    err = error_of({"model": "m", "input": "hi", "tools": [{"type": "function", "name": "program"}, PROGRAMS]})
    assert err.param == "tools[0].name"
    err = error_of({"model": "m", "input": "hi", "tools": [PROGRAMS, PROGRAMS]})
    assert err.param == "tools"
    err = error_of({"model": "m", "input": "hi", "tools": [{"type": "namespace", "name": "ns", "tools": [
        {"type": "function", "name": "g", "allowed_callers": ["programmatic"]}]}, PROGRAMS]})
    assert err.param == "tools[0].tools[0].allowed_callers"
    err = error_of({"model": "m", "input": "hi", "tool_choice": {"type": "programmatic_tool_calling"}})
    assert err.param == "tool_choice"
