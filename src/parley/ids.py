"""Ids in OpenAI's style: a type prefix and random URL-safe characters."""

from __future__ import annotations

import re
import secrets

# Every id Parley stores matches this (and fits its 80-character column): anything else names nothing.
STORED_ID = re.compile(r"[A-Za-z0-9_-]{1,80}")


def new_id(prefix: str) -> str:
    """``resp_…``, ``msg_…``, ``fc_…``, ``call_…``: prefix, underscore, 48 hex characters."""
    return f"{prefix}_{secrets.token_hex(24)}"
