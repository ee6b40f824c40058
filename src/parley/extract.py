"""What a file says: its text, extracted within bounds.

PDF through ``pypdf`` (and ``pdfminer.six`` for one pypdf cannot read), DOCX by streaming its main part's XML (a compressed file can inflate a thousandfold,
so nothing is inflated whole and the inflated bytes are counted), HTML as its visible text, and text,
markdown, JSON, CSV and source code as UTF-8.  Extraction stops as soon as the text passes its bound.  Its
cost grows with what a user sent, so the server runs it in a worker process (:mod:`parley.workers`); the
functions here are pure and raise :class:`Unreadable` for a file they refuse.
"""

from __future__ import annotations

import io
import mimetypes
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import IO

TEXT_TYPES = {"text/plain", "text/markdown", "text/csv", "application/json", "text/json", "text/x-markdown"}
KINDS = "PDF, DOCX, text, markdown, HTML, JSON, CSV and source code"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
# Bytes of text a file may produce for each token it may hold: real text runs 3-5 bytes a token, so the
# exact token count (``--max-file-tokens``) decides for every ordinary file, and this stops a bomb early.
BYTES_PER_TOKEN = 8
# XML a DOCX may inflate to for each byte of text it may produce (markup around a word is seldom ten times it).
XML_PER_TEXT_BYTE = 16
_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"

EXTENSIONS = {".md": "text/markdown", ".markdown": "text/markdown", ".csv": "text/csv", ".json": "application/json",
              ".txt": "text/plain", ".html": "text/html", ".htm": "text/html", ".pdf": "application/pdf",
              ".docx": DOCX}
# Source code and other text formats, read as UTF-8 text whatever type the platform's tables give them.
CODE = {".py", ".js", ".mjs", ".ts", ".tsx", ".jsx", ".java", ".kt", ".c", ".h", ".cc", ".cpp", ".hpp", ".cs",
        ".go", ".rs", ".rb", ".php", ".sh", ".swift", ".scala", ".sql", ".css", ".tex", ".yaml", ".yml", ".toml",
        ".xml", ".ini", ".cfg", ".r", ".lua", ".pl", ".jl", ".ipynb", ".rst", ".log"}


def media_type(filename: str | None, declared: str | None = None) -> str | None:
    """The file's type: as declared (a data URL's or the server's), else from its name's extension."""
    if declared and declared.split(";")[0].strip() not in ("", "application/octet-stream"):
        return declared.split(";")[0].strip().lower()
    if filename:
        suffix = "." + filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
        if suffix in CODE:
            return "text/plain"
        return EXTENSIONS.get(suffix) or mimetypes.guess_type(filename)[0]
    return None


class Unreadable(Exception):
    """A file Parley will not read: ``code`` is ``unsupported_file`` or ``file_too_large``, ``reason`` reads
    after the file's name ("is not a readable PDF.")."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(code, reason)
        self.code = code
        self.reason = reason


@dataclass(frozen=True)
class Limits:
    """How much text one file may give: ``max_tokens`` exactly (counted by :mod:`parley.retrieval.chunking`),
    and the bytes extraction may produce before it stops."""

    max_tokens: int = 5_000_000

    @property
    def max_text_bytes(self) -> int:
        return self.max_tokens * BYTES_PER_TOKEN


class _Text:
    """Pieces of text gathered up to a bound of bytes."""

    def __init__(self, limits: Limits) -> None:
        self.limit = limits.max_text_bytes
        self.parts: list[str] = []
        self.size = 0

    def add(self, piece: str) -> None:
        self.size += len(piece.encode("utf-8", "surrogatepass"))
        if self.size > self.limit:
            raise too_much_text(self.limit)
        self.parts.append(piece)

    def joined(self, separator: str) -> str:
        return separator.join(self.parts).strip()


def too_much_text(limit: int) -> Unreadable:
    return Unreadable("file_too_large", f"holds more than {limit} bytes of text (--max-file-tokens).")


def extract_text(data: bytes, kind: str | None, limits: Limits) -> str:
    """The text of a file of media type ``kind``."""
    if kind == "application/pdf":
        return _pdf_text(data, limits)
    if kind == DOCX:
        return _docx_text(data, limits)
    if kind not in TEXT_TYPES and kind != "text/html" and not (kind or "").startswith("text/"):
        raise Unreadable("unsupported_file", f"is a file of type {kind or 'unknown'}; Parley reads {KINDS} files "
                         "(give 'filename' with its extension, or a data URL with its type).")
    if len(data) > limits.max_text_bytes:
        raise too_much_text(limits.max_text_bytes)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise Unreadable("unsupported_file", "is not UTF-8 text.") from None
    return _html_text(text) if kind == "text/html" else text


def _pdf_text(data: bytes, limits: Limits) -> str:
    from pypdf import PdfReader
    from pypdf.errors import LimitReachedError, PdfReadError

    text = _Text(limits)
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            raise Unreadable("unsupported_file", "is an encrypted PDF.")
        for page in reader.pages:
            text.add((page.extract_text() or "").strip())
    except LimitReachedError:
        raise Unreadable("file_too_large", "is a PDF whose content inflates past pypdf's limits.") from None
    except (PdfReadError, ValueError, KeyError, TypeError, AttributeError, IndexError, RecursionError):
        return _forgiving_pdf_text(data, limits)  # a damaged PDF (no cross-reference table, say)
    return text.joined("\n\n")


def _forgiving_pdf_text(data: bytes, limits: Limits) -> str:
    """The text of a PDF pypdf refused, through pdfminer.six, which rebuilds a missing or broken cross-reference
    table by scanning the file's objects."""
    from pdfminer.high_level import extract_pages
    from pdfminer.layout import LTTextContainer
    from pdfminer.pdfdocument import PDFEncryptionError, PDFPasswordIncorrect

    text = _Text(limits)
    try:
        for page in extract_pages(io.BytesIO(data)):
            text.add("".join(part.get_text() for part in page if isinstance(part, LTTextContainer)).strip())
    except (PDFEncryptionError, PDFPasswordIncorrect):
        raise Unreadable("unsupported_file", "is an encrypted PDF.") from None
    except Unreadable:
        raise
    except Exception:  # pdfminer has no one base error; this runs in a worker process (parley.workers)
        raise Unreadable("unsupported_file", "is not a readable PDF.") from None
    return text.joined("\n\n")


def _docx_text(data: bytes, limits: Limits) -> str:
    """Paragraphs in document order (a table's row as its cells joined by tabs), streamed from
    ``word/document.xml``."""
    from lxml import etree

    text = _Text(limits)
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as package:
            with package.open(_main_part(package)) as raw:
                counted = _Bounded(raw, limits.max_text_bytes * XML_PER_TEXT_BYTE)
                for piece in _docx_pieces(etree.iterparse(counted, events=("start", "end"), resolve_entities=False,
                                                          no_network=True, huge_tree=False)):
                    text.add(piece)
    except (zipfile.BadZipFile, KeyError, etree.XMLSyntaxError, EOFError, OSError, ValueError, NotImplementedError):
        raise Unreadable("unsupported_file", "is not a readable DOCX file.") from None
    return text.joined("\n\n")


def _main_part(package: zipfile.ZipFile) -> str:
    names = set(package.namelist())
    if "word/document.xml" in names:
        return "word/document.xml"
    raise KeyError("word/document.xml")


def _docx_pieces(events: Iterator[tuple[str, object]]) -> Iterator[str]:
    tables = 0
    cell: list[str] = []
    row: list[str] = []
    for event, element in events:
        tag = element.tag  # type: ignore[attr-defined]
        if event == "start":
            tables += tag == _W + "tbl"
            continue
        if tag == _W + "p":
            paragraph = "".join(_run_text(element))
            if tables:
                cell.append(paragraph)
            elif paragraph.strip():
                yield paragraph
        elif tag == _W + "tc":
            row.append("\n".join(cell))
            cell = []
        elif tag == _W + "tr":
            if any(c.strip() for c in row):
                yield "\t".join(row)
            row = []
        elif tag == _W + "tbl":
            tables -= 1
        else:
            continue
        element.clear()  # type: ignore[attr-defined]
        while element.getprevious() is not None:  # type: ignore[attr-defined]
            del element.getparent()[0]  # type: ignore[attr-defined]


def _run_text(paragraph: object) -> Iterator[str]:
    for node in paragraph.iter(_W + "t", _W + "tab", _W + "br", _W + "cr"):  # type: ignore[attr-defined]
        yield node.text or "" if node.tag == _W + "t" else "\t" if node.tag == _W + "tab" else "\n"


class _Bounded(io.RawIOBase):
    """A stream that refuses to give more than ``limit`` bytes: a DOCX that inflates past it is too large."""

    def __init__(self, raw: IO[bytes], limit: int) -> None:
        self.raw = raw
        self.left = limit
        self.limit = limit

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(min(size, 1 << 20) if size and size > 0 else 1 << 20)
        self.left -= len(data)
        if self.left < 0:
            raise Unreadable("file_too_large", f"is a DOCX whose text inflates past {self.limit} bytes of XML "
                             "(--max-file-tokens).")
        return data


class _Visible(HTMLParser):
    SKIP = {"script", "style", "head", "noscript", "template"}

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self.skipping = 0

    def handle_starttag(self, tag: str, attrs: object) -> None:
        self.skipping += tag in self.SKIP

    def handle_endtag(self, tag: str) -> None:
        self.skipping -= tag in self.SKIP and self.skipping > 0

    def handle_data(self, data: str) -> None:
        if not self.skipping and data.strip():
            self.parts.append(data.strip())


def _html_text(html: str) -> str:
    parser = _Visible()
    parser.feed(html)
    return "\n".join(parser.parts)
