"""Chunking strategies as OpenAI defines them: ``auto`` (800-token chunks overlapping by 400) and ``static``
with its bounds.  Tokens are counted with the local embedding model's tokenizer (a Llama SentencePiece
vocabulary, shipped in the ``wordllama`` wheel), whatever model embeds the chunks: it is offline and close to
the tokenizers the chunk sizes were defined with."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Tokenizer

from parley.errors import InvalidRequest
from parley.extract import Unreadable

AUTO = {"max_chunk_size_tokens": 800, "chunk_overlap_tokens": 400}
SEGMENT = 1 << 16  # characters tokenized at once


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


def token_offsets(text: str, max_tokens: int | None = None) -> np.ndarray:
    """The character spans of ``text``'s tokens, as an ``(n, 2)`` array.  The text is tokenized a segment at a
    time (cut at whitespace), so a long file costs memory in proportion to its tokens, not many times its
    text; past ``max_tokens`` the file is refused."""
    parts, count, position = [], 0, 0
    while position < len(text):
        end = min(len(text), position + SEGMENT)
        if end < len(text):
            cut = max(text.rfind(" ", position + SEGMENT // 2, end), text.rfind("\n", position + SEGMENT // 2, end))
            end = cut if cut > position else end
        offsets = np.array(tokenizer().encode(text[position:end], add_special_tokens=False).offsets,
                           dtype=np.int64).reshape(-1, 2)
        offsets = offsets[offsets[:, 1] > offsets[:, 0]] + position
        count += len(offsets)
        if max_tokens is not None and count > max_tokens:
            raise Unreadable("file_too_large", f"holds more than {max_tokens} tokens (--max-file-tokens).")
        parts.append(offsets)
        position = end
    return np.concatenate(parts) if parts else np.zeros((0, 2), np.int64)


def chunk_spans(text: str, strategy: dict[str, Any], max_tokens: int | None = None) -> list[tuple[int, int]]:
    """The character spans of ``text``'s chunks: windows of at most ``max_chunk_size_tokens`` tokens, each
    starting ``max - overlap`` tokens after the one before, from the window's first token to its last."""
    size = strategy["static"]["max_chunk_size_tokens"]
    step = size - strategy["static"]["chunk_overlap_tokens"]
    tokens = token_offsets(text, max_tokens)
    spans = []
    for start in range(0, len(tokens), step):
        last = min(start + size, len(tokens)) - 1
        spans.append((int(tokens[start, 0]), int(tokens[last, 1])))
        if start + size >= len(tokens):
            break
    return spans


def chunk(text: str, strategy: dict[str, Any], max_tokens: int | None = None) -> list[str]:
    """The texts of ``text``'s chunks (see :func:`chunk_spans`), without surrounding whitespace."""
    return [piece for start, end in chunk_spans(text, strategy, max_tokens) if (piece := text[start:end].strip())]
