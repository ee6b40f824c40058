"""kill -9 in the middle of streams: after a restart the unfinished responses are failed, the finished intact."""

from __future__ import annotations

import json
import time

import httpx

from parley.testing import ParleyProcess, Reply


def test_kill_9_mid_stream_then_restart(backend, db_url) -> None:
    args = ("--upstream", backend.url, "--db", db_url, "--instance-stale-s", "1.5")
    with ParleyProcess(*args) as server:
        finished = httpx.post(f"{server.base_url}/responses", json={"model": "m", "input": "done"}).json()
        backend.hold()
        started = []
        streams = [httpx.stream("POST", f"{server.base_url}/responses", timeout=30,
                                json={"model": "m", "input": f"cut {i}", "stream": True}) for i in range(3)]
        for request in streams:
            response = request.__enter__()
            lines = response.iter_lines()
            assert next(lines) == "event: response.created"
            started.append(json.loads(next(lines)[6:])["response"]["id"])
        server.process.kill()  # SIGKILL: no shutdown code runs
        server.process.wait()
        backend.release()
    with ParleyProcess(*args) as restarted:
        deadline = time.monotonic() + 30
        for response_id in started:
            while True:
                stored = httpx.get(f"{restarted.base_url}/responses/{response_id}").json()
                if stored["status"] != "in_progress":
                    break
                assert time.monotonic() < deadline, "the abandoned response was never marked failed"
                time.sleep(0.1)
            assert stored["status"] == "failed"
            assert stored["error"]["message"] == "The server stopped before the response finished."
        intact = httpx.get(f"{restarted.base_url}/responses/{finished['id']}").json()
        assert intact == finished


def test_tool_steps_are_kept_while_running_and_after_a_crash(backend, db_url) -> None:
    from parley.testing import ToolCall
    from parley.testing.mcp_server import MCPTestServer

    args = ("--upstream", backend.url, "--db", db_url, "--instance-stale-s", "1.5")
    backend.push(Reply(tool_calls=[ToolCall("get_user_id", {"username": "alice"})]),
                 Reply(text="too late", delay_s=60))  # the second model call never answers in time
    with MCPTestServer("streamable-http", tools="all") as mcp, ParleyProcess(*args) as server:
        tool = {"type": "mcp", "server_label": "users", "server_url": mcp.url, "require_approval": "never"}
        with httpx.stream("POST", f"{server.base_url}/responses", timeout=30,
                          json={"model": "m", "input": "id?", "tools": [tool], "stream": True}) as stream:
            lines = stream.iter_lines()
            assert next(lines) == "event: response.created"
            response_id = json.loads(next(lines)[6:])["response"]["id"]
            backend.wait_for_requests(2)  # the tool step is done and the model is asked again
            polled = httpx.get(f"{server.base_url}/responses/{response_id}").json()
            assert polled["status"] == "in_progress"
            assert [i["type"] for i in polled["output"]] == ["mcp_list_tools", "mcp_call"]
            assert polled["output"][1]["output"] == "user_1"
            server.process.kill()
            server.process.wait()
    with ParleyProcess(*args) as restarted:
        deadline = time.monotonic() + 30
        while (stored := httpx.get(f"{restarted.base_url}/responses/{response_id}").json())["status"] == "in_progress":
            assert time.monotonic() < deadline, "the abandoned response was never marked failed"
            time.sleep(0.1)
        assert stored["status"] == "failed"
        assert [i["type"] for i in stored["output"]] == ["mcp_list_tools", "mcp_call"]  # the finished step is kept
