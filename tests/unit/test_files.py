"""Reading input_file parts: types, text extraction and the 400s (pure, no network)."""

from __future__ import annotations

import base64

import pytest

from parley.errors import InvalidRequest
from parley.extract import DOCX, Limits, Unreadable, extract_text
from parley.extract import media_type
from parley.files import decode_file_data
from tests.files_fixtures import docx_bomb, pdf_with_inflating_stream, pdf_without_xref, tiny_pdf

ROOMY = Limits(10**6)


def test_pdf_html_and_text_files_give_their_text() -> None:
    assert extract_text(tiny_pdf("Quarterly revenue grew 12 percent"), "application/pdf", ROOMY) == \
        "Quarterly revenue grew 12 percent"
    html = b"<html><head><title>t</title><style>p{}</style></head><body><p>Hello</p><script>x()</script>" \
           b"<p>world</p></body></html>"
    assert extract_text(html, "text/html", ROOMY) == "Hello\nworld"
    assert extract_text("a,b\n1,2\n".encode(), "text/csv", ROOMY) == "a,b\n1,2\n"


def test_a_pdf_pypdf_cannot_read_is_read_by_the_forgiving_reader() -> None:
    import io

    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    damaged = pdf_without_xref("Title: Parley File Input Fixture")
    with pytest.raises(PdfReadError):
        PdfReader(io.BytesIO(damaged))
    assert extract_text(damaged, "application/pdf", ROOMY) == "Title: Parley File Input Fixture"
    with pytest.raises(Unreadable) as info:
        extract_text(b"%PDF-1.4\nnot a PDF at all", "application/pdf", ROOMY)
    assert info.value.code == "unsupported_file"


def test_a_docx_gives_its_paragraphs_and_table_rows_in_document_order() -> None:
    import io

    import docx

    document = docx.Document()
    document.add_paragraph("Before the table.")
    table = document.add_table(rows=2, cols=2)
    for r, row in enumerate(table.rows):
        row.cells[0].text, row.cells[1].text = f"key{r}", f"value{r}"
    document.add_paragraph("After the table.")
    buffer = io.BytesIO()
    document.save(buffer)
    assert extract_text(buffer.getvalue(), DOCX, ROOMY) == \
        "Before the table.\n\nkey0\tvalue0\n\nkey1\tvalue1\n\nAfter the table."


def test_a_docx_that_inflates_past_the_text_bound_stops_early() -> None:
    bomb = docx_bomb(inflated_mb=50)
    assert len(bomb) < 200_000
    with pytest.raises(Unreadable) as info:
        extract_text(bomb, DOCX, Limits(1_000_000))  # 8 MB of text at most
    assert info.value.code == "file_too_large" and "bytes of text" in info.value.reason


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
    (b"PK\x03\x04 not a zip", DOCX, "unsupported_file"),
    (b"x" * 81, "text/plain", "file_too_large"),
])
def test_unreadable_unsupported_or_oversized_files_are_refused_with_their_code(data, kind, code) -> None:
    with pytest.raises(Unreadable) as info:
        extract_text(data, kind, Limits(10))  # 80 bytes of text at most
    assert info.value.code == code


def test_file_data_that_is_not_base64_is_named() -> None:
    with pytest.raises(InvalidRequest) as info:
        decode_file_data("not base64 at all!", "input[0].content[1]")
    assert info.value.param == "input[0].content[1].file_data"


def test_a_pdf_whose_stream_inflates_past_pypdfs_limits_is_too_large_not_an_error() -> None:
    with pytest.raises(Unreadable) as info:
        extract_text(pdf_with_inflating_stream(inflated_mb=100), "application/pdf", Limits())
    assert info.value.code == "file_too_large"
