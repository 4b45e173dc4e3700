"""The official `messente-api` SDK against a live gateway on 127.0.0.1, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx
import pytest
from messente_api import (
    SMS,
    ApiClient,
    ApiException,
    BulkMessagingApi,
    BulkOmnimessage,
    Configuration,
    DeliveryReportApi,
    Omnimessage,
    OmnimessageApi,
    OmnimessageMessagesInner,
    Viber,
    WhatsApp,
    WhatsAppComponent,
    WhatsAppLanguage,
    WhatsAppParameter,
    WhatsAppTemplate,
)

from tests.spec import assert_matches
from tests.support import LiveServer, wait_until

TO = "+37255512345"


def sdk(server: LiveServer, account: Any, password: str | None = None,
        with_v1: bool = True) -> ApiClient:
    config = Configuration(host=server.base_url + ("/v1" if with_v1 else ""))
    config.username = account.api_username
    config.password = account.api_password if password is None else password
    return ApiClient(config)


def final_statuses(server: LiveServer, account: Any, omnimessage_id: str,
                   count: int) -> list[Any]:
    api = DeliveryReportApi(sdk(server, account))

    def done() -> list[Any] | None:
        statuses = api.retrieve_delivery_report(omnimessage_id).statuses
        finished = [s for s in statuses if s.status is not None
                    and s.status.value in {"DELIVRD", "SEEN", "UNDELIV", "FAILED", "REJECTD",
                                           "EXPIRED"}]
        return statuses if len(finished) == count else None

    return wait_until(done)  # type: ignore[no-any-return]


def test_send_sms_and_read_delivered_status(server: LiveServer, account: Any) -> None:
    api = OmnimessageApi(sdk(server, account))
    sent = api.send_omnimessage(Omnimessage(
        to=TO, messages=[OmnimessageMessagesInner(SMS(text="hello", sender="Shop"))]))
    assert sent.to == TO
    assert [(m.channel.value, m.sender) for m in sent.messages] == [("sms", "Shop")]
    statuses = final_statuses(server, account, sent.omnimessage_id, 1)
    assert [(s.channel.value, s.status.value, s.err.value) for s in statuses] == \
        [("sms", "DELIVRD", 0)]
    assert statuses[0].message_id == sent.messages[0].message_id
    assert statuses[0].price_info.parts_count == 1


def test_sdk_without_v1_prefix_reaches_the_same_api(server: LiveServer, account: Any) -> None:
    api = OmnimessageApi(sdk(server, account, with_v1=False))
    sent = api.send_omnimessage(Omnimessage(
        to=TO, messages=[OmnimessageMessagesInner(SMS(text="hello"))]))
    assert sent.messages[0].sender == "Acme"  # the account default


def test_viber_undeliverable_then_sms_delivers(server: LiveServer, account: Any) -> None:
    api = OmnimessageApi(sdk(server, account))
    sent = api.send_omnimessage(Omnimessage(to="+37255519981", messages=[
        OmnimessageMessagesInner(Viber(text="hi on viber", sender="ShopV")),
        OmnimessageMessagesInner(SMS(text="hi by sms")),
    ]))
    assert [m.channel.value for m in sent.messages] == ["viber", "sms"]
    statuses = final_statuses(server, account, sent.omnimessage_id, 2)
    assert [(s.channel.value, s.status.value) for s in statuses] == \
        [("viber", "UNDELIV"), ("sms", "DELIVRD")]


def test_whatsapp_template(server: LiveServer, account: Any) -> None:
    api = OmnimessageApi(sdk(server, account))
    template = WhatsAppTemplate(
        name="order_update", language=WhatsAppLanguage(code="en"),
        components=[WhatsAppComponent(type="body", parameters=[
            WhatsAppParameter(type="text", text="12345")])])
    sent = api.send_omnimessage(Omnimessage(to=TO, messages=[
        OmnimessageMessagesInner(WhatsApp(template=template, sender="+37255500000"))]))
    statuses = final_statuses(server, account, sent.omnimessage_id, 1)
    assert (statuses[0].channel.value, statuses[0].status.value) == ("whatsapp", "DELIVRD")


def test_scheduled_message_waits_and_can_be_cancelled(server: LiveServer, account: Any) -> None:
    api = OmnimessageApi(sdk(server, account))
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    sent = api.send_omnimessage(Omnimessage(
        to=TO, time_to_send=later, messages=[OmnimessageMessagesInner(SMS(text="later"))]))
    report = DeliveryReportApi(sdk(server, account)).retrieve_delivery_report(sent.omnimessage_id)
    assert [s.status for s in report.statuses] == [None]
    api.cancel_scheduled_message(sent.omnimessage_id)
    with pytest.raises(ApiException) as again:
        api.cancel_scheduled_message(sent.omnimessage_id)
    assert again.value.status == 404


def test_cancel_after_sending_started_is_404(server: LiveServer, account: Any) -> None:
    api = OmnimessageApi(sdk(server, account))
    sent = api.send_omnimessage(Omnimessage(
        to=TO, messages=[OmnimessageMessagesInner(SMS(text="now"))]))
    final_statuses(server, account, sent.omnimessage_id, 1)
    with pytest.raises(ApiException) as error:
        api.cancel_scheduled_message(sent.omnimessage_id)
    assert error.value.status == 404
    assert '"code":"101"' in error.value.body


def test_bulk_mixes_successes_and_errors(server: LiveServer, account: Any) -> None:
    api = BulkMessagingApi(sdk(server, account))
    result = api.send_bulk_omnimessage(BulkOmnimessage(messages=[
        Omnimessage(to=TO, messages=[OmnimessageMessagesInner(SMS(text="one"))]),
        Omnimessage(to="+1", messages=[OmnimessageMessagesInner(SMS(text="bad number"))]),
        Omnimessage(to=TO, messages=[OmnimessageMessagesInner(SMS(text="three"))]),
    ]))
    first, second, third = (item.actual_instance for item in result.messages)
    assert first.to == TO and third.to == TO
    assert second.errors[0].code.value == "105"
    assert second.errors[0].source == "messages[1].to"


def test_sdk_raises_parsed_errors(server: LiveServer, account: Any) -> None:
    with pytest.raises(ApiException) as unauthorized:
        OmnimessageApi(sdk(server, account, password="wrong")).send_omnimessage(Omnimessage(
            to=TO, messages=[OmnimessageMessagesInner(SMS(text="x"))]))
    assert unauthorized.value.status == 401
    with pytest.raises(ApiException) as invalid:
        OmnimessageApi(sdk(server, account)).send_omnimessage(Omnimessage(
            to="+372", messages=[OmnimessageMessagesInner(SMS(text="x"))]))
    assert invalid.value.status == 400
    with pytest.raises(ApiException) as missing:
        DeliveryReportApi(sdk(server, account)).retrieve_delivery_report(
            "7b3c1ee4-7f4e-4b0e-9d51-5d4f1b2c9a11")
    assert missing.value.status == 404


def test_another_accounts_message_is_invisible(server: LiveServer, account: Any) -> None:
    from tests.support import create_account

    other = server.call(create_account(server.runtime, "other"))
    sent = OmnimessageApi(sdk(server, account)).send_omnimessage(Omnimessage(
        to=TO, time_to_send=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1),
        messages=[OmnimessageMessagesInner(SMS(text="mine"))]))
    with pytest.raises(ApiException) as status:
        DeliveryReportApi(sdk(server, other)).retrieve_delivery_report(sent.omnimessage_id)
    assert status.value.status == 404
    with pytest.raises(ApiException) as cancel:
        OmnimessageApi(sdk(server, other)).cancel_scheduled_message(sent.omnimessage_id)
    assert cancel.value.status == 404
    OmnimessageApi(sdk(server, account)).cancel_scheduled_message(sent.omnimessage_id)


def test_response_bodies_match_the_official_schemas(server: LiveServer, account: Any) -> None:
    auth = (account.api_username, account.api_password)
    with httpx.Client(base_url=server.base_url + "/v1", auth=auth) as client:
        created = client.post("/omnimessage", json={"to": TO, "messages": [
            {"channel": "viber", "text": "hi"}, {"channel": "sms", "text": "hello"}]})
        assert created.status_code == 201
        assert_matches(created.json(), "OmniMessageCreateSuccessResponse")
        assert set(created.json()) == {"messages", "to", "omnimessage_id"}
        omnimessage_id = created.json()["omnimessage_id"]
        wait_until(lambda: client.get(f"/omnimessage/{omnimessage_id}/status")
                   .json()["statuses"][0]["status"] == "DELIVRD")
        status = client.get(f"/omnimessage/{omnimessage_id}/status")
        assert status.status_code == 200
        assert_matches(status.json(), "DeliveryReportResponse")
        scheduled = client.post("/omnimessage", json={
            "to": TO, "time_to_send": "2099-01-01T00:00", "messages": [
                {"channel": "sms", "text": "later"}]}).json()
        pending = client.get(f"/omnimessage/{scheduled['omnimessage_id']}/status").json()
        assert_matches(pending, "DeliveryReportResponse")
        canceled = client.delete(f"/omnimessage/{scheduled['omnimessage_id']}")
        assert (canceled.status_code, canceled.json()) == (202, {})
        assert_matches(canceled.json(), "EmptyObject")
        bulk = client.post("/omnimessages", json={"messages": [
            {"to": TO, "messages": [{"channel": "sms", "text": "a"}]},
            {"to": TO, "messages": []}]})
        assert bulk.status_code == 201
        assert_matches(bulk.json(), "BulkOmniMessageCreateSuccessResponse")
        for response in (client.post("/omnimessage", json={"to": TO}),
                         client.get("/omnimessage/nope/status"),
                         httpx.get(server.base_url + "/v1/omnimessage/x/status"),
                         client.put("/omnimessage")):
            assert_matches(response.json(), "ErrorOmnichannel")
        telegram = client.post("/omnimessage", json={"to": TO, "messages": [
            {"channel": "telegram", "text": "hi"}]})
        assert telegram.status_code == 201
        assert_matches(telegram.json(), "OmniMessageCreateSuccessResponse", version="2.0.0")
