"""Chunking strategies as OpenAI defines them: ``auto`` (800-token chunks overlapping by 400) and ``static``
with its bounds.  Tokens are counted with the local embedding model's tokenizer (a Llama SentencePiece
vocabulary, shipped in the ``wordllama`` wheel), whatever model embeds the chunks: it is offline and close to
the tokenizers the chunk sizes were defined with."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer

from parley.errors import InvalidRequest

AUTO = {"max_chunk_size_tokens": 800, "chunk_overlap_tokens": 400}


def parse_strategy(raw: Any, param: str = "chunking_strategy") -> dict[str, Any]:
    """The strategy as stored and returned: always ``{"type": "static", "static": {...}}``."""
    if raw is None:
        return {"type": "static", "static": dict(AUTO)}
    if not isinstance(raw, dict) or raw.get("type") not in ("auto", "static"):
        raise InvalidRequest(f"'{param}.type' must be 'auto' or 'static'.", param=f"{param}.type")
    if raw["type"] == "auto":
        if set(raw) - {"type"}:
            raise InvalidRequest(f"An 'auto' {param} takes no other fields.", param=param)
        return {"type": "static", "static": dict(AUTO)}
    static = raw.get("static")
    if not isinstance(static, dict) or set(static) != {"max_chunk_size_tokens", "chunk_overlap_tokens"}:
        raise InvalidRequest(f"'{param}.static' needs max_chunk_size_tokens and chunk_overlap_tokens.",
                             param=f"{param}.static")
    size, overlap = static["max_chunk_size_tokens"], static["chunk_overlap_tokens"]
    if type(size) is not int or not 100 <= size <= 4096:
        raise InvalidRequest("'max_chunk_size_tokens' must be an integer from 100 to 4096.",
                             param=f"{param}.static.max_chunk_size_tokens")
    if type(overlap) is not int or not 0 <= overlap <= size // 2:
        raise InvalidRequest("'chunk_overlap_tokens' must be an integer from 0 to half of max_chunk_size_tokens.",
                             param=f"{param}.static.chunk_overlap_tokens")
    return {"type": "static", "static": {"max_chunk_size_tokens": size, "chunk_overlap_tokens": overlap}}


@lru_cache(maxsize=1)
def tokenizer() -> Tokenizer:
    import wordllama

    folder = Path(wordllama.__file__).parent / "tokenizers"
    return Tokenizer.from_file(str(folder / "l2_supercat_tokenizer_config.json"))


def chunk_spans(text: str, strategy: dict[str, Any]) -> list[tuple[int, int]]:
    """The character spans of ``text``'s chunks: windows of at most ``max_chunk_size_tokens`` tokens, each
    starting ``max - overlap`` tokens after the one before, from the window's first token to its last."""
    size = strategy["static"]["max_chunk_size_tokens"]
    step = size - strategy["static"]["chunk_overlap_tokens"]
    tokens = [span for span in tokenizer().encode(text, add_special_tokens=False).offsets if span[1] > span[0]]
    spans = []
    for start in range(0, len(tokens), step):
        window = tokens[start:start + size]
        spans.append((window[0][0], window[-1][1]))
        if start + size >= len(tokens):
            break
    return spans


def chunk(text: str, strategy: dict[str, Any]) -> list[str]:
    """The texts of ``text``'s chunks (see :func:`chunk_spans`), without surrounding whitespace."""
    return [piece for start, end in chunk_spans(text, strategy) if (piece := text[start:end].strip())]
