"""The persistence policy: which writes a response gets, from ``store`` and ``stream``."""

from __future__ import annotations

import pytest

from parley.engine.persistence import Persistence


@pytest.mark.parametrize("stream", [False, True])
def test_an_unstored_response_is_never_written_and_needs_no_store(stream: bool) -> None:
    policy = Persistence.for_request(store=False, stream=stream)
    assert not (policy.at_start or policy.after_tool_steps or policy.at_end)
    assert not policy.needs_store


def test_a_streamed_response_is_written_at_its_start_after_tool_steps_and_at_its_end() -> None:
    policy = Persistence.for_request(store=True, stream=True)
    assert policy.at_start and policy.after_tool_steps and policy.at_end and policy.needs_store


def test_an_answered_response_is_written_once_at_its_end() -> None:
    policy = Persistence.for_request(store=True, stream=False)
    assert policy.at_end and policy.needs_store
    assert not policy.at_start and not policy.after_tool_steps
