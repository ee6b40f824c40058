"""Parley: the OpenAI Responses API over any Chat Completions backend.

``parley.Client`` / ``parley.AsyncClient`` are ``openai`` clients served by Parley in process.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["AsyncClient", "Client", "Settings", "__version__"]


def __getattr__(name: str) -> Any:  # imported on first use: `import parley` stays light
    if name in ("Client", "AsyncClient"):
        from parley import library

        return getattr(library, name)
    if name == "Settings":
        from parley.settings import Settings

        return Settings
    raise AttributeError(name)
