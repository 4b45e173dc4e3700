"""Malformed requests: each gets the right Messente code and source, and nothing is stored."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from omnirelay.store.tables import attempts, omnimessages
from tests.spec import assert_matches
from tests.support import LiveServer

TO = "+37255512345"
SMS = {"channel": "sms", "text": "hi"}


def body(**fields: Any) -> dict[str, Any]:
    return {"to": TO, "messages": [SMS], **fields}


# (description, JSON body, expected code, expected source)
CASES: list[tuple[str, Any, str, str | None]] = [
    ("no to", {"messages": [SMS]}, "106", "to"),
    ("no messages", {"to": TO}, "106", "messages"),
    ("empty messages", {"to": TO, "messages": []}, "105", "messages"),
    ("messages not an array", {"to": TO, "messages": SMS}, "105", "messages"),
    ("to without plus", body(to="37255512345"), "105", "to"),
    ("to too short", body(to="+372"), "105", "to"),
    ("to with letters", body(to="+3725551234a"), "105", "to"),
    ("to not a string", body(to=37255512345), "105", "to"),
    ("unknown channel", {"to": TO, "messages": [{"channel": "fax", "text": "x"}]}, "105",
     "messages[0].channel"),
    ("missing channel", {"to": TO, "messages": [{"text": "x"}]}, "106", "messages[0].channel"),
    ("sms without text", {"to": TO, "messages": [{"channel": "sms"}]}, "106", "messages[0].text"),
    ("sms empty text", {"to": TO, "messages": [{"channel": "sms", "text": ""}]}, "105",
     "messages[0].text"),
    ("sms text not a string", {"to": TO, "messages": [{"channel": "sms", "text": 5}]}, "105",
     "messages[0].text"),
    ("validity and ttl", {"to": TO, "messages": [{**SMS, "validity": 5, "ttl": 60}]}, "105",
     "messages[0].ttl"),
    ("validity not an integer", {"to": TO, "messages": [{**SMS, "validity": "5"}]}, "105",
     "messages[0].validity"),
    ("negative ttl", {"to": TO, "messages": [{**SMS, "ttl": -1}]}, "105", "messages[0].ttl"),
    ("bad autoconvert", {"to": TO, "messages": [{**SMS, "autoconvert": "maybe"}]}, "105",
     "messages[0].autoconvert"),
    ("udh not hex", {"to": TO, "messages": [{**SMS, "udh": "zz"}]}, "105", "messages[0].udh"),
    ("unknown field in sms", {"to": TO, "messages": [{**SMS, "colour": "red"}]}, "105",
     "messages[0].colour"),
    ("two sms variants", {"to": TO, "messages": [SMS, SMS]}, "105", "messages[1].channel"),
    ("viber image and text without buttons",
     {"to": TO, "messages": [{"channel": "viber", "text": "a", "image_url": "https://x.io/a.png"}]},
     "105", "messages[0]"),
    ("viber empty", {"to": TO, "messages": [{"channel": "viber"}]}, "105", "messages[0]"),
    ("viber bad button url", {"to": TO, "messages": [{"channel": "viber", "text": "a",
                                                      "button_text": "Go", "button_url": "nope"}]},
     "105", "messages[0].button_url"),
    ("viber video too long", {"to": TO, "messages": [{"channel": "viber", "video": {
        "url": "https://x.io/v.mp4", "thumbnail": "https://x.io/t.jpg", "file_size": 10,
        "duration": 601}}]}, "105", "messages[0].video.duration"),
    ("viber carousel with one item", {"to": TO, "messages": [{"channel": "viber", "text": "a",
        "carousel": {"items": [{"title": "One", "image_url": "https://x.io/a.png",
                                "primary_button": {"label": "Go",
                                                   "action_url": "https://x.io"}}]}}]},
     "105", "messages[0].carousel.items"),
    ("whatsapp two kinds", {"to": TO, "messages": [{"channel": "whatsapp",
                                                    "text": {"body": "a"},
                                                    "image": {"link": "https://x.io/a.png"}}]},
     "105", "messages[0]"),
    ("whatsapp template without language", {"to": TO, "messages": [{"channel": "whatsapp",
        "template": {"name": "t", "components": []}}]}, "106", "messages[0].template.language"),
    ("whatsapp parameter without type", {"to": TO, "messages": [{"channel": "whatsapp",
        "template": {"name": "t", "language": {"code": "en"},
                     "components": [{"type": "body", "parameters": [{"text": "x"}]}]}}]},
     "106", "messages[0].template.components[0].parameters[0].type"),
    ("whatsapp image with id and link", {"to": TO, "messages": [{"channel": "whatsapp",
        "image": {"id": "1", "link": "https://x.io/a.png"}}]}, "105", "messages[0].image"),
    ("whatsapp text without body", {"to": TO, "messages": [{"channel": "whatsapp",
                                                           "text": {"preview_url": True}}]},
     "106", "messages[0].text.body"),
    ("telegram image and document", {"to": TO, "messages": [{"channel": "telegram",
        "image_url": "https://x.io/a.png", "document_url": "https://x.io/a.pdf"}]},
     "105", "messages[0].document_url"),
    ("rcs without sender", {"to": TO, "messages": [{"channel": "rcs", "text": "a"}]}, "106",
     "messages[0].sender"),
    ("bad dlr_url", body(dlr_url="ftp://example.com"), "105", "dlr_url"),
    ("bad text_store", body(text_store="shredded"), "105", "text_store"),
    ("bad priority", body(priority="urgent"), "105", "priority"),
    ("bad time_to_send", body(time_to_send="tomorrow"), "105", "time_to_send"),
    ("impossible date", body(time_to_send="2030-02-30T10:00:00"), "105", "time_to_send"),
    ("unknown top-level field", body(extra=1), "105", "extra"),
    ("body is an array", [body()], "105", None),
    ("sms needs too many parts", {"to": TO, "messages": [{"channel": "sms", "text": "x" * 3100}]},
     "105", "messages[0].text"),
    ("sender too long", {"to": TO, "messages": [{**SMS, "sender": "x" * 65}]}, "105",
     "messages[0].sender"),
]


def count_stored(server: LiveServer) -> tuple[int, int]:
    def work(conn: Any) -> tuple[int, int]:
        return (conn.execute(select(func.count()).select_from(omnimessages)).scalar_one(),
                conn.execute(select(func.count()).select_from(attempts)).scalar_one())

    return server.call(server.runtime.db.read(work))


@pytest.fixture
def client(server: LiveServer, account: Any) -> httpx.Client:
    return httpx.Client(base_url=server.base_url + "/v1",
                        auth=(account.api_username, account.api_password))


def test_at_least_thirty_cases() -> None:
    assert len(CASES) >= 30


@pytest.mark.parametrize(("name", "payload", "code", "source"), CASES, ids=[c[0] for c in CASES])
def test_malformed_json_body(server: LiveServer, client: httpx.Client, name: str, payload: Any,
                             code: str, source: str | None) -> None:
    response = client.post("/omnimessage", json=payload)
    assert response.status_code == 400, response.text
    error = response.json()["errors"][0]
    assert (error["code"], error["source"]) == (code, source), error
    assert error["title"] == {"105": "Invalid data", "106": "Missing data"}[code]
    assert_matches(response.json(), "ErrorOmnichannel")
    assert count_stored(server) == (0, 0)


def test_transport_level_mistakes(server: LiveServer, client: httpx.Client, account: Any) -> None:
    cases = [
        client.post("/omnimessage", content=b"{not json", headers={"content-type":
                                                                   "application/json"}),
        client.post("/omnimessage", content=b"to=+372", headers={"content-type":
                                                                 "application/x-www-form-urlencoded"}),
        client.post("/omnimessage", content=b"", headers={"content-type": "application/json"}),
        client.post("/omnimessage", content=b"{" + b" " * (5 * 1024 * 1024) + b"}",
                    headers={"content-type": "application/json"}),
    ]
    for response in cases:
        assert response.status_code == 400, response.text
        assert response.json()["errors"][0]["code"] == "105"
    assert client.get("/nothing-here").json()["errors"][0]["code"] == "101"
    method = client.put("/omnimessage", json={})
    assert (method.status_code, method.json()["errors"][0]["code"]) == (405, "107")
    wrong_user = httpx.post(server.base_url + "/v1/omnimessage", json=body(),
                            auth=("nobody", account.api_password))
    wrong_password = httpx.post(server.base_url + "/v1/omnimessage", json=body(),
                                auth=(account.api_username, "wrong"))
    no_auth = httpx.post(server.base_url + "/v1/omnimessage", json=body())
    assert wrong_user.status_code == wrong_password.status_code == no_auth.status_code == 401
    assert wrong_user.content == wrong_password.content == no_auth.content
    assert count_stored(server) == (0, 0)


def test_bulk_rejects_bad_items_only(server: LiveServer, client: httpx.Client) -> None:
    response = client.post("/omnimessages", json={"messages": [
        body(), {"to": TO, "messages": [{"channel": "sms"}]}, body(priority="high")]})
    assert response.status_code == 201
    items = response.json()["messages"]
    assert "omnimessage_id" in items[0] and "omnimessage_id" in items[2]
    assert items[1]["errors"][0]["source"] == "messages[1].messages[0].text"
    assert count_stored(server) == (2, 2)
    too_many = client.post("/omnimessages", json={"messages": [body()] * 1001})
    assert too_many.status_code == 400
    assert count_stored(server) == (2, 2)
