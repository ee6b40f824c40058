"""Tokens per second of the embedded model: through `parley serve` (streamed Responses) against
llama-cpp-python called directly on the same GGUF, same prompt, same settings.

Run: .venv/bin/python bench/embedded_tps.py [--runs 3] [--tokens 200]
Prints a markdown table; this is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import httpx

from parley.backends.embedded import default_model_path
from parley.testing import ParleyProcess

PROMPT = "Write a long story about a lighthouse keeper."


def direct(tokens: int) -> float:
    from llama_cpp import Llama

    llm = Llama(model_path=str(default_model_path()), n_ctx=4096, verbose=False)
    start, count = time.perf_counter(), 0
    for chunk in llm.create_chat_completion(messages=[{"role": "user", "content": PROMPT}], stream=True,
                                            max_tokens=tokens, temperature=0):
        if chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
            count += 1
    return count / (time.perf_counter() - start)


def through_parley(server: ParleyProcess, tokens: int) -> float:
    body = {"model": "smollm2-135m-instruct", "input": PROMPT, "stream": True, "max_output_tokens": tokens,
            "temperature": 0}
    start, count = time.perf_counter(), 0
    with httpx.stream("POST", f"{server.base_url}/responses", json=body, timeout=300) as response:
        for line in response.iter_lines():
            if line.startswith("data: ") and json.loads(line[6:])["type"] == "response.output_text.delta":
                count += 1
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=200)
    args = parser.parse_args()
    direct_runs = [direct(args.tokens) for _ in range(args.runs)]
    with ParleyProcess("--db", "sqlite:////tmp/parley-bench-embedded.db") as server:
        through_parley(server, 20)  # warm-up
        parley_runs = [through_parley(server, args.tokens) for _ in range(args.runs)]
    d, p = statistics.median(direct_runs), statistics.median(parley_runs)
    print("| path | tokens/s (median of %d) |\n| --- | --- |" % args.runs)
    print(f"| llama-cpp-python direct | {d:.1f} |\n| parley serve, streamed | {p:.1f} |")
    print(f"| ratio parley/direct | {p / d:.2f} |")


if __name__ == "__main__":
    main()
