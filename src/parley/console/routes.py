"""The console's pages, under ``/console``: server-rendered templates with a little JavaScript, served by
``parley serve`` itself, with nothing fetched from elsewhere at run time.

- ``/console/responses``: stored responses, newest first, filtered and paginated (the first page refreshes
  itself while open, so new and running responses show as they change);
- ``/console/responses/{id}``: one response's timeline, time split, messages sent upstream, raw JSON and chain;
- ``/console/playground``: talk to any routed model, with tools, through the ordinary create path;
- ``/console/overview``: requests, tokens, failures by code and latency percentiles over time;
- ``/console/conversations``, ``/console/files``, ``/console/vector-stores``: the other stored objects.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs, urlencode

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

from parley.console import charts
from parley.auth import CALLER_KEY, Caller
from parley.console.access import (SESSION_TTL_S, WRITE_HEADER, Viewer, cookie_header, same_origin, session_id,
                                   viewer_of)
from parley.console.views import item_view, link, pretty_json, time_split, timeline
from parley.errors import StoreUnavailable, TooManyFailures
from parley.store.base import NOT_ENDED, TERMINAL
from parley.store.console import ConsoleQueries, Filters
from parley.store.console_sessions import ConsoleSessions
from parley.store.console_data import ITEMS, LISTED, ConsoleData

STATUSES = TERMINAL + NOT_ENDED
RANGES = {"1h": (3600, 60), "24h": (86400, 1800), "7d": (7 * 86400, 6 * 3600), "30d": (30 * 86400, 86400)}
PAGE_SIZE = 50

templates = Environment(loader=PackageLoader("parley.console"), autoescape=select_autoescape(default=True))


def _when(epoch: float | None) -> str:
    if epoch is None:
        return ""
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _ms(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value / 1000:.2f} s" if value >= 1000 else f"{value:.1f} ms"


def _preview(text: str | None) -> str:
    """The start of a response's text as a list shows it: its input messages, then its answer, between arrows."""
    return (text or "").replace("\n", " → ")


templates.filters.update(when=_when, ms=_ms, json=pretty_json, preview=_preview, link=link)


def _runtime(request: Request) -> Any:
    return request.app.state.runtime


def _queries(request: Request) -> ConsoleQueries:
    return ConsoleQueries(_runtime(request).store)


def _page(request: Request, name: str, viewer: Viewer, status_code: int = 200, **values: Any) -> HTMLResponse:
    html = templates.get_template(name).render(viewer=viewer, local=not _runtime(request).keys.enabled,
                                               path=request.url.path, **values)
    return HTMLResponse(html, status_code=status_code, headers={"cache-control": "no-store"})


def _sign_in(request: Request) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/console/login?{urlencode({'next': target})}", status_code=303)


def _sessions(request: Request) -> ConsoleSessions:
    return ConsoleSessions(_runtime(request).store, SESSION_TTL_S)


async def _viewer(request: Request) -> Viewer | None:
    return await viewer_of(_runtime(request).keys, _sessions(request), request)


def _address(request: Request) -> str | None:
    return request.client.host if request.client else None


def _epoch(text: str | None) -> float | None:
    """A ``datetime-local`` value (read as UTC) or epoch seconds."""
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp()
    except ValueError:
        return None


async def index(request: Request) -> Response:
    return RedirectResponse("/console/responses", status_code=303)


async def login(request: Request) -> Response:
    keys = _runtime(request).keys
    target = request.query_params.get("next") or "/console/responses"
    if not target.startswith("/console"):
        target = "/console/responses"
    if request.method == "GET":
        return _page(request, "login.html", Viewer(scope=""), next=target, failed=False)
    if not same_origin(request):
        return _refused(request)
    form = parse_qs((await request.body()).decode("utf-8", "replace"))
    key = (form.get("key") or [""])[0].strip()
    target = (form.get("next") or [target])[0]
    target = target if target.startswith("/console") else "/console/responses"
    try:
        keys.failures.check(_address(request))
    except TooManyFailures as exc:
        return _page(request, "error.html", Viewer(scope=""), status_code=429, message=exc.message)
    digest = keys.digest(key) if key else None
    if digest is None:
        keys.failures.failed(_address(request))
        return _page(request, "login.html", Viewer(scope=""), status_code=401, next=target, failed=True)
    try:
        session = await _sessions(request).open(digest)
    except StoreUnavailable:
        return _unavailable(request)
    return RedirectResponse(target, status_code=303, headers={"set-cookie": cookie_header(request, session)})


async def logout(request: Request) -> Response:
    if not same_origin(request):
        return _refused(request)
    session = session_id(request)
    if session:
        try:
            await _sessions(request).close(session)
        except StoreUnavailable:
            return _unavailable(request)
    return RedirectResponse("/console/login", status_code=303, headers={"set-cookie": cookie_header(request, None)})


def _refused(request: Request) -> HTMLResponse:
    return _page(request, "error.html", Viewer(scope=""), status_code=403,
                 message="Signing in and out works from the console's own pages only.")


def _unavailable(request: Request) -> HTMLResponse:
    return _page(request, "error.html", Viewer(scope=""), status_code=503,
                 message="The response store is unavailable; this page will work again when it is back.")


def _filters(request: Request) -> tuple[Filters, dict[str, str]]:
    params = request.query_params
    given = {name: params.get(name, "").strip() for name in ("status", "model", "since", "until", "q", "tenant")}
    filters = Filters(status=given["status"] if given["status"] in STATUSES else None, model=given["model"] or None,
                      since=_epoch(given["since"]), until=_epoch(given["until"]), text=given["q"] or None)
    return filters, given


Handler = Callable[[Request, Viewer], Awaitable[Response]]


def viewed(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """A page for a signed-in viewer: the sign-in page first when there is none, and a 503 page while the
    store is unavailable."""
    async def endpoint(request: Request) -> Response:
        try:
            viewer = await _viewer(request)
            if viewer is None:
                return _sign_in(request)
            return await handler(request, viewer)
        except StoreUnavailable:
            return _unavailable(request)
    return endpoint


def _missing(request: Request, viewer: Viewer, what: str) -> HTMLResponse:
    return _page(request, "error.html", viewer, status_code=404, message=f"No {what} that you may see.")


@viewed
async def responses(request: Request, viewer: Viewer) -> Response:
    filters, given = _filters(request)
    scope = viewer.scope if not (viewer.admin and given["tenant"]) else given["tenant"]
    cursor = request.query_params.get("cursor")
    fragment = bool(request.query_params.get("fragment"))  # the rows alone: the first page's refresh
    queries = _queries(request)
    page = await queries.page(scope, filters, cursor, PAGE_SIZE)
    kept = {name: value for name, value in given.items() if value}
    return _page(request, "rows.html" if fragment else "responses.html", viewer, page=page,
                 models=[] if fragment else await queries.models(scope), filters=given, statuses=STATUSES,
                 cursor=cursor, next_url=f"/console/responses?{urlencode({**kept, 'cursor': page.next_cursor})}"
                 if page.next_cursor else None,
                 fragment_url=f"/console/responses?{urlencode({**kept, 'fragment': '1'})}",
                 first_url=f"/console/responses?{urlencode(kept)}")


@viewed
async def response_page(request: Request, viewer: Viewer) -> Response:
    response_id = request.path_params["response_id"]
    found = await _queries(request).response(viewer.scope, response_id)
    if found is None:
        return _missing(request, viewer, f"stored response '{response_id}'")
    body = found["response"]
    return _page(request, "response.html", viewer, r=found, body=body,
                 inputs=[item_view(item) for item in found["input_items"]],
                 entries=timeline(body.get("output") or [], found["trace"]),
                 split=time_split(found["trace"], found["duration_ms"]),
                 raw=pretty_json(body), messages=pretty_json(found["messages"]))


async def statuses(request: Request) -> Response:
    """The statuses of some responses (a response page polls its own while it runs)."""
    try:
        viewer = await _viewer(request)
        if viewer is None:
            return JSONResponse({"error": "sign in"}, status_code=401)
        ids = [i for i in request.query_params.get("ids", "").split(",") if i]
        return JSONResponse(await _queries(request).statuses(viewer.scope, ids))
    except StoreUnavailable:
        return JSONResponse({"error": "store unavailable"}, status_code=503)


@viewed
async def playground(request: Request, viewer: Viewer) -> Response:
    models = [model["id"] for model in await _runtime(request).router.list_models()]
    return _page(request, "playground.html", viewer, models=models, write_header=WRITE_HEADER)


@viewed
async def overview(request: Request, viewer: Viewer) -> Response:
    chosen = request.query_params.get("range", "24h")
    span, bucket = RANGES.get(chosen, RANGES["24h"])
    until = time.time()
    since = (until - span) // bucket * bucket + bucket  # whole buckets, the last one holding now
    data = await _queries(request).overview(viewer.scope, since, until, bucket)
    labels = [_when(b["start"])[5 if span > 86400 else 11:16] for b in data.buckets]

    def series(name: str) -> list[Any]:
        return [b[name] for b in data.buckets]

    svg = {
        "responses": charts.stacked_bars("Responses", labels, {
            "completed or other": [b["responses"] - b["failed"] for b in data.buckets],
            "failed": series("failed")}, colours=(charts.COLOURS[0], charts.COLOURS[2])),
        "tokens": charts.stacked_bars("Tokens", labels, {"input": series("input_tokens"),
                                                         "output": series("output_tokens")}),
        "latency": charts.lines("Latency", labels, {"p50": series("p50_ms"), "p95": series("p95_ms"),
                                                    "p99": series("p99_ms")}, " ms"),
    }
    totals = {name: sum(series(name)) for name in ("responses", "input_tokens", "output_tokens", "failed")}
    return _page(request, "overview.html", viewer, data=data, svg=svg, ranges=list(RANGES), chosen=chosen,
                 totals=totals)


def _data(request: Request) -> ConsoleData:
    return ConsoleData(_runtime(request).store)


@viewed
async def files_page(request: Request, viewer: Viewer) -> Response:
    return _page(request, "files.html", viewer, files=await _data(request).files(viewer.scope), shown=LISTED)


@viewed
async def vector_stores_page(request: Request, viewer: Viewer) -> Response:
    return _page(request, "vector_stores.html", viewer, stores=await _data(request).vector_stores(viewer.scope),
                 shown=LISTED)


@viewed
async def vector_store_page(request: Request, viewer: Viewer) -> Response:
    store_id = request.path_params["store_id"]
    found = await _data(request).vector_store(viewer.scope, store_id)
    if found is None:
        return _missing(request, viewer, f"vector store '{store_id}'")
    return _page(request, "vector_store.html", viewer, store=found, shown=LISTED)


@viewed
async def conversations_page(request: Request, viewer: Viewer) -> Response:
    return _page(request, "conversations.html", viewer,
                 conversations=await _data(request).conversations(viewer.scope), shown=LISTED)


@viewed
async def conversation_page(request: Request, viewer: Viewer) -> Response:
    conversation_id = request.path_params["conversation_id"]
    found = await _data(request).conversation(viewer.scope, conversation_id)
    if found is None:
        return _missing(request, viewer, f"conversation '{conversation_id}'")
    return _page(request, "conversation.html", viewer, conversation=found,
                 items=[item_view(item) for item in found["items"]], shown=ITEMS)


class PlaygroundCreate:
    """``POST /console/api/responses``: the playground's create, run by the API's own create path with the
    viewer's key, so each turn is an ordinary stored response of their tenant."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        try:
            viewer = await _viewer(request)
        except StoreUnavailable:
            viewer, status, message = None, 503, "The response store is unavailable; try again."
        else:
            status, message = 401, "Sign in to the console first."
        if viewer is not None and (request.headers.get(WRITE_HEADER) != "1" or not same_origin(request)):
            status, message = 403, f"The console's requests carry {WRITE_HEADER} and come from its own pages."
        if viewer is None or status == 403:
            await JSONResponse({"error": {"message": message, "type": "invalid_request_error", "param": None,
                                          "code": None}}, status_code=status)(scope, receive, send)
            return
        headers = [(name, value) for name, value in scope["headers"] if name not in (b"authorization", b"cookie")]
        # (it acts for the viewer's tenant as resolved from their session: their key is not kept anywhere)
        inner = dict(scope, path="/v1/responses", raw_path=b"/v1/responses", headers=headers,
                     **{CALLER_KEY: Caller(viewer.tenant)})
        await scope["app"](inner, receive, send)


console_routes = [
    Route("/console", index),
    Route("/console/login", login, methods=["GET", "POST"]),
    Route("/console/logout", logout, methods=["POST"]),
    Route("/console/responses", responses),
    Route("/console/responses/{response_id}", response_page),
    Route("/console/api/statuses", statuses),
    Route("/console/api/responses", PlaygroundCreate(), methods=["POST"]),
    Route("/console/playground", playground),
    Route("/console/overview", overview),
    Route("/console/conversations", conversations_page),
    Route("/console/conversations/{conversation_id}", conversation_page),
    Route("/console/files", files_page),
    Route("/console/vector-stores", vector_stores_page),
    Route("/console/vector-stores/{store_id}", vector_store_page),
    Mount("/console/static", StaticFiles(packages=[("parley.console", "static")]), name="console-static"),
]
