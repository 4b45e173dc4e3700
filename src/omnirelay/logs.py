"""Log output, as text or as one JSON object per line (`log_format`), and the access log.

The access log (`access_log = true`) is one INFO line per HTTP request on the logger
`omnirelay.access`, written by the Gateway (omnirelay.app) around every request, the lean API
routes included: method, the route's path template (`/v1/omnimessage/{omnimessage_id}/status`,
never the path as sent, which can carry a phone number), status, duration and the account the
request authenticated as. Nothing else of the request: no credentials, query string or body.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import IO, Any

import orjson
from starlette.routing import Mount, Route
from starlette.types import Scope

ACCESS_LOGGER = "omnirelay.access"
# Where the surfaces note whom a request authenticated as, for the access log.
ACCOUNT_KEY = "omnirelay.account"
OPERATOR = "(operator)"  # the account shown for the operator API's bearer token
FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

access_log = logging.getLogger(ACCESS_LOGGER)


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (UTC, ISO 8601), level, logger, message, the record's
    `fields` if it carries any (the access log's), and `exception` with the traceback's text."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).strftime(
                "%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            for key, value in fields.items():
                entry.setdefault(key, value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(entry, default=str).decode()


def formatter(log_format: str) -> logging.Formatter:
    return JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)


def configure(level: str, log_format: str = "text", stream: IO[str] | None = None) -> None:
    """The root logger writes to stderr in `log_format`; uvicorn's loggers propagate to it
    (omnirelay.server starts uvicorn without a logging config of its own), so every line of a
    process has the one format."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter(log_format))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)


def route_template(scope: Scope) -> str | None:
    """The matched route's path with its {parameters}; None when no route matched."""
    route = scope.get("route")
    if isinstance(route, Mount):  # a mounted app of its own, such as the docs' assets
        return route.path + "/{path}"
    if not isinstance(route, Route):
        return None
    # Inside a Mount the route's path is relative to it; root_path is the mount's matched prefix
    # (a fixed name such as /webhooks/<provider>, never a request value).
    prefix: str = scope.get("root_path", "")
    return prefix + route.path


def log_access(scope: Scope, status: int, seconds: float) -> None:
    method = scope["method"]
    path = route_template(scope)
    account = scope.get(ACCOUNT_KEY)
    milliseconds = round(seconds * 1000, 2)
    access_log.info("%s %s %d %.2fms account=%s", method, path or "-", status, milliseconds,
                    account or "-", extra={"fields": {
                        "method": method, "path": path, "status": status,
                        "duration_ms": milliseconds, "account": account}})
