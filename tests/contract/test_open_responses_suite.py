"""The Open Responses compliance checks (all of them, the optional file-search and offline-web-search on)
against ``parley serve`` over the scripted backend, on SQLite and PostgreSQL."""

from __future__ import annotations

from parley.testing.open_responses import run_suite, scripted_stack, stricter_than_the_sdk


def test_every_open_responses_check_passes(own_db_url) -> None:
    with scripted_stack(own_db_url) as (base_url, store_id):
        outcomes = run_suite(base_url, vector_store_id=store_id, offline_web_search=True)
    assert {o.id: o.errors for o in outcomes if o.status != "passed"} == {}
    assert len(outcomes) == 12 and {"file-input", "file-search", "offline-web-search"} <= {o.id for o in outcomes}


def test_the_checks_stricter_than_the_sdk_can_fail() -> None:
    body = {"output": [{"type": "web_search_call", "action": {"type": "search", "query": "q", "queries": None}},
                       {"type": "file_search_call", "results": [{"file_id": "f", "text": "t"}]}],
            "tools": [{"type": "file_search", "vector_store_ids": ["vs"], "max_num_results": None}]}
    assert stricter_than_the_sdk(body) == ["output.0.action.queries: null", "output.1.results.0.vector_store_id: missing",
                                           "tools.0.max_num_results: null", "tools.0.ranking_options: null"]
