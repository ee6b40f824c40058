"""Chat Completions backends: an OpenAI-compatible HTTP upstream, or the embedded model."""

from parley.backends.base import ChatBackend
from parley.backends.router import Router

__all__ = ["ChatBackend", "Router"]
