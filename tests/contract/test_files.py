"""The Files API against a real parley serve, with the official client, on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import hashlib
import os

import openai
import pytest


def test_upload_retrieve_list_download_and_delete(client) -> None:
    notes = client.files.create(file=("notes.md", b"# Notes\n- ship it\n", "text/markdown"), purpose="user_data")
    assert (notes.object, notes.filename, notes.bytes, notes.purpose, notes.status) == \
        ("file", "notes.md", 18, "user_data", "processed")
    assert isinstance(notes.created_at, int) and notes.id.startswith("file")
    assert client.files.retrieve(notes.id).model_dump() == notes.model_dump()
    assert client.files.content(notes.id).read() == b"# Notes\n- ship it\n"
    assert notes.id in [f.id for f in client.files.list(purpose="user_data")]
    assert notes.id not in [f.id for f in client.files.list(purpose="batch")]
    deleted = client.files.delete(notes.id)
    assert (deleted.id, deleted.deleted) == (notes.id, True)
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(notes.id)
    with pytest.raises(openai.NotFoundError):
        client.files.content(notes.id)


def test_a_file_of_several_chunks_comes_back_byte_for_byte(client) -> None:
    data = os.urandom(2 * 1024 * 1024 + 12345)  # three stored chunks of at most 1 MiB
    uploaded = client.files.create(file=("blob.bin", data), purpose="assistants")
    assert uploaded.bytes == len(data)
    assert hashlib.sha256(client.files.content(uploaded.id).read()).digest() == hashlib.sha256(data).digest()
    client.files.delete(uploaded.id)


def test_the_list_pages_newest_first_and_in_order(client) -> None:
    ids = [client.files.create(file=(f"p{i}.txt", b"x"), purpose="evals").id for i in range(3)]
    first = client.files.list(purpose="evals", limit=2)
    assert [f.id for f in first.data] == ids[::-1][:2] and first.has_more
    rest = client.files.list(purpose="evals", limit=2, after=first.data[-1].id)
    assert [f.id for f in rest.data] == [ids[0]] and not rest.has_more
    ascending = client.files.list(purpose="evals", order="asc")
    assert [f.id for f in ascending.data][-3:] == ids
    for file_id in ids:
        client.files.delete(file_id)


def test_expiry_is_kept_and_bad_uploads_are_4xx_naming_the_part(client) -> None:
    expiring = client.files.create(file=("e.txt", b"soon"), purpose="user_data",
                                   expires_after={"anchor": "created_at", "seconds": 3600})
    assert expiring.expires_at == expiring.created_at + 3600
    cases = [({"file": ("x.txt", b"x"), "purpose": "nonsense"}, "purpose"),
             ({"file": ("empty.txt", b""), "purpose": "user_data"}, "file"),
             ({"file": ("x.txt", b"x"), "purpose": "user_data",
               "expires_after": {"anchor": "created_at", "seconds": 5}}, "expires_after.seconds")]
    for arguments, param in cases:
        with pytest.raises(openai.BadRequestError) as info:
            client.files.create(**arguments)
        assert info.value.body["param"] == param
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve("file-nothing")


def test_an_uploaded_file_is_an_input_file_by_its_id(client, backend) -> None:
    notes = client.files.create(file=("plan.md", b"# Plan\nShip on Friday.\n"), purpose="user_data")
    client.responses.create(model="m", input=[{"role": "user", "content": [
        {"type": "input_text", "text": "When do we ship?"}, {"type": "input_file", "file_id": notes.id}]}])
    assert backend.requests[-1]["messages"][-1]["content"] == \
        "When do we ship?\n\n[file: plan.md]\n# Plan\nShip on Friday."
    client.files.delete(notes.id)
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(model="m", input=[{"role": "user", "content": [
            {"type": "input_text", "text": "x"}, {"type": "input_file", "file_id": notes.id}]}])
    assert info.value.body["param"] == "input[0].content[1].file_id" and info.value.code == "file_not_found"


PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082")


def test_input_image_by_file_id_reaches_the_model_as_a_data_url(client, backend) -> None:
    image = client.files.create(file=("dot.png", PNG), purpose="vision")
    response = client.responses.create(model="m", input=[{"role": "user", "content": [
        {"type": "input_text", "text": "what is this?"}, {"type": "input_image", "file_id": image.id}]}])
    assert response.status == "completed"
    [part] = [p for p in backend.requests[-1]["messages"][-1]["content"] if p["type"] == "image_url"]
    assert part["image_url"]["url"] == "data:image/png;base64," + base64.b64encode(PNG).decode()
    stored = client.responses.input_items.list(response.id).data[0]
    assert stored.content[1].file_id == image.id and stored.content[1].image_url is None
    text = client.files.create(file=("notes.txt", b"not an image"), purpose="user_data")
    for file_id, code in ((text.id, "unsupported_file"), ("file-missing", "file_not_found")):
        with pytest.raises(openai.BadRequestError) as info:
            client.responses.create(model="m", input=[{"role": "user", "content": [
                {"type": "input_image", "file_id": file_id}]}])
        assert info.value.body["param"] == "input[0].content[0].file_id" and info.value.code == code
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(model="m", input=[{"role": "user", "content": [{"type": "input_image"}]}])
    assert info.value.body["param"] == "input[0].content[0].image_url"


def test_uploads_past_the_request_body_limit_follow_max_file_bytes(scripted_server, tmp_path) -> None:
    from parley.testing import ParleyProcess

    limit = 40 * 1000 * 1000  # above the 32 MiB limit of JSON request bodies
    with ParleyProcess("--upstream", scripted_server.url, "--db", f"sqlite:///{tmp_path / 'big.db'}",
                       "--max-file-bytes", str(limit)) as server, \
            openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0, timeout=120) as big:
        data = os.urandom(36 * 1000 * 1000)
        uploaded = big.files.create(file=("big.bin", data), purpose="assistants")
        assert uploaded.bytes == len(data)
        assert hashlib.sha256(big.files.content(uploaded.id).read()).digest() == hashlib.sha256(data).digest()
        with pytest.raises(openai.APIStatusError) as info:
            big.files.create(file=("bigger.bin", os.urandom(limit + 1)), purpose="assistants")
        assert info.value.status_code == 413 and info.value.body["param"] == "file"


def test_files_dir_keeps_the_bytes_in_a_directory_and_both_kinds_stay_readable(scripted_server, db_url,
                                                                               tmp_path) -> None:
    from parley.testing import ParleyProcess

    folder = tmp_path / "files"
    data = os.urandom(1024 * 1024 + 7)
    args = ("--upstream", scripted_server.url, "--db", db_url)
    with ParleyProcess(*args) as plain, \
            openai.OpenAI(base_url=plain.base_url, api_key="x", max_retries=0) as client:
        in_database = client.files.create(file=("db.bin", b"kept in the database"), purpose="user_data")
    with ParleyProcess(*args, "--files-dir", str(folder)) as server, \
            openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0) as client:
        uploaded = client.files.create(file=("dir.bin", data), purpose="assistants")
        assert (folder / uploaded.id).read_bytes() == data and not list(folder.glob("*.part"))
        assert client.files.content(uploaded.id).read() == data
        assert client.files.content(in_database.id).read() == b"kept in the database"
        indexed = client.vector_stores.files.upload_and_poll(
            vector_store_id=client.vector_stores.create(name="d").id, file=("notes.md", b"Kept on disk, indexed."))
        assert indexed.status == "completed"
        client.files.delete(uploaded.id)
        assert not (folder / uploaded.id).exists()
    with ParleyProcess(*args) as later, \
            openai.OpenAI(base_url=later.base_url, api_key="x", max_retries=0) as client:
        assert client.files.content(indexed.id).read() == b"Kept on disk, indexed."  # the row keeps its path
