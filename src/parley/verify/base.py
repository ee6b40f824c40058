"""What every scenario of ``parley verify`` takes and may raise."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlparse

import openai


class Skip(Exception):
    """The scenario cannot run against this endpoint; the message says why."""


@dataclass
class Context:
    base_url: str
    model: str
    api_key: str
    client: openai.OpenAI
    search_available: bool

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    @property
    def loopback(self) -> bool:
        host = urlparse(self.base_url).hostname or ""
        return host in ("127.0.0.1", "localhost", "::1") or host.startswith("127.")


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(message)
