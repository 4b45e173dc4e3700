"""Malformed and hostile requests: each gets the right code and source in its surface's format
(Messente or Twilio), never a 500, and nothing is stored."""

from __future__ import annotations

import base64
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
    # Hostile input (issue 14): each of these once reached the store, where it failed the whole
    # group commit, or raised an OverflowError (a 500).
    ("time_to_send at the end of time", body(time_to_send="9999-12-31T23:59:59Z"), "105",
     "time_to_send"),
    ("time_to_send overflows with its zone", body(time_to_send="9999-12-31T23:59:59-01:00"),
     "105", "time_to_send"),
    ("time_to_send before year 1 with its zone", body(time_to_send="0001-01-01T00:00:00+01:00"),
     "105", "time_to_send"),
    ("time_to_send in the year 3000", body(time_to_send="3000-01-01T00:00:00Z"), "105",
     "time_to_send"),
    ("NUL in sender", {"to": TO, "messages": [{**SMS, "sender": "Ac\u0000me"}]}, "105",
     "messages[0].sender"),
    ("line feed in sender", {"to": TO, "messages": [{**SMS, "sender": "Acme\n"}]}, "105",
     "messages[0].sender"),
    ("NUL in text", {"to": TO, "messages": [{"channel": "sms", "text": "a\u0000b"}]}, "105",
     "messages[0].text"),
    ("escape in viber text", {"to": TO, "messages": [{"channel": "viber", "text": "a\u001bb"}]},
     "105", "messages[0].text"),
    ("NUL in dlr_url", body(dlr_url="https://example.com/\u0000"), "105", "dlr_url"),
    ("space in dlr_url", body(dlr_url="https://example.com/a b"), "105", "dlr_url"),
    ("CR LF in dlr_url", body(dlr_url="https://example.com/a\r\nX-Injected: 1"), "105",
     "dlr_url"),
    ("tab in dlr_url host", body(dlr_url="https://exa\tmple.com/"), "105", "dlr_url"),
    ("dlr_url port out of range", body(dlr_url="https://example.com:99999/"), "105", "dlr_url"),
    ("dlr_url port not a number", body(dlr_url="https://example.com:http/"), "105", "dlr_url"),
    ("dlr_url port zero", body(dlr_url="https://example.com:0/"), "105", "dlr_url"),
    ("dlr_url empty port", body(dlr_url="https://example.com:/"), "105", "dlr_url"),
    ("dlr_url without host", body(dlr_url="https:///path"), "105", "dlr_url"),
    ("dlr_url with userinfo", body(dlr_url="https://user:pw@example.com/dlr"), "105",
     "dlr_url"),
    ("dlr_url too long", body(dlr_url="https://example.com/" + "a" * 2048), "105", "dlr_url"),
    ("Arabic-Indic digits in to", body(to="+\u0663\u0667\u0662\u0665\u0665\u0665\u0661"
                                          "\u0662\u0663\u0664\u0665"), "105", "to"),
    ("full-width digits in to", body(to="+\uff13\uff17\uff12\uff15\uff15\uff15\uff11"
                                        "\uff12\uff13\uff14\uff15"), "105", "to"),
    ("NUL in to", body(to="+37255512345\u0000"), "105", "to"),
    ("to too long", body(to="+372 " + " " * 40 + "55512345"), "105", "to"),
    ("viber template id too long", {"to": TO, "messages": [{"channel": "viber", "template": {
        "id": "t" * 257, "lang": "en"}}]}, "105", "messages[0].template.id"),
    ("NUL in a viber template parameter name", {"to": TO, "messages": [{"channel": "viber",
        "template": {"id": "t", "lang": "en", "params": {"a\u0000": "x"}}}]}, "105",
     "messages[0].template.params.(a name)"),
    ("whatsapp template name too long", {"to": TO, "messages": [{"channel": "whatsapp",
        "template": {"name": "n" * 513, "language": {"code": "en"}, "components": []}}]},
     "105", "messages[0].template.name"),
    ("NUL in a whatsapp caption", {"to": TO, "messages": [{"channel": "whatsapp",
        "image": {"link": "https://x.io/a.png", "caption": "\u0000"}}]}, "105",
     "messages[0].image.caption"),
    ("whatsapp mime_type too long", {"to": TO, "messages": [{"channel": "whatsapp",
        "image": {"link": "https://x.io/a.png", "mime_type": "m" * 257}}]}, "105",
     "messages[0].image.mime_type"),
    ("NUL deep in an rcs card", {"to": TO, "messages": [{"channel": "rcs", "sender": "Acme",
        "rich_card": {"standalone_card": {"card_content": {"title": "\u0000"}}}}]}, "105",
     "messages[0].rich_card.standalone_card.card_content.title"),
    ("rcs card string too long", {"to": TO, "messages": [{"channel": "rcs", "sender": "Acme",
        "rich_card": {"standalone_card": {"description": "d" * 4097}}}]}, "105",
     "messages[0].rich_card.standalone_card.description"),
    ("NUL in an unknown field name", body(**{"to\u0000": 1}), "105", "to\u0000"),
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


def basic(username: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"authorization": f"Basic {token}"}


def test_hostile_ids_and_credentials_answer_before_the_store(server: LiveServer,
                                                             client: httpx.Client,
                                                             account: Any) -> None:
    """A NUL in a Basic username or an id once raised a 500 on PostgreSQL: it cannot even be
    compared there."""
    url = server.base_url + "/v1/omnimessage"
    for headers in (basic("user\x00", account.api_password),
                    basic(account.api_username + "\x00", account.api_password),
                    basic("\x1b[31m", "x")):
        response = httpx.post(url, json=body(), headers=headers)
        assert response.status_code == 401, response.text
        assert response.json()["errors"][0]["code"] == "103"
        assert_matches(response.json(), "ErrorOmnichannel")
    for path in ("/omnimessage/%00/status", "/omnimessage/a%00b", "/omnimessage/" + "f" * 5000
                 + "/status", "/omnimessage/00000000-0000-0000-0000-00000000000%0A/status"):
        method = client.delete if path.count("/") == 2 else client.get
        response = method(path)
        assert response.status_code == 404, (path, response.text)
        assert response.json()["errors"][0]["code"] == "101"
    assert count_stored(server) == (0, 0)


FORM = "To=%2B37255512345&From=Acme&Body=hi"
FIXED = "&ScheduleType=fixed&SendAt="

# (what is wrong, the raw form body, expected Twilio code, expected HTTP status)
TWILIO_CREATE_CASES: list[tuple[str, str, int, int]] = [
    ("SendAt at the end of time", FORM + FIXED + "9999-12-31T23:59:59Z", 35115, 400),
    ("SendAt overflows with its zone", FORM + FIXED + "9999-12-31T23:59:59-01:00", 35115, 400),
    ("SendAt before year 1 with its zone", FORM + FIXED + "0001-01-01T00:00:00%2B01:00", 35115,
     400),
    ("SendAt RFC 2822 overflowing", FORM + FIXED + "Fri, 31 Dec 9999 23:59:59 -0100", 35115,
     400),
    ("NUL in From", "To=%2B37255512345&From=Ac%00me&Body=hi", 21212, 400),
    ("line feed after From", "To=%2B37255512345&From=Acme%0A&Body=hi", 21212, 400),
    ("NUL in Body", "To=%2B37255512345&From=Acme&Body=a%00b", 20001, 400),
    ("NUL in To", "To=%2B37255512345%00&From=Acme&Body=hi", 21211, 400),
    ("Arabic-Indic digits in To", "To=%2B" + "%D9%A3%D9%A7%D9%A2%D9%A5%D9%A5%D9%A5%D9%A1%D9%A2"
     "%D9%A3%D9%A4%D9%A5&From=Acme&Body=hi", 21211, 400),
    ("NUL in StatusCallback", FORM + "&StatusCallback=https://example.com/%00", 21609, 400),
    ("userinfo in StatusCallback", FORM + "&StatusCallback=https://u:pw@example.com/cb", 21609,
     400),
    ("CR LF in StatusCallback", FORM + "&StatusCallback=https://example.com/%0D%0AX:1", 21609,
     400),
    ("bad port in StatusCallback", FORM + "&StatusCallback=https://example.com:99999/", 21609,
     400),
    ("not UTF-8 in Body", "To=%2B37255512345&From=Acme&Body=%FF%FE", 20001, 400),
    ("overlong UTF-8 in Body", "To=%2B37255512345&From=Acme&Body=%C0%80", 20001, 400),
    ("UTF-8 surrogate in Body", "To=%2B37255512345&From=Acme&Body=%ED%A0%80", 20001, 400),
    ("not UTF-8 in a parameter name", FORM + "&%FF=1", 20001, 400),
]

# (what is wrong, the raw query string) for the list: each answers 400, code 20001
TWILIO_LIST_CASES: list[tuple[str, str]] = [
    ("DateSent at the end of time", "DateSent=9999-12-31"),
    ("DateSent< at the end of time", "DateSent%3C=9999-12-31T23:59:59.999999Z"),
    ("DateSent> overflowing with its zone", "DateSent%3E=0001-01-01T00:00:00%2B01:00"),
    ("DateSent before 1970", "DateSent=1969-12-31"),
    ("huge Page", "Page=" + "9" * 30),
    ("Page above the maximum", "Page=1000001"),
    ("thousands of digits in Page", "Page=" + "9" * 5000),
    ("thousands of digits in PageSize", "PageSize=" + "9" * 5000),
    ("huge PageToken offset", "PageToken=PA" + base64.urlsafe_b64encode(
        f"{10**30}.0".encode()).decode().rstrip("=")),
    ("huge PageToken snapshot", "PageToken=PA" + base64.urlsafe_b64encode(
        f"0.{10**30}".encode()).decode().rstrip("=")),
    ("PageToken of thousands of digits", "PageToken=PA" + base64.urlsafe_b64encode(
        ("9" * 5000 + ".0").encode()).decode().rstrip("=")),
    ("NUL in the To filter", "To=%2B3725551%00"),
    ("NUL in the From filter", "From=Ac%00me"),
    ("From filter too long", "From=" + "a" * 65),
]


def test_hostile_twilio_requests_get_400_in_twilio_format(server: LiveServer,
                                                          account: Any) -> None:
    sid = account.twilio_account_sid
    auth = (sid, account.twilio_auth_token)
    url = f"{server.base_url}/2010-04-01/Accounts/{sid}/Messages.json"
    form = {"content-type": "application/x-www-form-urlencoded"}
    wrong: list[str] = []
    answers: list[httpx.Response] = []
    for name, raw, code, status in TWILIO_CREATE_CASES:
        response = httpx.post(url, content=raw.encode(), headers=form, auth=auth)
        answers.append(response)
        if (response.status_code, response.json().get("code")) != (status, code):
            wrong.append(f"{name}: {response.status_code} {response.text}")
    for name, query in TWILIO_LIST_CASES:
        response = httpx.get(f"{url}?{query}", auth=auth)
        answers.append(response)
        if (response.status_code, response.json().get("code")) != (400, 20001):
            wrong.append(f"{name}: {response.status_code} {response.text}")
    assert not wrong, "\n".join(wrong)
    for response in answers:
        assert set(response.json()) == {"code", "message", "more_info", "status"}
    assert count_stored(server) == (0, 0)


def test_hostile_twilio_ids_and_credentials(server: LiveServer, account: Any) -> None:
    sid, token = account.twilio_account_sid, account.twilio_auth_token
    base = f"{server.base_url}/2010-04-01/Accounts"
    for headers in (basic(sid + "\x00", token), basic("AC\x00", token)):
        response = httpx.get(f"{base}/{sid}/Messages.json", headers=headers)
        assert (response.status_code, response.json()["code"]) == (401, 20003), response.text
    for path in (f"{base}/{sid}%00/Messages.json", f"{base}/AC%00/Messages.json",
                 f"{base}/{sid}/Messages/SM{'a' * 32}%0A.json",
                 f"{base}/{sid}/Messages/SM%00.json"):
        response = httpx.get(path, auth=(sid, token))
        assert (response.status_code, response.json()["code"]) == (404, 20404), response.text
        unauthenticated = httpx.get(path)
        assert (unauthenticated.status_code, unauthenticated.json()["code"]) == (401, 20003)
    assert count_stored(server) == (0, 0)
