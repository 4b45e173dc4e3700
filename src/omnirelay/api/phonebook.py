"""Messente's Phonebook API: the blacklist, contacts and groups of the calling account.

Plain Starlette routes like the Omnimessage ones (api/routing.py), mounted under /v1 and at /,
with the same credentials. Errors use Phonebook's own body, `{"errors":[{"title","detail",
"code"}]}` with codes 201 to 205 and 244, not the Omnichannel one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import orjson
from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response

from omnirelay.api.messente import account_of, json_response, runtime_of
from omnirelay.api.openapi import (
    MESSENTE_BASIC,
    RETRY_AFTER,
    UNAVAILABLE,
    answer,
    error_list,
    json_content,
    secured,
)
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


def error_body(code: str, detail: str) -> dict[str, Any]:
    return {"errors": [{"title": TITLES[code], "detail": detail, "code": code}]}


def error(code: str, detail: str, status: int | None = None,
          headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(error_body(code, detail)), status_code=status or STATUSES[code],
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


# What /docs says. The examples are built by the functions that build the real answers.

_PHONE = {"type": "string", "description": "E.164; spaces and dashes are accepted and dropped"}
_NULLABLE = {"type": ["string", "null"], "maxLength": pb.MAX_FIELD}
_EXAMPLE_PHONE = "+37251000000"
PHONEBOOK_ERROR = error_list("ErrorPhonebook", TITLES)
_CONTACT: dict[str, Any] = {
    "type": "object", "title": "ContactResponseFields",
    "required": ["phoneNumber", *pb.CONTACT_FIELDS, "scheduledDeletionDate"],
    "properties": {"phoneNumber": _PHONE, **dict.fromkeys(pb.CONTACT_FIELDS, _NULLABLE),
                   "scheduledDeletionDate": {"type": "null",
                                             "description": "always null: omnirelay deletes "
                                                            "no contact by itself"}}}
_CONTACT_EXAMPLE = contact_body(Contact(_EXAMPLE_PHONE, {
    **dict.fromkeys(pb.CONTACT_FIELDS.values()), "first_name": "Ada", "last_name": "Lovelace",
    "email": "ada@example.com"}))
_GROUP: dict[str, Any] = {
    "type": "object", "title": "GroupResponseFields",
    "required": ["id", "name", "createdOn", "contactsCount"],
    "properties": {"id": {"type": "string", "format": "uuid"}, "name": {"type": "string"},
                   "createdOn": {"type": "string", "description": "UTC, microseconds"},
                   "contactsCount": {"type": "integer", "minimum": 0}}}
_GROUP_EXAMPLE = group_body(Group("5792a02a-e5c2-422b-a0a0-0ae65d814663", "Customers",
                                  datetime(2026, 1, 2, 3, 4, 5, 678901), 1))


def _envelope(title: str, name: str, item: dict[str, Any], many: bool = False
              ) -> dict[str, Any]:
    field = {"type": "array", "items": item} if many else item
    return {"type": "object", "title": title, "required": [name], "properties": {name: field}}


def _errors(*statuses: int, missing: str = f"no contact with the number {_EXAMPLE_PHONE}",
            conflict: str = f"{_EXAMPLE_PHONE} is blacklisted already",
            invalid: str = "phone is not a valid phone number") -> dict[str, Any]:
    described = {
        400: answer("Invalid data: `detail` says which", PHONEBOOK_ERROR,
                    error_body("201", invalid)),
        401: answer("Missing or wrong credentials", PHONEBOOK_ERROR,
                    error_body("202", "Wrong username or password"),
                    {"WWW-Authenticate": {"schema": {"type": "string"}}}),
        404: answer("Not found in this account's phonebook", PHONEBOOK_ERROR,
                    error_body("203", missing)),
        409: answer("Exists already", PHONEBOOK_ERROR, error_body("204", conflict)),
    }
    documented = {str(status): described[status] for status in statuses}
    documented["default"] = answer("Any other failure; 503 with Retry-After while the database "
                                   "is unavailable", PHONEBOOK_ERROR,
                                   error_body("205", UNAVAILABLE), RETRY_AFTER)
    return documented


def _doc(ok: dict[str, Any], *errors: int, body: tuple[dict[str, Any], Any] | None = None,
         extra: dict[str, Any] | None = None, **details: str) -> dict[str, Any]:
    doc: dict[str, Any] = {"responses": {**ok, **_errors(*errors, **details)}, **(extra or {})}
    if body is not None:
        doc["requestBody"] = {"required": True, "content": json_content(*body)}
    return secured(MESSENTE_BASIC, doc)


def _ok(status: int, description: str, schema: dict[str, Any] | None = None,
        example: Any = None) -> dict[str, Any]:
    if schema is None:
        return {str(status): {"description": description}}
    return {str(status): answer(description, schema, example)}


_CONTACT_FIELDS: dict[str, Any] = {
    "type": "object", "title": "ContactFields", "required": ["phoneNumber"],
    "properties": {"phoneNumber": _PHONE, **dict.fromkeys(pb.CONTACT_FIELDS, _NULLABLE)}}
_CONTACT_UPDATE: dict[str, Any] = {
    "type": "object", "title": "ContactUpdateFields", "minProperties": 1,
    "properties": dict.fromkeys(pb.CONTACT_FIELDS, _NULLABLE)}
_GROUP_NAME: dict[str, Any] = {
    "type": "object", "title": "GroupName", "required": ["name"],
    "properties": {"name": {"type": "string", "minLength": 1, "maxLength": pb.MAX_FIELD}}}
_TO_BLACKLIST: dict[str, Any] = {"type": "object", "title": "NumberToBlacklist",
                                 "required": ["phoneNumber"], "properties": {"phoneNumber": _PHONE}}
_CONTACT_ENVELOPE = _envelope("ContactEnvelope", "contact", _CONTACT)
_GROUP_ENVELOPE = _envelope("GroupEnvelope", "group", _GROUP)
_GROUPS = _ok(200, "The groups, oldest first",
              _envelope("GroupListEnvelope", "groups", _GROUP, many=True),
              {"groups": [_GROUP_EXAMPLE]})
_NO_GROUP = "no such group"
_GROUP_IDS: dict[str, Any] = {"parameters": [{
    "name": "groupIds", "in": "query", "required": False, "style": "form", "explode": True,
    "description": "only contacts in any of these groups",
    "schema": {"type": "array", "items": {"type": "string", "format": "uuid"}}}]}


def build_routes(prefix: str = "", *, include_in_schema: bool = True) -> list[LeanRoute]:
    """Mounted under /v1, and again at / like the Omnimessage routes."""
    routes = Routes()

    def route(method: str, path: str, summary: str, doc: dict[str, Any]
              ) -> Callable[[Handler], Endpoint]:
        # Tagged as Messente's spec tags them (memberships are the contacts'); the answer's
        # status is the first documented one.
        tag = "Contacts" if "contacts" in path else path.split("/")[1].capitalize()
        status = int(next(iter(doc["responses"])))

        def register(handler: Handler) -> Endpoint:
            return routes.operation(method, "/phonebook" + path, summary=summary, tags=[tag],
                                    status_code=status, openapi_extra=doc)(guarded(handler))
        return register

    # blacklist -----------------------------------------------------------------------------

    @route("GET", "/blacklist", "Every blacklisted phone number", _doc(_ok(
        200, "The blacklisted numbers", {"type": "object", "title": "FetchBlacklistSuccess",
                                         "required": ["phoneNumbers"], "properties": {
                                             "phoneNumbers": {"type": "array", "items": _PHONE}}},
        {"phoneNumbers": [_EXAMPLE_PHONE]}), 401))
    async def fetch_blacklist(_request: Request, account: Account, book: Phonebook) -> Response:
        return json_response(200, {"phoneNumbers": await book.blacklist(account.id)})

    @route("POST", "/blacklist", "Blacklist a phone number: nothing is sent to it again",
           _doc(_ok(204, "Blacklisted"), 400, 401, 409,
                body=(_TO_BLACKLIST, {"phoneNumber": _EXAMPLE_PHONE})))
    async def add_to_blacklist(request: Request, account: Account, book: Phonebook) -> Response:
        number = pb.number_to_blacklist(await body_of(request))
        if not await book.add_to_blacklist(account.id, number, utcnow()):
            return error("204", f"{number} is blacklisted already")
        return no_content()

    @route("GET", "/blacklist/{phone}", "204 if the number is blacklisted, else 404",
           _doc(_ok(204, "The number is blacklisted"), 400, 401, 404,
                missing=f"{_EXAMPLE_PHONE} is not blacklisted"))
    async def is_blacklisted(request: Request, account: Account, book: Phonebook) -> Response:
        number = phone_in_path(request)
        if not await book.is_blacklisted(account.id, number):
            return error("203", f"{number} is not blacklisted")
        return no_content()

    @route("DELETE", "/blacklist/{phone}", "Take a number off the blacklist",
           _doc(_ok(204, "Off the blacklist"), 400, 401, 404,
                missing=f"{_EXAMPLE_PHONE} is not blacklisted"))
    async def delete_from_blacklist(request: Request, account: Account,
                                    book: Phonebook) -> Response:
        number = phone_in_path(request)
        if not await book.remove_from_blacklist(account.id, number):
            return error("203", f"{number} is not blacklisted")
        return no_content()

    # contacts ------------------------------------------------------------------------------

    @route("GET", "/contacts", "Every contact, or those in any of the groups given",
           _doc(_ok(200, "The contacts", _envelope("ContactListEnvelope", "contacts", _CONTACT,
                                                   many=True), {"contacts": [_CONTACT_EXAMPLE]}),
                400, 401, invalid="groupIds[0] is not a group id", extra=_GROUP_IDS))
    async def fetch_contacts(request: Request, account: Account, book: Phonebook) -> Response:
        groups = pb.group_ids(request.query_params.getlist("groupIds"))
        contacts = await book.contacts(account.id, groups)
        return json_response(200, {"contacts": [contact_body(c) for c in contacts]})

    @route("POST", "/contacts", "Create a contact",
           _doc(_ok(201, "Created", _CONTACT_ENVELOPE, {"contact": _CONTACT_EXAMPLE}),
                400, 401, 409, conflict=f"a contact with the number {_EXAMPLE_PHONE} exists "
                "already", body=(_CONTACT_FIELDS, {"phoneNumber": _EXAMPLE_PHONE,
                                                   "firstName": "Ada"})))
    async def create_contact(request: Request, account: Account, book: Phonebook) -> Response:
        number, details = pb.new_contact(await body_of(request))
        contact = await book.create_contact(account.id, number, details, utcnow())
        if contact is None:
            return error("204", f"a contact with the number {number} exists already")
        return json_response(201, {"contact": contact_body(contact)})

    @route("GET", "/contacts/{phone}", "One contact",
           _doc(_ok(200, "The contact", _CONTACT_ENVELOPE, {"contact": _CONTACT_EXAMPLE}),
                400, 401, 404))
    async def fetch_contact(request: Request, account: Account, book: Phonebook) -> Response:
        number = phone_in_path(request)
        contact = await book.contact(account.id, number)
        if contact is None:
            return error("203", f"no contact with the number {number}")
        return json_response(200, {"contact": contact_body(contact)})

    @route("PATCH", "/contacts/{phone}", "Change some of a contact's fields; null clears one",
           _doc(_ok(200, "The contact as it is now", _CONTACT_ENVELOPE,
                    {"contact": _CONTACT_EXAMPLE}), 400, 401, 404,
                body=(_CONTACT_UPDATE, {"firstName": "Ada", "company": None})))
    async def update_contact(request: Request, account: Account, book: Phonebook) -> Response:
        number = phone_in_path(request)
        changes = pb.contact_changes(await body_of(request))
        contact = await book.update_contact(account.id, number, changes, utcnow())
        if contact is None:
            return error("203", f"no contact with the number {number}")
        return json_response(200, {"contact": contact_body(contact)})

    @route("DELETE", "/contacts/{phone}", "Delete a contact (and its group memberships)",
           _doc(_ok(204, "Deleted"), 400, 401, 404))
    async def delete_contact(request: Request, account: Account, book: Phonebook) -> Response:
        number = phone_in_path(request)
        if not await book.delete_contact(account.id, number):
            return error("203", f"no contact with the number {number}")
        return no_content()

    @route("GET", "/contacts/{phone}/groups", "The groups a contact is in",
           _doc(_GROUPS, 400, 401, 404))
    async def fetch_contact_groups(request: Request, account: Account,
                                   book: Phonebook) -> Response:
        number = phone_in_path(request)
        groups = await book.contact_groups(account.id, number)
        if groups is None:
            return error("203", f"no contact with the number {number}")
        return json_response(200, {"groups": [group_body(g) for g in groups]})

    # groups --------------------------------------------------------------------------------

    @route("GET", "/groups", "Every group", _doc(_GROUPS, 401))
    async def fetch_groups(_request: Request, account: Account, book: Phonebook) -> Response:
        return json_response(200, {"groups": [group_body(g) for g in
                                              await book.groups(account.id)]})

    @route("POST", "/groups", "Create a group",
           _doc(_ok(201, "Created", _GROUP_ENVELOPE, {"group": _GROUP_EXAMPLE}), 400, 401,
                invalid="name is required", body=(_GROUP_NAME, {"name": "Customers"})))
    async def create_group(request: Request, account: Account, book: Phonebook) -> Response:
        name = pb.group_name(await body_of(request))
        return json_response(201, {"group": group_body(
            await book.create_group(account.id, name, utcnow()))})

    @route("GET", "/groups/{group_id}", "One group",
           _doc(_ok(200, "The group", _GROUP_ENVELOPE, {"group": _GROUP_EXAMPLE}), 401, 404,
                missing=_NO_GROUP))
    async def fetch_group(request: Request, account: Account, book: Phonebook) -> Response:
        group_id = group_in_path(request)
        group = await book.group(account.id, group_id) if group_id else None
        if group is None:
            return error("203", "no such group")
        return json_response(200, {"group": group_body(group)})

    @route("PUT", "/groups/{group_id}", "Rename a group",
           _doc(_ok(200, "The group renamed", _GROUP_ENVELOPE, {"group": _GROUP_EXAMPLE}),
                400, 401, 404, missing=_NO_GROUP, invalid="name is required",
                body=(_GROUP_NAME, {"name": "Customers"})))
    async def update_group(request: Request, account: Account, book: Phonebook) -> Response:
        group_id = group_in_path(request)
        name = pb.group_name(await body_of(request))
        group = await book.rename_group(account.id, group_id, name) if group_id else None
        if group is None:
            return error("203", "no such group")
        return json_response(200, {"group": group_body(group)})

    @route("DELETE", "/groups/{group_id}", "Delete a group; its contacts stay",
           _doc(_ok(204, "Deleted"), 401, 404, missing=_NO_GROUP))
    async def delete_group(request: Request, account: Account, book: Phonebook) -> Response:
        group_id = group_in_path(request)
        if not group_id or not await book.delete_group(account.id, group_id):
            return error("203", "no such group")
        return no_content()

    @route("POST", "/groups/{group_id}/contacts/{phone}", "Add a contact to a group",
           _doc(_ok(201, "Added", {"type": "object", "maxProperties": 0, "title": "EmptyObject"},
                    {}), 400, 401, 404, 409,
                missing=f"no such group, or no contact with the number {_EXAMPLE_PHONE}",
                conflict=f"{_EXAMPLE_PHONE} is in the group already"))
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
           _doc(_ok(204, "Removed"), 400, 401, 404,
                missing=f"no such group, or {_EXAMPLE_PHONE} is not in it"))
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
