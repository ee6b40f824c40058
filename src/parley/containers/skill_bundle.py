"""A skill's files, as uploaded (a directory's files, or one zip), checked and made one normalized zip (pure).

A skill is a folder with a ``SKILL.md`` whose YAML front matter gives its ``name`` and ``description``.  An
upload is hostile until read: a path must stay inside the skill, a zip may hold no links, and reading stops
at :data:`MAX_BYTES` of content (counted as it is inflated, never trusted from the zip's headers) and
:data:`MAX_FILES` files.  When every file sits in one top folder, that folder is the skill.
"""

from __future__ import annotations

import io
import posixpath
import re
import stat
import zipfile
from dataclasses import dataclass

import yaml

MAX_BYTES = 50 * 1024 * 1024  # OpenAI's bound on a skill's files
MAX_FILES = 500
NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")


class BadBundle(ValueError):
    """The upload is not a skill Parley accepts; the message says why."""


@dataclass
class Bundle:
    name: str
    description: str
    files: dict[str, bytes]

    def zip(self) -> bytes:
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(self.files):
                archive.writestr(f"{self.name}/{path}", self.files[path])
        return out.getvalue()


def _clean(path: str) -> str:
    if "\x00" in path or "\\" in path:
        raise BadBundle(f"not a path inside a skill: {path!r}")
    clean = posixpath.normpath(path.lstrip("/"))
    if clean in (".", "") or clean == ".." or clean.startswith("../") or len(clean) > 512:
        raise BadBundle(f"not a path inside a skill: {path!r}")
    return clean


def _unzip(data: bytes) -> dict[str, bytes]:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError) as exc:
        raise BadBundle(f"not a zip file: {exc}") from None
    files: dict[str, bytes] = {}
    total = 0
    with archive:
        entries = archive.infolist()
        if len(entries) > MAX_FILES * 2:
            raise BadBundle(f"a skill holds at most {MAX_FILES} files")
        for entry in entries:
            if entry.is_dir():
                continue
            if stat.S_ISLNK(entry.external_attr >> 16):
                raise BadBundle(f"a skill may not hold links: {entry.filename!r}")
            path = _clean(entry.filename)
            chunks = []
            try:
                with archive.open(entry) as member:
                    while piece := member.read(1 << 16):
                        total += len(piece)
                        if total > MAX_BYTES:
                            raise BadBundle(f"a skill's files may hold at most {MAX_BYTES} bytes")
                        chunks.append(piece)
            except (zipfile.BadZipFile, NotImplementedError, EOFError, OSError) as exc:
                raise BadBundle(f"{entry.filename!r} cannot be read from the zip: {exc}") from None
            files[path] = b"".join(chunks)
            if len(files) > MAX_FILES:
                raise BadBundle(f"a skill holds at most {MAX_FILES} files")
    return files


def _front_matter(text: str) -> dict[str, object]:
    found = re.match(r"\A---\s*\n(.*?)\n---\s*(\n|\Z)", text, re.S)
    if not found:
        raise BadBundle("SKILL.md must begin with YAML front matter (between --- lines) giving name and description")
    try:
        meta = yaml.safe_load(found.group(1))
    except yaml.YAMLError as exc:
        raise BadBundle(f"SKILL.md's front matter is not YAML: {exc}") from None
    if not isinstance(meta, dict):
        raise BadBundle("SKILL.md's front matter must be a mapping with name and description")
    return meta


def read_bundle(uploads: list[tuple[str, bytes]]) -> Bundle:
    """The skill in ``uploads`` ((filename, bytes) pairs: one zip, or the files of a folder by their paths)."""
    if not uploads:
        raise BadBundle("no files were uploaded")
    if len(uploads) == 1 and (uploads[0][0].lower().endswith(".zip") or uploads[0][1][:4] == b"PK\x03\x04"):
        files = _unzip(uploads[0][1])
    else:
        if len(uploads) > MAX_FILES:
            raise BadBundle(f"a skill holds at most {MAX_FILES} files")
        if sum(len(data) for _, data in uploads) > MAX_BYTES:
            raise BadBundle(f"a skill's files may hold at most {MAX_BYTES} bytes")
        files = {}
        for filename, data in uploads:
            files[_clean(filename)] = data
    tops = {path.split("/", 1)[0] for path in files}
    if len(tops) == 1 and all("/" in path for path in files):  # one folder holds the skill
        files = {path.split("/", 1)[1]: data for path, data in files.items()}
    if "SKILL.md" not in files:
        raise BadBundle("a skill needs a SKILL.md at its top")
    try:
        meta = _front_matter(files["SKILL.md"].decode("utf-8"))
    except UnicodeDecodeError:
        raise BadBundle("SKILL.md is not UTF-8 text") from None
    name, description = meta.get("name"), meta.get("description")
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise BadBundle("SKILL.md's name must be 1-64 lowercase letters, digits and hyphens")
    if not isinstance(description, str) or not description.strip() or len(description) > 1024:
        raise BadBundle("SKILL.md's description must be text of at most 1024 characters")
    return Bundle(name, description.strip(), files)
