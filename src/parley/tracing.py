"""Optional OpenTelemetry tracing of responses, backend calls and tool calls.

With ``opentelemetry-api`` installed (``pip install 'parley[otel]'``) and an SDK configured by
the operator (``opentelemetry-instrument parley serve``, or a ``TracerProvider`` in a library
user's process), every response is a span with its backend and tool calls as children.
Without them this module does nothing.  Spans are started and ended explicitly, never made
"current": the engine's async generators resume in other contexts, where attaching and
detaching a current span would fail.
"""

from __future__ import annotations

from typing import Any

try:
    from opentelemetry import trace
except ImportError:  # tracing is optional
    trace = None  # type: ignore[assignment]


class _NoSpan:
    def set_attribute(self, key: str, value: Any) -> None:
        return None

    def set_status(self, *args: Any) -> None:
        return None

    def end(self) -> None:
        return None


_tracer: tuple[Any, Any] | None = None  # (the get_tracer it came from, Parley's tracer)


def _parley_tracer() -> Any:
    """Parley's tracer, looked up once: ``get_tracer`` reads the environment at each call (a profile of streamed
    responses put 3 % of the server's CPU there).  Looked up before a provider is set, it is OpenTelemetry's
    proxy tracer, which follows the provider set later."""
    global _tracer
    getter = trace.get_tracer
    if _tracer is None or _tracer[0] is not getter:  # (a test may swap get_tracer for its own provider's)
        _tracer = (getter, getter("parley"))
    return _tracer[1]


def start_span(name: str, parent: Any = None, **attributes: Any) -> Any:
    """A started span (end it with ``.end()``); a no-op object when tracing is off."""
    if trace is None:
        return _NoSpan()
    context = trace.set_span_in_context(parent) if parent is not None and not isinstance(parent, _NoSpan) else None
    clean = {k: v for k, v in attributes.items() if v is not None}
    return _parley_tracer().start_span(name, context=context, attributes=clean)


def fail(span: Any, message: str) -> None:
    if trace is not None and not isinstance(span, _NoSpan):
        span.set_status(trace.Status(trace.StatusCode.ERROR, message))
