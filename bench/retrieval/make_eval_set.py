"""Build the labelled retrieval evaluation set (``eval_set.json.gz``) from text that ships with CPython: the
Python language reference topics in ``pydoc_data.topics`` (PSF licence).

The questions are made the "inverse cloze" way: a sentence is taken out of its document, and the chunks of
the document (without it) that cover the place it was taken from are the relevant ones.  The question's own
words are therefore not in the corpus; what is left is the topic's vocabulary and meaning around the gap,
which is what a search for a paraphrased question has to work with.  Deterministic (seeded); run once, the
output is committed so that every run of the benchmark uses the same set whatever Python is installed.

    .venv/bin/python bench/retrieval/make_eval_set.py
"""

from __future__ import annotations

import gzip
import json
import random
import re
from pathlib import Path

from pydoc_data.topics import topics

from parley.retrieval.chunking import chunk_spans

OUT = Path(__file__).with_name("eval_set.json.gz")
CHUNKING = {"type": "static", "static": {"max_chunk_size_tokens": 120, "chunk_overlap_tokens": 20}}
SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
PER_DOC, QUESTIONS = 8, 400


def _candidate(sentence: str) -> bool:
    words = sentence.split()
    letters = sum(c.isalpha() or c.isspace() for c in sentence)
    return 10 <= len(words) <= 40 and letters / len(sentence) > 0.9 and ">>>" not in sentence


def build() -> dict:
    rng = random.Random(20261126)
    docs, questions = {}, []
    for name in sorted(topics):
        text = topics[name]
        sentences = list(_sentences(text))
        chosen = sorted(rng.sample([s for s in sentences if _candidate(text[s[0]:s[1]])],
                                   k=min(PER_DOC, sum(_candidate(text[a:b]) for a, b in sentences))))
        kept, points, cursor = [], [], 0
        for start, end in chosen:
            kept.append(text[cursor:start])
            points.append((sum(len(k) for k in kept), " ".join(text[start:end].split())))
            cursor = end
        kept.append(text[cursor:])
        body = "".join(kept)
        spans = chunk_spans(body, CHUNKING)
        docs[name] = {"text": body, "chunks": len(spans)}
        for point, sentence in points:
            relevant = [i for i, (a, b) in enumerate(spans) if a <= point <= b]
            if relevant:
                questions.append({"doc": name, "question": sentence, "relevant": relevant})
    rng.shuffle(questions)
    return {"source": "CPython pydoc_data.topics (Python Software Foundation License)",
            "chunking": CHUNKING, "docs": docs, "questions": questions[:QUESTIONS]}


def _sentences(text: str):
    """(start, end) of each sentence within its paragraph (text between blank lines)."""
    for paragraph in re.finditer(r"[^\n]+(?:\n[^\n]+)*", text):
        start = paragraph.start()
        for piece in SENTENCE.split(paragraph.group()):
            offset = text.index(piece, start)
            yield offset, offset + len(piece)
            start = offset + len(piece)


if __name__ == "__main__":
    data = build()
    chunks = sum(d["chunks"] for d in data["docs"].values())
    with gzip.open(OUT, "wt", encoding="utf-8") as f:
        json.dump(data, f)
    print(f"{len(data['questions'])} questions over {chunks} chunks in {len(data['docs'])} documents -> {OUT}")
