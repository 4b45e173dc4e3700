"""Every operation of Messente's official API (the 2.1.0 OpenAPI file the `messente-api` SDK is
generated from) against a live gateway: each is answered by its route with a success the official
spec documents for it, in the media type it documents, the JSON ones valid by the official
schema. The README's count of working SDK operations is this walk's count.

The table below says how to call each operation with inputs that exist (a contact, a group, a
template, a scheduled message made first); an operation added to the spec and missing here fails
the walk. Skipped where ../shared/spec is absent.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from omnirelay.core.pricing import parse_csv
from omnirelay.store.pricing import Pricing
from omnirelay.store.queries import Account
from tests.spec import SPEC_DIR, assert_matches
from tests.support import LiveServer

README = Path(__file__).resolve().parents[2] / "README.md"
PHONE = "+37251000001"
WABA = "102290129340398"
METHODS = ("get", "post", "put", "patch", "delete")


def official() -> dict[str, Any]:
    path = SPEC_DIR / "messente-openapi-2.1.0.yaml"
    if not path.is_file():
        pytest.skip(f"Messente's OpenAPI file {path} is absent (../shared is not beside the repo)")
    return json.loads(json.dumps(yaml.safe_load(path.read_text()), default=str))  # type: ignore[no-any-return]


def spec_operations(document: dict[str, Any]) -> dict[str, tuple[str, str, dict[str, Any]]]:
    return {op["operationId"]: (method, path, op) for path, item in document["paths"].items()
            for method, op in item.items() if method in METHODS}


def calls(account: Account, made: dict[str, str]) -> list[tuple[str, dict[str, Any]]]:
    """(operationId, how to call it) in an order where each finds what it needs: reads and
    creations first, then changes, then deletions."""
    credentials = {"username": account.api_username, "password": account.api_password}
    template = {"name": "walk_update", "language": "en", "category": "utility",
                "components": [{"type": "body", "text": "Your order {{1}} has shipped",
                                "example": {"body_text": [["A-1"]]}}]}
    templates = f"/v1/whatsapp/wabas/{WABA}/templates"
    omnimessage = {"to": "+37251000009", "time_to_send": "2999-01-01T00:00:00Z",
                   "messages": [{"channel": "sms", "text": "later"}]}
    return [
        ("sendOmnimessage", {"method": "POST", "url": "/v1/omnimessage",
                             "json": {"to": "+37251000008",
                                      "messages": [{"channel": "sms", "text": "hi"}]}}),
        ("sendBulkOmnimessage", {"method": "POST", "url": "/v1/omnimessages",
                                 "json": {"messages": [omnimessage]}}),
        ("retrieveDeliveryReport", {"method": "GET",
                                    "url": f"/v1/omnimessage/{made['omnimessage']}/status"}),
        ("getAccountBalance", {"method": "GET", "url": "/v1/get_balance",
                               "params": credentials}),
        ("getAccountBalanceUsingPost", {"method": "POST", "url": "/v1/get_balance",
                                        "params": credentials}),
        ("getPricelist", {"method": "GET", "url": "/v1/pricelist", "params": credentials}),
        ("getPrices", {"method": "GET", "url": "/v1/prices",
                       "params": {**credentials, "country": "EE"}}),
        ("createStatisticsReport", {"method": "POST", "url": "/v1/statistics/reports",
                                    "json": {"start_date": "2026-01-01",
                                             "end_date": "2999-12-31"}}),
        ("fetchInfo", {"method": "POST", "url": "/v1/hlr/sync",
                       "json": {"numbers": [PHONE, "+37251000002"]}}),
        ("verifyNumber", {"method": "POST", "url": "/v1/verify/start",
                          "params": {**credentials, "to": "+37251000003",
                                     "template": "Your code is <PIN>"}}),
        ("verifyPin", {"method": "POST", "url": "/v1/verify/pin",
                       "params": {**credentials, "verification_id": "{verification_id}",
                                  "pin": "0000"}}),
        ("addToBlacklist", {"method": "POST", "url": "/v1/phonebook/blacklist",
                            "json": {"phoneNumber": "+37251000004"}}),
        ("fetchBlacklist", {"method": "GET", "url": "/v1/phonebook/blacklist"}),
        ("isBlacklisted", {"method": "GET", "url": "/v1/phonebook/blacklist/+37251000004"}),
        ("createContact", {"method": "POST", "url": "/v1/phonebook/contacts",
                           "json": {"phoneNumber": "+37251000005", "firstName": "Ada"}}),
        ("fetchContacts", {"method": "GET", "url": "/v1/phonebook/contacts"}),
        ("fetchContact", {"method": "GET", "url": f"/v1/phonebook/contacts/{PHONE}"}),
        ("updateContact", {"method": "PATCH", "url": f"/v1/phonebook/contacts/{PHONE}",
                           "json": {"company": "Acme"}}),
        ("createGroup", {"method": "POST", "url": "/v1/phonebook/groups",
                         "json": {"name": "Walkers"}}),
        ("fetchGroups", {"method": "GET", "url": "/v1/phonebook/groups"}),
        ("fetchGroup", {"method": "GET", "url": f"/v1/phonebook/groups/{made['group']}"}),
        ("updateGroup", {"method": "PUT", "url": f"/v1/phonebook/groups/{made['group']}",
                         "json": {"name": "Walkers 2"}}),
        ("addContactToGroup", {"method": "POST", "url":
                               f"/v1/phonebook/groups/{made['group']}/contacts/{PHONE}"}),
        ("fetchContactGroups", {"method": "GET",
                                "url": f"/v1/phonebook/contacts/{PHONE}/groups"}),
        ("createWhatsappTemplate", {"method": "POST", "url": templates, "json": template}),
        ("listWhatsappTemplates", {"method": "GET", "url": templates}),
        ("getWhatsappTemplateById", {"method": "GET",
                                     "url": f"{templates}/{made['template']}"}),
        ("updateWhatsappTemplate", {"method": "PUT", "url": f"{templates}/{made['template']}",
                                    "json": {"category": "marketing"}}),
        ("removeContactFromGroup", {"method": "DELETE", "url":
                                    f"/v1/phonebook/groups/{made['group']}/contacts/{PHONE}"}),
        ("deleteGroup", {"method": "DELETE", "url": f"/v1/phonebook/groups/{made['group']}"}),
        ("deleteContact", {"method": "DELETE", "url": f"/v1/phonebook/contacts/{PHONE}"}),
        ("deleteFromBlacklist", {"method": "DELETE",
                                 "url": "/v1/phonebook/blacklist/+37251000004"}),
        ("deleteWhatsappTemplate", {"method": "DELETE", "url": templates,
                                    "params": {"name": "walk_first"}}),
        ("cancelScheduledMessage", {"method": "DELETE",
                                    "url": f"/v1/omnimessage/{made['omnimessage']}"}),
    ]


def documented_schema(response: dict[str, Any], media_type: str) -> str | None:
    content = response.get("content", {})
    for declared, media in content.items():
        if declared.split(";")[0] == media_type:
            ref = media.get("schema", {}).get("$ref")
            return ref.rsplit("/", 1)[1] if ref else None
    raise AssertionError(f"{media_type} is not among the documented {sorted(content)}")


def test_every_operation_of_the_official_sdk_answers(server: LiveServer, account: Account
                                                     ) -> None:
    document = official()
    operations = spec_operations(document)
    client = httpx.Client(base_url=server.base_url,
                          auth=(account.api_username, account.api_password), timeout=30)
    with client:
        # What the calls need exists first: prices, a contact, a group, a template, a
        # scheduled message.
        server.call(Pricing(server.runtime.store.db).replace_prices(
            account.id, parse_csv("Country,Code,MCCMNC,Network,Price,Channel\n"
                                  "Estonia,EE,24801,Telia,0.04,sms\n"), ["sms"]))
        assert client.post("/v1/phonebook/contacts", json={"phoneNumber": PHONE}).status_code == 201
        group = client.post("/v1/phonebook/groups", json={"name": "Walk"}).json()["group"]["id"]
        first = {"name": "walk_first", "language": "en", "category": "utility",
                 "components": [{"type": "body", "text": "Hello"}]}
        created = client.post(f"/v1/whatsapp/wabas/{WABA}/templates", json=first)
        assert created.status_code == 200, created.text
        later = client.post("/v1/omnimessage", json={
            "to": "+37251000007", "time_to_send": "2999-01-01T00:00:00Z",
            "messages": [{"channel": "sms", "text": "later"}]})
        made = {"group": group, "template": created.json()["id"],
                "omnimessage": later.json()["omnimessage_id"]}
        planned = calls(account, made)
        assert sorted(name for name, _ in planned) == sorted(operations)

        answered = []
        verification_id = ""
        for name, request in planned:
            method, path, operation = operations[name]
            assert request["method"] == method.upper(), name
            params = {k: v.replace("{verification_id}", verification_id)
                      for k, v in request.get("params", {}).items()}
            response = client.request(request["method"], request["url"], params=params,
                                      json=request.get("json"))
            where = f"{name} ({method.upper()} {path}): {response.status_code} {response.text[:200]}"
            assert 200 <= response.status_code < 300, where
            assert str(response.status_code) in operation["responses"], where
            documented = operation["responses"][str(response.status_code)]
            if response.status_code == 204:
                assert not response.content, where
            else:
                media_type = response.headers["content-type"].split(";")[0]
                schema = documented_schema(documented, media_type)
                if media_type == "application/json" and schema is not None:
                    assert_matches(response.json(), schema)
                if media_type.startswith("text/"):
                    assert not response.text.startswith("ERROR"), where
            if name == "verifyNumber":
                verification_id = response.text.removeprefix("OK ")
            answered.append(name)

    assert len(answered) == len(operations) == 34
    match = re.search(r"Of the (\d+) operations of the official `messente-api` SDK, (\d+) work",
                      README.read_text())
    assert match is not None, "the README's count of SDK operations is gone"
    assert (int(match[1]), int(match[2])) == (len(operations), len(answered))
