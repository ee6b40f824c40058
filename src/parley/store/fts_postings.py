"""SQLite: what the keyword half of a search needs to rank by BM25 in memory (:mod:`parley.retrieval.bm25`) instead
of having FTS5 rank every chunk that holds one of the query's words (bench/README.md has the figures).

Each process holds, within ``budget`` bytes (``--keyword-cache-mb``):

- each chunk's length in tokens, every column counted (FTS5's own counts, from its ``docsize`` table: what its
  ``bm25()`` takes for a document's length), and its store: two arrays indexed by chunk id;
- the postings (the chunk ids and the word's count in each) of the words searched most recently, read from FTS5's
  index through the ``fts5vocab`` table of migration 0022; a word the index splits into several tokens
  (``format_spec``) is a phrase, its chunks those that hold its tokens one after the other. Reading a word's
  postings costs 1-2 µs per chunk holding it (the commonest words of a 100,000-chunk store: 50-210 ms), so a
  search reads only those of words in at most ``INLINE_CHUNKS`` chunks itself; a more common word's are read in the
  background, and FTS5 ranks the searches that need them until they are held. Postings that would not fit beside
  those held are refused (unread, where FTS5's count of the word's chunks says so) until the next delete: large
  postings never push others out, or a budget too small for the words searched would read them again and again.

A query's words are tokenized by FTS5 itself, with the index's own ``tokenize`` option, on a private in-memory
database: a word is stemmed and split as the index stems and splits it.

Kept in step by the counts of chunks inserted and deleted that triggers keep (migration 0022): a search reads
them in the same snapshot as the postings it reads, and where they differ from the held lengths' it is ranked by
FTS5 while the lengths are read again in the background. Where chunks were only added since, only those are read,
and their text is tokenized (as above) and added to the postings held, so that a store being written to does not
have its postings read again at each write; a delete since has everything read again. Postings are held with the
counts they were read at.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

import numpy as np
import sqlalchemy as sa

from parley.store.fts_reads import EMPTY, Lengths, Postings, Tokenizer, Version, phrase, read_lengths, read_postings, \
    read_version, snapshot

log = logging.getLogger("parley.store")
T = TypeVar("T")

INDEX_SQL = sa.text("SELECT sql FROM sqlite_master WHERE name = 'parley_vector_store_fts'")
HAS_VOCAB = sa.text("SELECT 1 FROM sqlite_master WHERE name = 'parley_vector_store_fts_instances'")
TOKENIZE = re.compile(r"tokenize\s*=\s*('(?:[^']|'')*'|\"(?:[^\"]|\"\")*\")", re.IGNORECASE)
INLINE_CHUNKS = 2_000  # a search reads the postings of a word in at most this many chunks itself (a few ms)
BYTES_PER_CHUNK = 8  # a chunk in a word's postings: its id (int32) and the word's count in it (float32)
SMALL_BYTES = INLINE_CHUNKS * BYTES_PER_CHUNK  # postings that may make room by letting go of others


class NotHeld(Exception):
    """A word's postings are not held: too large for the budget, or being read in the background."""


class View:
    """The held lengths and the postings of any word, in one snapshot of the database at the lengths' version."""

    def __init__(self, held: HeldPostings, conn: sa.Connection, lengths: Lengths) -> None:
        self._held = held
        self.conn = conn
        self.lengths = lengths

    def postings(self, words: list[str], counted: Callable[[list[str]], dict[str, int]]) -> dict[str, Postings]:
        """The postings of each of ``words``: those held, and those not held read here where none is expected in
        more than ``INLINE_CHUNKS`` chunks (``counted``: how many chunks the caller expects each of them in, asked
        only for the words not held). Else, or where one would not fit in the budget, :class:`NotHeld`, and those
        not held are read in the background."""
        tokenizer = self._held.tokenizer
        assert tokenizer is not None
        tokens = {word: tokenizer.tokens(word) for word in words}
        found = {word: self._held.lookup(tokens[word], self.lengths) for word in words}
        missing = [word for word, postings in found.items() if postings is None]
        if not missing:
            return {word: postings for word, postings in found.items() if postings is not None}
        chunks = counted(missing)
        if any(self._held.refuse(tokens[word], chunks.get(word, 0)) for word in missing):
            raise NotHeld
        if any(chunks.get(word, 0) > INLINE_CHUNKS for word in missing):
            self._held.want([tokens[word] for word in missing])
            raise NotHeld
        return {word: postings if postings is not None else self._held.read(self.conn, tokens[word], self.lengths)
                for word, postings in found.items()}


class HeldPostings:
    def __init__(self, budget: int) -> None:
        self.budget = budget  # bytes; 0 holds nothing (FTS5 ranks)
        self.enabled = False  # (set once the database is SQLite with the tables of migration 0022)
        self.tokenizer: Tokenizer | None = None
        self._lengths: Lengths | None = None
        self._refused: Version | None = None  # the version whose lengths did not fit
        self._stale = False
        self._postings: OrderedDict[tuple[str, ...], tuple[Version, Postings]] = OrderedDict()
        self._too_large: set[tuple[str, ...]] = set()  # (since the last delete: a word's chunks only grow)
        self._wanted: set[tuple[str, ...]] = set()  # postings to read in the background
        self._lock = threading.Lock()  # (postings are read and held on the reading threads)
        self._load: asyncio.Task[None] | None = None
        self._reading: asyncio.Task[None] | None = None

    @property
    def held_bytes(self) -> int:
        return (self._lengths.nbytes if self._lengths else 0) + sum(
            _nbytes(postings) for _, postings in self._postings.values())

    async def prepare(self, store: Any) -> None:
        if store.engine.dialect.name != "sqlite" or self.budget <= 0:
            return

        def found(conn: sa.Connection) -> str | None:
            index = conn.execute(INDEX_SQL).scalar()
            option = TOKENIZE.search(index or "")
            return option.group(1) if option and conn.execute(HAS_VOCAB).first() is not None else None

        option = await store.read(found)
        if option is not None:
            self.tokenizer = Tokenizer(option)
            self.enabled = True

    async def ranked(self, store: Any, rank: Callable[[View], T]) -> T | None:
        """``rank`` of a view whose lengths are current, run on a reading connection; ``None`` where they are not
        (the lengths are then read again in the background) or where a word's postings do not fit."""
        def read(conn: sa.Connection) -> T | None:
            snapshot(conn)
            version = read_version(conn)
            lengths = self._lengths
            if lengths is None or lengths.version != version:
                self._stale = version != self._refused
                return None
            try:
                return rank(View(self, conn, lengths))
            except NotHeld:
                return None

        found = await store.read(read)
        if self._stale and self._load is None:
            self._stale = False
            self._load = asyncio.create_task(self._read_lengths(store))
        if self._wanted and self._reading is None:
            self._reading = asyncio.create_task(self._read_wanted(store))
        return found

    async def settled(self) -> None:
        """Once the lengths and postings being read are held."""
        while running := [task for task in (self._load, self._reading) if task is not None]:
            await asyncio.wait(running)

    async def _read_wanted(self, store: Any) -> None:
        """Read the postings searches wanted and did not read themselves, at the lengths' version, one word per
        read (searches take turns with them on the reading connections)."""
        def read(conn: sa.Connection, tokens: tuple[str, ...]) -> None:
            snapshot(conn)
            lengths = self._lengths
            if lengths is not None and lengths.version == read_version(conn):  # (else a later search asks again)
                try:
                    if self.lookup(tokens, lengths) is None:
                        self.read(conn, tokens, lengths)
                except NotHeld:  # (too large for the budget)
                    pass

        try:
            while self._wanted:
                with self._lock:
                    tokens = self._wanted.pop()
                await store.read(partial(read, tokens=tokens), bounded=False)
        except Exception:  # (the database gone or busy: FTS5 ranks, and a later search asks again)
            log.warning("the keyword index's postings could not be read into memory", exc_info=True)
        finally:
            self._reading = None

    async def _read_lengths(self, store: Any) -> None:
        try:
            base = self._lengths
            read = await store.read(lambda conn: read_lengths(conn, base, self.budget, self.tokenizer), bounded=False)
        except Exception:  # (the database gone or busy: FTS5 ranks, and the next search tries again)
            log.warning("the keyword index's lengths could not be read into memory", exc_info=True)
            return
        finally:
            self._load = None
        if isinstance(read, tuple) and isinstance(read[0], Lengths):
            lengths, added = read
            with self._lock:
                if added is not None and base is not None:
                    self._add(base.version, lengths.version, added)
                else:
                    self._too_large.clear()
                self._lengths = lengths
                self._refused = None
                self._drop_stale(lengths.version)
                self._evict()
        else:  # (the lengths alone would not fit: FTS5 ranks until the index changes)
            with self._lock:
                self._lengths, self._refused = None, read
                self._postings.clear()

    def _add(self, before: Version, after: Version, added: dict[str, np.ndarray]) -> None:
        """The postings held at ``before`` brought to ``after`` with the chunks ``added`` since (none deleted)."""
        for tokens, (version, postings) in list(self._postings.items()):
            if version == before:
                more = phrase([added.get(token, EMPTY) for token in tokens])
                if len(more[0]):
                    postings = (np.concatenate([postings[0], more[0]]), np.concatenate([postings[1], more[1]]))
                self._postings[tokens] = (after, postings)

    def _evict(self) -> None:
        while self.held_bytes > self.budget and self._postings:
            self._postings.popitem(last=False)

    def lookup(self, tokens: tuple[str, ...], lengths: Lengths) -> Postings | None:
        """The postings of ``tokens`` held at ``lengths``'s version, or ``None`` (:class:`NotHeld` where they are
        known not to fit in the budget)."""
        with self._lock:
            held = self._postings.get(tokens)
            if held is not None and held[0] == lengths.version:
                self._postings.move_to_end(tokens)
                return held[1]
            if tokens in self._too_large:
                raise NotHeld
        return None

    def refuse(self, tokens: tuple[str, ...], chunks: int) -> bool:
        """Whether postings expected in ``chunks`` chunks would not fit beside those held (they are then refused
        until the next delete, and FTS5 ranks the searches that need them)."""
        with self._lock:
            if chunks * BYTES_PER_CHUNK <= max(self.budget - self.held_bytes, SMALL_BYTES):
                return False
            self._too_large.add(tokens)
            return True

    def want(self, tokens: list[tuple[str, ...]]) -> None:
        """Have these postings read in the background (the search that wants them is ranked by FTS5)."""
        with self._lock:
            self._wanted.update(tokens)

    def read(self, conn: sa.Connection, tokens: tuple[str, ...], lengths: Lengths) -> Postings:
        """The chunks holding ``tokens`` one after the other, and how often, read in ``lengths``'s snapshot and held
        where the budget has room, else :class:`NotHeld` (refused until the next delete). Only small postings
        (``SMALL_BYTES``) make room by letting go of those used least recently: a common word's postings cost a
        second or more to read at a million chunks, and a budget too small for the words searched would otherwise
        read them again and again."""
        found = read_postings(conn, tokens)
        size = _nbytes(found)
        with self._lock:
            if size > self.budget - self.held_bytes and (size > SMALL_BYTES or size > self.budget - lengths.nbytes):
                self._too_large.add(tokens)
                raise NotHeld
            self._postings[tokens] = (lengths.version, found)
            self._postings.move_to_end(tokens)
            self._evict()
        return found

    def _drop_stale(self, version: Version) -> None:
        for tokens in [t for t, (v, _) in self._postings.items() if v != version]:
            del self._postings[tokens]


def _nbytes(postings: Postings) -> int:
    return int(postings[0].nbytes + postings[1].nbytes)
