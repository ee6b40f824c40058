"""Logging set-up: plain text, or one JSON object per line (``--log-format json``).

Records carry ``request_id`` / ``response_id`` when they concern one; nothing logged here
holds request bodies or headers, so credentials never reach the logs.
"""

from __future__ import annotations

import json
import logging
import time

from parley.redaction import RedactingFilter

FIELDS = ("request_id", "response_id", "model", "status", "route", "duration_ms", "tenant", "input_tokens",
          "output_tokens", "error_code", "param")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
                 "level": record.levelname.lower(), "logger": record.name, "message": record.getMessage()}
        entry.update({name: getattr(record, name) for name in FIELDS if hasattr(record, name)})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure_logging(level: str, fmt: str) -> None:
    handler = logging.StreamHandler()
    handler.addFilter(RedactingFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(
        "%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    for name in ("httpx", "httpx2"):  # their INFO lines would log every MCP URL
        logging.getLogger(name).setLevel(logging.WARNING)
