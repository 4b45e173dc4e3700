"""Twilio's Messages API under /2010-04-01: create, fetch, list, update (cancel, redact), delete.

As the official `twilio` SDKs send and parse it (shared/reference/twilio-api.md): form-encoded
requests, HTTP Basic AccountSid:AuthToken, RFC 2822 dates, errors as
`{"code","message","more_info","status"}`. The rules live in omnirelay.core.twilio; this module
is HTTP and the store. Like the Messente surface, handlers return ready Responses and are plain
Starlette routes (api/routing.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl

import orjson
from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response

from omnirelay.api import openapi
from omnirelay.api.auth import authenticate_twilio, basic_credentials
from omnirelay.api.idempotency import OPENAPI_PARAMETER, Created, idempotent, read_key
from omnirelay.api.openapi import NULLABLE_STRING, TWILIO_BASIC, TWILIO_ERROR, query_parameter, twilio_errors
from omnirelay.api.openapi import answer as documented
from omnirelay.api.ratelimited import twilio_rate_limited
from omnirelay.api.requests import BodyError, read_body
from omnirelay.api.routing import LeanRoute, Routes
from omnirelay.core.accept import NewOmnimessage, twilio_omnimessage
from omnirelay.core.idempotency import HEADER, TWILIO_CREATE, form_fingerprint
from omnirelay.core.timefmt import utcnow
from omnirelay.core.twilio.callbacks import KIND, sign_status_callback, status_callbacks
from omnirelay.core.twilio.create import (
    Form,
    ScheduleWindow,
    first,
    parse_create,
)
from omnirelay.core.twilio.errors import (
    TwilioError,
    authentication_error,
    for_http_status,
    invalid_parameter,
    not_found,
    twilio_error,
)
from omnirelay.core.twilio.listing import MAX_PAGE, page_body, parse_list_query
from omnirelay.core.twilio.resource import (
    PREFIX,
    TwilioStatus,
    message_resource,
    message_status,
    messages_uri,
    omnimessage_id,
)
from omnirelay.logs import ACCOUNT_KEY
from omnirelay.runtime import Runtime
from omnirelay.store.queries import Account, AttemptView, OmnimessageView

SURFACE = "twilio"
MESSAGES = PREFIX + "/Accounts/{account_sid}/Messages.json"
MESSAGE = PREFIX + "/Accounts/{account_sid}/Messages/{sid}.json"
MEDIA = PREFIX + "/Accounts/{account_sid}/Messages/{sid}/Media.json"
FORM = "application/x-www-form-urlencoded"
# Once sent, a message's body is not needed to deliver it: it may be redacted from then on.
UNSENT_STATES = frozenset({"waiting", "due", "sending"})

_CREATE_FIELDS: dict[str, Any] = {
    "To": {"type": "string", "example": "+37255512345"},
    "From": {"type": "string", "example": "+15017122661",
             "description": "E.164 number, short code or alphanumeric sender ID"},
    "Body": {"type": "string", "maxLength": 1600},
    "StatusCallback": {"type": "string", "format": "uri"},
    "ValidityPeriod": {"type": "integer", "minimum": 1, "maximum": 36000},
    "ScheduleType": {"type": "string", "enum": ["fixed"]},
    "SendAt": {"type": "string", "format": "date-time"},
    "SmartEncoded": {"type": "boolean"},
    "ContentRetention": {"type": "string", "enum": ["retain", "discard"]},
}
_TWILIO_SECURITY: list[dict[str, list[str]]] = [{TWILIO_BASIC: []}]
_STRING = {"type": "string"}
_NULLABLE = NULLABLE_STRING
_DATE = {"type": ["string", "null"], "description": "RFC 2822, e.g. Wed, 18 Aug 2010 20:01:40 "
                                                    "+0000"}
_MESSAGE: dict[str, Any] = {
    "type": "object", "title": "Message", "required": [
        "account_sid", "api_version", "body", "date_created", "date_sent", "date_updated",
        "direction", "error_code", "error_message", "from", "messaging_service_sid",
        "num_media", "num_segments", "price", "price_unit", "sid", "status",
        "subresource_uris", "to", "uri"],
    "properties": {
        "account_sid": _STRING, "api_version": {"type": "string", "enum": ["2010-04-01"]},
        "body": {"type": "string", "description": "empty once redacted"},
        "date_created": _DATE, "date_sent": _DATE, "date_updated": _DATE,
        "direction": {"type": "string", "enum": ["outbound-api"]},
        "error_code": {"type": ["integer", "null"]}, "error_message": _NULLABLE,
        "from": _STRING, "messaging_service_sid": {"type": "null"},
        "num_media": {"type": "string", "enum": ["0"]},
        "num_segments": {"type": "string", "pattern": "^[0-9]+$"},
        "price": {**_NULLABLE, "description": "null without a price list"},
        "price_unit": {**_NULLABLE, "description": "ISO 4217, e.g. EUR"},
        "sid": {"type": "string", "pattern": "^SM[0-9a-f]{32}$"},
        "status": {"type": "string", "enum": [s.value for s in TwilioStatus]},
        "subresource_uris": {"type": "object", "properties": {"media": _STRING}},
        "to": _STRING, "uri": _STRING}}
_SID_EXAMPLE = "SM0b6f2a523c1e4f6a9d2b7e5c4a3b2d10"
_ACCOUNT_EXAMPLE = "AC00000000000000000000000000000000"
_URI_EXAMPLE = f"{PREFIX}/Accounts/{_ACCOUNT_EXAMPLE}/Messages/{_SID_EXAMPLE}.json"
_MESSAGE_EXAMPLE: dict[str, Any] = {
    "account_sid": _ACCOUNT_EXAMPLE, "api_version": "2010-04-01",
    "body": "Your code is 1234", "date_created": "Fri, 02 Jan 2026 03:04:05 +0000",
    "date_sent": None, "date_updated": "Fri, 02 Jan 2026 03:04:05 +0000",
    "direction": "outbound-api", "error_code": None, "error_message": None,
    "from": "+15017122661", "messaging_service_sid": None, "num_media": "0",
    "num_segments": "1", "price": None, "price_unit": None, "sid": _SID_EXAMPLE,
    "status": "queued", "subresource_uris": {"media": _URI_EXAMPLE.removesuffix(".json")
                                                      + "/Media.json"},
    "to": "+37255512345", "uri": _URI_EXAMPLE}
_PAGE_FIELDS: dict[str, Any] = {
    "end": {"type": "integer"}, "first_page_uri": _STRING, "next_page_uri": _NULLABLE,
    "page": {"type": "integer"}, "page_size": {"type": "integer"},
    "previous_page_uri": _NULLABLE, "start": {"type": "integer"}, "uri": _STRING}


def _ok(description: str, schema: dict[str, Any], example: Any, status: str = "200"
        ) -> dict[str, Any]:
    return {status: openapi.answer(description, schema, example)}


_CREATE_DOC: dict[str, Any] = {
    "security": _TWILIO_SECURITY,
    "requestBody": {"required": True, "content": {FORM: {
        "schema": {"type": "object", "required": ["To", "From", "Body"],
                   "properties": _CREATE_FIELDS},
        "example": {"To": "+37255512345", "From": "+15017122661",
                    "Body": "Your code is 1234"}}}},
    "responses": {**_ok("Queued (or scheduled, with SendAt)", _MESSAGE, _MESSAGE_EXAMPLE,
                        "201"),
                  **twilio_errors(400, 401, 404, 429, 503)},
}
_KEY_REUSED = TwilioError(20001, f"This {HEADER} was already used with different parameters; "
                                 "use a new key for a new message", 422)
_CREATE_DOC.setdefault("parameters", []).append(OPENAPI_PARAMETER)  # api/idempotency.py
_CREATE_DOC["responses"]["422"] = documented(f"The {HEADER} was used with other parameters; nothing "
                                         "was sent", TWILIO_ERROR, _KEY_REUSED.body())
_LIST_DOC: dict[str, Any] = {
    "security": _TWILIO_SECURITY,
    "responses": {**_ok("A page of messages, newest first", {
        "type": "object", "required": ["messages", *_PAGE_FIELDS],
        "properties": {"messages": {"type": "array", "items": _MESSAGE}, **_PAGE_FIELDS}},
        {"end": 0, "first_page_uri": f"{PREFIX}/Accounts/{_ACCOUNT_EXAMPLE}/Messages.json"
                                     "?PageSize=50&Page=0",
         "messages": [_MESSAGE_EXAMPLE], "next_page_uri": None, "page": 0, "page_size": 50,
         "previous_page_uri": None, "start": 0,
         "uri": f"{PREFIX}/Accounts/{_ACCOUNT_EXAMPLE}/Messages.json?PageSize=50&Page=0"}),
        **twilio_errors(400, 401, 404, 503, invalid=invalid_parameter(
            "PageSize must be an integer from 1 to 1000"))},
    "parameters": [
    query_parameter(name, schema) for name, schema in (
        ("To", {"type": "string"}), ("From", {"type": "string"}),
        ("DateSent", {"type": "string", "format": "date",
                      "description": "YYYY-MM-DD (or a date-time: its day), 1970 to 2999"}),
        ("DateSent<", {"type": "string", "format": "date-time",
                       "description": "sent on or before (or a YYYY-MM-DD)"}),
        ("DateSent>", {"type": "string", "format": "date-time",
                       "description": "sent on or after (or a YYYY-MM-DD)"}),
        ("PageSize", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 50}),
        ("Page", {"type": "integer", "minimum": 0, "maximum": MAX_PAGE}),
        ("PageToken", {"type": "string"}))]}
_UPDATE_DOC: dict[str, Any] = {
    "security": _TWILIO_SECURITY,
    "requestBody": {"content": {FORM: {"schema": {
        "type": "object", "properties": {
            "Status": {"type": "string", "enum": ["canceled"]},
            "Body": {"type": "string", "description": "only \"\", which redacts the body"}}},
        "example": {"Status": "canceled"}}}},
    "responses": {**_ok("The message as it is now", _MESSAGE,
                        {**_MESSAGE_EXAMPLE, "status": "canceled"}),
                  **twilio_errors(400, 401, 404, 503, invalid=twilio_error(30409))},
}
_FETCH_DOC: dict[str, Any] = {
    "security": _TWILIO_SECURITY,
    "responses": {**_ok("The message", _MESSAGE, _MESSAGE_EXAMPLE),
                  **twilio_errors(401, 404, 503)},
}
_DELETE_DOC: dict[str, Any] = {
    "security": _TWILIO_SECURITY,
    "responses": {"204": {"description": "Deleted"},
                  **twilio_errors(400, 401, 404, 503, invalid=twilio_error(20009))},
}
_MEDIA_DOC: dict[str, Any] = {
    "security": _TWILIO_SECURITY,
    "responses": {**_ok("No media: omnirelay sends SMS", {
        "type": "object", "required": ["media_list", *_PAGE_FIELDS],
        "properties": {"media_list": {"type": "array", "maxItems": 0}, **_PAGE_FIELDS}},
        {"end": 0, "first_page_uri": _URI_EXAMPLE.removesuffix(".json")
         + "/Media.json?PageSize=50&Page=0", "media_list": [], "next_page_uri": None,
         "page": 0, "page_size": 50, "previous_page_uri": None, "start": 0,
         "uri": _URI_EXAMPLE.removesuffix(".json") + "/Media.json?PageSize=50&Page=0"}),
        **twilio_errors(401, 404, 503)},
}


def install(app: FastAPI, runtime: Runtime, *, window: ScheduleWindow | None = None) -> None:
    """Serve the Twilio surface on `app`, with Twilio-format errors under /2010-04-01."""
    register(runtime)
    app.router.routes.extend(build_routes(window or ScheduleWindow()))
    app.state.error_formatters.append((PREFIX, twilio_formatter))


def register(runtime: Runtime) -> None:
    """The status callbacks. Every process that records statuses needs this, including
    `omnirelay worker` processes, which build no app."""
    runtime.report_builders[SURFACE] = status_callbacks
    runtime.signers[KIND] = sign_status_callback


def error_response(error: TwilioError) -> Response:
    headers = {"WWW-Authenticate": 'Basic realm="Twilio API"'} if error.status == 401 else None
    return Response(orjson.dumps(error.body()), status_code=error.status,
                    media_type="application/json", headers=headers)


def twilio_formatter(request: Request, status: int, detail: str) -> Response:
    return error_response(for_http_status(status, request.url.path, detail))


def key_reused() -> Response:
    return error_response(_KEY_REUSED)


def json_response(status: int, body: Any) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


Handler = Callable[[], Awaitable[Response]]


async def answer(handler: Handler) -> Response:
    try:
        return await handler()
    except TwilioError as error:
        return error_response(error)


def path_ids(request: Request) -> tuple[str, str]:
    """The AccountSid and the message SID in a …/Messages/{Sid} path."""
    params = request.path_params
    return params["account_sid"], params["sid"]


@dataclass(frozen=True, slots=True)
class Context:
    runtime: Runtime
    account: Account


async def authorize(request: Request, account_sid: str) -> Context:
    runtime: Runtime = request.app.state.runtime
    header = request.headers.get("authorization")
    account = await authenticate_twilio(runtime.accounts, header)
    if account is None:
        raise authentication_error(basic_credentials(header) is not None)
    request.scope[ACCOUNT_KEY] = account.name  # for the access log
    if account.twilio_account_sid != account_sid:
        # Another account's resources do not exist for this one.
        raise not_found(request.url.path)
    return Context(runtime, account)


async def read_form(request: Request, limit: int) -> Form:
    """The form fields. Twilio ignores a body of any other type (a JSON body makes To look
    missing, 21604), and so do we."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    try:
        body = await read_body(request, limit)
    except BodyError as exc:
        raise invalid_parameter(exc.detail) from None
    if content_type != FORM:
        return {}
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise invalid_parameter("the form is not valid UTF-8") from None
    form: dict[str, list[str]] = {}
    try:
        # strict: a percent-encoded byte sequence that is not UTF-8 is refused, not replaced
        # with U+FFFD, so what is sent is what the client wrote.
        pairs = parse_qsl(text, keep_blank_values=True, errors="strict")
    except UnicodeDecodeError:
        raise invalid_parameter("the form has a percent-encoded value that is not valid "
                                "UTF-8") from None
    for name, value in pairs:
        form.setdefault(name, []).append(value)
    return form


async def load(ctx: Context, request: Request, sid: str) -> OmnimessageView:
    found = omnimessage_id(sid)
    view = None if found is None else await ctx.runtime.store.omnimessage(ctx.account.id, found)
    if view is None or view.surface != SURFACE or not view.attempts:
        raise not_found(request.url.path)
    return view


def accepted_view(message: NewOmnimessage, now: datetime) -> OmnimessageView:
    """The resource of a message just accepted, without reading it back."""
    attempt = message.attempts[0]
    return OmnimessageView(
        id=message.id, account_id=message.account_id, surface=message.surface, to=message.to,
        state="accepted", priority=message.priority, time_to_send=message.time_to_send,
        dlr_url=None, text_store=message.text_store, extra=message.extra, created_at=now,
        updated_at=now, attempts=(AttemptView(
            message_id=attempt.message_id, seq=0, channel=attempt.channel, sender=attempt.sender,
            to=message.to, content=attempt.content, state="due", status=None, err=None,
            error=None, parts_count=None, sent_at=None, updated_at=now),),
    )


def build_routes(window: ScheduleWindow) -> list[LeanRoute]:
    routes = Routes(tags=["Twilio Messages"])

    @routes.operation("POST", MESSAGES, status_code=201, summary="Send a message (Twilio)",
                      openapi_extra=_CREATE_DOC)
    async def create_message(request: Request) -> Response:
        account_sid: str = request.path_params["account_sid"]

        async def handle() -> Response:
            ctx = await authorize(request, account_sid)
            key, bad_key = read_key(request)
            if bad_key is not None:
                raise invalid_parameter(bad_key)
            form = await read_form(request, ctx.runtime.settings.max_body_bytes)

            async def build() -> Created | Response:
                now = utcnow()
                message = twilio_omnimessage(ctx.account, parse_create(form, now=now, window=window))
                if (wait := await ctx.runtime.limits.admit(ctx.account, 1)) is not None:
                    return twilio_rate_limited(wait)
                return Created([message], 201, orjson.dumps(message_resource(
                    accepted_view(message, now), ctx.account.twilio_account_sid, now)))

            return await idempotent(ctx.runtime, ctx.account.id, key,
                                    lambda: form_fingerprint(TWILIO_CREATE, form), build,
                                    key_reused)

        return await answer(handle)

    @routes.operation("GET", MESSAGES, summary="List messages, newest first (Twilio)",
                      openapi_extra=_LIST_DOC)
    async def list_messages(request: Request) -> Response:
        account_sid: str = request.path_params["account_sid"]

        async def handle() -> Response:
            ctx = await authorize(request, account_sid)
            now = utcnow()
            query = parse_list_query(request.query_params.multi_items(), now)
            views = await ctx.runtime.store.list_omnimessages(
                ctx.account.id, surface=SURFACE, to=query.to, sender=query.from_,
                sent_after=query.sent_after, sent_before=query.sent_before,
                offset=query.offset, limit=query.page_size + 1)
            records = [message_resource(v, account_sid, now)
                       for v in views[:query.page_size] if v.attempts]
            return json_response(200, page_body(messages_uri(account_sid), query, records,
                                                has_more=len(views) > query.page_size))

        return await answer(handle)

    @routes.operation("GET", MESSAGE, summary="Fetch a message (Twilio)",
                      openapi_extra=_FETCH_DOC)
    async def fetch_message(request: Request) -> Response:
        account_sid, sid = path_ids(request)

        async def handle() -> Response:
            ctx = await authorize(request, account_sid)
            view = await load(ctx, request, sid)
            return json_response(200, message_resource(view, account_sid, utcnow()))

        return await answer(handle)

    @routes.operation("POST", MESSAGE, summary="Cancel a scheduled message (Status=canceled) or "
                                               "redact its body (Body=\"\") (Twilio)",
                      openapi_extra=_UPDATE_DOC)
    async def update_message(request: Request) -> Response:
        account_sid, sid = path_ids(request)

        async def handle() -> Response:
            ctx = await authorize(request, account_sid)
            view = await load(ctx, request, sid)
            form = await read_form(request, ctx.runtime.settings.max_body_bytes)
            status = first(form, "Status")
            body = form.get("Body")
            if status is not None and status != TwilioStatus.CANCELED:
                raise invalid_parameter(f"Status can only be set to canceled, not {status!r}")
            if body is not None and body[0] != "":
                raise invalid_parameter("Body can only be set to an empty string, which redacts "
                                        "the message")
            if status is not None:
                await cancel(ctx, view)
            if body is not None:
                await redact(ctx, request, sid)
            if status is not None or body is not None:
                view = await load(ctx, request, sid)
            return json_response(200, message_resource(view, account_sid, utcnow()))

        return await answer(handle)

    @routes.operation("DELETE", MESSAGE, status_code=204,
                      summary="Delete a finished message (Twilio)", openapi_extra=_DELETE_DOC)
    async def delete_message(request: Request) -> Response:
        account_sid, sid = path_ids(request)

        async def handle() -> Response:
            ctx = await authorize(request, account_sid)
            view = await load(ctx, request, sid)
            if not await ctx.runtime.store.delete_omnimessage(ctx.account.id, view.id):
                raise twilio_error(20009)  # queued, scheduled or awaiting its receipt
            return Response(status_code=204)

        return await answer(handle)

    @routes.operation("GET", MEDIA,
                      summary="A message's media: always none, omnirelay sends SMS (Twilio)",
                      openapi_extra=_MEDIA_DOC)
    async def list_media(request: Request) -> Response:
        account_sid, sid = path_ids(request)

        async def handle() -> Response:
            ctx = await authorize(request, account_sid)
            await load(ctx, request, sid)
            uri = request.url.path + "?PageSize=50&Page=0"
            return json_response(200, {
                "end": 0, "first_page_uri": uri, "media_list": [], "next_page_uri": None,
                "page": 0, "page_size": 50, "previous_page_uri": None, "start": 0, "uri": uri})

        return await answer(handle)

    return routes.mount()


async def cancel(ctx: Context, view: OmnimessageView) -> None:
    attempt = view.attempts[0]
    now = utcnow()
    shown = message_status(attempt.state, attempt.status, attempt.err,
                           was_sent=attempt.sent_at is not None, send_at=view.time_to_send,
                           now=now)
    # Only a scheduled message can be canceled, as on Twilio; runtime.cancel settles the race
    # with a dispatcher claiming it at SendAt.
    if shown.status != TwilioStatus.SCHEDULED or not await ctx.runtime.cancel(ctx.account.id,
                                                                              view.id):
        raise twilio_error(30409)


async def redact(ctx: Context, request: Request, sid: str) -> None:
    view = await load(ctx, request, sid)  # after a cancel in the same request
    if view.attempts[0].state in UNSENT_STATES:
        raise TwilioError(20009, "Cannot redact the body of a message before it is sent; "
                                 "cancel it first if it is scheduled", 400)
    await ctx.runtime.store.forget_content(ctx.account.id, view.id, utcnow())


__all__ = ["install", "register", "twilio_formatter"]
