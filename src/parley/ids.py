"""Ids in OpenAI's style: a type prefix and random URL-safe characters."""

from __future__ import annotations

import secrets


def new_id(prefix: str) -> str:
    """``resp_…``, ``msg_…``, ``fc_…``, ``call_…``: prefix, underscore, 48 hex characters."""
    return f"{prefix}_{secrets.token_hex(24)}"
