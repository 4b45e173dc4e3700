"""The Phonebook API (blacklist, contacts, groups) through the official `messente-api` SDK, on
SQLite and PostgreSQL: every operation, its documented errors, bodies checked against the spec,
and one account never reaching another's entries."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from messente_api import (
    ApiClient,
    ApiException,
    BlacklistApi,
    Configuration,
    ContactFields,
    ContactsApi,
    ContactUpdateFields,
    GroupName,
    GroupsApi,
    NumberToBlacklist,
)
from sqlalchemy import select

from omnirelay.account_admin import delete_account
from omnirelay.store.queries import Account
from omnirelay.store.tables import (
    phonebook_blacklist,
    phonebook_contacts,
    phonebook_groups,
    phonebook_members,
)
from tests.spec import assert_matches
from tests.support import LiveServer, create_account

NUMBER = "+37255551234"
SPACED = "+372 5555 1234"
OTHER = "+37255554321"
UNKNOWN_GROUP = "5792a02a-e5c2-422b-a0a0-0ae65d814663"


def sdk(server: LiveServer, account: Account, password: str | None = None,
        with_v1: bool = True) -> ApiClient:
    config = Configuration(host=server.base_url + ("/v1" if with_v1 else ""))
    config.username = account.api_username
    config.password = account.api_password if password is None else password
    return ApiClient(config)


def fails(call: Callable[[], Any], status: int, code: str) -> dict[str, Any]:
    """The call is refused with `status` and a Phonebook error of `code`; the error body."""
    with pytest.raises(ApiException) as refused:
        call()
    assert refused.value.status == status, refused.value.body
    body = httpx.Response(status, content=refused.value.body).json()
    assert_matches(body, "ErrorPhonebook")
    assert [e["code"] for e in body["errors"]] == [code]
    return body  # type: ignore[no-any-return]


def raw(response: Any, status: int, schema: str | None) -> Any:
    """The SDK's http_info response: its status, and its body matching `schema`."""
    assert response.status_code == status
    if schema is None:
        assert response.raw_data == b""
        return None
    body = httpx.Response(status, content=response.raw_data).json()
    assert_matches(body, schema)
    return body


@pytest.fixture
def other(server: LiveServer) -> Account:
    return server.call(create_account(server.runtime, "other"))


# --- blacklist ---------------------------------------------------------------------------------

def test_blacklist_add_check_list_delete(server: LiveServer, account: Account) -> None:
    api = BlacklistApi(sdk(server, account))
    raw(api.add_to_blacklist_with_http_info(NumberToBlacklist(phoneNumber=SPACED)), 204, None)
    raw(api.is_blacklisted_with_http_info(NUMBER), 204, None)
    assert api.is_blacklisted(SPACED) is None  # the same entry, whichever way it is written
    listed = raw(api.fetch_blacklist_with_http_info(), 200, "FetchBlacklistSuccess")
    assert listed == {"phoneNumbers": [NUMBER]}
    api.add_to_blacklist(NumberToBlacklist(phoneNumber=OTHER))
    assert api.fetch_blacklist().phone_numbers == [NUMBER, OTHER]
    raw(api.delete_from_blacklist_with_http_info(SPACED), 204, None)
    assert api.fetch_blacklist().phone_numbers == [OTHER]
    fails(lambda: api.is_blacklisted(NUMBER), 404, "203")


def test_blacklist_errors(server: LiveServer, account: Account) -> None:
    api = BlacklistApi(sdk(server, account))
    api.add_to_blacklist(NumberToBlacklist(phoneNumber=NUMBER))
    conflict = fails(lambda: api.add_to_blacklist(NumberToBlacklist(phoneNumber=SPACED)),
                     409, "204")
    assert conflict["errors"][0]["title"] == "Conflict"
    invalid = fails(lambda: api.add_to_blacklist(NumberToBlacklist(phoneNumber="+1")), 400, "201")
    assert "phoneNumber" in invalid["errors"][0]["detail"]
    fails(lambda: api.is_blacklisted("not-a-number"), 400, "201")
    fails(lambda: api.delete_from_blacklist("+3725"), 400, "201")
    fails(lambda: api.delete_from_blacklist(OTHER), 404, "203")
    fails(lambda: api.is_blacklisted(OTHER), 404, "203")
    wrong = BlacklistApi(sdk(server, account, password="wrong"))
    for call in (wrong.fetch_blacklist, lambda: wrong.is_blacklisted(NUMBER),
                 lambda: wrong.add_to_blacklist(NumberToBlacklist(phoneNumber=OTHER)),
                 lambda: wrong.delete_from_blacklist(NUMBER)):
        fails(call, 401, "202")
    assert api.fetch_blacklist().phone_numbers == [NUMBER]  # nothing was stored or removed
    # Bodies the SDK would not send: the same error format.
    for body, content_type in ((b"{", "application/json"), (b"{}", "application/json"),
                               (b'{"phoneNumber":"+37255551234","x":1}', "application/json"),
                               (b'{"phoneNumber":"+37255554321"}', "text/plain")):
        response = httpx.post(f"{server.base_url}/v1/phonebook/blacklist", content=body,
                              headers={"Content-Type": content_type},
                              auth=(account.api_username, account.api_password))
        assert response.status_code == 400, body
        assert_matches(response.json(), "ErrorPhonebook")
        assert response.json()["errors"][0]["code"] == "201"
    assert api.fetch_blacklist().phone_numbers == [NUMBER]


# --- contacts ----------------------------------------------------------------------------------

def test_contact_create_fetch_update_delete(server: LiveServer, account: Account) -> None:
    api = ContactsApi(sdk(server, account))
    created = raw(api.create_contact_with_http_info(ContactFields(
        phoneNumber=SPACED, email="anyone@example.com", firstName="Any", lastName="One",
        company="Acme", title="Sir", custom="c1", custom2="c2", custom3="c3", custom4="c4")),
        201, "ContactEnvelope")
    assert created["contact"] == {
        "phoneNumber": NUMBER, "email": "anyone@example.com", "firstName": "Any",
        "lastName": "One", "company": "Acme", "title": "Sir", "custom": "c1", "custom2": "c2",
        "custom3": "c3", "custom4": "c4", "scheduledDeletionDate": None}
    fetched = raw(api.fetch_contact_with_http_info(NUMBER), 200, "ContactEnvelope")
    assert fetched == created
    updated = raw(api.update_contact_with_http_info(SPACED, ContactUpdateFields(
        firstName="Some", company=None)), 200, "ContactEnvelope")["contact"]
    assert (updated["firstName"], updated["company"], updated["lastName"]) == \
        ("Some", None, "One")
    assert api.fetch_contact(NUMBER).contact.first_name == "Some"
    api.create_contact(ContactFields(phoneNumber=OTHER))
    listed = raw(api.fetch_contacts_with_http_info(), 200, "ContactListEnvelope")
    assert [c["phoneNumber"] for c in listed["contacts"]] == [NUMBER, OTHER]
    assert listed["contacts"][1]["email"] is None
    raw(api.delete_contact_with_http_info(SPACED), 204, None)
    assert [c.phone_number for c in api.fetch_contacts().contacts] == [OTHER]
    fails(lambda: api.fetch_contact(NUMBER), 404, "203")


def test_contact_errors(server: LiveServer, account: Account) -> None:
    api = ContactsApi(sdk(server, account))
    api.create_contact(ContactFields(phoneNumber=NUMBER, firstName="Any"))
    fails(lambda: api.create_contact(ContactFields(phoneNumber=SPACED)), 409, "204")
    fails(lambda: api.create_contact(ContactFields(phoneNumber="12345")), 400, "201")
    fails(lambda: api.create_contact(ContactFields(phoneNumber=OTHER, email="x" * 256)),
          400, "201")
    fails(lambda: api.fetch_contact("+1"), 400, "201")
    fails(lambda: api.fetch_contact(OTHER), 404, "203")
    fails(lambda: api.update_contact(NUMBER, ContactUpdateFields()), 400, "201")  # empty patch
    fails(lambda: api.update_contact(OTHER, ContactUpdateFields(title="x")), 404, "203")
    fails(lambda: api.update_contact("+1", ContactUpdateFields(title="x")), 400, "201")
    fails(lambda: api.delete_contact(OTHER), 404, "203")
    fails(lambda: api.delete_contact("x"), 400, "201")
    fails(lambda: api.fetch_contact_groups(OTHER), 404, "203")
    fails(lambda: api.fetch_contact_groups("x"), 400, "201")
    fails(lambda: api.fetch_contacts(group_ids=["not-a-uuid"]), 400, "201")
    unknown = httpx.patch(f"{server.base_url}/v1/phonebook/contacts/{NUMBER}",
                          json={"phoneNumber": OTHER},
                          auth=(account.api_username, account.api_password))
    assert unknown.status_code == 400 and unknown.json()["errors"][0]["code"] == "201"
    wrong = ContactsApi(sdk(server, account, password="wrong"))
    for call in (wrong.fetch_contacts, lambda: wrong.fetch_contact(NUMBER),
                 lambda: wrong.create_contact(ContactFields(phoneNumber=OTHER)),
                 lambda: wrong.update_contact(NUMBER, ContactUpdateFields(title="x")),
                 lambda: wrong.delete_contact(NUMBER),
                 lambda: wrong.fetch_contact_groups(NUMBER),
                 lambda: wrong.add_contact_to_group(UNKNOWN_GROUP, NUMBER),
                 lambda: wrong.remove_contact_from_group(UNKNOWN_GROUP, NUMBER)):
        fails(call, 401, "202")
    contacts = api.fetch_contacts().contacts
    assert [(c.phone_number, c.first_name) for c in contacts] == [(NUMBER, "Any")]


# --- groups and membership ---------------------------------------------------------------------

def test_group_create_fetch_rename_delete(server: LiveServer, account: Account) -> None:
    api = GroupsApi(sdk(server, account))
    created = raw(api.create_group_with_http_info(GroupName(name="Customers")), 201,
                  "GroupEnvelope")["group"]
    assert (created["name"], created["contactsCount"]) == ("Customers", 0)
    assert created["createdOn"].endswith("Z")
    group_id = created["id"]
    assert raw(api.fetch_group_with_http_info(group_id), 200, "GroupEnvelope")["group"] == \
        created
    api.create_group(GroupName(name="Staff"))
    listed = raw(api.fetch_groups_with_http_info(), 200, "GroupListEnvelope")["groups"]
    assert [g["name"] for g in listed] == ["Customers", "Staff"]
    renamed = raw(api.update_group_with_http_info(group_id, GroupName(name="Clients")), 200,
                  "GroupEnvelope")["group"]
    assert (renamed["id"], renamed["name"]) == (group_id, "Clients")
    raw(api.delete_group_with_http_info(group_id), 204, None)
    assert [g.name for g in api.fetch_groups().groups] == ["Staff"]
    fails(lambda: api.fetch_group(group_id), 404, "203")


def test_group_errors(server: LiveServer, account: Account) -> None:
    api = GroupsApi(sdk(server, account))
    group_id = api.create_group(GroupName(name="Customers")).group.id
    for missing in (UNKNOWN_GROUP, "not-a-uuid"):
        fails(lambda m=missing: api.fetch_group(m), 404, "203")  # type: ignore[misc]
        fails(lambda m=missing: api.update_group(m, GroupName(name="x")),  # type: ignore[misc]
              404, "203")
        fails(lambda m=missing: api.delete_group(m), 404, "203")  # type: ignore[misc]
    auth = (account.api_username, account.api_password)
    for body in ({"name": ""}, {}, {"name": 5}, {"name": "x" * 256}, {"name": "a\u0000b"}):
        for response in (httpx.post(f"{server.base_url}/v1/phonebook/groups", json=body,
                                    auth=auth),
                         httpx.put(f"{server.base_url}/v1/phonebook/groups/{group_id}",
                                   json=body, auth=auth)):
            assert response.status_code == 400, body
            assert_matches(response.json(), "ErrorPhonebook")
            assert response.json()["errors"][0]["code"] == "201"
    wrong = GroupsApi(sdk(server, account, password="wrong"))
    for call in (wrong.fetch_groups, lambda: wrong.fetch_group(group_id),
                 lambda: wrong.create_group(GroupName(name="x")),
                 lambda: wrong.update_group(group_id, GroupName(name="x")),
                 lambda: wrong.delete_group(group_id)):
        fails(call, 401, "202")
    assert [(g.id, g.name) for g in api.fetch_groups().groups] == [(group_id, "Customers")]


def test_contacts_in_groups(server: LiveServer, account: Account) -> None:
    contacts = ContactsApi(sdk(server, account))
    groups = GroupsApi(sdk(server, account))
    first = groups.create_group(GroupName(name="First")).group.id
    second = groups.create_group(GroupName(name="Second")).group.id
    empty = groups.create_group(GroupName(name="Empty")).group.id
    for number in (NUMBER, OTHER, "+37255550000"):
        contacts.create_contact(ContactFields(phoneNumber=number))
    added = contacts.add_contact_to_group_with_http_info(first, SPACED)
    assert added.status_code == 201
    assert_matches(httpx.Response(201, content=added.raw_data).json(), "EmptyObject")
    assert added.raw_data == b"{}"
    contacts.add_contact_to_group(second, NUMBER)
    contacts.add_contact_to_group(second, OTHER)
    fails(lambda: contacts.add_contact_to_group(first, NUMBER), 409, "204")
    fails(lambda: contacts.add_contact_to_group(first, "+37255559999"), 404, "203")
    fails(lambda: contacts.add_contact_to_group(UNKNOWN_GROUP, NUMBER), 404, "203")
    fails(lambda: contacts.add_contact_to_group("nope", NUMBER), 404, "203")
    fails(lambda: contacts.add_contact_to_group(first, "+1"), 400, "201")

    def members(*group_ids: str) -> list[str]:
        body = contacts.fetch_contacts_with_http_info(group_ids=list(group_ids))
        return [c["phoneNumber"] for c in raw(body, 200, "ContactListEnvelope")["contacts"]]

    assert members(first) == [NUMBER]
    assert members(first, second) == [NUMBER, OTHER]  # each contact once
    assert members(empty) == [] and members(UNKNOWN_GROUP) == []
    assert len(members()) == 3
    mine = raw(contacts.fetch_contact_groups_with_http_info(NUMBER), 200, "GroupListEnvelope")
    assert [(g["name"], g["contactsCount"]) for g in mine["groups"]] == \
        [("First", 1), ("Second", 2)]
    assert contacts.fetch_contact_groups("+37255550000").groups == []
    assert groups.fetch_group(second).group.contacts_count == 2

    raw(contacts.remove_contact_from_group_with_http_info(second, SPACED), 204, None)
    fails(lambda: contacts.remove_contact_from_group(second, NUMBER), 404, "203")
    fails(lambda: contacts.remove_contact_from_group(UNKNOWN_GROUP, NUMBER), 404, "203")
    fails(lambda: contacts.remove_contact_from_group(second, "+1"), 400, "201")
    assert members(second) == [OTHER]
    # A deleted contact leaves its groups; a deleted group leaves its contacts.
    contacts.delete_contact(OTHER)
    assert groups.fetch_group(second).group.contacts_count == 0
    groups.delete_group(first)
    assert [c.phone_number for c in contacts.fetch_contacts().contacts] == \
        ["+37255550000", NUMBER]
    assert contacts.fetch_contact_groups(NUMBER).groups == []


# --- accounts and mounts -----------------------------------------------------------------------

def test_one_account_never_reaches_anothers_phonebook(server: LiveServer, account: Account,
                                                       other: Account) -> None:
    mine, theirs = sdk(server, account), sdk(server, other)
    BlacklistApi(mine).add_to_blacklist(NumberToBlacklist(phoneNumber=NUMBER))
    ContactsApi(mine).create_contact(ContactFields(phoneNumber=NUMBER, firstName="Mine"))
    group = GroupsApi(mine).create_group(GroupName(name="Mine")).group.id
    ContactsApi(mine).add_contact_to_group(group, NUMBER)

    blacklist, contacts, groups = BlacklistApi(theirs), ContactsApi(theirs), GroupsApi(theirs)
    assert blacklist.fetch_blacklist().phone_numbers == []
    fails(lambda: blacklist.is_blacklisted(NUMBER), 404, "203")
    fails(lambda: blacklist.delete_from_blacklist(NUMBER), 404, "203")
    assert contacts.fetch_contacts().contacts == []
    assert contacts.fetch_contacts(group_ids=[group]).contacts == []
    fails(lambda: contacts.fetch_contact(NUMBER), 404, "203")
    fails(lambda: contacts.update_contact(NUMBER, ContactUpdateFields(firstName="Theirs")),
          404, "203")
    fails(lambda: contacts.fetch_contact_groups(NUMBER), 404, "203")
    fails(lambda: contacts.delete_contact(NUMBER), 404, "203")
    assert groups.fetch_groups().groups == []
    fails(lambda: groups.fetch_group(group), 404, "203")
    fails(lambda: groups.update_group(group, GroupName(name="Theirs")), 404, "203")
    fails(lambda: contacts.remove_contact_from_group(group, NUMBER), 404, "203")
    fails(lambda: groups.delete_group(group), 404, "203")
    # Their own entries of the same number are theirs alone, and no conflict with mine.
    blacklist.add_to_blacklist(NumberToBlacklist(phoneNumber=NUMBER))
    contacts.create_contact(ContactFields(phoneNumber=NUMBER, firstName="Theirs"))
    fails(lambda: contacts.add_contact_to_group(group, NUMBER), 404, "203")
    blacklist.delete_from_blacklist(NUMBER)
    contacts.delete_contact(NUMBER)

    assert BlacklistApi(mine).fetch_blacklist().phone_numbers == [NUMBER]
    kept = ContactsApi(mine).fetch_contact(NUMBER).contact
    assert kept.first_name == "Mine"
    assert [(g.name, g.contacts_count) for g in GroupsApi(mine).fetch_groups().groups] == \
        [("Mine", 1)]


def test_phonebook_is_served_at_the_root_too_and_errors_keep_its_format(
        server: LiveServer, account: Account) -> None:
    api = BlacklistApi(sdk(server, account, with_v1=False))
    api.add_to_blacklist(NumberToBlacklist(phoneNumber=NUMBER))
    assert BlacklistApi(sdk(server, account)).fetch_blacklist().phone_numbers == [NUMBER]
    auth = (account.api_username, account.api_password)
    for prefix in ("/v1", ""):
        wrong_method = httpx.put(f"{server.base_url}{prefix}/phonebook/blacklist", auth=auth)
        assert wrong_method.status_code == 405
        assert_matches(wrong_method.json(), "ErrorPhonebook")
        assert wrong_method.headers["Allow"] == "GET, POST"
        no_route = httpx.get(f"{server.base_url}{prefix}/phonebook/nothing", auth=auth)
        assert no_route.status_code == 404
        assert no_route.json()["errors"][0]["code"] == "203"
        anonymous = httpx.get(f"{server.base_url}{prefix}/phonebook/groups")
        assert anonymous.status_code == 401
        assert anonymous.json() == {"errors": [{
            "title": "Unauthorized", "detail": "Wrong username or password", "code": "202"}]}


def test_deleting_an_account_deletes_its_phonebook(server: LiveServer, account: Account,
                                                   other: Account) -> None:
    for owner in (account, other):
        client = sdk(server, owner)
        BlacklistApi(client).add_to_blacklist(NumberToBlacklist(phoneNumber=NUMBER))
        ContactsApi(client).create_contact(ContactFields(phoneNumber=NUMBER))
        group = GroupsApi(client).create_group(GroupName(name="G")).group.id
        ContactsApi(client).add_contact_to_group(group, NUMBER)
    server.call(delete_account(server.runtime, account.name))

    def rows(conn: Any) -> list[tuple[str, int]]:
        return [(table.name, owner) for table in (phonebook_blacklist, phonebook_contacts,
                                                  phonebook_groups, phonebook_members)
                for (owner,) in conn.execute(select(table.c.account_id))]

    assert sorted(server.call(server.runtime.db.read(rows))) == sorted(
        [("phonebook_blacklist", other.id), ("phonebook_contacts", other.id),
         ("phonebook_groups", other.id), ("phonebook_members", other.id)])
    assert BlacklistApi(sdk(server, other)).fetch_blacklist().phone_numbers == [NUMBER]
