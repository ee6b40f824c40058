"""The console in a real browser: Debian's Chromium driven by Playwright against a real ``parley serve`` (API
keys for two tenants and an admin key, SQLite), the scripted backend and a real MCP server that demands a token.

The two screenshots in the README are written by these tests (``docs/screenshots``)."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from parley.testing import ParleyProcess, Reply, ToolCall
from parley.testing.mcp_server import MCPTestServer
from parley.testing.scripted import ScriptedBackend

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
KEYS = "sk-alice=alice,sk-bob-0000=bob"
ADMIN = "sk-root-0000"
MCP_TOKEN = "mcp-secret-token-4711"


def chromium() -> str:
    found = os.environ.get("PARLEY_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.fail("the browser tests need Debian's chromium (scripts/test.sh installs it: apt-get install chromium)")
    return found


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def mcp() -> Iterator[MCPTestServer]:
    with MCPTestServer("streamable-http", auth_token=MCP_TOKEN) as server:
        yield server


@pytest.fixture(scope="module")
def server(scripted_server: ScriptedBackend, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ParleyProcess]:
    db = tmp_path_factory.mktemp("console") / "console.db"
    with ParleyProcess("--upstream", scripted_server.url, "--db", f"sqlite:///{db}", "--api-keys", KEYS,
                       "--admin-keys", ADMIN, "--outbound-allow", "127.0.0.1") as parley:
        yield parley


@pytest.fixture
def page(browser) -> Iterator[object]:
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    context.set_default_timeout(15_000)
    yield context.new_page()
    context.close()


def api(server: ParleyProcess, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key=key, max_retries=0)


def sign_in(page, server: ParleyProcess, key: str, path: str = "/console/responses") -> None:
    page.goto(server.url + path)
    assert "/console/login" in page.url  # with keys configured, the console asks for one first
    page.fill("#key", key)
    page.click("#sign-in")
    page.wait_for_url(re.compile(re.escape(server.url + path)))


def mcp_answer(backend: ScriptedBackend, text: str) -> None:
    backend.push(Reply(tool_calls=[ToolCall("get_boiling_point", {"liquid_name": "polyjuice", "celcius": True})]),
                 Reply(text=text))


def test_a_response_made_through_the_api_is_listed_and_its_page_shows_the_mcp_call(page, server, backend, mcp):
    mcp_answer(backend, "Polyjuice boils at -100°C.")
    with api(server, "sk-alice") as client:
        made = client.responses.create(
            model="scripted", input="What is the boiling point of polyjuice?",
            tools=[{"type": "mcp", "server_label": "lab", "server_url": mcp.url, "require_approval": "never",
                    "headers": {"Authorization": f"Bearer {MCP_TOKEN}"}}])
    assert made.status == "completed"

    sign_in(page, server, "sk-alice")
    row = page.locator(f'tr[data-id="{made.id}"]')
    row.wait_for()
    assert "completed" in row.inner_text() and "boiling point of polyjuice" in row.inner_text()
    page.fill("#f-q", "polyjuice")
    page.click("button[type=submit]")
    page.locator(f'tr[data-id="{made.id}"]').wait_for()

    page.click(f'tr[data-id="{made.id}"] a')
    page.wait_for_url(f"**/console/responses/{made.id}")
    call = page.locator('.item[data-type="mcp_call"]')
    assert "lab · get_boiling_point" in call.locator(".title").inner_text()
    assert '"liquid_name": "polyjuice"' in call.locator(".arguments").inner_text()
    assert call.locator(".output").inner_text().strip() == "-100"
    assert re.fullmatch(r"[\d.]+ (ms|s)", call.locator(".duration").inner_text().strip())
    assert page.locator(".step.model").count() == 2  # one model call asked for the tool, one answered
    assert "Polyjuice boils at -100°C." in page.locator('.item[data-type="message"]').last.inner_text()
    for part in ("model", "tools", "parley"):
        assert re.fullmatch(r"[\d.]+ (ms|s)", page.locator(f".split-{part}").inner_text().strip())
    page.click("#messages summary")
    assert '"role": "tool"' in page.locator("#messages pre").inner_text()  # what went upstream, tool output included
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "console-response.png"), full_page=True)
    assert MCP_TOKEN not in page.content()  # the MCP server's credentials are never shown


def test_the_playground_streams_a_reply_and_the_next_turn_chains(page, server, backend):
    sign_in(page, server, "sk-alice", "/console/playground")
    assert "scripted" in page.locator("#model").inner_text()  # the models the server routes
    backend.push(Reply(text="Streaming, one piece at a time, from the playground.", chunk_size=6, chunk_delay_s=0.15),
                 Reply(text="Second turn."))
    page.fill("#message", "Hello there")
    page.click("#send")
    answer = page.locator(".turn.assistant .answer").first
    page.wait_for_function("() => document.querySelector('.turn.assistant .answer').textContent.length > 0")
    partial = answer.inner_text()
    assert 0 < len(partial) < len("Streaming, one piece at a time, from the playground.")  # it came in pieces
    page.locator(".turn.assistant .meta a").first.wait_for()
    assert answer.inner_text() == "Streaming, one piece at a time, from the playground."
    first_id = page.locator(".turn.assistant .meta a").first.inner_text()

    page.fill("#message", "And again")
    page.click("#send")
    page.locator(".turn.assistant .meta a").nth(1).wait_for()
    second_id = page.locator(".turn.assistant .meta a").nth(1).inner_text()
    assert page.locator(".turn.assistant .answer").nth(1).inner_text() == "Second turn."
    with api(server, "sk-alice") as client:  # ordinary stored responses of the signed-in tenant, chained
        second = client.responses.retrieve(second_id)
    assert second.previous_response_id == first_id
    assert [m.get("content") for m in backend.requests[-1]["messages"] if m["role"] == "user"] == [
        "Hello there", "And again"]
    page.goto(server.url + "/console/responses")
    page.locator(f'tr[data-id="{second_id}"]').wait_for()  # the list shows the playground's turns
    page.click(f'tr[data-id="{second_id}"] a')
    assert first_id in page.locator(".chain").inner_text()


def test_a_tenant_sees_only_its_own_responses_and_an_admin_sees_every_tenant(page, browser, server, backend):
    backend.push(Reply(text="alice's answer"), Reply(text="bob's answer"))
    with api(server, "sk-alice") as alice, api(server, "sk-bob-0000") as bob:
        alice_id = alice.responses.create(model="scripted", input="alice asks").id
        bob_id = bob.responses.create(model="scripted", input="bob asks").id

    sign_in(page, server, "sk-alice")
    page.locator(f'tr[data-id="{alice_id}"]').wait_for()
    assert page.locator(f'tr[data-id="{bob_id}"]').count() == 0
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "console-responses.png"))  # (with the earlier tests' responses)
    assert "bob asks" not in page.content()
    page.fill("#f-q", bob_id)
    page.click("button[type=submit]")
    page.locator("td.empty").wait_for()
    page.goto(f"{server.url}/console/responses/{bob_id}")
    assert "bob asks" not in page.content() and page.locator(".error").inner_text().startswith("No stored response")

    admin = browser.new_context()
    try:
        admin_page = admin.new_page()
        sign_in(admin_page, server, ADMIN)
        for response_id, tenant in ((alice_id, "alice"), (bob_id, "bob")):
            row = admin_page.locator(f'tr[data-id="{response_id}"]')
            row.wait_for()
            assert row.locator("td.tenant").inner_text() == tenant
        admin_page.goto(f"{server.url}/console/responses/{bob_id}")
        assert "bob asks" in admin_page.locator("#timeline").inner_text()
    finally:
        admin.close()


def test_a_wrong_key_is_refused_and_signing_out_asks_again(page, server):
    page.goto(server.url + "/console/overview")
    page.fill("#key", "sk-nobody")
    page.click("#sign-in")
    assert "not one of this server's keys" in page.locator(".error").inner_text()
    page.fill("#key", "sk-bob-0000")
    page.click("#sign-in")
    page.wait_for_url("**/console/overview")
    assert page.locator("#tenant").inner_text() == "bob"
    assert page.locator("svg.chart").count() == 3
    page.click("text=Sign out")
    page.goto(server.url + "/console/responses")
    assert "/console/login" in page.url


def test_conversations_files_and_vector_stores_are_shown_to_their_tenant(page, browser, server, backend):
    backend.push(Reply(text="Noted: the lighthouse is red."))
    with api(server, "sk-alice") as alice:
        conversation = alice.conversations.create(metadata={"topic": "lighthouse"})
        alice.responses.create(model="scripted", input="Remember: the lighthouse is red.",
                               conversation=conversation.id)
        uploaded = alice.files.create(file=("lighthouse.txt", b"The lighthouse on the cape is painted red."),
                                      purpose="assistants")
        store = alice.vector_stores.create(name="Coast guide", file_ids=[uploaded.id])

    sign_in(page, server, "sk-alice", "/console/conversations")
    row = page.locator(f'tr[data-id="{conversation.id}"]')
    assert "topic=lighthouse" in row.inner_text() and row.locator("td.num").inner_text() == "2"
    row.locator("a").click()
    items = page.locator("#items")
    assert "Remember: the lighthouse is red." in items.inner_text()
    assert "Noted: the lighthouse is red." in items.inner_text()
    page.goto(server.url + "/console/files")
    assert "lighthouse.txt" in page.locator(f'tr[data-id="{uploaded.id}"]').inner_text()
    page.goto(server.url + "/console/vector-stores")
    page.click(f'tr[data-id="{store.id}"] a')
    assert page.locator("h1").inner_text() == "Coast guide"
    assert "lighthouse.txt" in page.locator(f'#store-files tr[data-id="{uploaded.id}"]').inner_text()

    bob = browser.new_context()
    try:
        bob_page = bob.new_page()
        sign_in(bob_page, server, "sk-bob-0000", "/console/conversations")
        assert conversation.id not in bob_page.content()
        for path in ("/console/files", "/console/vector-stores"):
            bob_page.goto(server.url + path)
            assert uploaded.id not in bob_page.content() and store.id not in bob_page.content()
        bob_page.goto(f"{server.url}/console/conversations/{conversation.id}")
        assert bob_page.locator(".error").inner_text().startswith("No conversation")
    finally:
        bob.close()
    admin = browser.new_context()
    try:
        admin_page = admin.new_page()
        sign_in(admin_page, server, ADMIN, "/console/vector-stores")
        assert admin_page.locator(f'tr[data-id="{store.id}"] td.tenant').inner_text() == "alice"
    finally:
        admin.close()


def test_a_running_response_shows_in_the_list_and_its_end_shows_without_a_reload(page, server, backend):
    import threading

    import httpx

    sign_in(page, server, "sk-alice")
    backend.hold()  # the model answers once released: the response stays in_progress until then
    done: dict[str, str] = {}

    def stream() -> None:
        with httpx.Client(timeout=60) as http:
            with http.stream("POST", f"{server.base_url}/responses", headers={"authorization": "Bearer sk-alice"},
                             json={"model": "scripted", "input": "a slow one", "stream": True}) as reply:
                for line in reply.iter_lines():
                    if '"type":"response.created"' in line.replace(" ", ""):
                        done.setdefault("id", line.split('"id":')[1].split('"')[1])

    worker = threading.Thread(target=stream)
    requests_before = len(backend.requests)
    worker.start()
    try:
        backend.wait_for_requests(requests_before + 1)
        row = page.locator('tr[data-status="in_progress"]', has_text="a slow one")
        row.wait_for()  # the first page refreshes itself: the running response appears
        response_id = row.get_attribute("data-id")
    finally:
        backend.release()
        worker.join(timeout=30)
    assert done["id"] == response_id
    page.locator(f'tr[data-id="{response_id}"][data-status="completed"]').wait_for()  # and ends, with no reload


def test_only_http_links_are_links_and_no_other_site_can_frame_the_console(page, server, backend):
    """A replayed answer's citations name a javascript: and a data: URL beside an https one: only the last is
    a link.  A page elsewhere that frames the console gets nothing (frame-ancestors 'none')."""
    backend.push(Reply(text="noted"))
    cited = [{"type": "url_citation", "url": url, "title": title, "start_index": 0, "end_index": 4}
             for url, title in (("javascript:alert(document.cookie)", "click me"),
                                ("data:text/html,<script>alert(1)</script>", "or me"),
                                ("https://example.org/tides", "tide tables"))]
    with api(server, "sk-alice") as alice:
        made = alice.responses.create(model="scripted", input=[
            {"role": "user", "content": "Where are tide tables?"},
            {"type": "message", "role": "assistant", "id": "msg_replayed", "status": "completed",
             "content": [{"type": "output_text", "text": "Here", "annotations": cited}]},
            {"role": "user", "content": "Thanks."}])
    sign_in(page, server, "sk-alice", f"/console/responses/{made.id}")
    citations = page.locator(".citations li")
    citations.first.wait_for()
    assert citations.count() == 3
    assert page.locator("a[href^='javascript:'], a[href^='data:']").count() == 0
    assert page.locator("a[href='https://example.org/tides']").count() == 1
    assert "click me" in page.locator(".citations").inner_text()  # shown, as text

    framing = page.context.new_page()
    framing.set_content(f'<iframe id="f" src="{server.url}/console/login"></iframe>')
    framing.wait_for_load_state()
    frame = framing.frame_locator("#f")
    assert frame.locator("#key").count() == 0  # the sign-in form never renders inside another page


def test_a_prompt_is_made_and_edited_in_the_console_and_used_by_a_create(page, browser, server, backend):
    sign_in(page, server, "sk-alice", "/console/prompts")
    page.fill("#prompt-name", "Greeter")
    page.fill("#prompt-model", "scripted")
    page.fill("#prompt-instructions", "Greet {{name}} warmly.")
    page.fill("#prompt-message", "Say hello to {{name}}.")
    page.fill("#prompt-settings", "{not json")
    page.click("#save-prompt")
    assert page.locator("#prompt-error").inner_text()  # the JSON error, shown, nothing saved
    page.fill("#prompt-settings", '{"temperature": 9}')
    page.click("#save-prompt")
    page.locator("#prompt-error", has_text="temperature").wait_for()
    page.fill("#prompt-settings", '{"temperature": 0.5}')
    page.click("#save-prompt")
    page.wait_for_url(re.compile(re.escape(server.url) + r"/console/prompts/pmpt_\w+"))
    prompt_id = page.locator("#prompt-id").inner_text()
    assert page.locator("#prompt-version").inner_text() == "1"
    assert page.locator("#prompt-variables").inner_text() == "name"

    page.fill("#prompt-instructions", "Greet {{name}} briefly.")  # an edit is the next version
    page.click("#save-prompt")
    page.locator("#prompt-version", has_text="2").wait_for()
    assert [row.get_attribute("data-version") for row in page.locator("#versions tbody tr").all()] == ["2", "1"]
    page.goto(server.url + "/console/prompts")
    assert "Greeter" in page.locator(f'tr[data-id="{prompt_id}"]').inner_text()

    backend.push(Reply(text="Hello, Ada!"))
    with api(server, "sk-alice") as alice:
        response = alice.responses.create(prompt={"id": prompt_id, "variables": {"name": "Ada"}})
    assert response.output_text == "Hello, Ada!" and response.prompt.version == "2" and response.temperature == 0.5
    assert backend.requests[-1]["messages"][:2] == [{"role": "system", "content": "Greet Ada briefly."},
                                                    {"role": "user", "content": "Say hello to Ada."}]
    bob = browser.new_context()
    try:
        bob_page = bob.new_page()
        sign_in(bob_page, server, "sk-bob-0000", "/console/prompts")
        assert prompt_id not in bob_page.content()
        bob_page.goto(f"{server.url}/console/prompts/{prompt_id}")
        assert bob_page.locator(".error").inner_text().startswith("No prompt")
    finally:
        bob.close()
