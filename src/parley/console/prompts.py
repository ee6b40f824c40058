"""The console's Prompts page: the signed-in tenant's stored prompts (:mod:`parley.prompts`), made and edited
here, as OpenAI's are in its dashboard.  Each save of the form is a new version, through the same checks as
``/v1/prompts``; the page's script posts to ``/console/api/prompts`` with the console's write header."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from parley.console.access import WRITE_HEADER, Viewer, same_origin
from parley.console.routes import _missing, _page, _runtime, _viewer, viewed
from parley.errors import InvalidRequest, NotFound, ParleyError, StoreUnavailable
from parley.prompts.templates import check_template


@viewed
async def prompts_page(request: Request, viewer: Viewer) -> Response:
    page = await _runtime(request).prompts.list(viewer.tenant, after=None, order="desc", limit=100)
    return _page(request, "prompts.html", viewer, prompts=page.data, write_header=WRITE_HEADER)


@viewed
async def prompt_page(request: Request, viewer: Viewer) -> Response:
    prompt_id = request.path_params["prompt_id"]
    try:
        versions = await _runtime(request).prompts.versions(prompt_id, viewer.tenant)
    except NotFound:
        return _missing(request, viewer, f"prompt '{prompt_id}'")
    latest = versions[0]
    settings = {k: v for k, v in latest.template.items() if k not in ("model", "instructions", "input")}
    message = next((m.get("content") for m in latest.template.get("input") or []
                    if isinstance(m, dict) and m.get("role", "user") == "user" and isinstance(m.get("content"), str)),
                   "")
    return _page(request, "prompt.html", viewer, prompt=latest, versions=versions, settings=settings,
                 message=message, write_header=WRITE_HEADER)


def _error(status: int, message: str, param: str | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": "invalid_request_error", "param": param,
                                   "code": None}}, status_code=status)


async def save_prompt(request: Request) -> Response:
    """``POST /console/api/prompts`` (a new prompt) and ``…/{prompt_id}/versions`` (its next version)."""
    try:
        viewer = await _viewer(request)
    except StoreUnavailable:
        return _error(503, "The store is unavailable; try again.")
    if viewer is None:
        return _error(401, "Sign in to the console first.")
    if request.headers.get(WRITE_HEADER) != "1" or not same_origin(request):
        return _error(403, f"The console's requests carry {WRITE_HEADER} and come from its own pages.")
    prompts = _runtime(request).prompts
    try:
        body: Any = await request.json()
    except ValueError:
        return _error(400, "The body is not JSON.")
    try:
        if not isinstance(body, dict):
            raise InvalidRequest("The body must be a JSON object.")
        name = body.pop("name", None)
        if not isinstance(name, str) or not 0 < len(name.strip()) <= 256:
            raise InvalidRequest("A prompt needs a name of 1 to 256 characters.", param="name")
        template = check_template({k: v for k, v in body.items() if v is not None})
        prompt_id = request.path_params.get("prompt_id")
        if prompt_id is None:
            saved = await prompts.create(viewer.tenant, name.strip(), template)
        else:
            saved = await prompts.add_version(prompt_id, viewer.tenant, template, name.strip())
    except ParleyError as exc:
        return JSONResponse(exc.body(), status_code=exc.status_code)
    return JSONResponse(saved.resource())


prompt_pages = [
    Route("/console/prompts", prompts_page),
    Route("/console/prompts/{prompt_id}", prompt_page),
    Route("/console/api/prompts", save_prompt, methods=["POST"]),
    Route("/console/api/prompts/{prompt_id}/versions", save_prompt, methods=["POST"]),
]
