"""Small documents for input_file tests, built here (no binary fixtures in the repository)."""

from __future__ import annotations


def tiny_pdf(text: str) -> bytes:
    """A one-page PDF whose text layer holds ``text`` (ASCII, no parentheses)."""
    content = f"BT /F1 12 Tf 10 50 Td ({text}) Tj ET".encode()
    return _pdf(b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream")


def pdf_without_xref(text: str) -> bytes:
    """A one-page PDF with no cross-reference table and no ``startxref`` (as small hand-written PDFs are),
    which pypdf refuses."""
    full = _pdf(b"<< /Length %d >>\nstream\nBT /F1 12 Tf 10 50 Td (%s) Tj ET\nendstream"
                % (len(text) + 27, text.encode()))
    return full[:full.index(b"xref\n")] + b"trailer\n<< /Root 1 0 R >>\n%%EOF"


def _pdf(contents: bytes) -> bytes:
    """A one-page PDF around its content stream object ``contents``, with its cross-reference table."""
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 400 100] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        contents,
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out, offsets = b"%PDF-1.4\n", []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return out


def docx_bomb(inflated_mb: int) -> bytes:
    """A valid DOCX (python-docx's template) whose ``word/document.xml`` inflates to about ``inflated_mb`` MB:
    paragraphs of 10,000 letters, which deflate about a thousandfold."""
    import io
    import zipfile

    import docx

    template = io.BytesIO()
    docx.Document().save(template)
    source = zipfile.ZipFile(io.BytesIO(template.getvalue()))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as package:
        for info in source.infolist():
            if info.filename != "word/document.xml":
                package.writestr(info, source.read(info.filename))
                continue
            with package.open("word/document.xml", "w", force_zip64=True) as part:
                part.write(b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?><w:document xmlns:w='
                           b'"http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body>')
                paragraph = b"<w:p><w:r><w:t>" + b"A" * 10_000 + b"</w:t></w:r></w:p>"
                for _ in range(inflated_mb * 100):
                    part.write(paragraph)
                part.write(b"</w:body></w:document>")
    return out.getvalue()


def pdf_with_inflating_stream(inflated_mb: int) -> bytes:
    """A one-page PDF whose content stream is deflated and inflates to ``inflated_mb`` MB."""
    import zlib

    content = zlib.compress(b"BT /F1 12 Tf 10 50 Td (x) Tj ET " + b" " * (inflated_mb << 20), 9)
    return _pdf(b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(content) + content + b"\nendstream")
