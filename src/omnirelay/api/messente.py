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

from omnirelay.api.auth import authenticate_api_user, console_account
from omnirelay.api.errors import error_item, error_response, unauthorized
from omnirelay.api.idempotency import OPENAPI_PARAMETER, Created, idempotent, read_key
from omnirelay.api.openapi import (
    MESSENTE_BASIC,
    MESSENTE_ERROR,
    NULLABLE_STRING,
    UUID,
    answer,
    json_content,
    messente_error,
    messente_errors,
    secured,
)
from omnirelay.api.ratelimited import messente_rate_limited
from omnirelay.api.requests import BodyError, read_json
from omnirelay.api.routing import LeanRoute, Routes
from omnirelay.core.accept import NewOmnimessage, messente_omnimessage
from omnirelay.core.idempotency import HEADER, MESSENTE_BULK, MESSENTE_SEND, json_fingerprint
from omnirelay.core.omnimessage import parse_omnimessage
from omnirelay.core.pricing import price_info
from omnirelay.core.statuses import Err, Status
from omnirelay.core.timefmt import messente_timestamp
from omnirelay.core.validation import RequestError
from omnirelay.logs import ACCOUNT_KEY
from omnirelay.runtime import Runtime
from omnirelay.store.queries import Account, AttemptView

MAX_BULK = 1000
SHOWN_STATES = frozenset({"due", "sending", "sent", "done"})

_INTEGER = {"type": "integer"}
_SENDER = {"type": "string", "minLength": 1, "maxLength": 64,
           "description": "the account's default sender when omitted"}
_URL = {"type": "string", "format": "uri", "maxLength": 2048}


def _variant(channel: str, content: dict[str, Any], required: tuple[str, ...] = ()
             ) -> dict[str, Any]:
    """One channel's entry in `messages`: its content fields and the common ones. Unknown
    fields are refused (400), so none are allowed here either."""
    return {"type": "object", "title": channel, "additionalProperties": False,
            "required": ["channel", *required],
            "properties": {
                "channel": {"type": "string", "enum": [channel]},
                "sender": _SENDER,
                "validity": {"type": "integer", "minimum": 1, "maximum": 43200,
                             "description": "minutes the upstream may keep trying"},
                "ttl": {"type": "integer", "minimum": 1, "maximum": 2592000,
                        "description": "seconds; instead of validity"},
                **content}}


_OBJECT = {"type": "object"}
_VARIANTS: list[dict[str, Any]] = [
    _variant("sms", {"text": {"type": "string", "minLength": 1},
                     "autoconvert": {"type": "string",
                                     "enum": ["full", "on", "off", "true", "false"]},
                     "udh": {"type": "string", "description": "hex"}}, ("text",)),
    _variant("viber", {"text": {"type": "string"}, "image_url": _URL, "button_url": _URL,
                       "button_text": {"type": "string"}, "video": _OBJECT,
                       "template": _OBJECT, "carousel": _OBJECT}),
    _variant("whatsapp", {kind: _OBJECT for kind in (
        "template", "text", "image", "video", "audio", "document", "sticker")}),
    _variant("telegram", {"text": {"type": "string"}, "image_url": _URL,
                          "document_url": _URL, "audio_url": _URL}),
    _variant("rcs", {"text": {"type": "string"}, "suggestions": {"type": "array"},
                     "rich_card": _OBJECT, "content_info": _OBJECT}, ("sender",)),
]
_SEND_EXAMPLE = {"to": "+37251234567", "messages": [
    {"channel": "viber", "sender": "Acme", "text": "Your code is 1234"},
    {"channel": "sms", "sender": "Acme", "text": "Your code is 1234"}]}
_OMNIMESSAGE: dict[str, Any] = {
    "type": "object", "title": "Omnimessage", "required": ["to", "messages"],
    "additionalProperties": False,
    "properties": {
        "to": {"type": "string", "example": "+37251234567",
               "description": "the recipient, E.164"},
        "messages": {"type": "array", "minItems": 1, "items": {"anyOf": _VARIANTS},
                     "description": "Channel variants in fallback order, each channel at most "
                                    "once: sms, viber, whatsapp, telegram, rcs"},
        "dlr_url": {**_URL, "description": "where status reports are POSTed"},
        "text_store": {"type": "string", "enum": ["nostore", "plaintext", "sha256"]},
        "time_to_send": {"type": "string", "format": "date-time",
                         "description": "UTC unless a zone is given; years 1970 to 2999"},
        "priority": {"type": "string", "enum": ["low", "regular", "high"]},
    },
}
_CHANNEL = {"type": "string", "enum": ["sms", "viber", "whatsapp", "telegram", "rcs"]}
_CREATED: dict[str, Any] = {
    "type": "object", "title": "OmniMessageCreateSuccessResponse",
    "required": ["messages", "to", "omnimessage_id"],
    "properties": {
        "messages": {"type": "array", "items": {
            "type": "object", "required": ["channel", "message_id", "sender"],
            "properties": {"channel": _CHANNEL, "message_id": UUID,
                           "sender": {"type": "string"}}}},
        "to": {"type": "string"}, "omnimessage_id": UUID}}
_CREATED_EXAMPLE = {
    "messages": [{"channel": "viber", "message_id": "9c5d3b0e-8a47-4f6e-b1a2-3c4d5e6f7a80",
                  "sender": "Acme"},
                 {"channel": "sms", "message_id": "1e2f3a4b-5c6d-4e7f-8a9b-0c1d2e3f4a5b",
                  "sender": "Acme"}],
    "to": "+37251234567", "omnimessage_id": "0b6f2a52-3c1e-4f6a-9d2b-7e5c4a3b2d10"}
_SEND_DOC: dict[str, Any] = secured(MESSENTE_BASIC, {
    "requestBody": {"required": True, "content": json_content(_OMNIMESSAGE, _SEND_EXAMPLE)},
    "responses": {"201": answer("Accepted: one message per channel variant, in fallback "
                                "order", _CREATED, _CREATED_EXAMPLE),
                  **messente_errors(400, 401, 429, 503, invalid=(
                      "105", "to is not a valid phone number", "to"))},
})
_BULK_EXAMPLE = {"messages": [_SEND_EXAMPLE,
                              {"to": "+37251234568",
                               "messages": [{"channel": "sms", "text": "Hello"}]}]}
_BULK_DOC: dict[str, Any] = secured(MESSENTE_BASIC, {
    "requestBody": {"required": True, "content": json_content({
        "type": "object", "title": "BulkOmnimessage", "required": ["messages"],
        "additionalProperties": False,
        "properties": {"messages": {"type": "array", "minItems": 1, "maxItems": MAX_BULK,
                                    "items": _OMNIMESSAGE}}}, _BULK_EXAMPLE)},
    "responses": {
        "201": answer("One result per omnimessage, in order: accepted, or its errors (the "
                      "others are accepted all the same)", {
                          "type": "object", "title": "BulkOmniMessageCreateSuccessResponse",
                          "required": ["messages"],
                          "properties": {"messages": {"type": "array", "items": {
                              "anyOf": [_CREATED, MESSENTE_ERROR]}}}},
                      {"messages": [_CREATED_EXAMPLE, messente_error(
                          "105", "messages[1].to is not a valid phone number",
                          "messages[1].to")]}),
        **messente_errors(400, 401, 429, 503, invalid=(
            "105", "at most 1000 omnimessages per request", "messages"))},
})
_STATUS_ITEM: dict[str, Any] = {
    "type": "object", "title": "DeliveryResult",
    "required": ["status", "channel", "message_id", "error", "err", "timestamp",
                 "price_info", "sender"],
    "properties": {
        "status": {"type": ["string", "null"], "enum": [*(s.value for s in Status), None],
                   "description": "null until the channel reports one"},
        "channel": _CHANNEL, "message_id": UUID,
        "error": {**NULLABLE_STRING, "description": "what went wrong, in words"},
        "err": {"type": ["integer", "null"], "enum": [*(int(e) for e in Err), None],
                "description": "0 no error; null until a status is reported"},
        "timestamp": {"type": "string", "pattern": r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}$",
                      "description": "UTC without a zone, microseconds, as Messente sends it"},
        "price_info": {"type": ["object", "null"],
                       "required": ["part_price", "parts_count", "total_price"],
                       "properties": {"part_price": {"type": "string"},
                                      "parts_count": {"type": "integer"},
                                      "total_price": {"type": "string"}},
                       "description": "null until a status is reported; prices from the "
                                      "account's price list, \"0\" without one"},
        "sender": {"type": "string"}}}
_STATUS_DOC: dict[str, Any] = secured(MESSENTE_BASIC, {"responses": {
    "200": answer("The channel attempts started so far, in send order", {
        "type": "object", "title": "DeliveryReportResponse",
        "required": ["statuses", "to", "omnimessage_id"],
        "properties": {"statuses": {"type": "array", "items": _STATUS_ITEM},
                       "to": {"type": "string"}, "omnimessage_id": UUID}}, {
        "statuses": [{"status": "DELIVRD", "channel": "sms",
                      "message_id": "1e2f3a4b-5c6d-4e7f-8a9b-0c1d2e3f4a5b", "error": None,
                      "err": 0, "timestamp": "2026-01-02T03:04:05.678901",
                      "price_info": {"part_price": "0", "parts_count": 1, "total_price": "0"},
                      "sender": "Acme"}],
        "to": "+37251234567", "omnimessage_id": "0b6f2a52-3c1e-4f6a-9d2b-7e5c4a3b2d10"}),
    **messente_errors(401, 404, 503, missing="omnimessage "
                      "0b6f2a52-3c1e-4f6a-9d2b-7e5c4a3b2d10 not found")}})
_CANCEL_DOC: dict[str, Any] = secured(MESSENTE_BASIC, {"responses": {
    "202": answer("Canceled before it was sent", {"type": "object", "maxProperties": 0}, {}),
    **messente_errors(401, 404, 503, missing="omnimessage "
                      "0b6f2a52-3c1e-4f6a-9d2b-7e5c4a3b2d10 not found, or already being sent")}})

_KEY_REUSED = (f"this {HEADER} was already used with a different request body; use a new key "
               "for a new request")
for _doc in (_SEND_DOC, _BULK_DOC):  # both sends take an Idempotency-Key
    _doc.setdefault("parameters", []).append(OPENAPI_PARAMETER)
    _doc["responses"]["422"] = answer(f"The {HEADER} was used with another request; nothing was "
                                      "sent", MESSENTE_ERROR,
                                      messente_error("105", _KEY_REUSED, HEADER))


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
    accounts = runtime_of(request).accounts
    header = request.headers.get("authorization")
    account = await (authenticate_api_user(accounts, header) if header is not None
                     else console_account(request, accounts))
    if account is not None:
        request.scope[ACCOUNT_KEY] = account.name  # for the access log
    return account


async def check_templates(request: Request, account: Account, message: NewOmnimessage,
                          path: str = "") -> None:
    """Refuses (RequestError) a WhatsApp template the provider knows not to exist
    (omnirelay.whatsapp_templates); a cached lookup."""
    templates = getattr(request.app.state, "whatsapp_templates", None)
    if templates is not None:
        await templates.check_send(account, message, path)


def created_body(message: NewOmnimessage) -> dict[str, Any]:
    return {
        "messages": [{"channel": a.channel, "message_id": a.message_id, "sender": a.sender}
                     for a in message.attempts],
        "to": message.to,
        "omnimessage_id": message.id,
    }


def key_reused() -> Response:
    return error_response("105", _KEY_REUSED, HEADER, status=422)


def status_item(attempt: AttemptView) -> dict[str, Any]:
    finished = attempt.status is not None
    return {
        "status": attempt.status,
        "channel": attempt.channel,
        "message_id": attempt.message_id,
        "error": attempt.error,
        "err": attempt.err,
        "timestamp": messente_timestamp(attempt.updated_at),
        "price_info": price_info(attempt.part_price_micros, attempt.charged_parts,
                                 attempt.parts_count) if finished else None,
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
        key, bad_key = read_key(request)
        if bad_key is not None:
            return error_response("105", bad_key, HEADER)
        try:
            body = await read_json(request, runtime.settings.max_body_bytes)
        except BodyError as exc:
            return error_response("105", exc.detail, exc.source)

        async def build() -> Created | Response:
            try:
                message = messente_omnimessage(account, parse_omnimessage(body),
                                               runtime.settings.engine)
                await check_templates(request, account, message)
            except RequestError as exc:
                return error_response(exc.code, exc.detail, exc.source)
            # A replay spends nothing: only a new send is held to the account's rate.
            if (wait := await runtime.limits.admit(account, 1)) is not None:
                return messente_rate_limited(wait)
            return Created([message], 201, orjson.dumps(created_body(message)))

        return await idempotent(runtime, account.id, key,
                                lambda: json_fingerprint(MESSENTE_SEND, body), build, key_reused)

    @routes.operation("POST", "/omnimessages", status_code=201, tags=["Bulk Messaging"],
                      summary="Send up to 1000 omnimessages", openapi_extra=_BULK_DOC)
    async def send_bulk(request: Request) -> Response:
        runtime = runtime_of(request)
        account = await account_of(request)
        if account is None:
            return unauthorized()
        key, bad_key = read_key(request)
        if bad_key is not None:
            return error_response("105", bad_key, HEADER)
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

        async def build() -> Created | Response:
            results: list[dict[str, Any]] = []
            accepted: list[NewOmnimessage] = []
            for index, item in enumerate(items):
                try:
                    path = f"messages[{index}]"
                    message = messente_omnimessage(account, parse_omnimessage(item, path),
                                                   runtime.settings.engine, path)
                    await check_templates(request, account, message, path)
                except RequestError as exc:
                    results.append({"errors": [error_item(exc.code, exc.detail, exc.source)]})
                    continue
                accepted.append(message)
                results.append(created_body(message))
            if (wait := await runtime.limits.admit(account, len(accepted))) is not None:
                return messente_rate_limited(wait)  # each omnimessage counts; none is stored
            return Created(accepted, 201, orjson.dumps({"messages": results}))

        return await idempotent(runtime, account.id, key,
                                lambda: json_fingerprint(MESSENTE_BULK, body), build, key_reused)

    @routes.operation("GET", "/omnimessage/{omnimessage_id}/status", tags=["Delivery Report"],
                      summary="Statuses of an omnimessage's channel attempts, in send order",
                      openapi_extra=_STATUS_DOC)
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
                      tags=["Omnimessage"], summary="Cancel a scheduled omnimessage",
                      openapi_extra=_CANCEL_DOC)
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
