"""Messente's error body, `{"errors":[{"title","detail","code","source"}]}`, and its statuses."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

TITLES = {
    "101": "Not found",
    "102": "Forbidden",
    "103": "Unauthorized",
    "104": "Internal Server Error",
    "105": "Invalid data",
    "106": "Missing data",
    "107": "Method not allowed",
}
STATUSES = {"101": 404, "102": 403, "103": 401, "104": 500, "105": 400, "106": 400, "107": 405}


class MessenteError(Exception):
    def __init__(self, code: str, detail: str, source: str | None = None) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.source = source

    @property
    def status(self) -> int:
        return STATUSES[self.code]


def error_item(code: str, detail: str, source: str | None = None) -> dict[str, Any]:
    return {"title": TITLES[code], "detail": detail, "code": code, "source": source}


def error_response(code: str, detail: str, source: str | None = None,
                   headers: dict[str, str] | None = None, status: int | None = None) -> Response:
    """`status` overrides the code's usual one: Messente has no code of its own for 503, so an
    unavailable database answers 503 with code 104."""
    body = orjson.dumps({"errors": [error_item(code, detail, source)]})
    return Response(body, status_code=status or STATUSES[code], media_type="application/json",
                    headers=headers)


def unauthorized() -> Response:
    return error_response("103", "Wrong username or password",
                          headers={"WWW-Authenticate": 'Basic realm="omnirelay"'})
