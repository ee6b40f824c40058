"""Which backend serves which model, and the backend types an upstream's ``type`` names.

Each upstream declares its model ids; one whose list holds ``"*"`` serves every id no
other upstream declares.  A model no upstream serves is a 400 ``model_not_found``.
A backend type is registered by name with the function that builds it from its upstream's
config (:func:`register_backend`; a ``--plugins`` module may add one).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from parley.backends.base import READ_AHEAD, ChatBackend
from parley.backends.embedded import EmbeddedBackend
from parley.backends.openai_compat import OpenAICompatBackend
from parley.backends.think_tags import ThinkTagsBackend
from parley.errors import InvalidRequest
from parley.settings import Settings, UpstreamConfig

log = logging.getLogger("parley.router")


BackendFactory = Callable[[UpstreamConfig, Settings], ChatBackend]
BACKEND_TYPES: dict[str, BackendFactory] = {}


class UnknownBackendType(ValueError):
    pass


def register_backend(type_name: str, factory: BackendFactory) -> None:
    if type_name in BACKEND_TYPES:
        raise ValueError(f"backend type '{type_name}' is already registered")
    BACKEND_TYPES[type_name] = factory


def make_backend(config: UpstreamConfig, settings: Settings) -> ChatBackend:
    factory = BACKEND_TYPES.get(config.type)
    if factory is None:
        raise UnknownBackendType(f"upstream '{config.name}' has type '{config.type}'; the known types are "
                                 f"{', '.join(sorted(BACKEND_TYPES))} (a --plugins module may register more)")
    backend = factory(config, settings)
    if config.reasoning_parser is not None:
        return ThinkTagsBackend(backend, start_inside=config.reasoning_parser == "think_tags_open")
    return backend


register_backend("openai", lambda config, settings: OpenAICompatBackend(config))
register_backend("embedded", lambda config, settings: EmbeddedBackend(
    config.name, settings.embedded_model_path, settings.embedded_context, settings.embedded_threads))


class Router:
    """Maps a request's ``model`` to the backend that serves it."""

    def __init__(self, upstreams: list[UpstreamConfig], backends: dict[str, ChatBackend]) -> None:
        self.upstreams = upstreams
        self.backends = backends
        self._by_model = {m: u.name for u in upstreams for m in u.models if m != "*"}
        self._catch_all = next((u.name for u in upstreams if "*" in u.models), None)
        self._windows: dict[str, int] = {}  # context windows upstreams listed

    @classmethod
    def from_settings(cls, settings: Settings) -> Router:
        upstreams = settings.upstreams()
        return cls(upstreams, {u.name: make_backend(u, settings) for u in upstreams})

    def upstream_config(self, model: str) -> UpstreamConfig:
        name = self._by_model.get(model, self._catch_all)
        if name is None:
            raise InvalidRequest(f"The model '{model}' does not exist or is not served here.",
                                 param="model", code="model_not_found")
        return next(u for u in self.upstreams if u.name == name)

    def serves(self, model: str) -> bool:
        return model in self._by_model or self._catch_all is not None

    def backend_for(self, model: str) -> ChatBackend:
        return self.backends[self.upstream_config(model).name]

    async def context_window(self, model: str) -> int:
        """The model's context window in tokens: its upstream's ``context_window``, else what the upstream lists
        (learned once); a 400 naming the model when neither says."""
        upstream = self.upstream_config(model)
        window = upstream.context_window or self._windows.get(model)
        if window is None:
            lookup = getattr(self.backends[upstream.name], "context_window", None)
            try:
                window = await lookup(model) if lookup is not None else None
            except Exception as exc:  # unreachable or unreadable: unknown, asked again next time
                log.warning("cannot read the context window of %s from upstream %s: %s", model, upstream.name, exc)
            if window is not None:
                self._windows[model] = window
        if window is None:
            raise InvalidRequest(
                f"The context window of model '{model}' is unknown, so truncation 'auto' cannot be applied: set "
                "context_window on its upstream (--upstream-context-window), or use truncation 'disabled'.",
                param="model", code="context_window_unknown")
        return window

    async def ask(self, model: str, messages: list[dict[str, Any]], max_tokens: int) -> str:
        """The text of ``model``'s answer to ``messages`` (temperature 0, at most ``max_tokens``), asked by the server
        itself (a guard model, a reranker) with the upstream's own key; a ``ParleyError`` where the upstream fails."""
        upstream = self.upstream_config(model)
        body = {"model": model, "messages": messages, "stream": True, "temperature": 0,
                upstream.max_tokens_param: max_tokens}
        pieces: list[str] = []
        reading = READ_AHEAD.set(None)  # (asked within a streamed response: its writer's read-ahead is not this)
        try:
            async for chunk in self.backends[upstream.name].stream(body, None):
                for choice in chunk.get("choices") or []:
                    pieces.append((choice.get("delta") or {}).get("content") or "")
        finally:
            READ_AHEAD.reset(reading)
        return "".join(pieces)

    async def start(self) -> None:
        for backend in self.backends.values():
            await backend.start()

    async def aclose(self) -> None:
        for backend in self.backends.values():
            await backend.aclose()

    async def list_models(self) -> list[dict[str, Any]]:
        """Every declared model id, plus what each catch-all upstream lists itself."""
        seen: dict[str, str] = {}
        for upstream in self.upstreams:
            ids = [m for m in upstream.models if m != "*"]
            if "*" in upstream.models:
                try:
                    ids += await self.backends[upstream.name].models()
                except Exception as exc:  # an unreachable upstream must not break the listing
                    log.warning("cannot list models of upstream %s: %s", upstream.name, exc)
            for model_id in ids:
                seen.setdefault(model_id, upstream.name)
        return [{"id": m, "object": "model", "created": 0, "owned_by": owner} for m, owner in seen.items()]
