"""The operator API, /admin/v1: accounts over HTTP (what `omnirelay account` does), every
account's history and outbox, inbound no account owns, and the upstream connectors.

Off unless `[admin] token` is set; then every request carries `Authorization: Bearer <token>`,
compared in constant time and never logged. Account credentials open nothing here. Errors are
in Messente's format, as on omnirelay's other own endpoints.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from omnirelay import account_admin as ops
from omnirelay.api import history
from omnirelay.api.auth import console_operator
from omnirelay.api.errors import error_response
from omnirelay.api.messente import json_response, runtime_of
from omnirelay.api.openapi import (
    OPERATOR_BEARER,
    OPERATOR_REFUSED,
    answer,
    json_content,
    messente_errors,
)
from omnirelay.api.requests import BodyError, read_json
from omnirelay.api.routing import LeanRoute, Routes
from omnirelay.core import validation as v
from omnirelay.core.secrets import same_secret
from omnirelay.core.validation import RequestError
from omnirelay.logs import ACCOUNT_KEY, OPERATOR

PREFIX = "/admin/v1"
OWNERLESS = "none"  # ?account=none: inbound that no account owns
_KINDS = {"not_found": "101", "conflict": "105", "invalid": "105"}
_STATUS = {"not_found": 404, "conflict": 409, "invalid": 400}


def refused() -> Response:
    return error_response("103", OPERATOR_REFUSED,
                          headers={"WWW-Authenticate": 'Bearer realm="omnirelay-admin"'})


def is_operator(request: Request) -> bool:
    token = runtime_of(request).settings.admin.token
    header = request.headers.get("authorization", "")
    given = header[7:].strip() if header[:7].lower() == "bearer " else ""
    # Compared even when nothing was given, so a missing header costs what a wrong one does.
    if (same_secret(given, token) and bool(given)) or (not header and console_operator(request, token)):
        request.scope[ACCOUNT_KEY] = OPERATOR  # for the access log
        return True
    return False


async def operator_scope(request: Request, listing: bool) -> history.Scope | Response:
    if not is_operator(request):
        return refused()
    if not listing:
        return history.Scope(None, any_account=True)
    name = request.query_params.get("account")
    if name is None:
        return error_response("106", "account is required: an account name, or 'none' for "
                              "inbound that no account owns", "account")
    if name == OWNERLESS:
        return history.Scope(None)
    try:
        account = await ops.find_account(runtime_of(request), name)
    except ops.OperatorError as exc:
        return error_response("101", exc.message, "account")
    return history.Scope(account.id)


def _refusal(exc: BodyError | RequestError | ops.OperatorError) -> Response:
    """A request the operator can fix, answered in Messente's error format."""
    if isinstance(exc, BodyError):
        return error_response("105", exc.detail, exc.source)
    if isinstance(exc, RequestError):
        return error_response(exc.code, exc.detail, exc.source)
    return _failed(exc)


def _failed(exc: ops.OperatorError) -> Response:
    return error_response(_KINDS[exc.kind], exc.message, status=_STATUS[exc.kind])


def _account_fields(body: Any, *, creating: bool) -> dict[str, Any]:
    """The body's fields; their values are checked by account_admin, as for the CLI."""
    names = ("default_sender", "dlr_url", "inbound_url", "inbound_numbers",
             *(() if creating else ("max_rps", "max_send_rps")))
    data = v.fields(v.obj(body, ""), "", ("name", "password", *names) if creating else names)
    if creating:
        v.required(data, "name", "")
    return data


_NULLABLE_URL = {"type": ["string", "null"], "format": "uri"}
_RATES: dict[str, Any] = {  # per-account rate limits (omnirelay.ratelimits)
    "max_rps": {"type": ["integer", "null"], "minimum": 1,
                "description": "omnimessages accepted per second; null: unlimited"},
    "max_send_rps": {"type": ["integer", "null"], "minimum": 1,
                     "description": "attempts sent per second; null: unlimited"}}
_SUMMARY: dict[str, Any] = {
    "type": "object", "title": "Account",
    "required": ["name", "state", "api_username", "twilio_account_sid", "default_sender",
                 "dlr_url", "inbound_url", "inbound_numbers", "created"],
    "properties": {
        "name": {"type": "string"}, "state": {"type": "string", "enum": ["active", "disabled"]},
        "api_username": {"type": "string"}, "twilio_account_sid": {"type": "string"},
        "default_sender": {"type": "string"}, "dlr_url": _NULLABLE_URL,
        "inbound_url": _NULLABLE_URL,
        "inbound_numbers": {"type": "array", "items": {"type": "string"}},
        **_RATES,
        "created": {"type": "string", "format": "date-time"}}}
_SUMMARY_EXAMPLE: dict[str, Any] = {
    "name": "acme", "state": "active", "api_username": "u-3f9a1c2b7d",
    "twilio_account_sid": "AC00000000000000000000000000000000", "default_sender": "Acme",
    "dlr_url": None, "inbound_url": "https://acme.example/inbound",
    "inbound_numbers": ["+37251234567"], "max_rps": None, "max_send_rps": None,
    "created": "2026-01-02T03:04:05.678901Z"}
_CREDENTIALS: dict[str, Any] = {
    "type": "object", "title": "Credentials",
    "required": ["name", "api_username", "api_password", "twilio_account_sid",
                 "twilio_auth_token", "inbound_secret", "default_sender", "dlr_url",
                 "inbound_url"],
    "properties": {
        **{key: {"type": "string"} for key in (
            "name", "api_username", "api_password", "twilio_account_sid",
            "twilio_auth_token", "inbound_secret", "default_sender")},
        "dlr_url": _NULLABLE_URL, "inbound_url": _NULLABLE_URL}}
_CREDENTIALS_EXAMPLE: dict[str, Any] = {
    "name": "acme", "api_username": "u-3f9a1c2b7d", "api_password": "<shown once>",
    "twilio_account_sid": "AC00000000000000000000000000000000",
    "twilio_auth_token": "<shown once>", "inbound_secret": "<shown once>",
    "default_sender": "Acme", "dlr_url": None, "inbound_url": None}
_FIELDS: dict[str, Any] = {
    "default_sender": {"type": "string", "minLength": 1, "maxLength": 64},
    "dlr_url": {"type": "string", "format": "uri"},
    "inbound_url": {"type": "string", "format": "uri"},
    "inbound_numbers": {"type": "array", "maxItems": 100, "items": {
        "type": "string", "minLength": 1, "maxLength": 64,
        "description": "an E.164 number, a short code or a bot id"}}}


def _doc(responses: dict[str, Any], request: dict[str, Any] | None = None,
         example: Any = None, *, body_required: bool = True) -> dict[str, Any]:
    doc: dict[str, Any] = {"security": [{OPERATOR_BEARER: []}], "responses": responses}
    if request is not None:
        doc["requestBody"] = {"required": body_required,
                              "content": json_content(request, example)}
    return doc


def _errors(*statuses: int, invalid: tuple[str, str, str | None] | None = None) -> dict[str, Any]:
    return messente_errors(*statuses, invalid=invalid, operator=True,
                           missing="no account named 'acme'")


_NO_BODY: dict[str, Any] = {"type": "object", "description": "nothing needed; a body is ignored"}
_LIST_DOC = _doc({"200": answer("Every account, without secrets", {
    "type": "object", "required": ["accounts"],
    "properties": {"accounts": {"type": "array", "items": _SUMMARY}}},
    {"accounts": [_SUMMARY_EXAMPLE]}), **_errors(401, 503)})
_CREATE_DOC = _doc(
    {"201": answer("Created; the credentials are shown this once", _CREDENTIALS,
                   _CREDENTIALS_EXAMPLE), **_errors(400, 401, 409, 503, invalid=(
                       "106", "name is required", "name"))},
    {"type": "object", "required": ["name"], "additionalProperties": False,
     "properties": {"name": {"type": "string", "minLength": 1, "maxLength": 100},
                    "password": {"type": "string", "minLength": 12, "maxLength": 100,
                                 "description": "the API password; generated when omitted"},
                    **_FIELDS}},
    {"name": "acme", "default_sender": "Acme", "inbound_numbers": ["+37251234567"]})
_SHOW_DOC = _doc({"200": answer("The account, without secrets", _SUMMARY, _SUMMARY_EXAMPLE),
                  **_errors(401, 404, 503)})
_CHANGE_DOC = _doc(
    {"200": answer("The account as changed", _SUMMARY, _SUMMARY_EXAMPLE),
     **_errors(400, 401, 404, 503, invalid=("105", "dlr_url must be an http or https URL",
                                            "dlr_url"))},
    {"type": "object", "additionalProperties": False, "properties": {**_FIELDS, **{
        key: {"oneOf": [{"type": "integer", "minimum": 0, "maximum": 1_000_000},
                        {"type": "string", "enum": ["unlimited"]}],
              "description": "per second; 0 or \"unlimited\" clears"}
        for key in _RATES}}},
    {"inbound_url": "https://acme.example/inbound"})
_ROTATE_DOC = _doc(
    {"200": answer("The new credentials, shown this once", _CREDENTIALS, _CREDENTIALS_EXAMPLE),
     **_errors(400, 401, 404, 503, invalid=("105", "what must be one of all, api-password, "
                                                   "twilio-token, inbound-secret", "what"))},
    {"type": "object", "additionalProperties": False,
     "properties": {"what": {"type": "string", "enum": list(ops.ROTATION_CHOICES),
                             "default": "all"}}},
    {"what": "api-password"}, body_required=False)
_STATE_DOC = _doc({"200": answer("The account's new state", _SUMMARY, _SUMMARY_EXAMPLE),
                   **_errors(401, 404, 503)}, _NO_BODY, {}, body_required=False)
_DELETE_DOC = _doc({"204": {"description": "Deleted"}, **_errors(401, 404, 503)})
_CONNECTORS_DOC = _doc({"200": answer("The readiness report: database, loops, connectors", {
    "type": "object", "required": ["ready", "database", "tasks", "connectors"],
    "properties": {"ready": {"type": "boolean"}, "database": {"type": "object"},
                   "failing": {"type": "array", "items": {"type": "string"}},
                   "tasks": {"type": "object"}, "connectors": {"type": "object"}}},
    {"ready": True, "database": {"ok": True, "seconds": 0.002}, "failing": [],
     "tasks": {"dispatcher": {"state": "running", "restarts": 0}}, "connectors": {}}),
    **_errors(401)})


def build_routes() -> list[LeanRoute]:
    routes = Routes(tags=["Operator"])

    async def body_of(request: Request) -> Any:
        return await read_json(request, runtime_of(request).settings.max_body_bytes)

    @routes.operation("GET", "/accounts", summary="List accounts (no secrets)",
                      openapi_extra=_LIST_DOC)
    async def list_accounts(request: Request) -> Response:
        if not is_operator(request):
            return refused()
        return json_response(200, {"accounts": await ops.list_accounts(runtime_of(request))})

    @routes.operation("POST", "/accounts", status_code=201,
                      summary="Create an account; its credentials are shown this once",
                      openapi_extra=_CREATE_DOC)
    async def create(request: Request) -> Response:
        if not is_operator(request):
            return refused()
        runtime = runtime_of(request)
        try:
            fields = _account_fields(await body_of(request), creating=True)
            account = await ops.create_account(
                runtime, fields["name"], password=fields.get("password"),
                sender=fields.get("default_sender", "omnirelay"),
                dlr_url=fields.get("dlr_url"), inbound_url=fields.get("inbound_url"),
                inbound_numbers=fields.get("inbound_numbers", ()))
        except (BodyError, RequestError, ops.OperatorError) as exc:
            return _refusal(exc)
        return json_response(201, ops.credentials(account))

    @routes.operation("GET", "/accounts/{name}", summary="One account (no secrets)",
                      openapi_extra=_SHOW_DOC)
    async def show(request: Request) -> Response:
        if not is_operator(request):
            return refused()
        try:
            shown = await ops.show_account(runtime_of(request), request.path_params["name"])
        except ops.OperatorError as exc:
            return _failed(exc)
        return json_response(200, shown)

    @routes.operation("PATCH", "/accounts/{name}",
                      summary="Change an account's sender, URLs, inbound numbers or rate limits",
                      openapi_extra=_CHANGE_DOC)
    async def change(request: Request) -> Response:
        if not is_operator(request):
            return refused()
        runtime = runtime_of(request)
        name = request.path_params["name"]
        try:
            fields = _account_fields(await body_of(request), creating=False)
            await ops.change_account(runtime, name, ops.AccountChanges(**fields))
            shown = await ops.show_account(runtime, name)
        except (BodyError, RequestError, ops.OperatorError) as exc:
            return _refusal(exc)
        return json_response(200, shown)

    @routes.operation("POST", "/accounts/{name}/rotate",
                      summary="Replace secrets: {\"what\": \"all\" | \"api-password\" | "
                              "\"twilio-token\" | \"inbound-secret\"}",
                      openapi_extra=_ROTATE_DOC)
    async def rotate(request: Request) -> Response:
        if not is_operator(request):
            return refused()
        try:
            raw = await body_of(request) if request.headers.get("content-length", "0") != "0" \
                else {}
            data = v.fields(v.obj(raw, ""), "", ("what",))
            what = v.one_of(data.get("what", "all"), "what", ops.ROTATION_CHOICES)
            account = await ops.rotate_secrets(runtime_of(request), request.path_params["name"],
                                               what)
        except (BodyError, RequestError, ops.OperatorError) as exc:
            return _refusal(exc)
        return json_response(200, ops.credentials(account))

    for verb, enabled in (("disable", False), ("enable", True)):
        async def set_state(request: Request, enabled: bool = enabled) -> Response:
            if not is_operator(request):
                return refused()
            try:
                account = await ops.set_enabled(runtime_of(request),
                                                request.path_params["name"], enabled)
            except ops.OperatorError as exc:
                return _failed(exc)
            return json_response(200, ops.summary(account))

        routes.operation("POST", f"/accounts/{{name}}/{verb}",
                         summary=f"{verb.capitalize()} an account's credentials",
                         openapi_extra=_STATE_DOC)(set_state)

    @routes.operation("DELETE", "/accounts/{name}", status_code=204,
                      summary="Delete an account: its credentials stop working at once; its "
                              "messages are kept until [retention] purges them",
                      openapi_extra=_DELETE_DOC)
    async def delete(request: Request) -> Response:
        if not is_operator(request):
            return refused()
        try:
            await ops.delete_account(runtime_of(request), request.path_params["name"])
        except ops.OperatorError as exc:
            return _failed(exc)
        return Response(status_code=204)

    @routes.operation("GET", "/connectors", summary="Upstream connectors and the loops' health",
                      openapi_extra=_CONNECTORS_DOC)
    async def connectors(request: Request) -> Response:
        if not is_operator(request):
            return refused()
        return json_response(200, await runtime_of(request).readiness())

    return [*routes.mount(PREFIX),
            *history.build_routes(PREFIX, operator_scope, tags=["Operator"], take=("account",),
                                  operator=True)]
