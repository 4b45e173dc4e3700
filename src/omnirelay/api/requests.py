"""Reading request bodies safely: size cap, content type, JSON, with errors in the caller's format."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request


class BodyError(Exception):
    def __init__(self, detail: str, source: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.source = source


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyError(f"the request body is larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyError(f"the request body is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: Request, limit: int) -> Any:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json" and not content_type.endswith("+json"):
        raise BodyError("Content-Type must be application/json")
    body = await read_body(request, limit)
    if not body.strip():
        raise BodyError("the request body is empty; a JSON object is expected")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BodyError(f"the request body is not valid JSON ({exc.msg} at position {exc.pos})") from None
