"""Messente's Phonebook API: the blacklist, contacts and groups of the calling account.

Plain Starlette routes like the Omnimessage ones (api/routing.py), mounted under /v1 and at /,
with the same credentials. Errors use Phonebook's own body, `{"errors":[{"title","detail",
"code"}]}` with codes 201 to 205 and 244, not the Omnichannel one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response

from omnirelay.api.messente import account_of, json_response, runtime_of
from omnirelay.api.requests import BodyError, read_json
from omnirelay.api.routing import Endpoint, LeanRoute, Routes
from omnirelay.core import phonebook as pb
from omnirelay.core.timefmt import utcnow
from omnirelay.core.validation import RequestError
from omnirelay.store.phonebook import Contact, Group, Membership, Phonebook
from omnirelay.store.queries import Account

PREFIXES = ("/v1/phonebook", "/phonebook")

TITLES = {"201": "Invalid data", "202": "Unauthorized", "203": "Missing resource",
          "204": "Conflict", "244": "Client error", "205": "General error"}
STATUSES = {"201": 400, "202": 401, "203": 404, "204": 409, "244": 400, "205": 500}


def error(code: str, detail: str, status: int | None = None,
          headers: dict[str, str] | None = None) -> Response:
    body = {"errors": [{"title": TITLES[code], "detail": detail, "code": code}]}
    return Response(orjson.dumps(body), status_code=status or STATUSES[code],
                    media_type="application/json", headers=headers)


def formatter(_request: Request, status: int, detail: str) -> Response:
    """Errors raised outside the handlers (404, 405, 500, 503) in Phonebook's format."""
    code = {400: "201", 401: "202", 404: "203", 409: "204"}.get(status)
    if code is None:
        code = "205" if status >= 500 else "244"
    return error(code, detail, status)


def unauthorized() -> Response:
    return error("202", "Wrong username or password",
                 headers={"WWW-Authenticate": 'Basic realm="omnirelay"'})


def no_content() -> Response:
    return Response(status_code=204)


def contact_body(contact: Contact) -> dict[str, Any]:
    body: dict[str, Any] = {"phoneNumber": contact.phone}
    body.update({name: contact.details[column] for name, column in pb.CONTACT_FIELDS.items()})
    # Messente deletes contacts left outside every group for 30 days; omnirelay deletes none.
    body["scheduledDeletionDate"] = None
    return body


def group_body(group: Group) -> dict[str, Any]:
    return {"id": group.id, "name": group.name,
            "createdOn": group.created_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "contactsCount": group.contacts_count}


Handler = Callable[[Request, Account, Phonebook], Awaitable[Response]]


def guarded(handler: Handler) -> Endpoint:
    """The handler behind the account's credentials, its input errors answered as 400s."""
    async def endpoint(request: Request) -> Response:
        account = await account_of(request)
        if account is None:
            return unauthorized()
        try:
            return await handler(request, account, Phonebook(runtime_of(request).db))
        except (RequestError, BodyError) as exc:
            return error("201", exc.detail)

    endpoint.__name__ = endpoint.__qualname__ = handler.__name__
    endpoint.__doc__ = handler.__doc__
    return endpoint


async def body_of(request: Request) -> Any:
    return await read_json(request, runtime_of(request).settings.max_body_bytes)


def phone_in_path(request: Request) -> str:
    return pb.phone(request.path_params["phone"], "phone")


def group_in_path(request: Request) -> str | None:
    group_id: str = request.path_params["group_id"]
    return group_id if pb.is_group_id(group_id) else None


def _json_body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"requestBody": {"required": True,
                            "content": {"application/json": {"schema": schema}}}}


_PHONE = {"type": "string", "example": "+37251000000", "description": "E.164"}
_NULLABLE = {"type": ["string", "null"], "maxLength": pb.MAX_FIELD}
_CONTACT_DOC = _json_body({"type": "object", "required": ["phoneNumber"], "properties": {
    "phoneNumber": _PHONE, **dict.fromkeys(pb.CONTACT_FIELDS, _NULLABLE)}})
_UPDATE_DOC = _json_body({"type": "object", "minProperties": 1,
                          "properties": dict.fromkeys(pb.CONTACT_FIELDS, _NULLABLE)})
_NAME_DOC = _json_body({"type": "object", "required": ["name"], "properties": {
    "name": {"type": "string", "minLength": 1, "maxLength": pb.MAX_FIELD}}})
_BLACKLIST_DOC = _json_body({"type": "object", "required": ["phoneNumber"],
                             "properties": {"phoneNumber": _PHONE}})
_GROUP_IDS_DOC: dict[str, Any] = {"parameters": [{
    "name": "groupIds", "in": "query", "required": False, "style": "form", "explode": True,
    "description": "only contacts in any of these groups",
    "schema": {"type": "array", "items": {"type": "string", "format": "uuid"}}}]}


def build_routes(prefix: str = "", *, include_in_schema: bool = True) -> list[LeanRoute]:
    """Mounted under /v1, and again at / like the Omnimessage routes."""
    routes = Routes(tags=["Phonebook"])

    def route(method: str, path: str, summary: str, status_code: int = 200,
              doc: dict[str, Any] | None = None) -> Callable[[Handler], Endpoint]:
        def register(handler: Handler) -> Endpoint:
            return routes.operation(method, "/phonebook" + path, summary=summary,
                                    status_code=status_code, openapi_extra=doc)(guarded(handler))
        return register

    # blacklist -----------------------------------------------------------------------------

    @route("GET", "/blacklist", "Every blacklisted phone number")
    async def fetch_blacklist(_request: Request, account: Account, book: Phonebook) -> Response:
        return json_response(200, {"phoneNumbers": await book.blacklist(account.id)})

    @route("POST", "/blacklist", "Blacklist a phone number: nothing is sent to it again",
           204, _BLACKLIST_DOC)
    async def add_to_blacklist(request: Request, account: Account, book: Phonebook) -> Response:
        number = pb.number_to_blacklist(await body_of(request))
        if not await book.add_to_blacklist(account.id, number, utcnow()):
            return error("204", f"{number} is blacklisted already")
        return no_content()

    @route("GET", "/blacklist/{phone}", "204 if the number is blacklisted, else 404", 204)
    async def is_blacklisted(request: Request, account: Account, book: Phonebook) -> Response:
        number = phone_in_path(request)
        if not await book.is_blacklisted(account.id, number):
            return error("203", f"{number} is not blacklisted")
        return no_content()

    @route("DELETE", "/blacklist/{phone}", "Take a number off the blacklist", 204)
    async def delete_from_blacklist(request: Request, account: Account,
                                    book: Phonebook) -> Response:
        number = phone_in_path(request)
        if not await book.remove_from_blacklist(account.id, number):
            return error("203", f"{number} is not blacklisted")
        return no_content()

    # contacts ------------------------------------------------------------------------------

    @route("GET", "/contacts", "Every contact, or those in any of the groups given",
           doc=_GROUP_IDS_DOC)
    async def fetch_contacts(request: Request, account: Account, book: Phonebook) -> Response:
        groups = pb.group_ids(request.query_params.getlist("groupIds"))
        contacts = await book.contacts(account.id, groups)
        return json_response(200, {"contacts": [contact_body(c) for c in contacts]})

    @route("POST", "/contacts", "Create a contact", 201, _CONTACT_DOC)
    async def create_contact(request: Request, account: Account, book: Phonebook) -> Response:
        number, details = pb.new_contact(await body_of(request))
        contact = await book.create_contact(account.id, number, details, utcnow())
        if contact is None:
            return error("204", f"a contact with the number {number} exists already")
        return json_response(201, {"contact": contact_body(contact)})

    @route("GET", "/contacts/{phone}", "One contact")
    async def fetch_contact(request: Request, account: Account, book: Phonebook) -> Response:
        number = phone_in_path(request)
        contact = await book.contact(account.id, number)
        if contact is None:
            return error("203", f"no contact with the number {number}")
        return json_response(200, {"contact": contact_body(contact)})

    @route("PATCH", "/contacts/{phone}", "Change some of a contact's fields; null clears one",
           doc=_UPDATE_DOC)
    async def update_contact(request: Request, account: Account, book: Phonebook) -> Response:
        number = phone_in_path(request)
        changes = pb.contact_changes(await body_of(request))
        contact = await book.update_contact(account.id, number, changes, utcnow())
        if contact is None:
            return error("203", f"no contact with the number {number}")
        return json_response(200, {"contact": contact_body(contact)})

    @route("DELETE", "/contacts/{phone}", "Delete a contact (and its group memberships)", 204)
    async def delete_contact(request: Request, account: Account, book: Phonebook) -> Response:
        number = phone_in_path(request)
        if not await book.delete_contact(account.id, number):
            return error("203", f"no contact with the number {number}")
        return no_content()

    @route("GET", "/contacts/{phone}/groups", "The groups a contact is in")
    async def fetch_contact_groups(request: Request, account: Account,
                                   book: Phonebook) -> Response:
        number = phone_in_path(request)
        groups = await book.contact_groups(account.id, number)
        if groups is None:
            return error("203", f"no contact with the number {number}")
        return json_response(200, {"groups": [group_body(g) for g in groups]})

    # groups --------------------------------------------------------------------------------

    @route("GET", "/groups", "Every group")
    async def fetch_groups(_request: Request, account: Account, book: Phonebook) -> Response:
        return json_response(200, {"groups": [group_body(g) for g in
                                              await book.groups(account.id)]})

    @route("POST", "/groups", "Create a group", 201, _NAME_DOC)
    async def create_group(request: Request, account: Account, book: Phonebook) -> Response:
        name = pb.group_name(await body_of(request))
        return json_response(201, {"group": group_body(
            await book.create_group(account.id, name, utcnow()))})

    @route("GET", "/groups/{group_id}", "One group")
    async def fetch_group(request: Request, account: Account, book: Phonebook) -> Response:
        group_id = group_in_path(request)
        group = await book.group(account.id, group_id) if group_id else None
        if group is None:
            return error("203", "no such group")
        return json_response(200, {"group": group_body(group)})

    @route("PUT", "/groups/{group_id}", "Rename a group", doc=_NAME_DOC)
    async def update_group(request: Request, account: Account, book: Phonebook) -> Response:
        group_id = group_in_path(request)
        name = pb.group_name(await body_of(request))
        group = await book.rename_group(account.id, group_id, name) if group_id else None
        if group is None:
            return error("203", "no such group")
        return json_response(200, {"group": group_body(group)})

    @route("DELETE", "/groups/{group_id}", "Delete a group; its contacts stay", 204)
    async def delete_group(request: Request, account: Account, book: Phonebook) -> Response:
        group_id = group_in_path(request)
        if not group_id or not await book.delete_group(account.id, group_id):
            return error("203", "no such group")
        return no_content()

    @route("POST", "/groups/{group_id}/contacts/{phone}", "Add a contact to a group", 201)
    async def add_contact_to_group(request: Request, account: Account,
                                   book: Phonebook) -> Response:
        number = phone_in_path(request)
        group_id = group_in_path(request)
        added = (await book.add_member(account.id, group_id, number, utcnow())
                 if group_id else Membership.MISSING)
        if added is Membership.MISSING:
            return error("203", f"no such group, or no contact with the number {number}")
        if added is Membership.ALREADY:
            return error("204", f"{number} is in the group already")
        return json_response(201, {})

    @route("DELETE", "/groups/{group_id}/contacts/{phone}", "Remove a contact from a group",
           204)
    async def remove_contact_from_group(request: Request, account: Account,
                                        book: Phonebook) -> Response:
        number = phone_in_path(request)
        group_id = group_in_path(request)
        if not group_id or not await book.remove_member(account.id, group_id, number):
            return error("203", f"no such group, or {number} is not in it")
        return no_content()

    return routes.mount(prefix, include_in_schema=include_in_schema)


def install(app: FastAPI) -> None:
    """Serve the Phonebook under /v1 and at /, with its own error format there."""
    app.router.routes.extend(build_routes("/v1"))
    app.router.routes.extend(build_routes(include_in_schema=False))
    app.state.error_formatters.extend((prefix, formatter) for prefix in PREFIXES)
