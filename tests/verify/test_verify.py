"""``parley verify`` against a real Parley backed by the scripted conformance model."""

from __future__ import annotations

import json
import subprocess
import sys

import openai
import pytest

from parley.testing import ParleyProcess, ScriptedBackend, free_port
from parley.testing.conformance import conformance_responder
from parley.verify.runner import run_verify
from parley.verify.scenarios import SCENARIOS, Context, Skip, mcp


@pytest.fixture(scope="module")
def conformance_parley(tmp_path_factory):
    search_port = free_port()
    folder = tmp_path_factory.mktemp("verify")
    with ScriptedBackend(conformance_responder) as backend, ParleyProcess(
            "--upstream", backend.url, "--db", f"sqlite:///{folder / 'p.db'}", "--images-upstream", backend.url,
            "--web-search", f"searxng:http://127.0.0.1:{search_port}") as server:
        yield server, search_port


def test_every_scenario_passes_against_parley(conformance_parley, tmp_path) -> None:
    server, search_port = conformance_parley
    outcomes = run_verify(server.base_url, "scripted", search_port=search_port, json_path=tmp_path / "out.json")
    assert [(o.name, o.status, o.reason) for o in outcomes if o.status != "pass"] == []
    assert {o.name for o in outcomes} == set(SCENARIOS)
    assert {r["name"] for r in json.loads((tmp_path / "out.json").read_text())} == set(SCENARIOS)


def test_the_command_fails_when_a_scenario_fails_and_reports_skips(tmp_path) -> None:
    # An echo model cannot answer the seed's questions: 'basic' must fail and the exit code say so.
    with ScriptedBackend() as backend, ParleyProcess("--upstream", backend.url,
                                                     "--db", f"sqlite:///{tmp_path / 'p.db'}") as server:
        done = subprocess.run([sys.executable, "-m", "parley", "verify", "--base-url", server.base_url,
                               "--model", "m", "--only", "basic,error_unknown_id,web_search"],
                              capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "| basic | fail |" in done.stdout and "| error_unknown_id | pass |" in done.stdout
    assert "| web_search | skip |" in done.stdout
    assert "1 passed, 1 failed, 1 skipped" in done.stdout


def test_a_remote_endpoint_skips_the_loopback_mcp_scenario() -> None:
    ctx = Context("https://api.example.com/v1", "m", "k", openai.OpenAI(api_key="k"), search_available=False)
    with pytest.raises(Skip, match="cannot reach the loopback MCP server"):
        mcp(ctx)
