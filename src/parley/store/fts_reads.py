"""SQLite: how :mod:`parley.store.fts_postings` reads FTS5's index (the chunks' lengths, a word's postings) and
tokenizes text as the index does. Every read is one snapshot of the caller's connection.

Postings come back as one row of ``group_concat`` text that numpy parses: SQLite builds it without the GIL, where a
row per chunk took the GIL back and forth with the searches running beside the read, took twice as long and held a
Python int per number (bench/README.md).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import sqlalchemy as sa

Version = tuple[int, int]  # (chunks inserted, chunks deleted), in all stores
Postings = tuple[np.ndarray, np.ndarray]  # (chunk ids ascending, int32; the word's count in each, float32)
EMPTY = np.empty(0, dtype=np.int64)

CHANGES = sa.text("SELECT inserted, deleted FROM parley_vector_store_fts_changes WHERE id = 0")
LENGTHS = ("SELECT d.id, d.sz, c.vector_store_id FROM parley_vector_store_fts_docsize d "
           "JOIN parley_vector_store_chunks c ON c.id = d.id WHERE d.id > ? AND d.id <= ?")
LAST = sa.text("SELECT max(id) FROM parley_vector_store_fts_docsize")
WORD_COUNTS = ("SELECT group_concat(doc), group_concat(n) FROM (SELECT doc, count(*) AS n FROM "
               "parley_vector_store_fts_instances WHERE term = ? AND col = 'text' GROUP BY doc)")
TEXTS = "SELECT id, text FROM parley_vector_store_chunks WHERE id > ? AND id <= ?"
POSITIONS = ("SELECT group_concat(doc), group_concat(offset) FROM parley_vector_store_fts_instances "
             "WHERE term = ? AND col = 'text'")
FETCH = 4096
MAX_TOKENIZED = 20_000  # words whose tokens are remembered (the memo is emptied past it)
MAX_ADDED = 20_000  # chunks added since the postings held were read that are tokenized and added to them
LENGTH_BYTES = 8  # per chunk id: its length (float32) and its store's number (int32)
OFFSET_BITS = 24  # a position within a chunk, packed beside its chunk id to find a phrase's chunks
OCCURRENCES = f"SELECT term, group_concat((doc << {OFFSET_BITS}) + offset) FROM tokens GROUP BY term"


@dataclass
class Lengths:
    """Every chunk's length in tokens and its store, indexed by chunk id, at ``version``."""

    version: Version
    tokens: np.ndarray  # float32: the chunk's tokens in every column of the index (0 where no chunk)
    stores: np.ndarray  # int32: the chunk's store's number in ``numbers`` (-1 where no chunk)
    numbers: dict[str, int]
    rows: int
    total: float  # tokens of all chunks
    last: int  # the highest chunk id read

    @property
    def nbytes(self) -> int:
        return int(self.tokens.nbytes + self.stores.nbytes)


class Tokenizer:
    """FTS5's own tokenizer (the index's ``tokenize`` option), on a private in-memory database."""

    def __init__(self, option: str) -> None:
        import sqlean

        self._db = sqlean.connect(":memory:", check_same_thread=False)
        self._db.execute(f"CREATE VIRTUAL TABLE words USING fts5(word, tokenize={option})")
        self._db.execute("CREATE VIRTUAL TABLE tokens USING fts5vocab(words, instance)")
        self._lock = threading.Lock()
        self._memo: dict[str, tuple[str, ...]] = {}

    def tokens(self, word: str) -> tuple[str, ...]:
        with self._lock:
            found = self._memo.get(word)
            if found is None:
                self._db.execute("INSERT INTO words (rowid, word) VALUES (1, ?)", (word,))
                found = tuple(row[0] for row in self._db.execute("SELECT term FROM tokens ORDER BY offset"))
                self._db.execute("DELETE FROM words")
                if len(self._memo) >= MAX_TOKENIZED:
                    self._memo.clear()
                self._memo[word] = found
            return found

    def occurrences(self, texts: list[tuple[int, str]]) -> dict[str, np.ndarray]:
        """Each token of these (chunk id, text) and where it occurs: (chunk id << ``OFFSET_BITS``) + position,
        ascending."""
        with self._lock:
            try:
                self._db.executemany("INSERT INTO words (rowid, word) VALUES (?, ?)", texts)
                rows = self._db.execute(OCCURRENCES).fetchall()
            finally:
                self._db.execute("DELETE FROM words")
        return {term: _numbers(packed) for term, packed in rows}


def snapshot(conn: sa.Connection) -> None:
    """Make the rest of this read one snapshot (the reading connections do not begin a transaction for a SELECT):
    the counts, then the postings or lengths they are read for."""
    raw = conn.connection.driver_connection
    if not raw.in_transaction:
        raw.execute("BEGIN")


def read_version(conn: sa.Connection) -> Version:
    row = conn.execute(CHANGES).first()
    return (int(row.inserted), int(row.deleted)) if row is not None else (0, 0)


def read_postings(conn: sa.Connection, tokens: tuple[str, ...]) -> Postings:
    raw = conn.connection.driver_connection
    if not tokens:
        return np.empty(0, np.int32), np.empty(0, np.float32)
    if len(tokens) == 1:
        chunks, counts = _arrays(raw.execute(WORD_COUNTS, tokens).fetchone())
        return chunks.astype(np.int32), counts.astype(np.float32)
    occurrences = []
    for token in tokens:
        chunks, offsets = _arrays(raw.execute(POSITIONS, (token,)).fetchone())
        occurrences.append((chunks << OFFSET_BITS) + offsets)
    return phrase(occurrences)


def _arrays(row: tuple[str | None, str | None]) -> tuple[np.ndarray, np.ndarray]:
    return _numbers(row[0]), _numbers(row[1])


def _numbers(text: str | None) -> np.ndarray:
    """The integers of a ``group_concat`` (``None``: of no rows)."""
    return np.fromstring(text, dtype=np.int64, sep=",") if text else EMPTY


def phrase(occurrences: list[np.ndarray]) -> Postings:
    """The postings of a phrase from each of its tokens' occurrences ((chunk << ``OFFSET_BITS``) + position): the
    places where each token follows the one before."""
    at = occurrences[0] if occurrences else EMPTY
    for place, packed in enumerate(occurrences[1:], start=1):
        at = np.intersect1d(at, packed - place, assume_unique=True)
    chunks, counts = np.unique(at >> OFFSET_BITS, return_counts=True)
    return chunks.astype(np.int32), counts.astype(np.float32)


def read_lengths(conn: sa.Connection, base: Lengths | None, budget: int,
                  tokenizer: Tokenizer | None) -> tuple[Lengths, dict[str, np.ndarray] | None] | Version:
    """One snapshot's lengths (``base`` and the chunks after its last where none was deleted since, else every
    chunk) with, where only chunks were added (at most ``MAX_ADDED``), their tokens' occurrences; or the version read
    where the lengths would take more than ``budget`` bytes."""
    snapshot(conn)
    raw = conn.connection.driver_connection
    version = read_version(conn)
    if base is not None and base.version[1] != version[1]:
        base = None  # (a delete since: read again from the start)
    after = base.last if base is not None else 0
    last = max(after, int(conn.execute(LAST).scalar() or 0))
    if LENGTH_BYTES * (last + 1) > budget:
        return version
    numbers = dict(base.numbers) if base is not None else {}
    tokens = np.zeros(last + 1, np.float32)
    stores = np.full(last + 1, -1, np.int32)
    rows = 0
    if base is not None:
        tokens[:len(base.tokens)] = base.tokens
        stores[:len(base.stores)] = base.stores
        rows = base.rows
    cursor = raw.cursor()
    try:
        cursor.execute(LENGTHS, (after, last))
        while batch := cursor.fetchmany(FETCH):
            at = np.array([row[0] for row in batch], dtype=np.int64)
            tokens[at] = _token_counts([row[1] for row in batch])
            stores[at] = [numbers.setdefault(row[2], len(numbers)) for row in batch]
            rows += len(batch)
    finally:
        cursor.close()
    added = None
    if base is not None and tokenizer is not None and rows - base.rows <= MAX_ADDED:
        texts = raw.execute(TEXTS, (after, last)).fetchall()
        added = tokenizer.occurrences(texts) if texts else {}
    return Lengths(version, tokens, stores, numbers, rows, float(tokens.sum(dtype=np.float64)), last), added


def _token_counts(sizes: list[bytes]) -> np.ndarray:
    """Each chunk's tokens, every column summed, from FTS5's ``docsize`` records: one varint per column (seven bits a
    byte, the most significant first, the high bit set on every byte but the last)."""
    data = np.frombuffer(b"".join(sizes), dtype=np.uint8)
    ends = np.flatnonzero(data < 0x80)
    columns = len(ends) // len(sizes)
    if columns * len(sizes) != len(ends):
        raise ValueError("FTS5's docsize records do not hold the same number of columns each")
    starts = np.concatenate(([0], ends[:-1] + 1))
    values = np.zeros(len(ends), dtype=np.int64)
    for k in range(int((ends - starts).max()) + 1):
        live = starts + k <= ends
        values[live] = (values[live] << 7) | (data[starts[live] + k] & 0x7F)
    return values.reshape(len(sizes), columns).sum(axis=1).astype(np.float32)
