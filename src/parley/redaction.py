"""Credentials kept out of what Parley shows and writes: the user and password a URL may carry
(``https://user:pass@host/``) are replaced wherever a URL is echoed (a tool in a Response, the console) or
logged (every log record passes :class:`RedactingFilter`)."""

from __future__ import annotations

import logging
import re

REDACTED = "<redacted>"
_USERINFO = re.compile(r"(?<=://)[^/\s@?#]+@")


def redact_userinfo(text: str) -> str:
    """``text`` with the userinfo of every URL in it replaced."""
    return _USERINFO.sub(REDACTED + "@", text) if "@" in text else text


class RedactingFilter(logging.Filter):
    """Redacts URL userinfo in a record's message (its arguments are merged in first)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact_userinfo(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True
