"""Build the labelled retrieval evaluation sets from text that ships with CPython (PSF licence):
``eval_set.json.gz`` from the Python language reference topics in ``pydoc_data.topics``, and
``eval_set_docstrings.json.gz`` from a different kind of text, the prose of the standard library's own
documentation strings (a module's docstring and those of its public classes and functions, as ``help()`` shows
them) for a fixed list of modules.

The questions are made the "inverse cloze" way: a sentence is taken out of its document, and the chunks of
the document (without it) that cover the place it was taken from are the relevant ones.  The question's own
words are therefore not in the corpus; what is left is the topic's vocabulary and meaning around the gap,
which is what a search for a paraphrased question has to work with.  Deterministic (seeded); run once, the
output is committed so that every run of the benchmark uses the same set whatever Python is installed.

    .venv/bin/python bench/retrieval/make_eval_set.py [--corpus topics|docstrings]
"""

from __future__ import annotations

import argparse
import gzip
import importlib
import inspect
import json
import random
import re
from pathlib import Path

from pydoc_data.topics import topics

from parley.retrieval.chunking import chunk_spans

OUT = {"topics": Path(__file__).with_name("eval_set.json.gz"),
       "docstrings": Path(__file__).with_name("eval_set_docstrings.json.gz")}
# Standard library modules whose documentation strings are prose (not generated, not mostly code).
MODULES = ("abc argparse ast asyncio.events asyncio.locks asyncio.queues asyncio.tasks base64 bisect calendar cmd "
           "codecs collections concurrent.futures configparser contextlib copy csv dataclasses datetime decimal "
           "difflib email.message enum fnmatch fractions functools getopt gettext glob gzip hashlib heapq hmac "
           "html.parser http.client http.cookies imaplib inspect ipaddress itertools json logging mailbox "
           "mimetypes multiprocessing.pool netrc numbers operator optparse os pathlib pickle pkgutil platform "
           "plistlib poplib pprint queue random re sched secrets selectors shelve shlex shutil smtplib socket "
           "socketserver sqlite3 ssl statistics string struct subprocess tarfile tempfile textwrap threading "
           "timeit tokenize trace traceback typing unittest.case urllib.parse urllib.request uuid warnings "
           "weakref wave zipfile zoneinfo").split()
CHUNKING = {"type": "static", "static": {"max_chunk_size_tokens": 120, "chunk_overlap_tokens": 20}}
SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
PER_DOC, QUESTIONS = 8, 400


def _candidate(sentence: str) -> bool:
    words = sentence.split()
    letters = sum(c.isalpha() or c.isspace() for c in sentence)
    return 10 <= len(words) <= 40 and letters / len(sentence) > 0.9 and ">>>" not in sentence


def docstring_corpus() -> dict[str, str]:
    """Each module's documentation: its docstring, then each public class and function's, under its name."""
    corpus = {}
    for module_name in MODULES:
        module = importlib.import_module(module_name)
        parts = [inspect.getdoc(module) or ""]
        for name, value in sorted(vars(module).items()):
            if name.startswith("_") or getattr(value, "__module__", None) != module.__name__:
                continue
            if inspect.isclass(value) or inspect.isfunction(value):
                doc = inspect.getdoc(value)
                if doc and len(doc) > 80:
                    parts.append(f"{name}\n\n{doc}")
        text = "\n\n".join(p for p in parts if p)
        if len(text) >= 1000:  # (a module with hardly any prose is left out)
            corpus[module_name] = text
    return corpus


def build(corpus: str = "topics") -> dict:
    rng = random.Random(20261126)
    docs, questions = {}, []
    texts = topics if corpus == "topics" else docstring_corpus()
    for name in sorted(texts):
        text = texts[name]
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
    source = "CPython pydoc_data.topics" if corpus == "topics" else \
        "the documentation strings of CPython's standard library modules"
    return {"source": f"{source} (Python Software Foundation License)",
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
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", choices=sorted(OUT), default="topics")
    corpus = parser.parse_args().corpus
    data = build(corpus)
    chunks = sum(d["chunks"] for d in data["docs"].values())
    with gzip.open(OUT[corpus], "wt", encoding="utf-8") as f:
        json.dump(data, f)
    print(f"{len(data['questions'])} questions over {chunks} chunks in {len(data['docs'])} documents -> {OUT[corpus]}")
