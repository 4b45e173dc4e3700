"""Phonebook requests (blacklist, contacts, groups): reading and checking their bodies.

Phone numbers are normalised to E.164 the way omnimessage recipients are, so `+372 5555 1234`
and `+37255551234` name one entry, and a blacklisted number matches the `to` of the messages the
dispatcher claims exactly.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from omnirelay.core import validation as v
from omnirelay.core.omnimessage import parse_phone_number

# the API's field name -> the column that stores it
CONTACT_FIELDS: dict[str, str] = {
    "email": "email", "firstName": "first_name", "lastName": "last_name",
    "company": "company", "title": "title", "custom": "custom", "custom2": "custom2",
    "custom3": "custom3", "custom4": "custom4",
}
MAX_FIELD = 255  # each contact field and a group's name; the columns' width


def phone(value: Any, path: str = "phone") -> str:
    return parse_phone_number(value, path)


def is_group_id(text: str) -> bool:
    """Group ids are the UUIDs the gateway issues; anything else names no group."""
    if len(text) != 36:
        return False
    try:
        return str(uuid.UUID(text)) == text
    except ValueError:
        return False


def number_to_blacklist(body: Any) -> str:
    data = v.fields(v.obj(body, ""), "", ("phoneNumber",))
    return phone(v.required(data, "phoneNumber", ""), "phoneNumber")


def _details(data: Mapping[str, Any], names: Iterable[str]) -> dict[str, str | None]:
    """The contact fields named, by column; null clears a field."""
    details: dict[str, str | None] = {}
    for name in names:
        value = data[name]
        details[CONTACT_FIELDS[name]] = (
            None if value is None else v.string(value, name, max_length=MAX_FIELD))
    return details


def _known(body: Any, allowed: Iterable[str]) -> dict[str, Any]:
    data = v.obj(body, "")
    allowed_set = set(allowed)
    for key in data:
        if key not in allowed_set:
            v.fail(key, f"unknown field {key!r}")
    return data


def new_contact(body: Any) -> tuple[str, dict[str, str | None]]:
    """(the phone number, every field by column: those not given are null)."""
    data = _known(body, ("phoneNumber", *CONTACT_FIELDS))
    number = phone(v.required(data, "phoneNumber", ""), "phoneNumber")
    details = dict.fromkeys(CONTACT_FIELDS.values(), None)
    details.update(_details(data, [k for k in data if k in CONTACT_FIELDS]))
    return number, details


def contact_changes(body: Any) -> dict[str, str | None]:
    """The fields a PATCH sets, by column; at least one."""
    data = _known(body, CONTACT_FIELDS)
    if not data:
        v.fail(None, "the body must set at least one field of the contact")
    return _details(data, data)


def group_name(body: Any) -> str:
    data = v.fields(v.obj(body, ""), "", ("name",))
    return v.string(v.required(data, "name", ""), "name", min_length=1, max_length=MAX_FIELD)


def group_ids(values: list[str]) -> list[str]:
    for value in values:
        if not is_group_id(value):
            v.fail("groupIds", f"groupIds: {value[:64]!r} is not a group id (a UUID)")
    return values
