"""How many of the exact nearest chunks SQLite's int8 index finds, on a database built by ``run.py scale --db sqlite
--keep DIR``: for the first 100 questions of the labelled set, the k nearest by the ``parley_vec_i8_<dims>`` table
(what the vector half reads, before its exact rescoring) against the exact nearest by cosine similarity in numpy.

    .venv/bin/python bench/retrieval/quantized_recall.py /tmp/s100/bench.db
"""

from __future__ import annotations

import gzip
import json
import sys

import numpy as np
import sqlean
import sqlite_vec

from parley.retrieval.embeddings import LocalEmbedder
from run import EVAL_SET

K = 80  # what a search of 10 results asks the index for (two pools of 40)


def main(path: str) -> None:
    db = sqlean.connect(f"file:{path}?mode=ro", uri=True)
    db.enable_load_extension(True)
    sqlite_vec.load(db)
    rows = db.execute("SELECT id, vector_store_id, embedding FROM parley_vector_store_chunks").fetchall()
    ids = np.array([row[0] for row in rows])
    matrix = np.frombuffer(b"".join(row[2] for row in rows), "<f4").reshape(len(rows), -1)
    table = f"parley_vec_i8_{matrix.shape[1]}"
    questions = [q["question"] for q in json.loads(gzip.open(EVAL_SET, "rt", encoding="utf-8").read())["questions"]]
    vectors = np.asarray(LocalEmbedder().embed_now(questions[:100]), np.float32)
    found = {K: [], 40: [], 10: []}
    for vector in vectors:
        exact = ids[np.argsort(-(matrix @ vector))[:K]]
        got = {row[0] for row in db.execute(
            f"SELECT chunk_id FROM {table} WHERE embedding MATCH vec_quantize_int8(vec_normalize(?), 'unit') "
            f"AND k = {K} AND store = ?", (vector.astype("<f4").tobytes(), rows[0][1]))}
        for n in found:
            found[n].append(len(set(exact[:n]) & got) / n)
    print(json.dumps({"chunks": len(rows), **{f"exact_top_{n}_found": round(float(np.mean(v)), 4)
                                              for n, v in found.items()}}))


if __name__ == "__main__":
    main(sys.argv[1])
