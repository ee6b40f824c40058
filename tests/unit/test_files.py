"""Reading input_file parts: types, text extraction and the 400s (pure, no network)."""

from __future__ import annotations

import base64

import pytest

from parley.errors import InvalidRequest
from parley.files import decode_file_data, extract_text, media_type
from tests.files_fixtures import tiny_pdf


def test_pdf_html_and_text_files_give_their_text() -> None:
    assert extract_text(tiny_pdf("Quarterly revenue grew 12 percent"), "application/pdf", "p", 10**6) == \
        "Quarterly revenue grew 12 percent"
    html = b"<html><head><title>t</title><style>p{}</style></head><body><p>Hello</p><script>x()</script>" \
           b"<p>world</p></body></html>"
    assert extract_text(html, "text/html", "p", 10**6) == "Hello\nworld"
    assert extract_text("a,b\n1,2\n".encode(), "text/csv", "p", 10**6) == "a,b\n1,2\n"


def test_the_type_comes_from_the_declaration_or_the_name() -> None:
    assert media_type("notes.md") == "text/markdown" and media_type("x.PDF") == "application/pdf"
    assert media_type("x.bin", "application/json; charset=utf-8") == "application/json"
    assert media_type("report.pdf", "application/octet-stream") == "application/pdf"
    data, declared = decode_file_data("data:text/plain;base64," + base64.b64encode(b"hi").decode(), "p")
    assert (data, declared) == (b"hi", "text/plain")


@pytest.mark.parametrize("data,kind,code", [
    (b"\x89PNG....", "image/png", "unsupported_file"),
    (b"%PDF-1.4 not really", "application/pdf", "unsupported_file"),
    (b"\xff\xfe\x00bad", "text/plain", "unsupported_file"),
    (b"x" * 101, "text/plain", "file_too_large"),
])
def test_unreadable_unsupported_or_oversized_files_are_400s_naming_the_part(data, kind, code) -> None:
    with pytest.raises(InvalidRequest) as info:
        extract_text(data, kind, "input[0].content[1]", 100)
    assert info.value.param == "input[0].content[1]" and info.value.code == code


def test_file_data_that_is_not_base64_is_named() -> None:
    with pytest.raises(InvalidRequest) as info:
        decode_file_data("not base64 at all!", "input[0].content[1]")
    assert info.value.param == "input[0].content[1].file_data"
