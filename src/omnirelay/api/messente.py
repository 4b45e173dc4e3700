"""Messente's Omnichannel API: send, bulk send, status, cancel.

Handlers return ready Responses (orjson bytes) rather than pydantic models: the shapes are fixed
by Messente's spec and this is the hot path. For the same reason they are plain Starlette routes
(api/routing.py).
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from omnirelay.api.auth import authenticate_api_user
from omnirelay.api.errors import error_item, error_response, unauthorized
from omnirelay.api.requests import BodyError, read_json
from omnirelay.api.routing import LeanRoute, Routes
from omnirelay.core.omnimessage import (
    OmnimessageRequest,
    check_sms_fits,
    parse_omnimessage,
    plan_attempts,
    use_replacement_table,
)
from omnirelay.core.timefmt import messente_timestamp
from omnirelay.core.validation import RequestError
from omnirelay.runtime import Runtime
from omnirelay.store.queries import Account, AttemptView, NewAttempt, NewOmnimessage

MAX_BULK = 1000
SHOWN_STATES = frozenset({"due", "sending", "sent", "done"})

_OMNIMESSAGE: dict[str, Any] = {
    "type": "object", "required": ["to", "messages"],
    "properties": {
        "to": {"type": "string", "example": "+37251234567"},
        "messages": {"type": "array", "items": {"type": "object"},
                     "description": "Channel variants in fallback order: sms, viber, "
                                    "whatsapp, telegram, rcs (Messente's schemas)"},
        "dlr_url": {"type": "string", "format": "uri", "maxLength": 2048},
        "text_store": {"type": "string", "enum": ["nostore", "plaintext", "sha256"]},
        "time_to_send": {"type": "string", "format": "date-time",
                         "description": "UTC unless a zone is given; years 1970 to 2999"},
        "priority": {"type": "string", "enum": ["low", "regular", "high"]},
    },
}
_SEND_DOC: dict[str, Any] = {
    "requestBody": {"required": True, "content": {"application/json": {"schema": _OMNIMESSAGE}}},
}
_BULK_DOC: dict[str, Any] = {
    "requestBody": {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "required": ["messages"],
        "properties": {"messages": {"type": "array", "minItems": 1, "maxItems": MAX_BULK,
                                    "items": _OMNIMESSAGE}}}}}},
}


def is_omnimessage_id(text: str) -> bool:
    """Only an id of the form the gateway issues can exist; anything else (a NUL, which
    PostgreSQL cannot even compare) is not found without asking the store."""
    if len(text) != 36:
        return False
    try:
        return str(uuid.UUID(text)) == text
    except ValueError:
        return False


def json_response(status: int, body: Any) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def runtime_of(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


async def account_of(request: Request) -> Account | None:
    return await authenticate_api_user(runtime_of(request).accounts,
                                       request.headers.get("authorization"))


def new_omnimessage(runtime: Runtime, account: Account, parsed: OmnimessageRequest,
                    path: str = "") -> NewOmnimessage:
    use_replacement_table(parsed, account.replacements)
    check_sms_fits(parsed, runtime.settings.engine.max_sms_parts, path)
    planned = plan_attempts(parsed, default_sender=account.default_sender,
                            default_validity_seconds=runtime.settings.engine.default_validity_seconds)
    return NewOmnimessage(
        id=str(uuid.uuid4()), account_id=account.id, surface="messente", to=parsed.to,
        priority=parsed.priority, time_to_send=parsed.time_to_send, dlr_url=parsed.dlr_url,
        text_store=parsed.text_store,
        attempts=tuple(NewAttempt(p.message_id, p.seq, p.channel, p.sender, p.content,
                                  p.validity_seconds) for p in planned),
    )


def created_body(message: NewOmnimessage) -> dict[str, Any]:
    return {
        "messages": [{"channel": a.channel, "message_id": a.message_id, "sender": a.sender}
                     for a in message.attempts],
        "to": message.to,
        "omnimessage_id": message.id,
    }


def status_item(attempt: AttemptView) -> dict[str, Any]:
    finished = attempt.status is not None
    return {
        "status": attempt.status,
        "channel": attempt.channel,
        "message_id": attempt.message_id,
        "error": attempt.error,
        "err": attempt.err,
        "timestamp": messente_timestamp(attempt.updated_at),
        "price_info": {"part_price": "0", "parts_count": attempt.parts_count or 1,
                       "total_price": "0"} if finished else None,
        "sender": attempt.sender,
    }


def build_routes(prefix: str = "", *, include_in_schema: bool = True) -> list[LeanRoute]:
    """Mounted under /v1, and again at / for SDKs configured without /v1."""
    routes = Routes()

    @routes.operation("POST", "/omnimessage", status_code=201, tags=["Omnimessage"],
                      summary="Send an omnimessage", openapi_extra=_SEND_DOC)
    async def send_omnimessage(request: Request) -> Response:
        runtime = runtime_of(request)
        account = await account_of(request)
        if account is None:
            return unauthorized()
        try:
            body = await read_json(request, runtime.settings.max_body_bytes)
            message = new_omnimessage(runtime, account, parse_omnimessage(body))
        except BodyError as exc:
            return error_response("105", exc.detail, exc.source)
        except RequestError as exc:
            return error_response(exc.code, exc.detail, exc.source)
        await runtime.accept([message])
        return json_response(201, created_body(message))

    @routes.operation("POST", "/omnimessages", status_code=201, tags=["Bulk Messaging"],
                      summary="Send up to 1000 omnimessages", openapi_extra=_BULK_DOC)
    async def send_bulk(request: Request) -> Response:
        runtime = runtime_of(request)
        account = await account_of(request)
        if account is None:
            return unauthorized()
        try:
            body = await read_json(request, runtime.settings.max_body_bytes)
        except BodyError as exc:
            return error_response("105", exc.detail, exc.source)
        if not isinstance(body, dict) or set(body) - {"messages"}:
            return error_response("105", "the body must be {\"messages\": [...]}", None)
        items = body.get("messages")
        if items is None:
            return error_response("106", "messages is required", "messages")
        if not isinstance(items, list) or not items:
            return error_response("105", "messages must be a non-empty array", "messages")
        if len(items) > MAX_BULK:
            return error_response("105", f"at most {MAX_BULK} omnimessages per request",
                                  "messages")
        results: list[dict[str, Any]] = []
        accepted: list[NewOmnimessage] = []
        for index, item in enumerate(items):
            try:
                path = f"messages[{index}]"
                message = new_omnimessage(runtime, account, parse_omnimessage(item, path), path)
            except RequestError as exc:
                results.append({"errors": [error_item(exc.code, exc.detail, exc.source)]})
                continue
            accepted.append(message)
            results.append(created_body(message))
        await runtime.accept(accepted)
        return json_response(201, {"messages": results})

    @routes.operation("GET", "/omnimessage/{omnimessage_id}/status", tags=["Delivery Report"],
                      summary="Statuses of an omnimessage's channel attempts, in send order")
    async def status(request: Request) -> Response:
        omnimessage_id: str = request.path_params["omnimessage_id"]
        runtime = runtime_of(request)
        account = await account_of(request)
        if account is None:
            return unauthorized()
        view = (await runtime.store.omnimessage(account.id, omnimessage_id)
                if is_omnimessage_id(omnimessage_id) else None)
        if view is None or view.surface != "messente":
            return error_response("101", f"omnimessage {omnimessage_id} not found")
        return json_response(200, {
            "statuses": [status_item(a) for a in view.attempts if a.state in SHOWN_STATES],
            "to": view.to,
            "omnimessage_id": view.id,
        })

    @routes.operation("DELETE", "/omnimessage/{omnimessage_id}", status_code=202,
                      tags=["Omnimessage"], summary="Cancel a scheduled omnimessage")
    async def cancel(request: Request) -> Response:
        omnimessage_id: str = request.path_params["omnimessage_id"]
        runtime = runtime_of(request)
        account = await account_of(request)
        if account is None:
            return unauthorized()
        if not is_omnimessage_id(omnimessage_id) or not await runtime.cancel(account.id,
                                                                              omnimessage_id):
            return error_response(
                "101", f"omnimessage {omnimessage_id} not found, or already being sent")
        return json_response(202, {})

    return routes.mount(prefix, include_in_schema=include_in_schema)
