"""The ``file_search`` tool: the model's queries searched in the request's vector stores, server-side.

The model sees one function, ``file_search(queries)``; each call becomes a ``file_search_call`` item (with its
``results`` when the request includes ``file_search_call.results``) and the chunks found reach the model
numbered ``[1]``, ``[2]``… (one numbering with web search), so that the answer can cite them: a cited number
becomes a ``file_citation`` annotation (``file_id``, ``filename``, ``index`` of the marker).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from openai.types.responses import (
    ResponseFileSearchCallCompletedEvent,
    ResponseFileSearchCallInProgressEvent,
    ResponseFileSearchCallSearchingEvent,
    ResponseFileSearchToolCall,
)
from pydantic import Field, field_validator

from parley.errors import InvalidRequest, ParleyError
from parley.ids import new_id
from parley.retrieval.filters import check_filter
from parley.retrieval.search import Hit, Query
from parley.retrieval.service import parse_ranking
from parley.tools.base import BindContext, Binding, Citation, Offered, Produced, SingleToolKind, ToolCall, ToolEnv, \
    ToolModel, numbered, search_closing, search_opening

log = logging.getLogger("parley.file_search")
FUNCTION_NAME = "file_search"
INCLUDE_RESULTS = "file_search_call.results"
DEFAULT_RESULTS = 10


class FileSearchTool(ToolModel):
    type: Literal["file_search"]
    vector_store_ids: list[str] = Field(min_length=1, max_length=2)
    max_num_results: int | None = Field(None, ge=1, le=50)
    filters: dict[str, Any] | None = None
    ranking_options: dict[str, Any] | None = None

    def echo(self) -> dict[str, Any]:
        """The tool with the values in force where the request left them out (as OpenAI echoes it)."""
        echoed = super().echo()
        ranking = self.ranking_options or {}
        query = Query([], **parse_ranking(self.ranking_options))
        echoed["max_num_results"] = self.max_num_results or DEFAULT_RESULTS
        echoed["ranking_options"] = {
            "ranker": ranking.get("ranker") or "auto", "score_threshold": query.score_threshold,
            "hybrid_search": {"embedding_weight": query.embedding_weight, "text_weight": query.text_weight}}
        return echoed

    @field_validator("filters")
    @classmethod
    def _filters(cls, filters: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if filters is None else check_filter(filters, "filters")

    @field_validator("ranking_options")
    @classmethod
    def _ranking(cls, options: dict[str, Any] | None) -> dict[str, Any] | None:
        parse_ranking(options)
        return options


class ToolChoiceFileSearch(ToolModel):
    type: Literal["file_search"]


@dataclass
class Source:
    number: int
    hit: Hit


@dataclass
class FileSearchTools(Binding):
    """The ``file_search`` tool bound to one response."""

    retrieval: Any
    tool: FileSearchTool
    tenant: str
    numbers: Iterator[int]
    include_results: bool
    sources: list[Source] = field(default_factory=list)

    def offered(self) -> list[Offered]:
        return [Offered({"type": "function", "function": {
            "name": FUNCTION_NAME,
            "description": "Search the user's uploaded files. Give one or more search queries. Results are "
                           "numbered; cite them as [n] in the answer.",
            "parameters": {"type": "object", "properties": {
                "queries": {"type": "array", "items": {"type": "string"}}}, "required": ["queries"]},
        }}, source={"type": "file_search"})]

    def forced(self, choice: ToolModel) -> Any:
        return {"type": "function", "function": {"name": FUNCTION_NAME}}

    def start(self, call: ToolCall, approved: bool) -> asyncio.Task[Any]:
        return asyncio.ensure_future(self._search(call.arguments))

    async def _search(self, arguments: str) -> tuple[list[str], list[Hit] | None, str | None]:
        try:
            parsed = json.loads(arguments or "{}")
            raw = parsed.get("queries") or parsed.get("query") or []
        except (ValueError, AttributeError):
            raw = []
        queries = [str(q).strip() for q in (raw if isinstance(raw, list) else [raw]) if str(q).strip()][:5]
        if not queries:
            return [], None, "The search needs at least one non-empty query in 'queries'."
        try:
            stores = await self.retrieval.stores(self.tool.vector_store_ids, self.tenant, "vector_store_ids")
            query = Query(queries, max_results=self.tool.max_num_results or DEFAULT_RESULTS,
                          filters=self.tool.filters, **parse_ranking(self.tool.ranking_options))
            return queries, await self.retrieval.search(stores, query), None
        except ParleyError as exc:
            return queries, None, f"The file search failed: {exc.message}"
        except Exception:  # a failed search fails its file_search_call item, never the response
            log.exception("file search failed")
            return queries, None, "The file search failed."

    def _tool_text(self, hits: list[Hit]) -> str:
        lines = []
        for hit in hits:
            source = Source(next(self.numbers), hit)
            self.sources.append(source)
            lines.append(f"[{source.number}] {hit.filename}\n{hit.text}")
        return "\n\n".join(lines) or "No results."

    async def emit(self, call: ToolCall, run: Any, index: int) -> AsyncIterator[Produced]:
        item = ResponseFileSearchToolCall(id=new_id("fs"), type="file_search_call", status="in_progress", queries=[])
        for event in search_opening(item, index, ResponseFileSearchCallInProgressEvent,
                                    ResponseFileSearchCallSearchingEvent):
            yield event
        assert run is not None
        queries, hits, error = await run
        results = None
        if error is not None:
            status, text = "failed", error
        else:
            status, text = "completed", self._tool_text(hits or [])
            if self.include_results:
                results = [{"file_id": h.file_id, "filename": h.filename, "score": h.score, "text": h.text,
                            "attributes": h.attributes, "vector_store_id": h.vector_store_id} for h in hits or []]
        item = ResponseFileSearchToolCall(id=item.id, type="file_search_call", status=status, queries=queries,
                                          results=results)
        for produced in search_closing(item, index, ResponseFileSearchCallCompletedEvent, call.call_id, text):
            yield produced

    def cites(self) -> bool:
        return bool(self.sources)

    def cite(self, text: str) -> list[Citation]:
        """The chunks ``text`` cites as ``[n]``: ``file_citation`` annotations at the marker."""
        if not self.sources:
            return []
        return [Citation(start, end, {"type": "file_citation", "file_id": source.hit.file_id,
                                      "filename": source.hit.filename, "index": start})
                for start, end, source in numbered(text, {source.number: source for source in self.sources})]


class FileSearchKind(SingleToolKind):
    label = "file_search"
    models = {"file_search": FileSearchTool}
    choices = {"file_search": ToolChoiceFileSearch}

    async def admit(self, tools: list[tuple[str, Any]], env: ToolEnv, tenant: str = "") -> None:
        if env.retrieval is None:
            raise InvalidRequest("This server has no vector stores.", param="tools")
        for where, tool in tools:
            await env.retrieval.stores(tool.vector_store_ids, tenant, f"{where}.vector_store_ids")

    def bind(self, tools: list[Any], context: BindContext) -> Binding | None:
        if not tools:
            return None
        return FileSearchTools(context.env.retrieval, tools[0], context.tenant, context.source_numbers,
                               INCLUDE_RESULTS in context.include)


KIND = FileSearchKind()
