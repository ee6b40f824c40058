"""A fake web search service on loopback speaking SearXNG's, Tavily's and Brave's wire formats.

It searches a small fixed corpus (or one a test gives), records every request, and can
demand API keys, so each provider of :mod:`parley.tools.web_search` is tested against the
format it really speaks:

- SearXNG: ``GET /search?q=…&format=json`` → ``{"results": [{"title", "url", "content"}]}``
- Tavily: ``POST /search`` with ``{"query", "max_results", "include_domains"}`` and a bearer key
  → ``{"results": [{"title", "url", "content", "score"}]}``
- Brave: ``GET /res/v1/web/search?q=…&count=…`` with ``X-Subscription-Token``
  → ``{"web": {"results": [{"title", "url", "description"}]}}``
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from parley.testing.threaded import LoopbackService


@dataclass
class Document:
    title: str
    url: str
    content: str


DEFAULT_CORPUS = [
    Document("Llama 4 Maverick model card", "https://ai.meta.example/llama-4-maverick",
             "Llama 4 Maverick is a mixture-of-experts model with 17B active parameters and 128 experts."),
    Document("Llama 4 Scout overview", "https://ai.meta.example/llama-4-scout",
             "Llama 4 Scout has 16 experts and a context window of 10M tokens."),
    Document("Paris weather today", "https://weather.example.org/paris",
             "Paris: sunny, 21 degrees Celsius, light wind from the west."),
    Document("Boiling points of liquids", "https://chem.example.net/boiling",
             "Water boils at 100 degrees Celsius at sea level; ethanol boils at 78 degrees."),
    Document("Mount Everest", "https://encyclopedia.example.com/everest",
             "Mount Everest is 8,849 metres tall, the highest mountain above sea level."),
]


def _words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z0-9]+", text.lower()) if len(w) >= 3}


def _host_in(url: str, domains: list[str]) -> bool:
    host = urlparse(url).hostname or ""
    return not domains or any(host == d or host.endswith("." + d) for d in domains)


class SearchTestServer(LoopbackService):
    """``with SearchTestServer() as search:``; ``search.url`` is the base URL for any provider spec."""

    service_name = "search test server"

    def __init__(self, corpus: list[Document] | None = None, api_key: str | None = None, port: int = 0) -> None:
        self.corpus = corpus if corpus is not None else DEFAULT_CORPUS
        self.api_key = api_key
        self.requests: list[dict[str, Any]] = []
        self.port = port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def search(self, query: str, domains: list[str], count: int) -> list[Document]:
        sites = re.findall(r"site:(\S+)", query)
        words = _words(re.sub(r"site:\S+", "", query))
        scored = [(len(words & _words(d.title + " " + d.content)), d) for d in self.corpus
                  if _host_in(d.url, domains + sites)]
        return [d for score, d in sorted(scored, key=lambda x: -x[0]) if score > 0][:count]

    def _record(self, provider: str, request: Request, body: Any = None) -> None:
        self.requests.append({"provider": provider, "params": dict(request.query_params),
                              "headers": dict(request.headers), "body": body})

    def _unauthorized(self, given: str | None) -> JSONResponse | None:
        if self.api_key and given != self.api_key:
            return JSONResponse({"error": "invalid api key"}, status_code=401)
        return None

    async def _searxng(self, request: Request) -> JSONResponse:
        self._record("searxng", request)
        if request.query_params.get("format") != "json":
            return JSONResponse({"error": "format must be json"}, status_code=400)
        docs = self.search(request.query_params.get("q", ""), [], 20)
        return JSONResponse({"query": request.query_params.get("q"), "results": [
            {"title": d.title, "url": d.url, "content": d.content, "engine": "fake"} for d in docs]})

    async def _tavily(self, request: Request) -> JSONResponse:
        body = await request.json()
        self._record("tavily", request, body)
        denied = self._unauthorized(request.headers.get("authorization", "").removeprefix("Bearer "))
        if denied:
            return denied
        docs = self.search(body.get("query", ""), body.get("include_domains") or [], body.get("max_results", 5))
        return JSONResponse({"query": body.get("query"), "results": [
            {"title": d.title, "url": d.url, "content": d.content, "score": 0.9} for d in docs]})

    async def _brave(self, request: Request) -> JSONResponse:
        self._record("brave", request)
        denied = self._unauthorized(request.headers.get("x-subscription-token"))
        if denied:
            return denied
        docs = self.search(request.query_params.get("q", ""), [], int(request.query_params.get("count", 10)))
        return JSONResponse({"type": "search", "web": {"results": [
            {"title": d.title, "url": d.url, "description": d.content} for d in docs]}})

    def asgi_app(self) -> Starlette:
        return Starlette(routes=[Route("/search", self._searxng, methods=["GET"]),
                                 Route("/search", self._tavily, methods=["POST"]),
                                 Route("/res/v1/web/search", self._brave, methods=["GET"])])
