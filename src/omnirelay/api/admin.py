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
from omnirelay.api.errors import error_response
from omnirelay.api.messente import json_response, runtime_of
from omnirelay.api.requests import BodyError, read_json
from omnirelay.api.routing import LeanRoute, Routes
from omnirelay.core import validation as v
from omnirelay.core.omnimessage import parse_phone_number
from omnirelay.core.secrets import same_secret
from omnirelay.core.validation import RequestError

PREFIX = "/admin/v1"
OWNERLESS = "none"  # ?account=none: inbound that no account owns
_KINDS = {"not_found": "101", "conflict": "105", "invalid": "105"}
_STATUS = {"not_found": 404, "conflict": 409, "invalid": 400}


def refused() -> Response:
    return error_response("103", "a valid operator token is required (Authorization: Bearer)",
                          headers={"WWW-Authenticate": 'Bearer realm="omnirelay-admin"'})


def is_operator(request: Request) -> bool:
    token = runtime_of(request).settings.admin.token
    header = request.headers.get("authorization", "")
    given = header[7:].strip() if header[:7].lower() == "bearer " else ""
    # Compared even when nothing was given, so a missing header costs what a wrong one does.
    return same_secret(given, token) and bool(given)


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


def _failed(exc: ops.OperatorError) -> Response:
    return error_response(_KINDS[exc.kind], exc.message, status=_STATUS[exc.kind])


def _account_fields(body: Any, *, creating: bool) -> dict[str, Any]:
    names = ("default_sender", "dlr_url", "inbound_url", "inbound_numbers")
    data = v.fields(v.obj(body, ""), "", ("name", "password", *names) if creating else names)
    values: dict[str, Any] = {}
    if creating:
        values["name"] = v.string(v.required(data, "name", ""), "name", min_length=1,
                                  max_length=100)
        if "password" in data:
            values["password"] = v.string(data["password"], "password", min_length=12,
                                          max_length=100)
    if "default_sender" in data:
        values["default_sender"] = v.string(data["default_sender"], "default_sender",
                                            min_length=1, max_length=64)
    for key in ("dlr_url", "inbound_url"):
        if key in data:
            values[key] = v.url(data[key], key)
    if "inbound_numbers" in data:
        values["inbound_numbers"] = v.array(data["inbound_numbers"], "inbound_numbers",
                                            _inbound_number, max_items=100)
    return values


def _inbound_number(value: Any, path: str) -> str:
    """A phone number (stored as E.164) or a short code / bot id as given."""
    text = v.string(value, path, min_length=1, max_length=64)
    return parse_phone_number(text, path) if text.startswith("+") else text


def build_routes() -> list[LeanRoute]:
    routes = Routes(tags=["Operator"])

    async def body_of(request: Request) -> Any:
        return await read_json(request, runtime_of(request).settings.max_body_bytes)

    @routes.operation("GET", "/accounts", summary="List accounts (no secrets)")
    async def list_accounts(request: Request) -> Response:
        if not is_operator(request):
            return refused()
        return json_response(200, {"accounts": await ops.list_accounts(runtime_of(request))})

    @routes.operation("POST", "/accounts", status_code=201,
                      summary="Create an account; its credentials are shown this once")
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
        except BodyError as exc:
            return error_response("105", exc.detail, exc.source)
        except RequestError as exc:
            return error_response(exc.code, exc.detail, exc.source)
        except ops.OperatorError as exc:
            return _failed(exc)
        return json_response(201, ops.credentials(account))

    @routes.operation("GET", "/accounts/{name}", summary="One account (no secrets)")
    async def show(request: Request) -> Response:
        if not is_operator(request):
            return refused()
        try:
            shown = await ops.show_account(runtime_of(request), request.path_params["name"])
        except ops.OperatorError as exc:
            return _failed(exc)
        return json_response(200, shown)

    @routes.operation("PATCH", "/accounts/{name}",
                      summary="Change an account's sender, URLs or inbound numbers")
    async def change(request: Request) -> Response:
        if not is_operator(request):
            return refused()
        runtime = runtime_of(request)
        name = request.path_params["name"]
        try:
            fields = _account_fields(await body_of(request), creating=False)
            await ops.change_account(runtime, name, ops.AccountChanges(**fields))
            shown = await ops.show_account(runtime, name)
        except BodyError as exc:
            return error_response("105", exc.detail, exc.source)
        except RequestError as exc:
            return error_response(exc.code, exc.detail, exc.source)
        except ops.OperatorError as exc:
            return _failed(exc)
        return json_response(200, shown)

    @routes.operation("POST", "/accounts/{name}/rotate",
                      summary="Replace secrets: {\"what\": \"all\" | \"api-password\" | "
                              "\"twilio-token\" | \"inbound-secret\"}")
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
        except BodyError as exc:
            return error_response("105", exc.detail, exc.source)
        except RequestError as exc:
            return error_response(exc.code, exc.detail, exc.source)
        except ops.OperatorError as exc:
            return _failed(exc)
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
                         summary=f"{verb.capitalize()} an account's credentials")(set_state)

    @routes.operation("DELETE", "/accounts/{name}", status_code=204,
                      summary="Delete an account: its credentials stop working at once; its "
                              "messages are kept until [retention] purges them")
    async def delete(request: Request) -> Response:
        if not is_operator(request):
            return refused()
        try:
            await ops.delete_account(runtime_of(request), request.path_params["name"])
        except ops.OperatorError as exc:
            return _failed(exc)
        return Response(status_code=204)

    @routes.operation("GET", "/connectors", summary="Upstream connectors and the loops' health")
    async def connectors(request: Request) -> Response:
        if not is_operator(request):
            return refused()
        return json_response(200, await runtime_of(request).readiness())

    return [*routes.mount(PREFIX),
            *history.build_routes(PREFIX, operator_scope, tags=["Operator"], take=("account",))]
