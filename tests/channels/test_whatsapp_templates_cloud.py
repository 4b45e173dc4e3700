"""The WhatsApp Templates API forwarded to a fake Cloud API on 127.0.0.1, through the official
SDK: the path, token and body Meta gets, the mapping back, the spec's error shape for Graph's
errors, WABAs out of reach of the accounts they are not assigned to, and the send-time check
against the cached template lists."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from messente_api import (
    ApiClient,
    Configuration,
    WhatsappCreateTemplateRequest,
    WhatsappTemplateCategory,
    WhatsAppTemplatesApi,
    WhatsappTemplateStatus,
    WhatsappUpdateTemplateRequest,
)
from starlette.responses import Response

from omnirelay.channels.whatsapp import WhatsAppSettings
from omnirelay.errors import ConfigError
from omnirelay.store.queries import Account
from tests.api.test_whatsapp_templates import refused
from tests.channels.fake_upstreams import ThreadedUpstream
from tests.channels.support import Recorded, ok_json
from tests.spec import assert_matches
from tests.support import (
    LiveServer,
    create_account,
    free_port,
    make_settings,
    start_live_server,
    wait_until,
)

TOKEN = "EAAG-templates-token"
WABA = "102290129340398"
OTHER_WABA = "555666777888999"
PHONE_ID = "1122334455667"
TO = "+37255512345"


class FakeGraph:
    """Meta's message-template endpoints over templates it keeps, checking the token; the send
    endpoint accepts every message. `fail_next` makes the next template call answer an error."""

    def __init__(self) -> None:
        self.templates: dict[str, dict[str, Any]] = {}
        self.fail_next: tuple[int, dict[str, Any], dict[str, str]] | None = None
        self._ids = iter(range(900000000000001, 900000000009999))

    def add(self, waba: str, name: str, language: str = "en", **fields: Any) -> str:
        template_id = str(next(self._ids))
        self.templates[template_id] = {
            "id": template_id, "waba": waba, "name": name, "language": language,
            "category": "UTILITY", "status": "APPROVED",
            "components": [{"type": "BODY", "text": f"{name} body"}], **fields}
        return template_id

    def _public(self, template: dict[str, Any], fields: str | None) -> dict[str, Any]:
        shown = {k: v for k, v in template.items() if k != "waba"}
        if fields:
            shown = {k: v for k, v in shown.items() if k in fields.split(",")}
        return shown

    def __call__(self, request: Recorded) -> Response:
        if request.headers.get("authorization") != f"Bearer {TOKEN}":
            return ok_json({"error": {"code": 190, "message": "Invalid OAuth access token"}}, 401)
        if request.path.endswith("/messages"):
            body = request.json()
            return ok_json({"messages": [{"id": f"wamid.{body['biz_opaque_callback_data']}"}]})
        if self.fail_next is not None:
            status, error, headers = self.fail_next
            self.fail_next = None
            return ok_json({"error": error}, status, headers)
        if match := re.fullmatch(r"/v21\.0/(\d+)/message_templates", request.path):
            return self._collection(request, match.group(1))
        if match := re.fullmatch(r"/v21\.0/(\d+)", request.path):
            return self._one(request, match.group(1))
        return ok_json({"error": {"code": 100, "message": "unknown path"}}, 400)

    def _collection(self, request: Recorded, waba: str) -> Response:
        q = request.query
        if request.method == "POST":
            body = request.json()
            if any(t["waba"] == waba and t["name"] == body["name"] and
                   t["language"] == body["language"] for t in self.templates.values()):
                return ok_json({"error": {"code": 100, "error_subcode": 2388024,
                                          "message": "Invalid parameter",
                                          "error_user_msg": "Content in this language already "
                                                            "exists"}}, 400)
            template_id = self.add(waba, body["name"], body["language"],
                                   category=body["category"], status="PENDING",
                                   components=body["components"])
            return ok_json({"id": template_id, "status": "PENDING",
                            "category": body["category"]})
        if request.method == "DELETE":
            gone = [k for k, t in self.templates.items() if t["waba"] == waba and
                    t["name"] == q["name"] and q.get("hsm_id", k) == k]
            if not gone:
                return ok_json({"error": {"code": 100, "message": "Template not found"}}, 400)
            for key in gone:
                del self.templates[key]
            return ok_json({"success": True})
        found = [t for t in self.templates.values() if t["waba"] == waba and
                 q.get("name", "") in t["name"] and
                 q.get("language", t["language"]) == t["language"] and
                 q.get("status", t["status"]) == t["status"] and
                 q.get("category", t["category"]) == t["category"]]
        start = int(base64.b64decode(q["after"])) if "after" in q else 0
        limit = int(q.get("limit", "25"))
        page = found[start:start + limit]
        paging: dict[str, Any] = {"cursors": {
            "before": base64.b64encode(str(start).encode()).decode(),
            "after": base64.b64encode(str(start + len(page)).encode()).decode()}}
        if start + limit < len(found):
            # Meta's paging links carry the access token.
            paging["next"] = (f"https://graph.facebook.com/v21.0/{waba}/message_templates?"
                              f"access_token={TOKEN}&after={paging['cursors']['after']}")
        return ok_json({"data": [self._public(t, q.get("fields")) for t in page],
                        "paging": paging})

    def _one(self, request: Recorded, template_id: str) -> Response:
        template = self.templates.get(template_id)
        if template is None:
            return ok_json({"error": {"code": 100, "error_subcode": 33, "message":
                                      f"Object with ID '{template_id}' does not exist"}}, 400)
        if request.method == "POST":
            template.update(request.json())
            return ok_json({"success": True})
        return ok_json(self._public(template, request.query.get("fields")))


@pytest.fixture
def graph() -> Iterator[tuple[ThreadedUpstream, FakeGraph]]:
    fake = FakeGraph()
    upstream = ThreadedUpstream(fake).start()
    yield upstream, fake
    upstream.stop()


@pytest.fixture
def gateway(tmp_path: Any, graph: tuple[ThreadedUpstream, FakeGraph]) -> Iterator[LiveServer]:
    upstream, _fake = graph
    settings = make_settings(
        f"sqlite:///{tmp_path}/omnirelay.db", channels={"whatsapp": "whatsapp_cloud"},
        providers={"whatsapp_cloud": {
            "base_url": upstream.url, "access_token": TOKEN, "app_secret": "s",
            "verify_token": "v", "senders": {"+37255500000": PHONE_ID}, "timeout": 5.0,
            "wabas": {WABA: ["acme"], OTHER_WABA: ["other"]}}})
    live = start_live_server(settings)
    yield live
    live.stop()


@pytest.fixture
def accounts(gateway: LiveServer) -> tuple[Account, Account]:
    return (gateway.call(create_account(gateway.runtime, "acme")),
            gateway.call(create_account(gateway.runtime, "other")))


def api(gateway: LiveServer, account: Account) -> WhatsAppTemplatesApi:
    config = Configuration(host=gateway.base_url + "/v1")
    config.username, config.password = account.api_username, account.api_password
    return WhatsAppTemplatesApi(ApiClient(config))


NEW = WhatsappCreateTemplateRequest.from_dict({
    "name": "order_update", "language": "en_US", "category": "utility",
    "components": [{"type": "header", "format": "text", "text": "News"},
                   {"type": "body", "text": "Order {{1}} shipped",
                    "example": {"body_text": [["A-1"]]}},
                   {"type": "buttons", "buttons": [
                       {"type": "otp", "otp_type": "copy_code", "text": "Copy"},
                       {"type": "phone_number", "text": "Call", "phone_number": "+3725555"}]}]})


def template_calls(upstream: ThreadedUpstream) -> list[Recorded]:
    return [r for r in upstream.requests if not r.path.endswith("/messages")]


def test_every_operation_reaches_meta_mapped_both_ways(
        gateway: LiveServer, graph: tuple[ThreadedUpstream, FakeGraph],
        accounts: tuple[Account, Account]) -> None:
    upstream, fake = graph
    templates = api(gateway, accounts[0])

    created = templates.create_whatsapp_template_with_http_info(WABA, NEW)
    assert_matches(json.loads(created.raw_data), "WhatsappCreateTemplateResponse")
    assert (created.data.status, created.data.category) == (WhatsappTemplateStatus.PENDING,
                                                            WhatsappTemplateCategory.UTILITY)
    [post] = template_calls(upstream)
    assert (post.method, post.path) == ("POST", f"/v21.0/{WABA}/message_templates")
    assert post.headers["authorization"] == f"Bearer {TOKEN}"
    assert post.json() == {
        "name": "order_update", "language": "en_US", "category": "UTILITY",
        "components": [{"type": "HEADER", "format": "TEXT", "text": "News"},
                       {"type": "BODY", "text": "Order {{1}} shipped",
                        "example": {"body_text": [["A-1"]]}},
                       {"type": "BUTTONS", "buttons": [
                           {"type": "OTP", "otp_type": "COPY_CODE", "text": "Copy"},
                           {"type": "PHONE_NUMBER", "text": "Call",
                            "phone_number": "+3725555"}]}]}

    # Meta approves it; the status reads through.
    template_id = created.data.id
    fake.templates[template_id]["status"] = "APPROVED"
    fetched = templates.get_whatsapp_template_by_id_with_http_info(WABA, template_id)
    assert_matches(json.loads(fetched.raw_data), "WhatsappTemplateResponse")
    assert fetched.data.status == WhatsappTemplateStatus.APPROVED
    assert [c.type.value for c in fetched.data.components] == ["header", "body", "buttons"]
    assert fetched.data.components[2].buttons[0].otp_type.value == "copy_code"
    one, membership = template_calls(upstream)[1:3]
    assert (one.method, one.path) == ("GET", f"/v21.0/{template_id}")
    assert (membership.path, membership.query["name"], membership.query["language"]) == \
        (f"/v21.0/{WABA}/message_templates", "order_update", "en_US")

    changes = WhatsappUpdateTemplateRequest(category=WhatsappTemplateCategory.MARKETING)
    assert templates.update_whatsapp_template(WABA, template_id, changes) == {"success": True}
    edit = template_calls(upstream)[-1]
    assert (edit.method, edit.path, edit.json()) == ("POST", f"/v21.0/{template_id}",
                                                     {"category": "MARKETING"})

    listed = templates.list_whatsapp_templates_with_http_info(
        WABA, limit=10, category=WhatsappTemplateCategory.MARKETING, name="order")
    assert_matches(json.loads(listed.raw_data), "WhatsappListTemplatesResponse")
    assert [t.id for t in listed.data.templates] == [template_id]
    query = template_calls(upstream)[-1].query
    assert (query["limit"], query["category"], query["name"]) == ("10", "MARKETING", "order")
    assert "components" in query["fields"]

    assert templates.delete_whatsapp_template(WABA, "order_update", hsm_id=template_id) == \
        {"success": True}
    delete = template_calls(upstream)[-1]
    assert (delete.method, delete.path, delete.query) == (
        "DELETE", f"/v21.0/{WABA}/message_templates",
        {"name": "order_update", "hsm_id": template_id})
    assert fake.templates == {}


def test_pages_link_to_the_gateway_and_odd_values_still_parse(
        gateway: LiveServer, graph: tuple[ThreadedUpstream, FakeGraph],
        accounts: tuple[Account, Account]) -> None:
    _upstream, fake = graph
    fake.add(WABA, "legacy", status="ARCHIVED", category="TRANSACTIONAL", components=[
        {"type": "HEADER", "format": "IMAGE", "example": {"header_handle": ["https://x/y"]}},
        {"type": "BODY", "text": "hi"},
        {"type": "BUTTONS", "buttons": [{"type": "VOICE_CALL", "text": "Call us"}]}])
    for index in range(3):
        fake.add(WABA, f"t{index}")
    templates = api(gateway, accounts[0])
    first = templates.list_whatsapp_templates_with_http_info(WABA, limit=2)
    body = json.loads(first.raw_data)
    assert_matches(body, "WhatsappListTemplatesResponse")
    assert TOKEN not in first.raw_data.decode()
    legacy = first.data.templates[0]
    assert (legacy.status, legacy.category) == (WhatsappTemplateStatus.DISABLED,
                                                WhatsappTemplateCategory.UTILITY)
    assert body["templates"][0]["components"][0] == {"type": "header", "example": {}}
    assert body["templates"][0]["components"][2] == {"buttons": [{"text": "Call us"}],
                                                     "type": "buttons"}
    nxt = first.data.paging.next
    assert nxt.startswith(gateway.base_url + f"/v1/whatsapp/wabas/{WABA}/templates?")
    second = httpx.get(nxt, auth=(accounts[0].api_username, accounts[0].api_password))
    assert [t["name"] for t in second.json()["templates"]] == ["t1", "t2"]
    assert "next" not in second.json()["paging"]


def test_wabas_not_assigned_are_forbidden_and_ids_must_be_in_the_waba(
        gateway: LiveServer, graph: tuple[ThreadedUpstream, FakeGraph],
        accounts: tuple[Account, Account]) -> None:
    upstream, fake = graph
    mine = fake.add(WABA, "mine")
    theirs = fake.add(OTHER_WABA, "theirs")
    other = api(gateway, accounts[1])
    before = len(upstream.requests)
    for call in (lambda: other.list_whatsapp_templates(WABA),
                 lambda: other.create_whatsapp_template(WABA, NEW),
                 lambda: other.get_whatsapp_template_by_id(WABA, mine),
                 lambda: other.update_whatsapp_template(WABA, mine, WhatsappUpdateTemplateRequest(
                     category=WhatsappTemplateCategory.MARKETING)),
                 lambda: other.delete_whatsapp_template(WABA, "mine")):
        refused(call, 403, "102")
    refused(lambda: other.list_whatsapp_templates("123"), 403, "102")  # configured nowhere
    assert len(upstream.requests) == before  # nothing reached Meta
    # An id of another WABA, asked for under one's own: not found, and not edited.
    acme = api(gateway, accounts[0])
    refused(lambda: acme.get_whatsapp_template_by_id(WABA, theirs), 404, "101")
    refused(lambda: acme.update_whatsapp_template(WABA, theirs, WhatsappUpdateTemplateRequest(
        category=WhatsappTemplateCategory.MARKETING)), 404, "101")
    assert fake.templates[theirs]["category"] == "UTILITY"
    assert [t.name for t in other.list_whatsapp_templates(OTHER_WABA).templates] == ["theirs"]


@pytest.mark.parametrize(("status", "error", "headers", "answer", "code"), [
    (400, {"code": 100, "message": "Invalid parameter", "error_user_msg": "Body too long"}, {},
     400, "105"),
    (400, {"code": 190, "message": "Error validating access token"}, {}, 500, "104"),
    (403, {"code": 200, "message": "Permissions error"}, {}, 403, "102"),
    (400, {"code": 80007, "message": "Rate limit hit"}, {"Retry-After": "7"}, 503, "104"),
    (500, {"code": 2, "message": "Service temporarily unavailable"}, {}, 503, "104"),
])
def test_graph_errors_in_the_specs_shape(
        gateway: LiveServer, graph: tuple[ThreadedUpstream, FakeGraph],
        accounts: tuple[Account, Account], status: int, error: dict[str, Any],
        headers: dict[str, str], answer: int, code: str) -> None:
    _upstream, fake = graph
    fake.fail_next = (status, error, headers)
    body = refused(lambda: api(gateway, accounts[0]).create_whatsapp_template(WABA, NEW),
                   answer, code)
    detail = body["errors"][0]["detail"]
    assert TOKEN not in detail
    if answer == 400:
        assert "Body too long" in detail
    if headers:
        response = httpx.get(f"{gateway.base_url}/v1/whatsapp/wabas/{WABA}/templates",
                             auth=(accounts[0].api_username, accounts[0].api_password))
        assert response.status_code == 200  # one failure only
    assert fake.templates == {}


def test_unknown_ids(gateway: LiveServer, accounts: tuple[Account, Account]) -> None:
    refused(lambda: api(gateway, accounts[0]).get_whatsapp_template_by_id(WABA, "1234"), 404,
            "101")


def test_an_unreachable_cloud_api_is_a_503(tmp_path: Any) -> None:
    settings = make_settings(
        f"sqlite:///{tmp_path}/omnirelay.db", channels={"whatsapp": "whatsapp_cloud"},
        providers={"whatsapp_cloud": {
            "base_url": f"http://127.0.0.1:{free_port()}", "access_token": TOKEN,
            "app_secret": "s", "verify_token": "v", "senders": {"+37255500000": PHONE_ID},
            "timeout": 5.0, "wabas": {WABA: ["acme"]}}})
    live = start_live_server(settings)
    try:
        account = live.call(create_account(live.runtime, "acme"))
        response = httpx.get(f"{live.base_url}/v1/whatsapp/wabas/{WABA}/templates",
                             auth=(account.api_username, account.api_password))
        assert response.status_code == 503
        assert response.headers["retry-after"] == "5"
        assert_matches(response.json(), "ErrorOmnichannel")
        assert response.json()["errors"][0]["code"] == "104"
    finally:
        live.stop()


def test_sending_checks_templates_once_the_lists_are_cached(
        gateway: LiveServer, graph: tuple[ThreadedUpstream, FakeGraph],
        accounts: tuple[Account, Account]) -> None:
    upstream, fake = graph
    fake.add(WABA, "order_update", "en")
    fake.add(OTHER_WABA, "theirs", "en")
    auth = (accounts[0].api_username, accounts[0].api_password)

    def send(name: str, code: str = "en") -> httpx.Response:
        return httpx.post(f"{gateway.base_url}/v1/omnimessage", auth=auth, json={
            "to": TO, "messages": [{"channel": "whatsapp", "template": {
                "name": name, "language": {"code": code}, "components": []}}]})

    # Nothing cached yet: accepted, and the WABA's list is fetched in the background.
    assert send("unknown").status_code == 201
    wait_until(lambda: any(r.query.get("fields") == "name,language"
                           for r in upstream.requests))
    wait_until(lambda: send("unknown").status_code == 400)
    refusal = send("unknown").json()["errors"][0]
    assert (refusal["code"], refusal["source"]) == ("105", "messages[0].template.name")
    assert send("order_update", "et").json()["errors"][0]["source"] == \
        "messages[0].template.language.code"
    assert send("theirs").status_code == 400  # another account's WABA
    assert send("order_update").status_code == 201


def test_waba_assignments_are_checked_when_the_configuration_is_read() -> None:
    base = {"access_token": "t", "app_secret": "s", "verify_token": "v",
            "senders": {"+3725": "1"}}
    settings = WhatsAppSettings.from_mapping({**base, "wabas": {WABA: ["acme", "beta"]}})
    assert settings.wabas == {WABA: ("acme", "beta")}
    assert settings.template_cache_seconds == 300.0
    assert WhatsAppSettings.from_mapping(base).wabas == {}
    with pytest.raises(ConfigError, match="is not a WABA id"):
        WhatsAppSettings.from_mapping({**base, "wabas": {"my-waba": ["acme"]}})
    with pytest.raises(ConfigError, match="list of account names"):
        WhatsAppSettings.from_mapping({**base, "wabas": {WABA: "acme"}})
    with pytest.raises(ConfigError, match="template_cache_seconds"):
        WhatsAppSettings.from_mapping({**base, "template_cache_seconds": -1})


def test_a_refused_token_is_a_500_on_every_operation(
        gateway: LiveServer, graph: tuple[ThreadedUpstream, FakeGraph],
        accounts: tuple[Account, Account]) -> None:
    _upstream, fake = graph
    template_id = fake.add(WABA, "mine")
    acme = api(gateway, accounts[0])
    for call in (lambda: acme.list_whatsapp_templates(WABA),
                 lambda: acme.get_whatsapp_template_by_id(WABA, template_id),
                 lambda: acme.update_whatsapp_template(WABA, template_id,
                                                       WhatsappUpdateTemplateRequest(
                                                           category=WhatsappTemplateCategory.MARKETING)),
                 lambda: acme.delete_whatsapp_template(WABA, "mine")):
        fake.fail_next = (401, {"code": 190, "message": "Session has expired"}, {})
        body = refused(call, 500, "104")
        assert "access token was refused" in body["errors"][0]["detail"]
    assert fake.templates[template_id]["category"] == "UTILITY"
