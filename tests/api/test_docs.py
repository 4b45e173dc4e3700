"""/docs and /openapi.json: Swagger UI served by the app itself (no CDN), and a document that
validates, declares how to authenticate, and tells the truth about every answer.

The page and its assets are fetched over HTTP from a real server on 127.0.0.1. The overlap check
reads Messente's official OpenAPI file from ../shared/spec and is skipped without it.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
import jsonschema
import pytest
import yaml
from openapi_spec_validator import validate

from tests.spec import SPEC_DIR, assert_matches
from tests.support import LiveServer, create_account, make_settings, start_live_server

ADMIN_TOKEN = "docs-test-operator-token-0123456789"
METHODS = ("get", "post", "put", "patch", "delete")
# The surfaces whose every operation declares its security, answers, schemas and examples.
DOCUMENTED_TAGS = {"Omnimessage", "Bulk Messaging", "Delivery Report", "History",
                   "Twilio Messages", "Operator", "Blacklist", "Contacts", "Groups",
                   "Statistics", "Account Balance", "Pricing", "WhatsApp Templates",
                   "Number Lookup", "Number Verification"}
# Messente's legacy endpoints: credentials in the query, every answer a 200 in plain text.
LEGACY_PATHS = {"/v1/get_balance", "/v1/pricelist", "/v1/prices", "/v1/verify/start",
                "/v1/verify/pin"}
# POSTs whose path says it all (add a contact to a group).
BODYLESS_POSTS = {"/v1/phonebook/groups/{group_id}/contacts/{phone}"}
# Official request examples that are placeholders (message_types: ["message_types"]), which no
# server accepts.
PLACEHOLDER_EXAMPLES = {"/v1/statistics/reports"}
# Answers whose 422 is the surface's own, not FastAPI's: the statistics report's invalid data,
# and an Idempotency-Key reused with another request.
OWN_422 = {("POST", "/v1/statistics/reports"), ("POST", "/v1/omnimessage"),
           ("POST", "/v1/omnimessages"), ("POST", "/2010-04-01/Accounts/{account_sid}/Messages.json")}


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    directory = tmp_path_factory.mktemp("docs")
    server = start_live_server(make_settings(f"sqlite:///{directory}/omnirelay.db",
                                             admin={"token": ADMIN_TOKEN}))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def spec(live: LiveServer) -> dict[str, Any]:
    response = httpx.get(live.base_url + "/openapi.json")
    assert response.status_code == 200
    return response.json()  # type: ignore[no-any-return]


def operations(spec: dict[str, Any], *, every: bool = False
               ) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in spec["paths"].items():
        for method in METHODS:
            if method in item and (every or DOCUMENTED_TAGS & set(item[method].get("tags", ()))):
                yield method.upper(), path, item[method]


def test_docs_page_and_every_asset_it_loads_come_from_the_app(live: LiveServer) -> None:
    page = httpx.get(live.base_url + "/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html = page.text
    # No URL to any other host: everything the page needs is the app's.
    assert not re.findall(r"https?://", html), re.findall(r"https?://\S+", html)
    referenced = re.findall(r'(?:src|href)="([^"]+)"', html) + \
        re.findall(r"url: '([^']+)'", html)
    assert len(referenced) >= 4, referenced  # the CSS, the icon, the script, the document
    for reference in referenced:
        url = urljoin(live.base_url + "/docs", reference)
        assert urlsplit(url).netloc == f"127.0.0.1:{live.port}", reference
        asset = httpx.get(url)
        assert asset.status_code == 200, (reference, asset.status_code)
        assert len(asset.content) > 1000, reference
        if reference.endswith(".css"):
            # A stylesheet could pull fonts or images from elsewhere.
            remote = [u for u in re.findall(r"url\(([^)]*)\)", asset.text)
                      if re.match(r"['\"]?https?:", u)]
            assert not remote, remote
    assert "validatorUrl" in html and '"validatorUrl": null' in html  # no badge from swagger.io


def test_root_points_to_the_docs(live: LiveServer) -> None:
    response = httpx.get(live.base_url + "/")
    assert response.status_code == 200
    assert 'href="/docs"' in response.text
    assert "/console" not in response.text  # there is no console (yet)


def test_the_document_validates(spec: dict[str, Any]) -> None:
    validate(spec)  # raises on the first problem


def test_every_operation_says_how_to_authenticate_and_no_422(spec: dict[str, Any]) -> None:
    schemes = spec["components"]["securitySchemes"]
    assert schemes["messenteBasic"] == {**schemes["messenteBasic"], "type": "http",
                                        "scheme": "basic"}
    assert schemes["twilioBasic"]["scheme"] == "basic"
    assert schemes["operatorBearer"]["scheme"] == "bearer"
    assert schemes["apiUsername"] == {**schemes["apiUsername"], "in": "query", "name": "username"}
    assert not [(m, p) for m, p, op in operations(spec, every=True)
                if "422" in op["responses"] and (m, p) not in OWN_422]
    for method, path, operation in operations(spec):
        if path in LEGACY_PATHS:
            assert operation.get("security") == [{"apiUsername": [], "apiPassword": []}]
            assert list(operation["responses"]) == ["200"], (method, path)
            continue
        expected = ("operatorBearer" if path.startswith("/admin/") else
                    "twilioBasic" if path.startswith("/2010-04-01/") else "messenteBasic")
        assert operation.get("security") == [{expected: []}], (method, path)
        assert "401" in operation["responses"], (method, path)
    assert "HTTPValidationError" not in str(spec)


def test_every_post_has_a_request_schema(spec: dict[str, Any]) -> None:
    posts = [(path, op) for method, path, op in operations(spec)
             if method in ("POST", "PATCH") and path not in LEGACY_PATHS | BODYLESS_POSTS]
    assert len(posts) >= 13
    for path, operation in posts:
        content = operation.get("requestBody", {}).get("content", {})
        assert content, path
        for media in content.values():
            assert media.get("schema", {}).get("type") == "object", path


def _validator(spec: dict[str, Any], schema: dict[str, Any]) -> jsonschema.Validator:
    # A schema's $refs point into the document's components.
    return jsonschema.Draft202012Validator({**schema, "components": spec.get("components", {})})


def test_every_answer_is_documented_with_a_schema_and_an_example(spec: dict[str, Any]) -> None:
    checked = 0
    for method, path, operation in operations(spec):
        for status, response in operation["responses"].items():
            assert response.get("description"), (method, path, status)
            if status == "204":
                continue
            if path in LEGACY_PATHS:  # plain text, CSV or XML besides JSON
                assert any("example" in m for m in response["content"].values()), path
                if "application/json" not in response["content"]:
                    continue
            media = response.get("content", {}).get("application/json")
            assert media and media.get("schema"), (method, path, status)
            assert "example" in media, (method, path, status)
            errors = list(_validator(spec, media["schema"]).iter_errors(media["example"]))
            assert not errors, (method, path, status, [e.message for e in errors[:3]])
            checked += 1
        for media in operation.get("requestBody", {}).get("content", {}).values():
            if "example" in media:
                errors = list(_validator(spec, media["schema"]).iter_errors(media["example"]))
                assert not errors, (method, path, [e.message for e in errors[:3]])
    assert checked >= 110, checked


def _documented(spec: dict[str, Any], method: str, path: str, status: int) -> dict[str, Any]:
    response = spec["paths"][path][method.lower()]["responses"].get(str(status))
    assert response is not None, f"{method} {path} does not document {status}"
    return response["content"]["application/json"]["schema"]  # type: ignore[no-any-return]


def _assert_documented(spec: dict[str, Any], method: str, path: str,
                       response: httpx.Response) -> None:
    schema = _documented(spec, method, path, response.status_code)
    errors = list(_validator(spec, schema).iter_errors(response.json()))
    assert not errors, (method, path, response.status_code, response.text[:300],
                        [f"{list(e.path)}: {e.message}" for e in errors[:3]])


def test_real_answers_match_the_documented_schemas(live: LiveServer,
                                                   spec: dict[str, Any]) -> None:
    account = live.call(create_account(live.runtime, "docs"))
    messente = httpx.Client(base_url=live.base_url,
                            auth=(account.api_username, account.api_password))
    twilio = httpx.Client(base_url=live.base_url,
                          auth=(account.twilio_account_sid, account.twilio_auth_token))
    send = {"to": "+37251234567", "messages": [{"channel": "sms", "text": "hello"}]}
    later = {**send, "time_to_send": "2999-01-01T00:00:00Z"}
    unknown = str(uuid.uuid4())
    status_path = "/v1/omnimessage/{omnimessage_id}/status"
    with messente, twilio:
        created = messente.post("/v1/omnimessage", json=send)
        scheduled = messente.post("/v1/omnimessage", json=later)
        checks = [
            ("POST", "/v1/omnimessage", created),
            ("POST", "/v1/omnimessage", messente.post("/v1/omnimessage", json={"to": "x"})),
            ("POST", "/v1/omnimessage", httpx.post(live.base_url + "/v1/omnimessage",
                                                  json=send, auth=("nobody", "wrong"))),
            ("POST", "/v1/omnimessages", messente.post("/v1/omnimessages", json={
                "messages": [send, {"to": "+1", "messages": []}]})),
            ("POST", "/v1/omnimessages", messente.post("/v1/omnimessages", json={})),
            ("GET", status_path,
             messente.get(f"/v1/omnimessage/{created.json()['omnimessage_id']}/status")),
            ("GET", status_path, messente.get(f"/v1/omnimessage/{unknown}/status")),
            ("DELETE", "/v1/omnimessage/{omnimessage_id}",
             messente.delete(f"/v1/omnimessage/{scheduled.json()['omnimessage_id']}")),
            ("DELETE", "/v1/omnimessage/{omnimessage_id}",
             messente.delete(f"/v1/omnimessage/{unknown}")),
            ("GET", "/v1/omnimessages", messente.get("/v1/omnimessages")),
            ("GET", "/v1/omnimessages", messente.get("/v1/omnimessages?limit=0")),
            ("GET", "/v1/omnimessage/{omnimessage_id}",
             messente.get(f"/v1/omnimessage/{created.json()['omnimessage_id']}")),
            ("GET", "/v1/inbound", messente.get("/v1/inbound")),
            ("GET", "/v1/webhooks", messente.get("/v1/webhooks")),
            ("POST", "/v1/hlr/sync", messente.post("/v1/hlr/sync",
                                                   json={"numbers": ["+37251234567", "+1"]})),
            ("POST", "/v1/hlr/sync", messente.post("/v1/hlr/sync", json={"numbers": []})),
            ("POST", "/v1/hlr/sync", httpx.post(live.base_url + "/v1/hlr/sync",
                                                json={"numbers": ["+37251234567"]},
                                                auth=("nobody", "wrong"))),
        ]
        contacts, contact = "/v1/phonebook/contacts", "/v1/phonebook/contacts/{phone}"
        group = messente.post("/v1/phonebook/groups", json={"name": "Docs"})
        group_id = group.json()["group"]["id"]
        member = "/v1/phonebook/groups/{group_id}/contacts/{phone}"
        report = {"start_date": "2026-01-01", "end_date": "2026-01-31"}
        checks += [
            ("POST", contacts, messente.post(contacts, json={"phoneNumber": "+37251000001",
                                                             "firstName": "Ada"})),
            ("POST", contacts, messente.post(contacts, json={"phoneNumber": "+37251000001"})),
            ("POST", contacts, messente.post(contacts, json={"phoneNumber": "nope"})),
            ("GET", contacts, messente.get(contacts)),
            ("GET", contact, messente.get(f"{contacts}/+37251000001")),
            ("GET", contact, messente.get(f"{contacts}/+37251000009")),
            ("PATCH", contact, messente.patch(f"{contacts}/+37251000001", json={"title": None})),
            ("POST", "/v1/phonebook/groups", group),
            ("GET", "/v1/phonebook/groups", messente.get("/v1/phonebook/groups")),
            ("POST", member, messente.post(f"/v1/phonebook/groups/{group_id}/contacts/"
                                           "+37251000001")),
            ("POST", member, messente.post(f"/v1/phonebook/groups/{group_id}/contacts/"
                                           "+37251000001")),
            ("GET", "/v1/phonebook/contacts/{phone}/groups",
             messente.get(f"{contacts}/+37251000001/groups")),
            ("GET", "/v1/phonebook/blacklist", messente.get("/v1/phonebook/blacklist")),
            ("GET", "/v1/phonebook/blacklist", httpx.get(live.base_url + "/v1/phonebook/blacklist",
                                                         auth=("nobody", "wrong"))),
            ("POST", "/v1/statistics/reports", messente.post("/v1/statistics/reports",
                                                             json=report)),
            ("POST", "/v1/statistics/reports", messente.post(
                "/v1/statistics/reports", json={**report, "start_date": "2026-02-01"})),
            ("POST", "/v1/statistics/reports", messente.post(
                "/v1/statistics/reports", content=b"{", headers={"Content-Type":
                                                                 "application/json"})),
        ]
        base = f"/2010-04-01/Accounts/{account.twilio_account_sid}"
        messages = "/2010-04-01/Accounts/{account_sid}/Messages.json"
        message = "/2010-04-01/Accounts/{account_sid}/Messages/{sid}.json"
        made = twilio.post(f"{base}/Messages.json",
                           data={"To": "+37255512345", "From": "+15017122661", "Body": "hi"})
        checks += [
            ("POST", messages, made),
            ("POST", messages, twilio.post(f"{base}/Messages.json", data={"From": "+15017122661"})),
            ("POST", messages, httpx.post(live.base_url + f"{base}/Messages.json",
                                          data={"To": "+37255512345"}, auth=("AC1", "x"))),
            ("GET", messages, twilio.get(f"{base}/Messages.json")),
            ("GET", messages, twilio.get("/2010-04-01/Accounts/ACother/Messages.json")),
            ("GET", message, twilio.get(f"{base}/Messages/{made.json()['sid']}.json")),
            ("GET", message, twilio.get(f"{base}/Messages/SM{'0' * 32}.json")),
            ("POST", message, twilio.post(f"{base}/Messages/{made.json()['sid']}.json",
                                          data={"Status": "sent"})),
        ]
        admin = httpx.Client(base_url=live.base_url,
                             headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        with admin:
            checks += [
                ("GET", "/admin/v1/accounts", admin.get("/admin/v1/accounts")),
                ("GET", "/admin/v1/accounts", httpx.get(live.base_url + "/admin/v1/accounts")),
                ("POST", "/admin/v1/accounts", admin.post("/admin/v1/accounts",
                                                          json={"name": "docs-two"})),
                ("POST", "/admin/v1/accounts", admin.post("/admin/v1/accounts",
                                                          json={"name": "docs-two"})),
                ("POST", "/admin/v1/accounts", admin.post("/admin/v1/accounts", json={})),
                ("GET", "/admin/v1/accounts/{name}", admin.get("/admin/v1/accounts/docs")),
                ("GET", "/admin/v1/accounts/{name}", admin.get("/admin/v1/accounts/nobody")),
                ("PATCH", "/admin/v1/accounts/{name}", admin.patch(
                    "/admin/v1/accounts/docs", json={"default_sender": "Docs"})),
                ("POST", "/admin/v1/accounts/{name}/disable",
                 admin.post("/admin/v1/accounts/docs-two/disable")),
                ("POST", "/admin/v1/accounts/{name}/enable",
                 admin.post("/admin/v1/accounts/docs-two/enable")),
                ("POST", "/admin/v1/accounts/{name}/rotate",
                 admin.post("/admin/v1/accounts/docs-two/rotate", json={"what": "twilio-token"})),
                ("GET", "/admin/v1/connectors", admin.get("/admin/v1/connectors")),
            ]
    statuses = set()
    for method, path, response in checks:
        _assert_documented(spec, method, path, response)
        statuses.add(response.status_code)
    assert statuses >= {200, 201, 202, 400, 401, 404, 409, 422}, statuses


def _official() -> dict[str, Any]:
    path = SPEC_DIR / "messente-openapi-2.1.0.yaml"
    if not path.is_file():
        pytest.skip(f"Messente's OpenAPI file {path} is absent (../shared is not beside the repo)")
    # YAML reads the examples' timestamps as datetimes; JSON has strings.
    return json.loads(json.dumps(yaml.safe_load(path.read_text()), default=str))  # type: ignore[no-any-return]


def _resolve(document: dict[str, Any], schema: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
    ref = schema.get("$ref")
    if ref is None:
        return None, schema
    name = ref.rsplit("/", 1)[1]
    return name, document["components"]["schemas"][name]


# (method, the official path, ours)
OVERLAP = [("post", "/omnimessage", "/v1/omnimessage"),
           ("post", "/omnimessages", "/v1/omnimessages"),
           ("get", "/omnimessage/{omnimessageId}/status", "/v1/omnimessage/{omnimessage_id}/status"),
           ("delete", "/omnimessage/{omnimessageId}", "/v1/omnimessage/{omnimessage_id}"),
           ("post", "/statistics/reports", "/v1/statistics/reports"),
           *((method, path, "/v1" + path.replace("{groupId}", "{group_id}"))
             for method, path in [
                 ("get", "/phonebook/blacklist"), ("post", "/phonebook/blacklist"),
                 ("get", "/phonebook/blacklist/{phone}"), ("delete", "/phonebook/blacklist/{phone}"),
                 ("get", "/phonebook/contacts"), ("post", "/phonebook/contacts"),
                 ("get", "/phonebook/contacts/{phone}"), ("patch", "/phonebook/contacts/{phone}"),
                 ("delete", "/phonebook/contacts/{phone}"),
                 ("get", "/phonebook/contacts/{phone}/groups"),
                 ("get", "/phonebook/groups"), ("post", "/phonebook/groups"),
                 ("get", "/phonebook/groups/{groupId}"), ("put", "/phonebook/groups/{groupId}"),
                 ("delete", "/phonebook/groups/{groupId}"),
                 ("post", "/phonebook/groups/{groupId}/contacts/{phone}"),
                 ("delete", "/phonebook/groups/{groupId}/contacts/{phone}")]),
           ("get", "/whatsapp/wabas/{wabaId}/templates", "/v1/whatsapp/wabas/{waba_id}/templates"),
           ("post", "/whatsapp/wabas/{wabaId}/templates", "/v1/whatsapp/wabas/{waba_id}/templates"),
           ("delete", "/whatsapp/wabas/{wabaId}/templates",
            "/v1/whatsapp/wabas/{waba_id}/templates"),
           ("get", "/whatsapp/wabas/{wabaId}/templates/{templateId}",
            "/v1/whatsapp/wabas/{waba_id}/templates/{template_id}")]


def _assert_same_fields(official: dict[str, Any], ours: dict[str, Any], theirs: dict[str, Any],
                        where: str) -> None:
    """The same field names, every field they require required by us too, and so on into the
    arrays of objects (a status's items, a send's messages)."""
    if "properties" not in theirs:
        return
    assert set(ours["properties"]) == set(theirs["properties"]), where
    assert set(theirs.get("required", ())) <= set(ours.get("required", ())), where
    for name, field in theirs["properties"].items():
        if field.get("type") == "array" and "$ref" in field.get("items", {}):
            _name, items = _resolve(official, field["items"])
            _assert_same_fields(official, ours["properties"][name]["items"], items,
                                f"{where} {name}[]")


@pytest.mark.parametrize("method, official_path, path", OVERLAP)
def test_messente_operations_match_the_official_spec(spec: dict[str, Any], method: str,
                                                     official_path: str, path: str) -> None:
    official = _official()
    theirs = official["paths"][official_path][method]
    ours = spec["paths"][path][method]
    assert set(theirs["responses"]) <= set(ours["responses"]), (method, path)
    # The same tag, so /docs groups them as Messente's reference does.
    assert theirs["tags"] == ours["tags"], (method, path)
    for status, response in theirs["responses"].items():
        if "content" not in response:  # a 204
            assert "content" not in ours["responses"][status], (method, path, status)
            continue
        name, schema = _resolve(official, response["content"]["application/json"]["schema"])
        documented = ours["responses"][status]["content"]["application/json"]
        # Our example of this answer is valid by the official schema (nulls as the SDKs take them)
        assert name is not None
        assert_matches(documented["example"], name)
        _assert_same_fields(official, documented["schema"], schema, f"{path} {status}")
    if "requestBody" in theirs:
        name, schema = _resolve(
            official, theirs["requestBody"]["content"]["application/json"]["schema"])
        media = ours["requestBody"]["content"]["application/json"]
        assert set(media["schema"]["properties"]) == set(schema["properties"]), path
        assert set(media["schema"].get("required", ())) == set(schema.get("required", ())), path
        assert name is not None
        assert_matches(media["example"], name)
        if path in PLACEHOLDER_EXAMPLES:
            return
        # The official example request (every field of every channel) is one we accept.
        errors = list(_validator(spec, media["schema"]).iter_errors(schema["example"]))
        assert not errors, [f"{list(e.path)}: {e.message}" for e in errors[:3]]
