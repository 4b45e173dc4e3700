"""The WhatsApp Templates API on the sandbox, through the official SDK's WhatsAppTemplatesApi, on
SQLite and PostgreSQL: every operation's success and documented errors, bodies checked against
the spec, one account's templates out of another's reach, and the send-time template check."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from messente_api import (
    ApiClient,
    ApiException,
    BulkMessagingApi,
    BulkOmnimessage,
    Configuration,
    Omnimessage,
    OmnimessageApi,
    OmnimessageMessagesInner,
    WhatsApp,
    WhatsAppComponent,
    WhatsappCreateTemplateRequest,
    WhatsAppLanguage,
    WhatsAppParameter,
    WhatsAppTemplate,
    WhatsappTemplateCategory,
    WhatsappTemplateComponent,
    WhatsAppTemplatesApi,
    WhatsappTemplateStatus,
    WhatsappUpdateTemplateRequest,
)

from omnirelay.store.queries import Account
from tests.spec import assert_matches
from tests.support import LiveServer, create_account

WABA = "102290129340398"
TO = "+37255512345"


def sdk(server: LiveServer, account: Account, password: str | None = None) -> ApiClient:
    config = Configuration(host=server.base_url + "/v1")
    config.username = account.api_username
    config.password = account.api_password if password is None else password
    return ApiClient(config)


def api(server: LiveServer, account: Account) -> WhatsAppTemplatesApi:
    return WhatsAppTemplatesApi(sdk(server, account))


def new_template(name: str = "order_update", language: str = "en",
                 category: str = "utility") -> WhatsappCreateTemplateRequest:
    return WhatsappCreateTemplateRequest.from_dict({
        "name": name, "language": language, "category": category,
        "components": [
            {"type": "header", "format": "text", "text": "Order news"},
            {"type": "body", "text": "Your order {{1}} has shipped",
             "example": {"body_text": [["A-1001"]]}},
            {"type": "buttons", "buttons": [{"type": "quick_reply", "text": "Thanks"},
                                            {"type": "url", "text": "Track",
                                             "url": "https://example.com/t"}]}]})


def raw(server: LiveServer, account: Account, method: str, path: str, **kwargs: Any
        ) -> httpx.Response:
    return httpx.request(method, server.base_url + "/v1/whatsapp/wabas" + path,
                         auth=(account.api_username, account.api_password), **kwargs)


def refused(call: Any, status: int, code: str) -> dict[str, Any]:
    with pytest.raises(ApiException) as caught:
        call()
    assert caught.value.status == status, caught.value.body
    body = json.loads(caught.value.body)
    assert_matches(body, "ErrorOmnichannel")
    assert [e["code"] for e in body["errors"]] == [code], body
    return body


def create(server: LiveServer, account: Account, **kwargs: Any) -> str:
    created = api(server, account).create_whatsapp_template_with_http_info(
        WABA, new_template(**kwargs))
    assert created.status_code == 200
    assert_matches(json.loads(created.raw_data), "WhatsappCreateTemplateResponse")
    return str(created.data.id)


def test_create_read_update_delete_and_the_review(server: LiveServer, account: Account) -> None:
    templates = api(server, account)
    created = templates.create_whatsapp_template(WABA, new_template())
    assert created.status == WhatsappTemplateStatus.PENDING
    assert created.category == WhatsappTemplateCategory.UTILITY
    assert created.id.isdigit() and len(created.id) == 16

    # The sandbox reviews it when it is next read: approved.
    fetched = templates.get_whatsapp_template_by_id_with_http_info(WABA, created.id)
    assert_matches(json.loads(fetched.raw_data), "WhatsappTemplateResponse")
    template = fetched.data
    assert (template.name, template.language, template.status) == \
        ("order_update", "en", WhatsappTemplateStatus.APPROVED)
    assert [c.type.value for c in template.components] == ["header", "body", "buttons"]
    assert template.components[1].example.body_text == [["A-1001"]]
    assert [b.type.value for b in template.components[2].buttons] == ["quick_reply", "url"]

    # An edit goes back to review.
    changes = WhatsappUpdateTemplateRequest(
        category=WhatsappTemplateCategory.MARKETING,
        components=[WhatsappTemplateComponent.from_dict(
            {"type": "body", "text": "Order {{1}} is on its way"})])
    updated = templates.update_whatsapp_template_with_http_info(WABA, created.id, changes)
    assert updated.status_code == 200
    assert_matches(json.loads(updated.raw_data), "AnyJsonResponse")
    listed = templates.list_whatsapp_templates_with_http_info(WABA)
    assert_matches(json.loads(listed.raw_data), "WhatsappListTemplatesResponse")
    [again] = listed.data.templates
    assert (again.category, again.status) == (WhatsappTemplateCategory.MARKETING,
                                              WhatsappTemplateStatus.APPROVED)
    assert [c.text for c in again.components] == ["Order {{1}} is on its way"]

    deleted = templates.delete_whatsapp_template_with_http_info(WABA, "order_update")
    assert deleted.status_code == 200
    assert_matches(json.loads(deleted.raw_data), "AnyJsonResponse")
    assert templates.list_whatsapp_templates(WABA).templates == []
    refused(lambda: templates.get_whatsapp_template_by_id(WABA, created.id), 404, "101")


def test_reject_prefix_is_rejected_and_filters_and_pages(server: LiveServer,
                                                         account: Account) -> None:
    templates = api(server, account)
    rejected = create(server, account, name="reject_spam", category="marketing")
    assert templates.get_whatsapp_template_by_id(WABA, rejected).status == \
        WhatsappTemplateStatus.REJECTED
    for name in ("alpha", "beta", "gamma"):
        create(server, account, name=name)
    create(server, account, name="alpha", language="et")

    by_status = templates.list_whatsapp_templates(WABA, status=WhatsappTemplateStatus.REJECTED)
    assert [t.name for t in by_status.templates] == ["reject_spam"]
    by_category = templates.list_whatsapp_templates(
        WABA, category=WhatsappTemplateCategory.UTILITY, language="et")
    assert [(t.name, t.language) for t in by_category.templates] == [("alpha", "et")]
    assert [t.name for t in templates.list_whatsapp_templates(WABA, name="AMM").templates] == \
        ["gamma"]
    assert len(templates.list_whatsapp_templates(WABA, content="shipped").templates) == 5

    # Pages of two, forwards and back, through the cursors the answers give.
    first = templates.list_whatsapp_templates(WABA, limit=2)
    assert first.paging.next is not None and first.paging.previous is None
    second = templates.list_whatsapp_templates(WABA, limit=2, after=first.paging.cursors.after)
    third = templates.list_whatsapp_templates(WABA, limit=2, after=second.paging.cursors.after)
    names = [t.name for page in (first, second, third) for t in page.templates]
    assert names == ["reject_spam", "alpha", "beta", "gamma", "alpha"]
    assert third.paging.next is None
    back = templates.list_whatsapp_templates(WABA, limit=2, before=third.paging.cursors.before)
    assert [t.name for t in back.templates] == ["beta", "gamma"]
    # The next link is the gateway's own list, and it works as given.
    assert first.paging.next.startswith(server.base_url + "/v1/whatsapp/wabas/")
    followed = httpx.get(first.paging.next, auth=(account.api_username, account.api_password))
    assert [t["name"] for t in followed.json()["templates"]] == ["beta", "gamma"]

    # Deleting by name and id takes one language only.
    [alpha_et] = by_category.templates
    templates.delete_whatsapp_template(WABA, "alpha", hsm_id=alpha_et.id)
    assert [(t.name, t.language) for t in
            templates.list_whatsapp_templates(WABA, name="alpha").templates] == [("alpha", "en")]


def test_documented_errors(server: LiveServer, account: Account) -> None:
    templates = api(server, account)
    template_id = create(server, account)
    # 401: wrong password
    wrong = WhatsAppTemplatesApi(sdk(server, account, password="wrong"))
    body = refused(lambda: wrong.list_whatsapp_templates(WABA), 401, "103")
    assert body["errors"][0]["title"] == "Unauthorized"
    for call in (lambda: wrong.create_whatsapp_template(WABA, new_template("other")),
                 lambda: wrong.get_whatsapp_template_by_id(WABA, template_id),
                 lambda: wrong.update_whatsapp_template(WABA, template_id, WhatsappUpdateTemplateRequest(
                     category=WhatsappTemplateCategory.MARKETING)),
                 lambda: wrong.delete_whatsapp_template(WABA, "order_update")):
        refused(call, 401, "103")
    # 400: the same name and language twice; a bad WABA id; bad bodies and queries
    refused(lambda: templates.create_whatsapp_template(WABA, new_template()), 400, "105")
    refused(lambda: templates.list_whatsapp_templates("not-a-waba"), 400, "105")
    refused(lambda: templates.create_whatsapp_template(WABA, new_template("Bad Name")), 400,
            "105")
    cases = [
        ("POST", f"/{WABA}/templates", {"json": {"name": "x", "language": "en",
                                                 "category": "utility"}}, "106", "components"),
        ("POST", f"/{WABA}/templates", {"json": {
            "name": "x", "language": "en", "category": "promo",
            "components": [{"type": "body", "text": "hi"}]}}, "105", "category"),
        ("POST", f"/{WABA}/templates", {"json": {
            "name": "x", "language": "en", "category": "utility",
            "components": [{"type": "footer", "text": "no body"}]}}, "105", "components"),
        ("POST", f"/{WABA}/templates", {"json": {
            "name": "x", "language": "en", "category": "utility",
            "components": [{"type": "body", "text": "hi", "colour": "red"}]}}, "105",
         "components[0].colour"),
        ("POST", f"/{WABA}/templates", {"content": b"{", "headers": {
            "Content-Type": "application/json"}}, "105", None),
        ("PUT", f"/{WABA}/templates/{template_id}", {"json": {}}, "105", None),
        ("GET", f"/{WABA}/templates", {"params": {"limit": "501"}}, "105", "limit"),
        ("GET", f"/{WABA}/templates", {"params": {"status": "APPROVED"}}, "105", "status"),
        ("GET", f"/{WABA}/templates", {"params": {"after": "bm90IGEgY3Vyc29y"}}, "105", "after"),
        ("DELETE", f"/{WABA}/templates", {}, "106", "name"),
        ("GET", f"/{WABA}/templates/abc", {}, "105", "templateId"),
    ]
    for method, path, kwargs, code, source in cases:
        response = raw(server, account, method, path, **kwargs)
        assert response.status_code == 400, (method, path, response.text)
        assert_matches(response.json(), "ErrorOmnichannel")
        assert [(e["code"], e["source"]) for e in response.json()["errors"]] == \
            [(code, source)], (method, path, response.text)
    # 404 for what does not exist
    refused(lambda: templates.get_whatsapp_template_by_id(WABA, "1" * 16), 404, "101")
    refused(lambda: templates.update_whatsapp_template(
        WABA, "1" * 16, WhatsappUpdateTemplateRequest(category=WhatsappTemplateCategory.UTILITY)),
        404, "101")
    refused(lambda: templates.delete_whatsapp_template(WABA, "no_such"), 404, "101")
    # Nothing was stored by the refusals.
    assert [t.name for t in templates.list_whatsapp_templates(WABA).templates] == \
        ["order_update"]


def test_one_account_cannot_reach_anothers_templates(server: LiveServer,
                                                     account: Account) -> None:
    other = server.call(create_account(server.runtime, "other"))
    mine = create(server, account)
    theirs = api(server, other)
    assert theirs.list_whatsapp_templates(WABA).templates == []
    refused(lambda: theirs.get_whatsapp_template_by_id(WABA, mine), 404, "101")
    refused(lambda: theirs.update_whatsapp_template(
        WABA, mine, WhatsappUpdateTemplateRequest(category=WhatsappTemplateCategory.MARKETING)),
        404, "101")
    refused(lambda: theirs.delete_whatsapp_template(WABA, "order_update", hsm_id=mine), 404,
            "101")
    refused(lambda: theirs.delete_whatsapp_template(WABA, "order_update"), 404, "101")
    # The same name is free for the other account, and A's template is untouched.
    theirs.create_whatsapp_template(WABA, new_template())
    template = api(server, account).get_whatsapp_template_by_id(WABA, mine)
    assert (template.category, template.status) == (WhatsappTemplateCategory.UTILITY,
                                                    WhatsappTemplateStatus.APPROVED)
    # Another WABA id of the same account is another set of templates.
    assert api(server, account).list_whatsapp_templates("999").templates == []


def whatsapp_message(name: str, language: str = "en") -> Omnimessage:
    template = WhatsAppTemplate(name=name, language=WhatsAppLanguage(code=language),
                                components=[WhatsAppComponent(type="body", parameters=[
                                    WhatsAppParameter(type="text", text="A-1001")])])
    return Omnimessage(to=TO, messages=[OmnimessageMessagesInner(WhatsApp(template=template))])


def test_sending_checks_the_template_name_and_language(server: LiveServer,
                                                       account: Account) -> None:
    send = OmnimessageApi(sdk(server, account))
    # An account without templates in the sandbox: it cannot tell, so anything goes.
    assert send.send_omnimessage(whatsapp_message("anything")).omnimessage_id
    create(server, account)
    create(server, account, name="reject_this")
    assert send.send_omnimessage(whatsapp_message("order_update")).omnimessage_id
    for message, source, words in [
            (whatsapp_message("unknown"), "messages[0].template.name", "not one of"),
            (whatsapp_message("order_update", "et"), "messages[0].template.language.code",
             "no 'et' translation"),
            (whatsapp_message("reject_this"), "messages[0].template.name", "is rejected")]:
        body = refused(lambda m=message: send.send_omnimessage(m), 400, "105")
        [error] = body["errors"]
        assert error["source"] == source and words in error["detail"], error
    # In bulk, only the item with the unknown template is refused.
    bulk = BulkMessagingApi(sdk(server, account)).send_bulk_omnimessage_with_http_info(
        BulkOmnimessage(messages=[whatsapp_message("order_update"), whatsapp_message("nope")]))
    results = json.loads(bulk.raw_data)["messages"]
    assert "omnimessage_id" in results[0]
    assert [(e["code"], e["source"]) for e in results[1]["errors"]] == \
        [("105", "messages[1].messages[0].template.name")]
    # Another account's templates do not count for this one.
    other = server.call(create_account(server.runtime, "other"))
    create(server, other, name="theirs")
    refused(lambda: send.send_omnimessage(whatsapp_message("theirs")), 400, "105")
