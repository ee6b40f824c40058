"""Codex CLI itself, from the npm registry, runs `codex exec` turns against a real parley serve."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from parley.testing import ParleyProcess, Reply, ToolCall
from parley.testing.mcp_server import MCPTestServer

CODEX_VERSION = "0.169.0"
CODEX_DIR = Path(os.environ.get("PARLEY_CODEX_DIR", Path.home() / ".cache" / "parley-tests" / f"codex-{CODEX_VERSION}"))


@pytest.fixture(scope="module")
def codex_bin() -> Path:
    """Codex installed once into a private folder (the npm package carries its native binary)."""
    binary = CODEX_DIR / "node_modules" / ".bin" / "codex"
    if not binary.exists():
        if shutil.which("npm") is None:
            pytest.skip("npm is not installed, so Codex cannot be installed")
        done = subprocess.run(["npm", "install", "--prefix", str(CODEX_DIR), f"@openai/codex@{CODEX_VERSION}"],
                              capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            pytest.skip(f"the npm registry is not reachable, so Codex cannot be installed: {done.stderr[-300:]}")
    return binary


@pytest.fixture
def parley_for_codex(scripted_server, tmp_path):
    with ParleyProcess("--upstream", scripted_server.url, "--db", f"sqlite:///{tmp_path / 'codex.db'}") as server:
        yield server


# Model metadata for Codex's catalog: with a custom provider this is where Codex learns that the model takes
# the freeform apply_patch tool (a `custom` tool).
MODEL_CATALOG = {"models": [{
    "slug": "gpt-5.4", "display_name": "gpt-5.4", "description": "Parley test model",
    "default_reasoning_level": "medium", "supported_reasoning_levels": [{"effort": "medium", "description": "m"}],
    "shell_type": "shell_command", "visibility": "list", "minimal_client_version": "0.0.1", "supported_in_api": True,
    "upgrade": None, "priority": 0, "base_instructions": "You are a coding agent.",
    "apply_patch_tool_type": "freeform", "truncation_policy": {"mode": "tokens", "limit": 10000},
    "supports_parallel_tool_calls": False, "context_window": 128000, "reasoning_summary_format": "none",
    "supports_reasoning_summaries": False, "support_verbosity": False, "default_verbosity": None,
    "input_modalities": ["text"], "experimental_supported_tools": [],
}]}


def run_codex(codex_bin: Path, server: ParleyProcess, workdir: Path, prompt: str, extra_config: str = "", *,
              sandbox: str = "danger-full-access", web_search: str | None = "disabled", model: str = "gpt-5.4",
              timeout: float = 120, catalog_extra: dict | None = None, features: str = "") -> list[dict]:
    """One ``codex exec`` turn. Codex's own default for ``web_search`` (None here) is cached-only search,
    or live search when the sandbox is ``danger-full-access``; live search needs Parley's --web-search."""
    home = workdir / "codex-home"
    home.mkdir(exist_ok=True)
    catalog = {"models": [{**MODEL_CATALOG["models"][0], "slug": model, "display_name": model, **(catalog_extra or {})}]}
    (home / "models.json").write_text(json.dumps(catalog))
    (home / "config.toml").write_text(f'''
model = "{model}"
model_provider = "parley"
model_catalog_json = "{home / 'models.json'}"
approval_policy = "never"
sandbox_mode = "{sandbox}"
{f'web_search = "{web_search}"' if web_search else ""}

[features]
plugins = false
{features}

[model_providers.parley]
name = "Parley"
base_url = "{server.base_url}"
env_key = "PARLEY_TEST_KEY"
wire_api = "responses"
{extra_config}''')
    env = {**os.environ, "CODEX_HOME": str(home), "PARLEY_TEST_KEY": "unused"}
    done = subprocess.run([str(codex_bin), "exec", "--skip-git-repo-check", "--ephemeral", "--json", prompt],
                          cwd=workdir, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert events and events[-1]["type"] == "turn.completed", done.stdout[-2000:] + done.stderr[-2000:]
    return events


def completed(events: list[dict], kind: str) -> list[dict]:
    """The items of ``kind`` that Codex reported completed."""
    return [e["item"] for e in events if e["type"] == "item.completed" and e["item"]["type"] == kind]


def agent_messages(events: list[dict]) -> list[str]:
    return [item["text"] for item in completed(events, "agent_message")]


def call_then_report(call: ToolCall, prefix: str):
    """A model that makes ``call``, then answers ``prefix`` and the last line of the call's result."""
    def model(request: dict) -> Reply:
        if request["messages"][-1]["role"] == "tool":
            return Reply(text=prefix + request["messages"][-1]["content"].strip().splitlines()[-1])
        return Reply(tool_calls=[call])

    return model


def test_plain_answer(codex_bin, parley_for_codex, backend, tmp_path) -> None:
    backend.push(Reply(text="Hello from Parley."))
    # Codex as installed: its default cached-only web_search tool is accepted (Parley keeps no web cache, so
    # the model is not offered it).
    events = run_codex(codex_bin, parley_for_codex, tmp_path, "Say hello", sandbox="read-only", web_search=None)
    assert agent_messages(events) == ["Hello from Parley."]
    request = backend.requests[-1]
    assert request["stream"] is True and request["messages"][-1]["role"] == "user"


def test_shell_tool_call_and_its_result(codex_bin, parley_for_codex, backend, tmp_path) -> None:
    backend.reset(call_then_report(
        ToolCall("exec_command", {"cmd": "echo parley-was-here > proof.txt && cat proof.txt"}), "Output: "))
    events = run_codex(codex_bin, parley_for_codex, tmp_path, "Write proof.txt")
    commands = completed(events, "command_execution")
    assert commands and commands[0]["exit_code"] == 0
    assert (tmp_path / "proof.txt").read_text() == "parley-was-here\n"
    assert agent_messages(events) == ["Output: parley-was-here"]


def test_mcp_server_configured_in_codex_arrives_as_a_namespace(codex_bin, parley_for_codex, backend, tmp_path) -> None:
    backend.reset(call_then_report(ToolCall("mcp__chem__get_boiling_point", {"liquid_name": "polyjuice"}),
                                   "Boiling point: "))
    with MCPTestServer("streamable-http") as mcp:
        events = run_codex(codex_bin, parley_for_codex, tmp_path, "Boiling point of polyjuice?",
                           f'\n[mcp_servers.chem]\nurl = "{mcp.url}"\n')
    names = {t["function"]["name"] for t in backend.requests[0]["tools"]}
    assert "mcp__chem__get_boiling_point" in names  # the namespace, flattened for the Chat backend
    calls = completed(events, "mcp_tool_call")
    assert calls and calls[0]["tool"] == "get_boiling_point" and calls[0]["status"] == "completed"
    assert "-100" in agent_messages(events)[-1]


def test_custom_apply_patch_call(codex_bin, parley_for_codex, backend, tmp_path) -> None:
    patch = "*** Begin Patch\n*** Add File: hello.txt\n+hello from parley\n*** End Patch\n"

    def model(request: dict) -> Reply:
        if request["messages"][-1]["role"] == "tool":
            return Reply(text="Patched.")
        return Reply(tool_calls=[ToolCall("apply_patch", {"input": patch})])

    backend.reset(model)
    events = run_codex(codex_bin, parley_for_codex, tmp_path, "Add hello.txt")
    offered = {t["function"]["name"]: t["function"] for t in backend.requests[0]["tools"]}
    assert offered["apply_patch"]["parameters"]["required"] == ["input"]  # Codex sent it as a `custom` tool
    changes = completed(events, "file_change")
    assert changes and changes[0]["status"] == "completed"
    assert (tmp_path / "hello.txt").read_text() == "hello from parley\n"
    assert backend.requests[-1]["messages"][-1]["role"] == "tool"  # Codex's custom_tool_call_output came back
    assert agent_messages(events) == ["Patched."]


def test_live_web_search_through_parleys_provider(codex_bin, scripted_server, backend, tmp_path) -> None:
    from parley.testing.search_server import SearchTestServer

    def model(request: dict) -> Reply:
        results = [m["content"] for m in request["messages"] if m["role"] == "tool"]
        if results:
            return Reply(text="Found: " + ("Maverick" if "Maverick" in results[-1] else "nothing"))
        return Reply(tool_calls=[ToolCall("web_search", {"query": "Llama 4 Maverick experts"})])

    backend.reset(model)
    with SearchTestServer() as search, ParleyProcess(
            "--upstream", scripted_server.url, "--db", f"sqlite:///{tmp_path / 'codex.db'}",
            "--web-search", f"searxng:{search.url}") as server:
        events = run_codex(codex_bin, server, tmp_path, "How many experts has Llama 4 Maverick?", web_search="live")
        assert search.requests  # Parley searched through its provider
    assert "web_search" in {t["function"]["name"] for t in backend.requests[0]["tools"]}
    searches = completed(events, "web_search")
    assert searches and searches[0]["query"] == "Llama 4 Maverick experts"
    assert agent_messages(events) == ["Found: Maverick"]


@pytest.mark.timeout(600)  # (a 135M model on two busy cores: its own budget, twice what a quiet machine needs)
def test_codex_over_the_embedded_model(codex_bin, tmp_path) -> None:
    # No upstream at all: Codex's whole request (its developer prompt, environment context and a dozen tools,
    # rendered into the small model's prompt) runs on the embedded SmolLM2 and its answer reaches Codex.
    with ParleyProcess("--db", f"sqlite:///{tmp_path / 'codex.db'}", env={"PARLEY_DATA_DIR": str(tmp_path)}) as server:
        events = run_codex(codex_bin, server, tmp_path, "Say hello in one short sentence.", sandbox="read-only",
                           web_search=None, model="smollm2-135m-instruct", timeout=300)
    messages = agent_messages(events)
    assert messages and messages[-1].strip()
    assert events[-1]["usage"]["input_tokens"] > 4096  # more than the embedded model's context held before


def test_tool_search_loads_deferred_mcp_tools(codex_bin, parley_for_codex, backend, tmp_path) -> None:
    # With tool_search on and MCP tools always deferred, Codex sends a tool_search tool instead of the MCP
    # namespace; the model searches, Codex answers with the tools it found, and the model then calls one.
    def model(request: dict) -> Reply:
        offered = {t["function"]["name"] for t in request.get("tools", [])}
        results = [m for m in request["messages"] if m["role"] == "tool"]
        if "mcp__chem__get_boiling_point" in offered and len(results) == 1:
            return Reply(tool_calls=[ToolCall("mcp__chem__get_boiling_point", {"liquid_name": "polyjuice"})])
        if results:
            return Reply(text="Boiling point: " + results[-1]["content"].strip().splitlines()[-1])
        return Reply(tool_calls=[ToolCall("tool_search", {"query": "boiling point of a liquid"})])

    backend.reset(model)
    with MCPTestServer("streamable-http") as mcp:
        events = run_codex(codex_bin, parley_for_codex, tmp_path, "Boiling point of polyjuice?",
                           f'\n[mcp_servers.chem]\nurl = "{mcp.url}"\n', catalog_extra={"supports_search_tool": True},
                           features="tool_search = true\ntool_search_always_defer_mcp_tools = true")
    first = {t["function"]["name"] for t in backend.requests[0]["tools"]}
    assert "tool_search" in first and "mcp__chem__get_boiling_point" not in first  # deferred at first
    assert "mcp__chem__get_boiling_point" in {t["function"]["name"] for t in backend.requests[1]["tools"]}
    calls = completed(events, "mcp_tool_call")
    assert calls and calls[0]["tool"] == "get_boiling_point" and calls[0]["status"] == "completed"
    assert "-100" in agent_messages(events)[-1]
