"""The <think> tag splitter: pure, across chunk boundaries."""

from __future__ import annotations

import pytest

from parley.backends.think_tags import ThinkTags, split_chunk


def run(pieces: list[str], inside: bool = False) -> list[tuple[str, str]]:
    tags = ThinkTags(inside)
    out = [p for piece in pieces for p in tags.split(piece)] + tags.flush()
    merged: list[tuple[str, str]] = []
    for kind, text in out:
        if merged and merged[-1][0] == kind:
            merged[-1] = (kind, merged[-1][1] + text)
        else:
            merged.append((kind, text))
    return merged


@pytest.mark.parametrize("size", [1, 2, 3, 5, 8, 100])
def test_tags_split_anywhere_give_the_same_reasoning_and_answer(size) -> None:
    text = "<think>Sum 2 and 3.</think>It is 5."
    pieces = [text[i:i + size] for i in range(0, len(text), size)]
    assert run(pieces) == [("reasoning_content", "Sum 2 and 3."), ("content", "It is 5.")]


def test_an_opened_template_starts_inside_and_a_lone_angle_bracket_stays_text() -> None:
    assert run(["Let me see</th", "ink>Yes."], inside=True) == [("reasoning_content", "Let me see"),
                                                                ("content", "Yes.")]
    assert run(["a <b> and <thi", "s"]) == [("content", "a <b> and <this")]
    assert run(["ends with <thi"]) == [("content", "ends with <thi")]


def test_a_chunk_becomes_one_chunk_per_piece_with_its_finish_reason_last() -> None:
    tags = ThinkTags()
    chunk = {"id": "c", "choices": [{"index": 0, "delta": {"content": "<think>hm</think>ok"}, "finish_reason": "stop"}]}
    out = split_chunk(tags, chunk)
    assert [c["choices"][0]["delta"] for c in out] == [{"reasoning_content": "hm"}, {"content": "ok"}]
    assert [c["choices"][0]["finish_reason"] for c in out] == [None, "stop"]
    usage = {"id": "c", "choices": [], "usage": {"prompt_tokens": 1}}
    assert split_chunk(tags, usage) == [usage]
