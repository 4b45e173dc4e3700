"""Messente's WhatsApp Templates API: list, create, get, update and delete an account's templates.

Plain Starlette routes like the Omnimessage ones, under /v1 and at /, with the same credentials
and the Omnichannel error body. Where the templates live and which WABA ids an account may use is
omnirelay.whatsapp_templates' business.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response

from omnirelay.api.errors import error_response, unauthorized
from omnirelay.api.messente import account_of, json_response, runtime_of
from omnirelay.api.openapi import (
    MESSENTE_BASIC,
    MESSENTE_ERROR,
    answer,
    json_content,
    messente_error,
    messente_errors,
    query_parameter,
    secured,
)
from omnirelay.api.requests import BodyError, read_json
from omnirelay.api.routing import Endpoint, LeanRoute, Routes
from omnirelay.core import whatsapp_templates as wt
from omnirelay.core.validation import RequestError
from omnirelay.core.whatsapp_templates import TemplateError
from omnirelay.runtime import Runtime
from omnirelay.store.queries import Account
from omnirelay.whatsapp_templates import Backend, WhatsAppTemplates

Handler = Callable[[Request, Account, Backend, str], Awaitable[Response]]

_WABA = "102290129340398"
_TEMPLATE_ID = "1234567890123456"
_EXAMPLE_TEMPLATE = {"id": _TEMPLATE_ID, "name": "order_update", "language": "en",
                     "category": "utility", "status": "approved",
                     "components": [{"type": "body", "text": "Your order {{1}} has shipped",
                                     "example": {"body_text": [["A-1001"]]}}]}
_STRING: dict[str, Any] = {"type": "string"}
_BUTTON = {"type": "object", "required": ["type"], "properties": {
    "type": {"type": "string", "enum": list(wt.BUTTON_TYPES)},
    "otp_type": {"type": "string", "enum": list(wt.OTP_TYPES)},
    "autofill_text": _STRING, "text": {"type": "string", "maxLength": 25},
    "phone_number": {"type": "string", "maxLength": 20},
    "url": {"type": "string", "maxLength": 2000},
    "supported_apps": {"type": "array", "items": {
        "type": "object", "required": ["package_name", "signature_hash"], "properties": {
        "package_name": _STRING, "signature_hash": _STRING}}}}}
_COMPONENT = {"type": "object", "required": ["type"], "properties": {
    "type": {"type": "string", "enum": list(wt.COMPONENT_TYPES)},
    "format": {"type": "string", "enum": list(wt.HEADER_FORMATS)},
    "text": _STRING,
    "example": {"type": "object", "properties": {
        "header_text": {"type": "array", "items": _STRING},
        "body_text": {"type": "array", "items": {"type": "array", "items": _STRING}}}},
    "buttons": {"type": "array", "items": _BUTTON}}}
_CATEGORY: dict[str, Any] = {"type": "string", "enum": list(wt.CATEGORIES)}
_STATUS: dict[str, Any] = {"type": "string", "enum": list(wt.STATUSES)}
_TEMPLATE = {"type": "object", "title": "WhatsappTemplateResponse",
             "required": ["id", "name", "language", "category", "status", "components"],
             "properties": {"id": _STRING, "name": _STRING, "language": _STRING,
                            "category": _CATEGORY, "status": _STATUS,
                            "components": {"type": "array", "items": _COMPONENT}}}
_SUCCESS = {"type": "object", "title": "AnyJsonResponse",
            "properties": {"success": {"type": "boolean"}}}
_FORBIDDEN = answer("The WABA is not one this account may use", MESSENTE_ERROR,
                    messente_error("102", f"WABA {_WABA} is not one this account may use"))
_FAILED = answer("The WhatsApp Cloud API refused the gateway's token, or answered nonsense",
                 MESSENTE_ERROR, messente_error(
                     "104", "the gateway's WhatsApp access token was refused; the operator "
                            "must renew it"))


def _errors(*extra: int) -> dict[str, Any]:
    documented = messente_errors(400, 401, 404, *extra, missing=(
        f"template {_TEMPLATE_ID} not found in WABA {_WABA}"))
    documented["403"] = _FORBIDDEN
    documented["500"] = _FAILED
    documented.update(messente_errors(503))
    return documented


def _parameters(*names: str) -> list[dict[str, Any]]:
    described = {
        "limit": {"type": "integer", "minimum": 1, "maximum": wt.MAX_LIMIT,
                  "default": wt.DEFAULT_LIMIT},
        "before": _STRING, "after": _STRING, "category": _CATEGORY, "content": _STRING,
        "language": _STRING, "name": _STRING, "status": _STATUS, "hsmId": _STRING}
    return [query_parameter(n, described[n]) for n in names]


_LIST_DOC = secured(MESSENTE_BASIC, {
    "parameters": _parameters("limit", "before", "after", "category", "content", "language",
                              "name", "status"),
    "responses": {"200": answer("A page of the WABA's templates", {
        "type": "object", "title": "WhatsappListTemplatesResponse",
        "required": ["templates", "paging"],
        "properties": {"templates": {"type": "array", "items": _TEMPLATE},
                       "paging": {"type": "object", "required": ["cursors"], "properties": {
                           "cursors": {"type": "object", "properties": {
                               "before": _STRING, "after": _STRING}},
                           "next": _STRING, "previous": _STRING}}}},
        {"templates": [_EXAMPLE_TEMPLATE], "paging": {"cursors": {"before": "MA", "after": "MA"}}}),
        **_errors()}})
_CREATE_DOC = secured(MESSENTE_BASIC, {
    "requestBody": {"required": True, "content": json_content({
        "type": "object", "title": "WhatsappCreateTemplateRequest",
        "required": ["name", "category", "language", "components"],
        "properties": {"name": {"type": "string", "pattern": "^[a-z0-9_]{1,512}$"},
                       "category": _CATEGORY, "language": _STRING,
                       "components": {"type": "array", "minItems": 1, "items": _COMPONENT}}},
        {k: _EXAMPLE_TEMPLATE[k] for k in ("name", "category", "language", "components")})},
    "responses": {"200": answer("Created; pending review", {
        "type": "object", "title": "WhatsappCreateTemplateResponse",
        "required": ["id", "status", "category"],
        "properties": {"id": _STRING, "status": _STATUS, "category": _CATEGORY}},
        {"id": _TEMPLATE_ID, "status": "pending", "category": "utility"}), **_errors()}})
_GET_DOC = secured(MESSENTE_BASIC, {"responses": {
    "200": answer("The template", _TEMPLATE, _EXAMPLE_TEMPLATE), **_errors()}})
_UPDATE_DOC = secured(MESSENTE_BASIC, {
    "requestBody": {"required": True, "content": json_content({
        "type": "object", "title": "WhatsappUpdateTemplateRequest",
        "properties": {"category": _CATEGORY,
                       "components": {"type": "array", "minItems": 1, "items": _COMPONENT}}},
        {"components": _EXAMPLE_TEMPLATE["components"]})},
    "responses": {"200": answer("Updated; back in review", _SUCCESS, {"success": True}),
                  **_errors()}})
_DELETE_DOC = secured(MESSENTE_BASIC, {
    "parameters": [query_parameter("name", _STRING, required=True),
                   *_parameters("hsmId")],
    "responses": {"200": answer("Deleted: every language of the name, or only hsmId",
                                _SUCCESS, {"success": True}), **_errors()}})


def templates_of(request: Request) -> WhatsAppTemplates:
    service: WhatsAppTemplates = request.app.state.whatsapp_templates
    return service


def template_error(exc: TemplateError) -> Response:
    headers = ({"Retry-After": str(max(1, round(exc.retry_after)))}
               if exc.retry_after is not None else None)
    return error_response(exc.code, exc.detail, exc.source, headers=headers, status=exc.status)


def guarded(handler: Handler) -> Endpoint:
    """The handler behind the account's credentials and a valid WABA id; its refusals in the
    Omnichannel error shape."""
    async def endpoint(request: Request) -> Response:
        account = await account_of(request)
        if account is None:
            return unauthorized()
        try:
            waba_id = wt.identifier(request.path_params["waba_id"], "wabaId")
            return await handler(request, account, templates_of(request).backend, waba_id)
        except TemplateError as exc:
            return template_error(exc)
        except RequestError as exc:
            return error_response(exc.code, exc.detail, exc.source)
        except BodyError as exc:
            return error_response("105", exc.detail, exc.source)

    endpoint.__name__ = endpoint.__qualname__ = handler.__name__
    endpoint.__doc__ = handler.__doc__
    return endpoint


def template_in_path(request: Request) -> str:
    return wt.identifier(request.path_params["template_id"], "templateId")


async def body_of(request: Request) -> Any:
    return await read_json(request, runtime_of(request).settings.max_body_bytes)


def page_link(request: Request) -> Callable[[str, str], str]:
    def link(key: str, cursor: str) -> str:
        url = request.url.remove_query_params(["before", "after"])
        return str(url.include_query_params(**{key: cursor}))
    return link


def build_routes(prefix: str = "", *, include_in_schema: bool = True) -> list[LeanRoute]:
    routes = Routes(tags=["WhatsApp Templates"])
    collection = "/whatsapp/wabas/{waba_id}/templates"
    one = collection + "/{template_id}"

    def route(method: str, path: str, summary: str, doc: dict[str, Any]
              ) -> Callable[[Handler], Endpoint]:
        def register(handler: Handler) -> Endpoint:
            return routes.operation(method, path, summary=summary,
                                    openapi_extra=doc)(guarded(handler))
        return register

    @route("GET", collection, "The WABA's templates, a page at a time", _LIST_DOC)
    async def list_whatsapp_templates(request: Request, account: Account, backend: Backend,
                                      waba_id: str) -> Response:
        query = wt.parse_list_query(request.query_params)
        return json_response(200, await backend.listing(account, waba_id, query,
                                                     page_link(request)))

    @route("POST", collection, "Submit a template for review", _CREATE_DOC)
    async def create_whatsapp_template(request: Request, account: Account, backend: Backend,
                                       waba_id: str) -> Response:
        template = wt.parse_new_template(await body_of(request))
        return json_response(200, await backend.create(account, waba_id, template))

    @route("GET", one, "One template, with its review status", _GET_DOC)
    async def get_whatsapp_template_by_id(request: Request, account: Account,
                                          backend: Backend, waba_id: str) -> Response:
        return json_response(200, await backend.get(account, waba_id,
                                                    template_in_path(request)))

    @route("PUT", one, "Change a template's category or components", _UPDATE_DOC)
    async def update_whatsapp_template(request: Request, account: Account, backend: Backend,
                                       waba_id: str) -> Response:
        template_id = template_in_path(request)
        changes = wt.parse_changes(await body_of(request))
        return json_response(200, await backend.update(account, waba_id, template_id, changes))

    @route("DELETE", collection, "Delete a template by name (and id)", _DELETE_DOC)
    async def delete_whatsapp_template(request: Request, account: Account, backend: Backend,
                                       waba_id: str) -> Response:
        params = request.query_params
        name = params.get("name")
        if not name:
            raise TemplateError("106", "name is required", "name")
        if len(name) > wt.MAX_NAME or not name.isprintable():
            raise TemplateError("105", "name is not a template name", "name")
        hsm_id = params.get("hsmId") or None
        if hsm_id is not None:
            wt.identifier(hsm_id, "hsmId")
        return json_response(200, await backend.delete(account, waba_id, name, hsm_id))

    return routes.mount(prefix, include_in_schema=include_in_schema)


def install(app: FastAPI, runtime: Runtime) -> None:
    """The routes under /v1 and at /, and the service the send path checks templates with."""
    app.state.whatsapp_templates = WhatsAppTemplates(runtime.db, runtime.channels["whatsapp"])
    app.router.routes.extend(build_routes("/v1"))
    app.router.routes.extend(build_routes(include_in_schema=False))
