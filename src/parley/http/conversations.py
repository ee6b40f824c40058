"""The Conversations API (``/v1/conversations``): conversations with metadata, and their items (list, add up to
20 at once, retrieve, delete), per tenant.  Items are checked as input items and stored in their listable form
with ids, as a response's ``input_items`` are."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import Field, field_validator

from parley.auth import Caller
from parley.errors import InvalidRequest, NotFound
from parley.http.routes import caller, runtime
from parley.http.bodies import check_metadata, parse_body
from parley.items import item_resource, parse_item
from parley.validation import StrictModel

conversation_routes = APIRouter()
MAX_ITEMS = 20
# What an item list may be asked to include: Parley stores items whole, so each is already there.
INCLUDES = {"web_search_call.action.sources", "file_search_call.results", "message.input_image.image_url",
            "computer_call_output.output.image_url",
            "message.output_text.logprobs", "reasoning.encrypted_content"}


class CreateConversation(StrictModel):
    items: list[Any] | None = Field(None, max_length=MAX_ITEMS)
    metadata: dict[str, Any] | None = None
    _metadata = field_validator("metadata")(check_metadata)


class UpdateConversation(StrictModel):
    metadata: dict[str, Any]
    _metadata = field_validator("metadata")(check_metadata)


class AddItems(StrictModel):
    items: list[Any] = Field(min_length=1, max_length=MAX_ITEMS)


def _missing(conversation_id: str) -> NotFound:
    return NotFound(f"Conversation with id '{conversation_id}' not found.", param="conversation_id")


def _items(raw: list[Any]) -> list[dict[str, Any]]:
    return [item_resource(parse_item(entry, f"items[{i}]")) for i, entry in enumerate(raw)]


def _check_include(request: Request) -> None:
    """``include`` (the SDK sends ``include[]=…``): each value one this list knows."""
    for value in request.query_params.getlist("include") + request.query_params.getlist("include[]"):
        if value not in INCLUDES:
            raise InvalidRequest(f"include value '{value}' is not supported.", param="include")


@conversation_routes.post("/v1/conversations")
async def create_conversation(request: Request, who: Caller = Depends(caller)) -> Response:
    body: CreateConversation = await parse_body(request, CreateConversation)
    resource = await runtime(request).conversations.create(who.tenant, body.metadata or {}, _items(body.items or []))
    return JSONResponse(resource)


@conversation_routes.get("/v1/conversations/{conversation_id}")
async def retrieve_conversation(request: Request, conversation_id: str, who: Caller = Depends(caller)) -> Response:
    resource = await runtime(request).conversations.get(conversation_id, who.tenant)
    if resource is None:
        raise _missing(conversation_id)
    return JSONResponse(resource)


@conversation_routes.post("/v1/conversations/{conversation_id}")
async def update_conversation(request: Request, conversation_id: str, who: Caller = Depends(caller)) -> Response:
    body: UpdateConversation = await parse_body(request, UpdateConversation)
    resource = await runtime(request).conversations.update(conversation_id, who.tenant, body.metadata)
    if resource is None:
        raise _missing(conversation_id)
    return JSONResponse(resource)


@conversation_routes.delete("/v1/conversations/{conversation_id}")
async def delete_conversation(request: Request, conversation_id: str, who: Caller = Depends(caller)) -> Response:
    if not await runtime(request).conversations.delete(conversation_id, who.tenant):
        raise _missing(conversation_id)
    return JSONResponse({"id": conversation_id, "object": "conversation.deleted", "deleted": True})


@conversation_routes.get("/v1/conversations/{conversation_id}/items")
async def list_items(request: Request, conversation_id: str, who: Caller = Depends(caller), after: str | None = None,
                     limit: int = Query(20, ge=1, le=100), order: Literal["asc", "desc"] = "desc") -> Response:
    _check_include(request)
    page = await runtime(request).conversations.page(conversation_id, who.tenant, after=after, limit=limit,
                                                     order=order)
    if page is None:
        raise _missing(conversation_id)
    return JSONResponse(page.body())


@conversation_routes.post("/v1/conversations/{conversation_id}/items")
async def add_items(request: Request, conversation_id: str, who: Caller = Depends(caller)) -> Response:
    _check_include(request)
    body: AddItems = await parse_body(request, AddItems)
    items = _items(body.items)
    if not await runtime(request).conversations.append(conversation_id, who.tenant, items):
        raise _missing(conversation_id)
    return JSONResponse({"object": "list", "data": items, "first_id": items[0]["id"], "last_id": items[-1]["id"],
                         "has_more": False})


@conversation_routes.get("/v1/conversations/{conversation_id}/items/{item_id}")
async def retrieve_item(request: Request, conversation_id: str, item_id: str,
                        who: Caller = Depends(caller)) -> Response:
    _check_include(request)
    item = await runtime(request).conversations.item(conversation_id, item_id, who.tenant)
    if item is None:
        raise NotFound(f"Item with id '{item_id}' not found in conversation '{conversation_id}'.", param="item_id")
    return JSONResponse(item)


@conversation_routes.delete("/v1/conversations/{conversation_id}/items/{item_id}")
async def delete_item(request: Request, conversation_id: str, item_id: str, who: Caller = Depends(caller)) -> Response:
    resource = await runtime(request).conversations.delete_item(conversation_id, item_id, who.tenant)
    if resource is None:
        raise NotFound(f"Item with id '{item_id}' not found in conversation '{conversation_id}'.", param="item_id")
    return JSONResponse(resource)
