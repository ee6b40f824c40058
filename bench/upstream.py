"""A fast synthetic Chat Completions upstream for benchmarks.

Each request's behaviour comes from its model name, so the same settings reach it whether
it is called directly or through Parley: ``bench-ttft<ms>-tps<n>-tokens<n>`` (tps 0 means
as fast as possible), e.g. ``bench-ttft0-tps0-tokens20``.  Streaming and non-streaming
answers are both served; chunks are pre-encoded so the upstream itself costs little.

Run: python bench/upstream.py --port 9100
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import time
from functools import lru_cache

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

MODEL = re.compile(r"bench-ttft(\d+)-tps(\d+)-tokens(\d+)")


@lru_cache(maxsize=64)
def _encoded(model: str, tokens: int) -> tuple[list[bytes], bytes]:
    """The SSE chunks of one answer and its non-streamed body, built once per shape."""
    def chunk(delta: dict, finish: str | None = None) -> bytes:
        body = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 0, "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        return b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"

    words = [f"w{i} " for i in range(tokens)]
    frames = [chunk({"role": "assistant", "content": ""})] + [chunk({"content": w}) for w in words]
    frames.append(chunk({}, "stop"))
    usage = {"prompt_tokens": 10, "completion_tokens": tokens, "total_tokens": 10 + tokens}
    frames.append(b"data: " + json.dumps({"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 0,
                                          "model": model, "choices": [], "usage": usage}).encode() + b"\n\n")
    frames.append(b"data: [DONE]\n\n")
    full = json.dumps({"id": "chatcmpl-bench", "object": "chat.completion", "created": 0, "model": model,
                       "choices": [{"index": 0, "message": {"role": "assistant", "content": "".join(words)},
                                    "finish_reason": "stop"}], "usage": usage}).encode()
    return frames, full


async def completions(request: Request) -> Response:
    body = json.loads(await request.body())
    match = MODEL.fullmatch(body.get("model", ""))
    ttft_ms, tps, tokens = (int(g) for g in match.groups()) if match else (0, 0, 20)
    frames, full = _encoded(body.get("model", "bench"), tokens)
    if ttft_ms:
        await asyncio.sleep(ttft_ms / 1000)
    if not body.get("stream"):
        if tps:
            await asyncio.sleep(tokens / tps)
        return Response(full, media_type="application/json")

    async def stream():
        start = time.monotonic()
        for i, frame in enumerate(frames):
            if tps and 1 <= i <= tokens:
                delay = start + i / tps - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            yield frame

    return StreamingResponse(stream(), media_type="text/event-stream")


async def models(_request: Request) -> JSONResponse:
    return JSONResponse({"object": "list", "data": [{"id": "bench-ttft0-tps0-tokens20", "object": "model"}]})


app = Starlette(routes=[Route("/v1/chat/completions", completions, methods=["POST"]),
                        Route("/v1/models", models, methods=["GET"])])


if __name__ == "__main__":
    import uvicorn

    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=9100)
    args = parser.parse_args()
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False,
                backlog=4096, limit_concurrency=None)
