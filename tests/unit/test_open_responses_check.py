"""The Open Responses check that every Response body in the contract tests goes through can fail."""

from __future__ import annotations

import pytest

from parley.testing.strict import OPEN_RESPONSES_REQUIRED, check_open_responses

VALID = {"id": "resp_1", "object": "response", "created_at": 1, "completed_at": None, "status": "completed",
         "incomplete_details": None, "model": "m", "previous_response_id": None, "instructions": None, "output": [],
         "error": None, "tools": [], "tool_choice": "auto", "truncation": "disabled", "parallel_tool_calls": True,
         "text": {"format": {"type": "text"}}, "top_p": 1.0, "presence_penalty": 0, "frequency_penalty": 0.0,
         "top_logprobs": 0, "temperature": 1.0, "reasoning": None, "user": None, "usage": None,
         "max_output_tokens": None, "max_tool_calls": None, "store": True, "background": False,
         "service_tier": "default", "metadata": {}, "safety_identifier": None, "prompt_cache_key": None}


def test_a_complete_body_passes() -> None:
    assert set(VALID) == set(OPEN_RESPONSES_REQUIRED)
    check_open_responses(VALID)


@pytest.mark.parametrize("change", [{"created_at": 1.0}, {"top_logprobs": True}, {"store": 1}, {"object": "list"}])
def test_a_wrong_type_fails(change) -> None:
    with pytest.raises(AssertionError):
        check_open_responses({**VALID, **change})


@pytest.mark.parametrize("name", ["presence_penalty", "completed_at", "service_tier"])
def test_a_missing_field_fails(name) -> None:
    with pytest.raises(AssertionError):
        check_open_responses({k: v for k, v in VALID.items() if k != name})
