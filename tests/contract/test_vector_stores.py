"""Vector stores, their files and batches, and search, against a real parley serve with the official client,
on SQLite (sqlite-vec, FTS5) and PostgreSQL (tsvector)."""

from __future__ import annotations

import openai
import pytest

DOCS = {
    "volcano.md": "# Volcanoes\nMount Etna is an active stratovolcano on the east coast of Sicily. Its eruptions "
                  "produce lava flows and ash columns that close Catania airport.",
    "bread.txt": "Sourdough bread rises with a culture of wild yeast and lactic acid bacteria. Bakers feed the "
                 "starter with flour and water every day.",
    "orbit.md": "The International Space Station orbits Earth about every ninety minutes at an altitude of "
                "roughly four hundred kilometres.",
}


@pytest.fixture(scope="module")
def parley_server(scripted_server, retrieval_db_url):
    """This module's server: on SQLite, PostgreSQL, and PostgreSQL with pgvector."""
    from parley.testing import ParleyProcess

    with ParleyProcess("--upstream", scripted_server.url, "--db", retrieval_db_url) as server:
        yield server


def test_the_server_uses_pgvector_exactly_where_the_database_has_it(parley_server, retrieval_db_url) -> None:
    uses = "vector search uses HNSW indexes" in parley_server.log()
    assert uses == ("host=" in retrieval_db_url), parley_server.log()[-2000:]
    warned = "PostgreSQL without pgvector" in parley_server.log()
    assert warned == (retrieval_db_url.startswith("postgresql") and not uses), "the operator is told to add it"


def _upload(client, name: str, text: str | bytes):
    data = text.encode() if isinstance(text, str) else text
    return client.files.create(file=(name, data), purpose="assistants")


@pytest.fixture
def store(client):
    created = client.vector_stores.create(name="docs", metadata={"team": "qa"})
    yield created
    client.vector_stores.delete(created.id)


def test_upload_and_poll_indexes_files_and_search_finds_them(client, store) -> None:
    for name, text in DOCS.items():
        done = client.vector_stores.files.upload_and_poll(
            vector_store_id=store.id, file=(name, text.encode()))
        assert done.status == "completed", done.last_error
        assert done.usage_bytes > 0 and done.vector_store_id == store.id
    fetched = client.vector_stores.retrieve(store.id)
    assert fetched.file_counts.completed == 3 and fetched.file_counts.total == 3
    assert fetched.status == "completed" and fetched.usage_bytes > 0 and fetched.metadata == {"team": "qa"}
    page = client.vector_stores.search(store.id, query="Which volcano closes the airport in Catania?")
    assert page.data and page.data[0].filename == "volcano.md"
    assert "Etna" in page.data[0].content[0].text and 0 < page.data[0].score <= 1
    for ranker in ("vector", "keyword"):
        ranked = client.vector_stores.search(store.id, query="wild yeast starter", max_num_results=1,
                                             ranking_options={"ranker": ranker})
        assert [r.filename for r in ranked.data] == ["bread.txt"], ranker


def test_attributes_filter_the_search_in_sql(client, store) -> None:
    ids = {}
    for year, (name, text) in zip((2019, 2024, 2025), DOCS.items()):
        uploaded = _upload(client, name, text)
        ids[name] = uploaded.id
        attached = client.vector_stores.files.create_and_poll(
            vector_store_id=store.id, file_id=uploaded.id, attributes={"year": year, "kind": name.split(".")[1]})
        assert attached.status == "completed" and attached.attributes == {"year": year, "kind": name.split(".")[1]}
    query = "volcano bread orbit"
    newer = client.vector_stores.search(store.id, query=query, filters={"type": "gte", "key": "year", "value": 2024})
    assert {r.filename for r in newer.data} == {"bread.txt", "orbit.md"}
    markdown_or_old = client.vector_stores.search(store.id, query=query, filters={"type": "or", "filters": [
        {"type": "eq", "key": "kind", "value": "txt"}, {"type": "lt", "key": "year", "value": 2020}]})
    assert {r.filename for r in markdown_or_old.data} == {"bread.txt", "volcano.md"}
    not_in = client.vector_stores.search(store.id, query=query, filters={"type": "nin", "key": "kind",
                                                                         "value": ["md"]})
    assert {r.filename for r in not_in.data} == {"bread.txt"}
    updated = client.vector_stores.files.update(file_id=ids["orbit.md"], vector_store_id=store.id,
                                                attributes={"year": 1990})
    assert updated.attributes == {"year": 1990}
    older = client.vector_stores.search(store.id, query=query, filters={"type": "lte", "key": "year", "value": 2000})
    assert {r.filename for r in older.data} == {"orbit.md"}


def test_batches_files_listing_content_and_deletes(client, store) -> None:
    uploaded = [_upload(client, name, text) for name, text in DOCS.items()]
    batch = client.vector_stores.file_batches.create_and_poll(
        vector_store_id=store.id, file_ids=[f.id for f in uploaded],
        chunking_strategy={"type": "static", "static": {"max_chunk_size_tokens": 100, "chunk_overlap_tokens": 10}})
    assert batch.status == "completed" and batch.file_counts.completed == 3 and batch.file_counts.total == 3
    listed = client.vector_stores.file_batches.list_files(batch.id, vector_store_id=store.id)
    assert {f.id for f in listed.data} == {f.id for f in uploaded}
    assert listed.data[0].chunking_strategy.static.max_chunk_size_tokens == 100
    assert [f.id for f in client.vector_stores.files.list(store.id, filter="failed").data] == []
    content = client.vector_stores.files.content(file_id=uploaded[1].id, vector_store_id=store.id)
    assert "Sourdough" in "".join(part.text for part in content)
    client.vector_stores.files.delete(file_id=uploaded[0].id, vector_store_id=store.id)
    assert client.vector_stores.retrieve(store.id).file_counts.total == 2
    found = client.vector_stores.search(store.id, query="Etna volcano Sicily")
    assert "volcano.md" not in {r.filename for r in found.data}
    with pytest.raises(openai.NotFoundError):
        client.vector_stores.files.retrieve(file_id=uploaded[0].id, vector_store_id=store.id)


def test_upload_and_poll_batch_and_a_store_made_with_file_ids(client) -> None:
    uploaded = [_upload(client, name, text) for name, text in DOCS.items()]
    made = client.vector_stores.create(name="from ids", file_ids=[f.id for f in uploaded[:2]])
    assert made.file_counts.total == 2
    batch = client.vector_stores.file_batches.upload_and_poll(
        vector_store_id=made.id, files=[("extra.md", b"Penguins live in the southern hemisphere.")])
    assert batch.status == "completed" and batch.file_counts.completed == 1
    final = client.vector_stores.retrieve(made.id)
    assert final.file_counts.completed == 3 and final.status == "completed"
    assert made.id in [s.id for s in client.vector_stores.list(limit=100).data]
    renamed = client.vector_stores.update(made.id, name="renamed", expires_after={"anchor": "last_active_at",
                                                                                  "days": 7})
    assert renamed.name == "renamed" and renamed.expires_at == renamed.last_active_at + 7 * 86400
    assert client.vector_stores.delete(made.id).deleted
    with pytest.raises(openai.NotFoundError):
        client.vector_stores.retrieve(made.id)


def test_unreadable_files_fail_with_last_error(client, store) -> None:
    cases = [("broken.pdf", b"%PDF-1.7 this is not really a pdf"), ("photo.png", b"\x89PNG\r\n\x1a\n\x00\x00"),
             ("broken.docx", b"PK\x03\x04 not a zip")]
    for name, data in cases:
        done = client.vector_stores.files.upload_and_poll(vector_store_id=store.id, file=(name, data))
        assert done.status == "failed", name
        assert done.last_error.code in ("invalid_file", "unsupported_file") and name in done.last_error.message
    counts = client.vector_stores.retrieve(store.id).file_counts
    assert counts.failed == 3 and counts.in_progress == 0


def test_bad_requests_are_4xx_naming_the_parameter(client, store) -> None:
    doc = _upload(client, "a.txt", "alpha")
    cases = [
        (lambda: client.vector_stores.create(file_ids=["file-nope"]), openai.NotFoundError, "file_ids[0]"),
        (lambda: client.vector_stores.create(chunking_strategy={"type": "static", "static": {
            "max_chunk_size_tokens": 50, "chunk_overlap_tokens": 0}}), openai.BadRequestError,
         "chunking_strategy.static.max_chunk_size_tokens"),
        (lambda: client.vector_stores.files.create(vector_store_id=store.id, file_id=doc.id,
                                                   attributes={"k": {"nested": 1}}), openai.BadRequestError,
         "attributes.k"),
        (lambda: client.vector_stores.search(store.id, query="x", filters={"type": "eq", "key": "k"}),
         openai.BadRequestError, "filters"),
        (lambda: client.vector_stores.search(store.id, query="x", filters={"type": "like", "key": "k",
                                                                           "value": 1}),
         openai.BadRequestError, "filters.type"),
        (lambda: client.vector_stores.search(store.id, query="x", filters={"type": ["eq"], "key": "k", "value": 1}),
         openai.BadRequestError, "filters.type"),
        (lambda: client.vector_stores.search(store.id, query="x", ranking_options={"ranker": ["auto"]}),
         openai.BadRequestError, "ranking_options.ranker"),
        (lambda: client.vector_stores.search(store.id, query="x", max_num_results=99), openai.BadRequestError,
         "max_num_results"),
        (lambda: client.vector_stores.search(store.id, query="x", ranking_options={"ranker": "magic"}),
         openai.BadRequestError, "ranking_options.ranker"),
        (lambda: client.vector_stores.search("vs_missing", query="x"), openai.NotFoundError, None),
        (lambda: client.vector_stores.files.create(vector_store_id=store.id, file_id="file-missing"),
         openai.NotFoundError, "file_id[0]"),
        (lambda: client.vector_stores.create(extra_body={"embedding_model": "text-embedding-3-small"}),
         openai.BadRequestError, "embedding_model"),
    ]
    for call, error, param in cases:
        with pytest.raises(error) as info:
            call()
        if param is not None:
            assert info.value.body["param"] == param, info.value.body


def _deep(levels: int) -> dict:
    spec: dict = {"type": "eq", "key": "k", "value": 1}
    for _ in range(levels):
        spec = {"type": "and", "filters": [spec]}
    return spec


def test_filters_past_their_bounds_are_400s_before_any_sql(client, store) -> None:
    """Depth, width, long or NUL keys and values: each the request's 400 (they were a 500 RecursionError, a 503
    that refused every tenant's stored creates, or seconds of the database's time)."""
    wide = {"type": "or", "filters": [{"type": "eq", "key": f"k{i}", "value": i} for i in range(1000)]}
    wide_in = {"type": "in", "key": "k", "value": list(range(1000))}
    cases = [(_deep(200), "filter_too_complex"), (_deep(8), "filter_too_complex"), (wide, "filter_too_complex"),
             (wide_in, "filter_too_complex"), ({"type": "eq", "key": "a\x00b", "value": 1}, None),
             ({"type": "eq", "key": "k" * 65, "value": 1}, None), ({"type": "eq", "key": "k", "value": "a\x00"}, None)]
    for spec, code in cases:
        with pytest.raises(openai.BadRequestError) as info:
            client.vector_stores.search(store.id, query="x", filters=spec)
        assert info.value.body["param"].startswith("filters"), info.value.body
        assert code is None or info.value.body["code"] == code, info.value.body
    assert client.vector_stores.search(store.id, query="x", filters=_deep(7)).data == []  # within the bounds
    doc = _upload(client, "nul.txt", "alpha")
    with pytest.raises(openai.BadRequestError) as info:
        client.vector_stores.files.create(vector_store_id=store.id, file_id=doc.id, attributes={"a\x00": 1})
    assert info.value.body["param"] == "attributes"


def test_a_nul_character_is_the_requests_400_or_kept_never_a_500(client, retrieval_db_url) -> None:
    """PostgreSQL cannot keep a NUL in text: a file name, a store's name or input text holding one is that
    request's 400 there, and the store stays available to everyone else (SQLite keeps them)."""
    import httpx

    boundary = "nulboundary"
    multipart = (f'--{boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nassistants\r\n'
                 f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a\x00b.txt"\r\n'
                 f'Content-Type: text/plain\r\n\r\nx\r\n--{boundary}--\r\n').encode()

    def upload_raw() -> None:  # (the SDK would percent-encode the NUL in the file name)
        sent = httpx.post(f"{client.base_url}files", content=multipart,
                          headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
        if sent.status_code != 200:
            raise openai.BadRequestError(sent.json()["error"]["message"], response=sent, body=sent.json()["error"])

    attempts = [
        upload_raw,
        lambda: client.vector_stores.create(name="a\x00b"),
        lambda: client.responses.create(model="m", input="a\x00b"),
    ]
    postgres = retrieval_db_url.startswith("postgresql")
    for attempt in attempts:
        if not postgres:
            attempt()
            continue
        with pytest.raises(openai.BadRequestError) as info:
            attempt()
        assert "0x00" in info.value.body["message"], info.value.body
    ready = httpx.get(str(client.base_url).removesuffix("/v1/") + "/ready").json()
    assert ready["store"] == "ok"


def test_rewrite_query_returns_the_rewritten_query(client, store) -> None:
    client.vector_stores.files.upload_and_poll(vector_store_id=store.id, file=("orbit.md", DOCS["orbit.md"].encode()))
    page = client.vector_stores.search(store.id, query="How often does the space station orbit the Earth?",
                                       rewrite_query=True)
    assert page.search_query == ["often space station orbit Earth"]
    assert page.data[0].filename == "orbit.md"


@pytest.fixture(scope="module")
def embedding_server(scripted_server, tmp_path_factory):
    from parley.testing import ParleyProcess

    folder = tmp_path_factory.mktemp("emb")
    with ParleyProcess("--upstream", scripted_server.url, "--db", f"sqlite:///{folder / 'e.db'}",
                       "--embedding-upstream", scripted_server.url) as server:
        yield server


def test_a_store_embeds_with_the_upstream_model_it_was_made_with(embedding_server, backend) -> None:
    with openai.OpenAI(base_url=embedding_server.base_url, api_key="x", max_retries=0) as client:
        store = client.vector_stores.create(name="upstream", extra_body={"embedding_model": "scripted-embed"})
        for name, text in DOCS.items():
            done = client.vector_stores.files.upload_and_poll(vector_store_id=store.id, file=(name, text.encode()))
            assert done.status == "completed", done.last_error
        ingested = len(backend.embedding_requests)
        assert ingested >= 1 and {r["model"] for r in backend.embedding_requests} == {"scripted-embed"}
        page = client.vector_stores.search(store.id, query="sourdough starter yeast",
                                           ranking_options={"ranker": "vector"})
        assert page.data[0].filename == "bread.txt"
        query = backend.embedding_requests[ingested:]
        assert [(r["model"], r["input"]) for r in query] == [("scripted-embed", ["sourdough starter yeast"])]
        local = client.vector_stores.create(name="local")  # the server's default model stays local
        client.vector_stores.files.upload_and_poll(vector_store_id=local.id, file=("bread.txt", DOCS["bread.txt"].encode()))
        assert len(backend.embedding_requests) == ingested + 1
        failing = client.vector_stores.create(name="failing", extra_body={"embedding_model": "fail-embed"})
        done = client.vector_stores.files.upload_and_poll(vector_store_id=failing.id, file=("x.txt", b"some text"))
        assert done.status == "failed" and done.last_error.code == "server_error"
        assert "HTTP 500" in done.last_error.message


def test_serve_refuses_an_embedding_model_no_upstream_serves(tmp_path) -> None:
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "parley", "serve", "--upstream", "http://127.0.0.1:9/v1",
                             "--db", f"sqlite:///{tmp_path / 'x.db'}", "--embedding-model", "nomic-embed-text"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "embedding_upstream" in result.stderr


def test_pdf_docx_html_json_csv_and_code_files_are_read(client, store) -> None:
    import io

    import docx

    from tests.files_fixtures import tiny_pdf

    document = docx.Document()
    document.add_paragraph("The quarterly report mentions a heron colony.")
    table = document.add_table(rows=1, cols=2)
    table.rows[0].cells[0].text, table.rows[0].cells[1].text = "budget", "4200 euros"
    buffer = io.BytesIO()
    document.save(buffer)
    files = {"report.docx": (buffer.getvalue(), "heron colony", "4200 euros"),
             "scan.pdf": (tiny_pdf("Pelicans nest near the estuary"), "Pelicans nest", None),
             "page.html": (b"<html><head><script>var x=1</script></head><body><p>Flamingos wade.</p></body></html>",
                           "Flamingos wade.", None),
             "data.json": (b'{"bird": "kingfisher"}', "kingfisher", None),
             "rows.csv": (b"bird,count\nstork,3\n", "stork,3", None),
             "module.py": (b"def egret():\n    return 'white'\n", "def egret", None)}
    for name, (data, expected, also) in files.items():
        done = client.vector_stores.files.upload_and_poll(vector_store_id=store.id, file=(name, data))
        assert done.status == "completed", (name, done.last_error)
        text = "".join(part.text for part in client.vector_stores.files.content(file_id=done.id,
                                                                                 vector_store_id=store.id))
        assert expected in text and (also is None or also in text), (name, text)
        assert "var x" not in text
