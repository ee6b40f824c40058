"""The ``web_search`` tool: pluggable search providers and the ``web_search_call`` items.

The provider comes from ``--web-search SPEC``: ``searxng:http://host:port`` (SearXNG's JSON
API, self-hostable), ``tavily[:BASE_URL]`` or ``brave[:BASE_URL]`` (API keys from
settings).  The model sees one function, ``web_search(query)``; its results reach the
model numbered ``[1]``, ``[2]``… across the whole response, so the answer can cite them and
the citations become ``url_citation`` annotations.  What live searches find is kept per tenant
(:mod:`parley.tools.web_cache`), and a tool with ``external_web_access: false`` searches only that.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol
from urllib.parse import urlparse

import httpx
from pydantic import Field
from openai.types.responses import (
    ResponseFunctionWebSearch,
    ResponseWebSearchCallCompletedEvent,
    ResponseWebSearchCallInProgressEvent,
    ResponseWebSearchCallSearchingEvent,
)

from parley.errors import InvalidRequest
from parley.ids import new_id
from parley.tools.base import BindContext, Binding, Citation, Offered, Produced, SingleToolKind, ToolCall, ToolEnv, \
    ToolModel, numbered, search_closing, search_opening
from parley.tools.web_cache import SqlWebCache

log = logging.getLogger("parley.web_search")
FUNCTION_NAME = "web_search"
# search_context_size → (results given to the model, characters of text per result)
WEB_SCHEMES = ("https://", "http://")
CONTEXT_SIZES = {"low": (3, 300), "medium": (5, 800), "high": (10, 2000)}
TYPES = ("web_search", "web_search_2025_08_26", "web_search_preview", "web_search_preview_2025_03_11")
SearchType = Literal["web_search", "web_search_2025_08_26", "web_search_preview", "web_search_preview_2025_03_11"]


class SearchFilters(ToolModel):
    allowed_domains: list[str] | None = None


class UserLocation(ToolModel):
    """Where the user is, roughly: Brave gets the country; every provider's searches are written by a model
    told the location (SearXNG and Tavily take no location of their own)."""

    type: Literal["approximate"] = "approximate"
    city: str | None = Field(None, max_length=100)
    country: str | None = Field(None, pattern=r"^[A-Za-z]{2}$")
    region: str | None = Field(None, max_length=100)
    timezone: str | None = Field(None, max_length=64)

    def described(self) -> str:
        return ", ".join(p for p in (self.city, self.region, (self.country or "").upper(), self.timezone) if p)


class WebSearchTool(ToolModel):
    """Web search run by Parley through the configured provider."""

    type: SearchType
    search_context_size: Literal["low", "medium", "high"] = "medium"
    filters: SearchFilters | None = None
    # False asks for cached results only, never the live web: what this tenant's live searches found before.
    external_web_access: bool | None = None
    search_content_types: list[Literal["text"]] | None = None
    user_location: UserLocation | None = None

    @classmethod
    def canonical_type(cls, tool_type: str) -> str:
        return "web_search"

    @property
    def live(self) -> bool:
        return self.external_web_access is not False

    @property
    def allowed_domains(self) -> list[str]:
        return list(self.filters.allowed_domains or []) if self.filters else []


class ToolChoiceHosted(ToolModel):
    type: SearchType

    def echo(self) -> dict[str, Any]:
        # Clients send {"type": "web_search"}, but the Response's tool_choice enum only knows the preview names.
        return {"type": self.type if self.type.startswith("web_search_preview") else "web_search_preview"}


@dataclass
class SearchResult:
    title: str
    url: str
    content: str


class SearchProvider(Protocol):
    name: str

    async def search(self, query: str, count: int, allowed_domains: list[str],
                     country: str | None = None) -> list[SearchResult]: ...


class SearchFailed(Exception):
    pass


async def _request(client: httpx.AsyncClient, method: str, url: str, **kwargs: Any) -> Any:
    try:
        response = await client.request(method, url, **kwargs)
    except (httpx.HTTPError, httpx.InvalidURL) as exc:  # InvalidURL: a query too long for a URL, say
        raise SearchFailed(f"the search provider is unreachable: {exc!r}") from None
    if response.status_code >= 400:
        raise SearchFailed(f"the search provider answered HTTP {response.status_code}")
    try:
        return response.json()
    except ValueError:
        raise SearchFailed("the search provider sent no JSON") from None


def _results(entries: Any, text_key: str) -> list[SearchResult]:
    """Provider result entries as :class:`SearchResult` (the providers differ only in the text's key).  Only
    entries with an http(s) URL are kept: a source is a link a client may show and follow."""
    if not isinstance(entries, list):
        raise SearchFailed("the search provider sent results that are not a list")
    return [SearchResult(str(r.get("title") or r["url"]), r["url"], str(r.get(text_key) or "")) for r in entries
            if isinstance(r, dict) and isinstance(r.get("url"), str) and r["url"][:8].lower().startswith(WEB_SCHEMES)]


@dataclass
class SearXNG:
    base_url: str
    client: httpx.AsyncClient
    name: str = "searxng"

    async def search(self, query: str, count: int, allowed_domains: list[str],
                     country: str | None = None) -> list[SearchResult]:
        q = query + "".join(f" site:{d}" for d in allowed_domains[:1])  # one site: operator is portable
        data = await _request(self.client, "GET", f"{self.base_url}/search", params={"q": q, "format": "json"})
        return _results(data.get("results", []), "content")


@dataclass
class Tavily:
    base_url: str
    api_key: str
    client: httpx.AsyncClient
    name: str = "tavily"

    async def search(self, query: str, count: int, allowed_domains: list[str],
                     country: str | None = None) -> list[SearchResult]:
        body: dict[str, Any] = {"query": query, "max_results": count}
        if allowed_domains:
            body["include_domains"] = allowed_domains
        data = await _request(self.client, "POST", f"{self.base_url}/search", json=body,
                              headers={"Authorization": f"Bearer {self.api_key}"})
        return _results(data.get("results", []), "content")


@dataclass
class Brave:
    base_url: str
    api_key: str
    client: httpx.AsyncClient
    name: str = "brave"

    async def search(self, query: str, count: int, allowed_domains: list[str],
                     country: str | None = None) -> list[SearchResult]:
        params: dict[str, Any] = {"q": query, "count": min(count, 20)}
        if country:
            params["country"] = country.upper()
        data = await _request(self.client, "GET", f"{self.base_url}/res/v1/web/search", params=params,
                              headers={"X-Subscription-Token": self.api_key, "Accept": "application/json"})
        return _results((data.get("web") or {}).get("results", []), "description")


def make_provider(spec: str, *, tavily_api_key: str | None, brave_api_key: str | None,
                  timeout: float) -> SearchProvider:
    """Build the provider a ``--web-search`` spec names; raises ``ValueError`` for a bad spec."""
    kind, _, url = spec.partition(":")
    client = httpx.AsyncClient(timeout=timeout)
    url = url.rstrip("/")
    if kind == "searxng":
        if not url.startswith(("http://", "https://")):
            raise ValueError("searxng needs a URL: --web-search searxng:http://host:port")
        return SearXNG(url, client)
    if kind == "tavily":
        if not tavily_api_key:
            raise ValueError("tavily needs --tavily-api-key (PARLEY_TAVILY_API_KEY)")
        return Tavily(url or "https://api.tavily.com", tavily_api_key, client)
    if kind == "brave":
        if not brave_api_key:
            raise ValueError("brave needs --brave-api-key (PARLEY_BRAVE_API_KEY)")
        return Brave(url or "https://api.search.brave.com", brave_api_key, client)
    raise ValueError(f"unknown web search provider '{kind}' (searxng, tavily or brave)")


def in_domains(url: str, domains: list[str]) -> bool:
    if not domains:
        return True
    host = (urlparse(url).hostname or "").lower()
    return any(host == d.lower() or host.endswith("." + d.lower()) for d in domains)


@dataclass
class Source:
    number: int
    title: str
    url: str


@dataclass
class WebSearchTools(Binding):
    """The ``web_search`` tool bound to one response."""

    provider: SearchProvider | None  # None: the cached results only (external_web_access false)
    numbers: Iterator[int]
    cache: SqlWebCache | None = None
    tenant: str = ""
    context_size: str = "medium"
    allowed_domains: list[str] = field(default_factory=list)
    location: UserLocation | None = None
    sources: list[Source] = field(default_factory=list)  # every source given to the model, numbered from 1

    def offered(self) -> list[Offered]:
        what = "the web" if self.provider is not None else "web pages found before (no live web access)"
        where = self.location.described() if self.location else ""
        about = f"Search {what}. Results are numbered; cite them as [n] in the answer." + (
            f" The user is in {where}: search for what is local to them when the question is." if where else "")
        return [Offered({"type": "function", "function": {
            "name": FUNCTION_NAME,
            "description": about,
            "parameters": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]},
        }}, source={"type": "web_search"})]

    def forced(self, choice: ToolModel) -> Any:
        return {"type": "function", "function": {"name": FUNCTION_NAME}}

    def start(self, call: ToolCall, approved: bool) -> asyncio.Task[Any]:
        return asyncio.ensure_future(self._search(call.arguments))

    async def _search(self, arguments: str) -> tuple[str, list[SearchResult] | None, str | None]:
        try:
            query = str(json.loads(arguments or "{}").get("query") or "").strip()
        except (ValueError, AttributeError):
            query = ""
        if not query:
            return "", None, "The search needs a non-empty 'query'."
        count, _ = CONTEXT_SIZES[self.context_size]
        try:
            found = await self._found(query, count)
        except SearchFailed as exc:
            log.warning("web search failed: %s", exc)
            return query, None, f"The web search failed: {exc}."
        except Exception:  # a provider failure fails its web_search_call item, never the response
            log.exception("web search failed")
            return query, None, "The web search failed."
        return query, [r for r in found if in_domains(r.url, self.allowed_domains)][:count], None

    async def _found(self, query: str, count: int) -> list[SearchResult]:
        if self.provider is None:  # cached results only
            if self.cache is None:
                return []
            # more than ``count`` from the cache: the domain filter comes after
            kept = await self.cache.search(self.tenant, query, count * (4 if self.allowed_domains else 1))
            return [SearchResult(title, url, content) for title, url, content in kept]
        country = self.location.country if self.location else None
        found = await self.provider.search(query, count, self.allowed_domains, country)
        if self.cache is not None:
            try:
                await self.cache.remember(self.tenant, found)
            except Exception:  # keeping them is a convenience: the search itself succeeded
                log.exception("could not keep the web search's results")
        return found

    def _tool_text(self, results: list[SearchResult]) -> tuple[str, list[Source]]:
        _, chars = CONTEXT_SIZES[self.context_size]
        lines, added = [], []
        for result in results:
            source = Source(next(self.numbers), result.title, result.url)
            self.sources.append(source)
            added.append(source)
            lines.append(f"[{source.number}] {result.title}\nURL: {result.url}\n{result.content[:chars]}")
        return ("\n\n".join(lines) or "No results."), added

    async def emit(self, call: ToolCall, run: Any, index: int) -> AsyncIterator[Produced]:
        # (queries and sources always as lists: the Open Responses schema lets them be absent, never null)
        item = ResponseFunctionWebSearch(id=new_id("ws"), type="web_search_call", status="in_progress",
                                         action={"type": "search", "query": "", "queries": [], "sources": []})
        for event in search_opening(item, index, ResponseWebSearchCallInProgressEvent,
                                    ResponseWebSearchCallSearchingEvent):
            yield event
        assert run is not None
        query, results, error = await run
        action: dict[str, Any] = {"type": "search", "query": query, "queries": [query] if query else [],
                                  "sources": []}
        if error is not None:
            status, text = "failed", error
        else:
            text, added = self._tool_text(results or [])
            status = "completed"
            action["sources"] = [{"type": "url", "url": s.url} for s in added]
        item = ResponseFunctionWebSearch(id=item.id, type="web_search_call", status=status, action=action)
        for produced in search_closing(item, index, ResponseWebSearchCallCompletedEvent, call.call_id, text):
            yield produced

    def cites(self) -> bool:
        return bool(self.sources)

    def cite(self, text: str) -> list[Citation]:
        """The sources ``text`` cites, as ``[n]`` or by their URL."""
        if not self.sources:
            return []
        cited = numbered(text, {source.number: source for source in self.sources})
        cited += [(text.find(source.url), text.find(source.url) + len(source.url), source)
                  for source in self.sources if source.url in text]
        return [Citation(start, end, {"type": "url_citation", "start_index": start, "end_index": end,
                                      "title": source.title, "url": source.url}) for start, end, source in cited]


class WebSearchKind(SingleToolKind):
    label = "web search"
    models = dict.fromkeys(TYPES, WebSearchTool)
    choices = dict.fromkeys(TYPES, ToolChoiceHosted)

    async def admit(self, tools: list[tuple[str, Any]], env: ToolEnv, tenant: str = "") -> None:
        if env.search is None and any(tool.live for _, tool in tools):
            raise InvalidRequest(
                "The web_search tool needs a search provider: start Parley with --web-search "
                "(searxng:http://host:port, tavily or brave).", param="tools", code="web_search_not_configured")

    def bind(self, tools: list[Any], context: BindContext) -> Binding | None:
        if not tools:
            return None
        tool = tools[0]
        return WebSearchTools(context.env.search if tool.live else None, context.source_numbers,
                              context.env.web_cache, context.tenant, tool.search_context_size, tool.allowed_domains,
                              tool.user_location)


KIND = WebSearchKind()
