"""The API surfaces are served as plain Starlette routes, and /openapi.json still documents them.

In-process on SQLite: routing does not depend on the database.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.routing import Route

from omnirelay.api.messente import _SEND_DOC
from omnirelay.api.twilio import _CREATE_DOC, _UPDATE_DOC
from omnirelay.app import create_app
from omnirelay.runtime import Runtime
from omnirelay.store.queries import Account
from tests.support import create_account, make_settings
from tests.templates import premigrate

MESSENTE = [("POST", "/omnimessage"), ("POST", "/omnimessages"),
            ("GET", "/omnimessage/{omnimessage_id}/status"),
            ("DELETE", "/omnimessage/{omnimessage_id}")]
MESSAGES = "/2010-04-01/Accounts/{account_sid}/Messages.json"
MESSAGE = "/2010-04-01/Accounts/{account_sid}/Messages/{sid}.json"
MEDIA = "/2010-04-01/Accounts/{account_sid}/Messages/{sid}/Media.json"
TWILIO = [("POST", MESSAGES), ("GET", MESSAGES), ("GET", MESSAGE), ("POST", MESSAGE),
          ("DELETE", MESSAGE), ("GET", MEDIA)]
# omnirelay's own history routes, documented after the Messente mount
HISTORY = [("GET", "/v1/omnimessages"), ("GET", "/v1/omnimessage/{omnimessage_id}"),
           ("GET", "/v1/inbound"), ("GET", "/v1/webhooks"),
           ("POST", "/v1/webhooks/{webhook_id}/redeliver"), ("POST", "/v1/webhooks/redeliver")]
# Messente's Phonebook API (api/phonebook.py), documented under /v1 only
# statistics, and the legacy balance and pricing endpoints (also at /, as on api2)
ACCOUNT = [("POST", "/v1/statistics/reports"), ("GET", "/v1/get_balance"),
           ("POST", "/v1/get_balance"), ("GET", "/v1/pricelist"), ("GET", "/v1/prices")]
# Messente's Number Lookup (api/number_lookup.py)
NUMBER_LOOKUP = [("POST", "/v1/hlr/sync")]
# Messente's WhatsApp Templates (api/whatsapp_templates.py)
TEMPLATES = [(m, "/v1/whatsapp/wabas/{waba_id}/templates" + p) for m, p in [
    ("GET", ""), ("POST", ""), ("DELETE", ""), ("GET", "/{template_id}"),
    ("PUT", "/{template_id}")]]
VERIFICATION = [("POST", "/v1/verify/start"), ("POST", "/v1/verify/pin")]
PHONEBOOK = [(m, "/v1/phonebook" + p) for m, p in [
    ("GET", "/blacklist"), ("POST", "/blacklist"), ("GET", "/blacklist/{phone}"),
    ("DELETE", "/blacklist/{phone}"), ("GET", "/contacts"), ("POST", "/contacts"),
    ("GET", "/contacts/{phone}"), ("PATCH", "/contacts/{phone}"), ("DELETE", "/contacts/{phone}"),
    ("GET", "/contacts/{phone}/groups"), ("GET", "/groups"), ("POST", "/groups"),
    ("GET", "/groups/{group_id}"), ("PUT", "/groups/{group_id}"),
    ("DELETE", "/groups/{group_id}"), ("POST", "/groups/{group_id}/contacts/{phone}"),
    ("DELETE", "/groups/{group_id}/contacts/{phone}")]]
HOT = [(m, "/v1" + p) for m, p in MESSENTE] + MESSENTE + TWILIO


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[tuple[FastAPI, Runtime, Account]]:
    premigrate(f"sqlite:///{tmp_path}/omnirelay.db")
    runtime = Runtime(make_settings(f"sqlite:///{tmp_path}/omnirelay.db"))
    runtime.migrate()
    account = await create_account(runtime)
    await runtime.start(workers=False)
    try:
        yield create_app(runtime, manage_runtime=False), runtime, account
    finally:
        await runtime.stop()
        runtime.close()


def client_for(app: FastAPI) -> httpx.AsyncClient:
    # The app re-raises an unhandled error after answering 500; the answer is what is tested.
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://gateway")


def test_every_surface_route_is_a_plain_starlette_route(gateway: Any) -> None:
    app, _runtime, _account = gateway
    served: dict[tuple[str, str], list[Route]] = {}
    for route in app.routes:
        if isinstance(route, Route):
            for method in route.methods or ():
                served.setdefault((method, route.path), []).append(route)
    for method, path in HOT:
        routes = served.get((method, path), [])
        assert len(routes) == 1, (method, path, routes)
        assert not isinstance(routes[0], APIRoute), (method, path)
        # Starlette would add HEAD to a GET route; under FastAPI it was a 405 and stays one.
        assert ("HEAD", path) not in served


async def test_openapi_documents_the_operations_as_before(gateway: Any) -> None:
    app, _runtime, _account = gateway
    async with client_for(app) as client:
        spec = (await client.get("/openapi.json")).json()
        docs = await client.get("/docs")
    assert docs.status_code == 200 and "/openapi.json" in docs.text
    paths = spec["paths"]
    # Only the /v1 mount is documented, in routing order (OpenAPI groups a path's methods, so
    # GET /v1/omnimessages sits beside the bulk send).
    documented = [(m.upper(), p) for p, ops in paths.items() for m in ops]
    surfaces = [(m, "/v1" + p) for m, p in MESSENTE] + TWILIO
    assert sorted(documented) == sorted(surfaces + HISTORY + PHONEBOOK + ACCOUNT + NUMBER_LOOKUP
                                              + TEMPLATES + VERIFICATION)
    assert [d for d in documented if d in surfaces] == surfaces
    send = paths["/v1/omnimessage"]["post"]
    assert send["summary"] == "Send an omnimessage"
    assert send["tags"] == ["Omnimessage"]
    assert send["requestBody"] == _SEND_DOC["requestBody"]
    assert list(send["responses"]) == ["201", "400", "401", "429", "503", "422"]  # 422: a reused key
    # Operation ids are what FastAPI generated for these routes, so generated clients keep them.
    assert send["operationId"] == "send_omnimessage_v1_omnimessage_post"
    status = paths["/v1/omnimessage/{omnimessage_id}/status"]["get"]
    assert status["operationId"] == "status_v1_omnimessage__omnimessage_id__status_get"
    assert status["parameters"] == [{"name": "omnimessage_id", "in": "path", "required": True,
                                     "schema": {"type": "string", "title": "Omnimessage Id"}}]
    assert paths["/v1/omnimessage/{omnimessage_id}"]["delete"]["summary"] == \
        "Cancel a scheduled omnimessage"
    create = paths[MESSAGES]["post"]
    assert create["requestBody"] == _CREATE_DOC["requestBody"]
    assert create["tags"] == ["Twilio Messages"]
    assert [p["name"] for p in paths[MESSAGES]["get"]["parameters"]] == [
        "account_sid", "To", "From", "DateSent", "DateSent<", "DateSent>", "PageSize", "Page",
        "PageToken"]
    update = paths[MESSAGE]["post"]
    assert update["requestBody"] == _UPDATE_DOC["requestBody"]
    assert [p["name"] for p in update["parameters"]] == ["account_sid", "sid"]
    assert "204" in paths[MESSAGE]["delete"]["responses"]
    assert "description" not in create  # no stand-in's docstring leaks into the schema


@pytest.mark.parametrize("method, path, allow", [
    ("HEAD", "/v1/omnimessage/x/status", "GET"), ("POST", "/v1/omnimessage/x/status", "GET"),
    ("PUT", "/v1/omnimessage", "POST"), ("PUT", "/omnimessages", "POST"),
    ("PATCH", "/omnimessage/x", "DELETE"),
    # FastAPI's own routes
    ("POST", "/health", "GET"), ("DELETE", "/metrics", "GET")])
async def test_wrong_methods_answer_405_in_messente_format(gateway: Any, method: str,
                                                           path: str, allow: str) -> None:
    app, _runtime, account = gateway
    async with client_for(app) as client:
        response = await client.request(method, path,
                                        auth=(account.api_username, account.api_password))
    assert response.status_code == 405
    assert response.headers["allow"] == allow
    if method != "HEAD":
        assert response.json()["errors"][0]["code"] == "107"


@pytest.mark.parametrize("method, path, allow", [
    ("HEAD", "Messages.json", "GET, POST"), ("PUT", "Messages.json", "GET, POST"),
    ("HEAD", "Messages/SMx.json", "DELETE, GET, POST"),
    ("PATCH", "Messages/SMx.json", "DELETE, GET, POST"),
    ("POST", "Messages/SMx/Media.json", "GET")])
async def test_wrong_methods_answer_405_in_twilio_format(gateway: Any, method: str,
                                                         path: str, allow: str) -> None:
    app, _runtime, account = gateway
    async with client_for(app) as client:
        response = await client.request(
            method, f"/2010-04-01/Accounts/{account.twilio_account_sid}/{path}",
            auth=(account.twilio_account_sid, account.twilio_auth_token))
    assert response.status_code == 405
    # Every method of the path, though each is a route of its own.
    assert response.headers["allow"] == allow
    if method != "HEAD":
        assert response.json()["code"] == 20004


async def test_path_parameters_reach_the_handlers(gateway: Any) -> None:
    app, _runtime, account = gateway
    async with client_for(app) as client:
        status = await client.get("/v1/omnimessage/no-such-id/status",
                                  auth=(account.api_username, account.api_password))
        fetch = await client.get(
            f"/2010-04-01/Accounts/{account.twilio_account_sid}/Messages/SM{'0' * 32}.json",
            auth=(account.twilio_account_sid, account.twilio_auth_token))
        other = await client.get("/2010-04-01/Accounts/someone-else/Messages.json",
                                 auth=(account.twilio_account_sid, account.twilio_auth_token))
    assert status.json()["errors"][0]["detail"] == "omnimessage no-such-id not found"
    assert (fetch.status_code, fetch.json()["code"]) == (404, 20404)
    assert (other.status_code, other.json()["code"]) == (404, 20404)


async def test_unexpected_errors_keep_the_surface_format(gateway: Any,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    app, runtime, account = gateway

    async def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("the store broke")

    monkeypatch.setattr(runtime.store, "omnimessage", broken)
    async with client_for(app) as client:
        messente = await client.get("/omnimessage/0b6f2a52-3c1e-4f6a-9d2b-7e5c4a3b2d10/status",
                                    auth=(account.api_username, account.api_password))
        twilio = await client.get(
            f"/2010-04-01/Accounts/{account.twilio_account_sid}/Messages/SM{'0' * 32}.json",
            auth=(account.twilio_account_sid, account.twilio_auth_token))
    assert (messente.status_code, messente.json()["errors"][0]["code"]) == (500, "104")
    assert (twilio.status_code, twilio.json()["code"]) == (500, 20500)
