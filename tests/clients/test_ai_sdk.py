"""The Vercel AI SDK (Node.js) as a client: its multi-turn history with store on sends item_reference for
the earlier turn's reasoning and assistant message, which Parley resolves from the store."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from parley.testing import Reply

PROJECT = Path(__file__).parent / "ai_sdk"


@pytest.fixture(scope="module")
def ai_sdk() -> Path:
    """The SDK installed from the lock file (npm ci: the pinned versions, from the npm registry)."""
    npm = shutil.which("npm")
    assert npm is not None, "Node.js and npm are needed for the AI SDK test (Debian: apt-get install nodejs npm)"
    subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=PROJECT, check=True, timeout=300)
    return PROJECT


def test_ai_sdk_history_replay_with_item_references(ai_sdk, parley_server, backend) -> None:
    backend.push(Reply(reasoning="The third planet.", text="Earth."), Reply(text="Yes, Earth."))
    done = subprocess.run(["node", "replay.mjs"], cwd=ai_sdk, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PARLEY_BASE_URL": parley_server.base_url})
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert (result["first"], result["second"]) == ("Earth.", "Yes, Earth.")
    sent = result["bodies"][1]["input"]
    assert [entry.get("type") for entry in sent if entry.get("type") == "item_reference"] == ["item_reference"] * 2
    assert backend.requests[-1]["messages"] == [
        {"role": "user", "content": "Which planet?"}, {"role": "assistant", "content": "Earth."},
        {"role": "user", "content": "Sure?"}]
