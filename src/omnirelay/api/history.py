"""omnirelay's own history endpoints, beside the compatible surfaces: search an account's
omnimessages, read one whole with its timeline and reports, and list inbound messages.

They authenticate like the Messente surface (HTTP Basic with the API username and password),
answer errors in Messente's format with `source` naming the parameter, and see only the caller's
account. Mounted under /v1 only: these paths are not Messente's, so no SDK looks for them at /.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs

import orjson
from starlette.requests import Request
from starlette.responses import Response

from omnirelay.api.errors import error_response, unauthorized
from omnirelay.api.messente import account_of, json_response, runtime_of
from omnirelay.api.openapi import (
    MESSENTE_BASIC,
    OPERATOR_BEARER,
    answer,
    json_content,
    messente_errors,
    query_parameter,
)
from omnirelay.api.requests import BodyError, read_json
from omnirelay.api.routing import LeanRoute, Routes
from omnirelay.core.history import (
    CHANNELS,
    MAX_LIMIT,
    SURFACES,
    Cursors,
    parse_inbound_filter,
    parse_message_filter,
    parse_redelivery,
    parse_webhook_filter,
)
from omnirelay.core.statuses import Status
from omnirelay.core.timefmt import utcnow
from omnirelay.core.validation import RequestError
from omnirelay.engine.wakeup import WEBHOOKS
from omnirelay.engine.webhooks import receiver_host
from omnirelay.store.history import (
    AttemptSummary,
    History,
    InboundSummary,
    MessageHistory,
    MessageSummary,
    Page,
    StatusEvent,
    WebhookSummary,
)

PRIORITIES = {0: "high", 1: "regular", 2: "low"}
WEBHOOK_STATES = {"pending": "pending", "done": "delivered", "dead": "dead"}  # stored -> shown


def iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def attempt_item(attempt: AttemptSummary) -> dict[str, Any]:
    return {"channel": attempt.channel, "message_id": attempt.message_id,
            "sender": attempt.sender, "state": attempt.state, "status": attempt.status,
            "err": attempt.err, "error": attempt.error, "parts_count": attempt.parts_count}


def shown_state(message: MessageSummary, now: datetime) -> str:
    """The store keeps accepted/done/canceled; a reader wants to tell a message waiting for its
    time_to_send from one being delivered."""
    if message.state != "accepted":
        return message.state
    waiting = message.time_to_send is not None and message.time_to_send > now
    if waiting and all(a.state in ("due", "waiting") for a in message.attempts):
        return "scheduled"
    return "sending"


def message_item(message: MessageSummary) -> dict[str, Any]:
    return {
        "omnimessage_id": message.id, "to": message.to, "surface": message.surface,
        "state": shown_state(message, utcnow()), "priority": PRIORITIES.get(message.priority, "regular"),
        "created": iso(message.created_at), "time_to_send": iso(message.time_to_send),
        "text_store": message.text_store,
        "attempts": [attempt_item(a) for a in message.attempts],
    }


def timeline(attempt: AttemptSummary, events: list[StatusEvent]) -> list[dict[str, Any]]:
    """What happened to one attempt, oldest first: the times the attempt row keeps (started by a
    fallback, submitted, skipped or canceled) merged with its status events."""
    entries: list[dict[str, Any]] = []

    def add(at: datetime | None, event: str, source: str, status: str | None = None,
            err: int | None = None) -> None:
        if at is not None:
            entries.append({"at": at, "event": event, "source": source, "status": status,
                            "err": err})

    if attempt.seq > 0 and attempt.state not in ("waiting", "skipped", "canceled"):
        add(attempt.due_at, "started", "fallback")
    add(attempt.sent_at, "submitted", "submit")
    for event in events:
        add(event.at, "status", event.source or "unknown", event.status, event.err)
    if attempt.state == "skipped":
        add(attempt.updated_at, "skipped", "fallback")
    if attempt.state == "canceled":
        add(attempt.updated_at, "canceled", "cancel")
    entries.sort(key=lambda e: e["at"])
    for entry in entries:
        entry["at"] = iso(entry["at"])
    return entries


def report_item(report: WebhookSummary) -> dict[str, Any]:
    state = WEBHOOK_STATES.get(report.state, report.state)
    item: dict[str, Any] = {
        "id": report.id, "kind": report.kind, "receiver": receiver_host(report.url),
        "state": state, "tries": report.tries, "created": iso(report.created_at),
        "next_try_at": iso(report.next_try_at) if state == "pending" else None,
        "delivered_at": iso(report.done_at) if state == "delivered" else None,
        "last_error": report.last_error,
        "status_code": report.last_status,  # the receiver's last HTTP answer
    }
    item.update(_reported(report))
    return item


def _reported(report: WebhookSummary) -> dict[str, Any]:
    """Which attempt and status a report speaks of, read from the body it carries."""
    try:
        if report.kind == "twilio":
            form = parse_qs(report.body.decode())
            return {"message_id": form.get("MessageSid", [None])[0],
                    "status": form.get("MessageStatus", [None])[0]}
        body = orjson.loads(report.body)
    except (ValueError, UnicodeDecodeError):
        return {"message_id": None, "status": None}
    if not isinstance(body, dict):
        return {"message_id": None, "status": None}
    return {"message_id": body.get("message_id"), "status": body.get("status")}


def history_item(history: MessageHistory) -> dict[str, Any]:
    message = history.message
    by_attempt: dict[str, list[StatusEvent]] = {}
    for event in history.events:
        by_attempt.setdefault(event.message_id, []).append(event)
    item = message_item(message)
    item["attempts"] = [
        {**attempt_item(a), "content": a.content, "sent_at": iso(a.sent_at),
         "timeline": timeline(a, by_attempt.get(a.message_id, []))}
        for a in message.attempts]
    item["reports"] = [report_item(r) for r in history.reports]
    return item


def inbound_item(inbound: InboundSummary) -> dict[str, Any]:
    callback = inbound.callback
    return {"id": inbound.id, "channel": inbound.channel, "from": inbound.sender,
            "to": inbound.recipient, "text": inbound.text, "received": iso(inbound.received_at),
            "callback": WEBHOOK_STATES.get(callback.state, callback.state)
            if callback else "none"}


def outbox_item(report: WebhookSummary) -> dict[str, Any]:
    return {**report_item(report), "omnimessage_id": report.order_key
            if report.kind != "inbound" else None,
            "inbound_id": report.order_key if report.kind == "inbound" else None}


def _plausible_id(text: str) -> bool:
    """Ids are UUIDs; anything far from one (too long, control characters, which PostgreSQL's
    text cannot even hold) is not found without asking the database."""
    return 0 < len(text) <= 64 and text.isascii() and text.isprintable()


def _query(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return query_parameter(name, schema, description=description)


_TIME = {"type": "string", "format": "date-time"}
_PAGING = [
    _query("since", "created at or after (ISO 8601)", _TIME),
    _query("until", "created before (ISO 8601)", _TIME),
    _query("limit", f"page size, 1 to {MAX_LIMIT} (default 50)",
           {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT}),
    _query("next", "the cursor from the previous page", {"type": "string"}),
]
_ATTEMPT_FIELDS: dict[str, Any] = {
    "channel": {"type": "string"}, "message_id": {"type": "string"},
    "sender": {"type": "string"}, "state": {"type": "string"},
    "status": {"type": ["string", "null"]}, "err": {"type": ["integer", "null"]},
    "error": {"type": ["string", "null"]}, "parts_count": {"type": ["integer", "null"]}}
_ATTEMPT = {"type": "object", "properties": _ATTEMPT_FIELDS}
_MESSAGE_FIELDS: dict[str, Any] = {
    "omnimessage_id": {"type": "string"}, "to": {"type": "string"},
    "surface": {"type": "string", "enum": list(SURFACES)},
    "state": {"type": "string", "enum": ["scheduled", "sending", "done", "canceled"]},
    "priority": {"type": "string"}, "created": _TIME,
    "time_to_send": {"type": ["string", "null"], "format": "date-time"},
    "text_store": {"type": "string"}, "attempts": {"type": "array", "items": _ATTEMPT}}
_MESSAGE = {"type": "object", "properties": _MESSAGE_FIELDS}


_ID = "0b6f2a52-3c1e-4f6a-9d2b-7e5c4a3b2d10"
_ATTEMPT_EXAMPLE: dict[str, Any] = {
    "channel": "sms", "message_id": "1e2f3a4b-5c6d-4e7f-8a9b-0c1d2e3f4a5b", "sender": "Acme",
    "state": "done", "status": "DELIVRD", "err": 0, "error": None, "parts_count": 1}
_MESSAGE_EXAMPLE: dict[str, Any] = {
    "omnimessage_id": _ID, "to": "+37251234567", "surface": "messente", "state": "done",
    "priority": "regular", "created": "2026-01-02T03:04:05.678901Z", "time_to_send": None,
    "text_store": "plaintext", "attempts": [_ATTEMPT_EXAMPLE]}
_REPORT_FIELDS: dict[str, Any] = {
    "id": {"type": "integer"}, "kind": {"type": "string"}, "receiver": {"type": "string"},
    "state": {"type": "string", "enum": ["pending", "delivered", "dead"]},
    "tries": {"type": "integer"}, "created": _TIME,
    "next_try_at": {"type": ["string", "null"]},
    "delivered_at": {"type": ["string", "null"]},
    "last_error": {"type": ["string", "null"]}, "status_code": {"type": ["integer", "null"]},
    "message_id": {"type": ["string", "null"]}, "status": {"type": ["string", "null"]}}
_REPORT_EXAMPLE: dict[str, Any] = {
    "id": 42, "kind": "messente", "receiver": "acme.example", "state": "delivered", "tries": 1,
    "created": "2026-01-02T03:04:06.000000Z", "next_try_at": None,
    "delivered_at": "2026-01-02T03:04:06.100000Z", "last_error": None, "status_code": 200,
    "message_id": "1e2f3a4b-5c6d-4e7f-8a9b-0c1d2e3f4a5b", "status": "DELIVRD"}
_OUTBOX_ITEM: dict[str, Any] = {"type": "object", "properties": {
    **_REPORT_FIELDS, "omnimessage_id": {"type": ["string", "null"]},
    "inbound_id": {"type": ["string", "null"]}}}
_OUTBOX_EXAMPLE = {**_REPORT_EXAMPLE, "omnimessage_id": _ID, "inbound_id": None}


def _ok(schema: dict[str, Any], example: Any, status: str = "200") -> dict[str, Any]:
    return {status: answer("OK", schema, example)}


_SEARCH_DOC: dict[str, Any] = {
    "parameters": [
        _query("to", "recipient, E.164", {"type": "string"}),
        _query("channel", "has an attempt on this channel",
               {"type": "string", "enum": list(CHANNELS)}),
        _query("status", "has an attempt whose current status is this",
               {"type": "string", "enum": [s.value for s in Status]}),
        _query("surface", "the API it was sent through",
               {"type": "string", "enum": list(SURFACES)}),
        *_PAGING],
    "responses": _ok({"type": "object", "properties": {
        "omnimessages": {"type": "array", "items": _MESSAGE},
        "next": {"type": ["string", "null"]}}}, {"omnimessages": [_MESSAGE_EXAMPLE],
                                                 "next": None}),
}
_ONE_DOC: dict[str, Any] = {"responses": _ok({"type": "object", "properties": {
    **_MESSAGE_FIELDS,
    "attempts": {"type": "array", "items": {"type": "object", "properties": {
        **_ATTEMPT_FIELDS,
        "content": {"type": ["object", "null"]}, "sent_at": {"type": ["string", "null"]},
        "timeline": {"type": "array", "items": {"type": "object", "properties": {
            "at": _TIME, "event": {"type": "string"}, "source": {"type": "string"},
            "status": {"type": ["string", "null"]}, "err": {"type": ["integer", "null"]}}}}}}},
    "reports": {"type": "array", "items": {"type": "object", "properties": _REPORT_FIELDS}},
}}, {**_MESSAGE_EXAMPLE, "attempts": [{
    **_ATTEMPT_EXAMPLE, "content": {"text": "Your code is 1234"},
    "sent_at": "2026-01-02T03:04:05.700000Z", "timeline": [
        {"at": "2026-01-02T03:04:05.700000Z", "event": "submitted", "source": "submit",
         "status": None, "err": None},
        {"at": "2026-01-02T03:04:05.900000Z", "event": "status", "source": "sandbox",
         "status": "DELIVRD", "err": 0}]}], "reports": [_REPORT_EXAMPLE]})}
_INBOUND_DOC: dict[str, Any] = {
    "parameters": [_query("from", "sender", {"type": "string"}),
                   _query("to", "recipient (your number)", {"type": "string"}), *_PAGING],
    "responses": _ok({"type": "object", "properties": {
        "inbound": {"type": "array", "items": {"type": "object", "properties": {
            "id": {"type": "string"}, "channel": {"type": "string"},
            "from": {"type": "string"}, "to": {"type": "string"}, "text": {"type": "string"},
            "received": _TIME,
            "callback": {"type": "string", "enum": ["none", "pending", "delivered", "dead"]}}}},
        "next": {"type": ["string", "null"]}}}, {"inbound": [{
            "id": "5a6b7c8d-9e0f-4a1b-8c2d-3e4f5a6b7c8d", "channel": "sms",
            "from": "+37251234567", "to": "+37259999999", "text": "STOP",
            "received": "2026-01-02T03:04:05.678901Z", "callback": "delivered"}],
            "next": None}),
}


_OUTBOX_DOC: dict[str, Any] = {
    "parameters": [_query("state", "pending, delivered or dead",
                          {"type": "string", "enum": ["pending", "delivered", "dead"]}),
                   *_PAGING],
    "responses": _ok({"type": "object", "properties": {
        "webhooks": {"type": "array", "items": _OUTBOX_ITEM},
        "next": {"type": ["string", "null"]}}}, {"webhooks": [_OUTBOX_EXAMPLE], "next": None}),
}
_REDELIVER_DOC: dict[str, Any] = {
    "requestBody": {"required": False, "content": {"application/json": {"schema": {
        "type": "object", "properties": {
            "state": {"type": "string", "enum": ["dead", "delivered"], "default": "dead"},
            "since": _TIME, "until": _TIME,
            "limit": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}}},
        "example": {"state": "dead", "since": "2026-01-01T00:00:00Z"}}}},
    "responses": _ok({"type": "object", "required": ["redelivered"], "properties": {
        "redelivered": {"type": "array", "items": {"type": "integer"},
                        "description": "the ids queued again"}}},
        {"redelivered": [42, 43]}, "202"),
}
_REDELIVER_ONE_DOC: dict[str, Any] = {
    "requestBody": {"required": False, "content": json_content(
        {"type": "object", "description": "nothing needed; a body is ignored"}, {})},
    "responses": _ok(_OUTBOX_ITEM, {**_OUTBOX_EXAMPLE, "state": "pending", "tries": 0,
                                    "next_try_at": "2026-01-02T03:05:00.000000Z",
                                    "delivered_at": None}, "202"),
}


def _documented(doc: dict[str, Any], errors: dict[str, Any], scheme: str) -> dict[str, Any]:
    return {**doc, "security": [{scheme: []}], "responses": {**doc["responses"], **errors}}


@dataclass(frozen=True, slots=True)
class Scope:
    """Whose rows a request reads: one account's (account_id; None for rows no account owns),
    or, for the operator reading one row by its id, any account's."""

    account_id: int | None
    any_account: bool = False


# (request, listing) -> the scope, or the answer that refuses the request
Resolver = Callable[[Request, bool], Awaitable["Scope | Response"]]


async def caller_scope(request: Request, _listing: bool) -> Scope | Response:
    account = await account_of(request)
    return unauthorized() if account is None else Scope(account.id)


def build_routes(prefix: str = "/v1", resolve: Resolver = caller_scope, *,
                 tags: Sequence[str] = ("History",), take: Sequence[str] = (),
                 operator: bool = False) -> list[LeanRoute]:
    """The history and outbox routes under `prefix`, scoped by `resolve`; `take`: query
    parameters `resolve` reads, kept from the filters; `operator`: documented as the operator
    API (bearer token; listings name an account)."""
    routes = Routes(tags=tags)
    scheme = OPERATOR_BEARER if operator else MESSENTE_BASIC
    # The operator's listings name an account: without one a 400, an unknown one a 404.
    listing = (400, 401, 404, 503) if operator else (400, 401, 503)
    bad_limit = ("105", f"limit must be a whole number from 1 to {MAX_LIMIT}", "limit")

    def doc(base: dict[str, Any], *statuses: int, missing: str = "no account named 'acme'",
            invalid: tuple[str, str, str | None] = bad_limit) -> dict[str, Any]:
        return _documented(base, messente_errors(*statuses, invalid=invalid, missing=missing,
                                                 operator=operator), scheme)
    cursors: dict[str, Cursors] = {}

    def cursors_for(request: Request, kind: str) -> Cursors:
        if kind not in cursors:
            cursors[kind] = Cursors(runtime_of(request).settings.secret_key, kind)
        return cursors[kind]

    def filters(request: Request) -> dict[str, str]:
        return {k: v for k, v in request.query_params.items() if k not in take}

    def history(request: Request) -> History:
        return History(runtime_of(request).db)

    async def page_of(request: Request, kind: str,
                      parse: Callable[[dict[str, str], Cursors], Any],
                      fetch: Callable[[History, int | None, Any], Awaitable[Page[Any]]],
                      render: Callable[[Any], dict[str, Any]]) -> Response:
        """One page of a listing: scope, filters, the store's page, and its cursor."""
        scope = await resolve(request, True)
        if isinstance(scope, Response):
            return scope
        codec = cursors_for(request, kind)
        try:
            query = parse(filters(request), codec)
        except RequestError as exc:
            return error_response(exc.code, exc.detail, exc.source)
        page = await fetch(history(request), scope.account_id, query)
        return json_response(200, {
            kind: [render(item) for item in page.items],
            "next": codec.encode(page.next) if page.next else None})

    @routes.operation("GET", "/omnimessages", summary="Search omnimessages, newest first",
                      openapi_extra=doc(_SEARCH_DOC, *listing))
    async def search(request: Request) -> Response:
        return await page_of(request, "omnimessages", parse_message_filter, History.search,
                             message_item)

    @routes.operation("GET", "/omnimessage/{omnimessage_id}",
                      summary="One omnimessage whole: attempts, timelines and reports",
                      openapi_extra=doc(_ONE_DOC, 401, 404, 503,
                                        missing=f"omnimessage {_ID} not found"))
    async def one(request: Request) -> Response:
        omnimessage_id: str = request.path_params["omnimessage_id"]
        scope = await resolve(request, False)
        if isinstance(scope, Response):
            return scope
        if not _plausible_id(omnimessage_id):
            return error_response("101", "omnimessage not found")
        found = await history(request).omnimessage(
            None if scope.any_account else scope.account_id, omnimessage_id)
        if found is None:
            return error_response("101", f"omnimessage {omnimessage_id} not found")
        return json_response(200, history_item(found))

    @routes.operation("GET", "/inbound", summary="Inbound messages, newest first",
                      openapi_extra=doc(_INBOUND_DOC, *listing))
    async def inbound(request: Request) -> Response:
        return await page_of(request, "inbound", parse_inbound_filter, History.inbound,
                             inbound_item)

    @routes.operation("GET", "/webhooks", summary="Callbacks: pending, delivered, dead",
                      openapi_extra=doc(_OUTBOX_DOC, *listing))
    async def outbox(request: Request) -> Response:
        return await page_of(request, "webhooks", parse_webhook_filter, History.webhooks,
                             outbox_item)

    @routes.operation("POST", "/webhooks/{webhook_id}/redeliver", status_code=202,
                      summary="Queue one delivered or dead callback again",
                      openapi_extra=doc(_REDELIVER_ONE_DOC, 401, 404, 503,
                                        missing="webhook 42 not found"))
    async def redeliver_one(request: Request) -> Response:
        webhook_id: str = request.path_params["webhook_id"]
        scope = await resolve(request, False)
        if isinstance(scope, Response):
            return scope
        if not webhook_id.isascii() or not webhook_id.isdigit() or len(webhook_id) > 18:
            return error_response("101", "webhook not found")
        runtime = runtime_of(request)
        report = await history(request).redeliver_one(
            None if scope.any_account else scope.account_id, int(webhook_id), utcnow())
        if report is None:
            return error_response("101", f"webhook {webhook_id} not found")
        runtime.wakeup.wake(WEBHOOKS)
        return json_response(202, outbox_item(report))

    @routes.operation("POST", "/webhooks/redeliver", status_code=202,
                      summary="Queue delivered or dead callbacks again, oldest first",
                      openapi_extra=doc(_REDELIVER_DOC, *listing, invalid=(
                          "105", "state must be one of dead, delivered", "state")))
    async def redeliver(request: Request) -> Response:
        scope = await resolve(request, True)
        if isinstance(scope, Response):
            return scope
        runtime = runtime_of(request)
        try:
            raw = await read_json(request, runtime.settings.max_body_bytes) \
                if request.headers.get("content-length", "0") != "0" else None
            which = parse_redelivery(raw)
        except BodyError as exc:
            return error_response("105", exc.detail, exc.source)
        except RequestError as exc:
            return error_response(exc.code, exc.detail, exc.source)
        ids = await history(request).redeliver(scope.account_id, which, utcnow())
        if ids:
            runtime.wakeup.wake(WEBHOOKS)
        return json_response(202, {"redelivered": ids})

    return routes.mount(prefix)
