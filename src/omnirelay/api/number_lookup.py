"""Messente's Number Lookup API: POST /hlr/sync looks up 1 to 10 numbers.

Plain Starlette routes like the Omnimessage ones, under /v1 and at /, with the same credentials.
The answer is the configured provider's (omnirelay.lookups). Errors use the lookup's own body,
`{"errors":[{"error":{"code":<int>,"description"}}]}`: 101 wrong credentials (401), 102 a request
without 1 to 10 phone numbers (400), 104 a balance that does not cover the lookups (402), 106 a
body that is not JSON (400), 103 the server or the HLR service failed (5xx). Nothing is charged
or stored for a refused request.
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson
from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response

from omnirelay import lookups
from omnirelay.api.messente import account_of, runtime_of
from omnirelay.api.openapi import MESSENTE_BASIC, answer, json_content, secured
from omnirelay.api.requests import BodyError, read_json
from omnirelay.api.routing import LeanRoute, Routes
from omnirelay.core.money import format_amount
from omnirelay.core.number_lookup import (
    MAX_NUMBERS,
    NETWORK_FIELDS,
    STATUSES,
    LookupRequestError,
    parse_request,
)
from omnirelay.core.timefmt import utcnow
from omnirelay.runtime import Runtime
from omnirelay.store.number_lookup import charge_lookups, give_back

PREFIXES = ("/v1/hlr", "/hlr")
STATUSES_OF = {101: 401, 102: 400, 103: 500, 104: 402, 105: 402, 106: 400}


def error(code: int, description: str, status: int | None = None,
          headers: dict[str, str] | None = None) -> Response:
    body = {"errors": [{"error": {"code": code, "description": description}}]}
    return Response(orjson.dumps(body), status_code=status or STATUSES_OF[code],
                    media_type="application/json", headers=headers)


def formatter(_request: Request, status: int, detail: str) -> Response:
    """Errors raised outside the handler (404, 405, 500, 503) in the lookup's format."""
    code = 101 if status == 401 else 103 if status >= 500 else 106
    return error(code, detail, status)


def _body_doc() -> dict[str, Any]:
    network: dict[str, Any] = {
        "type": ["object", "null"], "title": "MobileNetwork",
        "properties": {name: {"type": "string"} for name in NETWORK_FIELDS},
        "description": "countryCode is ISO 3166 alpha-3; mccmnc only where it is known"}
    result = {
        "type": "object", "title": "SyncNumberLookupResult", "required": ["number"],
        "properties": {
            "number": {"type": "string", "description": "E.164"},
            "roaming": {"type": ["boolean", "null"]}, "ported": {"type": ["boolean", "null"]},
            "roamingNetwork": network, "currentNetwork": network, "originalNetwork": network,
            "portedNetwork": network,
            "status": {"type": "string", "enum": list(STATUSES),
                       "description": '"true": the phone is on, "false": off'},
            "error": {"type": ["string", "null"]},
            "numberType": {"type": "string", "description": "omnirelay's: libphonenumber's "
                                                            "type, e.g. mobile, fixed_line"}}}
    success = {"type": "object", "title": "SyncNumberLookupSuccess",
               "required": ["request_id", "result"],
               "properties": {"request_id": {"type": "string", "format": "uuid"},
                              "result": {"type": "array", "items": result}}}
    failure = {"type": "object", "title": "ErrorNumberLookup", "required": ["errors"],
               "properties": {"errors": {"type": "array", "items": {
                   "type": "object", "required": ["error"], "properties": {"error": {
                       "type": "object", "required": ["code", "description"],
                       "properties": {"code": {"type": "integer", "minimum": 101,
                                               "maximum": 106},
                                      "description": {"type": "string"}}}}}}}}

    def refused(code: int, description: str) -> dict[str, Any]:
        return {"errors": [{"error": {"code": code, "description": description}}]}

    estonia = {"networkName": "Telia Eesti AS", "countryName": "Estonia",
               "countryPrefix": "372", "countryCode": "EST"}
    example = {"request_id": "d50fbe61-053d-46b1-b452-f64ef38d2247", "result": [
        {"number": "+37251234567", "roaming": None, "ported": None, "roamingNetwork": None,
         "currentNetwork": None, "originalNetwork": estonia, "portedNetwork": None,
         "status": "UNKNOWN", "error": None, "numberType": "mobile"}]}
    return {
        "requestBody": {"required": True, "content": json_content(
            {"type": "object", "title": "NumbersToInvestigate", "required": ["numbers"],
             "properties": {"numbers": {"type": "array", "minItems": 1, "maxItems": MAX_NUMBERS,
                                        "items": {"type": "string"}}}},
            {"numbers": ["+37251234567"]})},
        "responses": {
            "200": answer("One result per number, in order", success, example),
            "400": answer("Not JSON (106), or not 1 to 10 phone numbers (102)", failure,
                          refused(102, "numbers must hold 1 to 10 phone numbers, not 11")),
            "401": answer("Missing or wrong credentials", failure,
                          refused(101, "Wrong username or password"),
                          {"WWW-Authenticate": {"schema": {"type": "string"}}}),
            "402": answer("The balance does not cover the lookups; nothing was charged", failure,
                          refused(104, "the balance does not cover 1 lookup (0.01 EUR); "
                                       "nothing was charged")),
            "502": answer("The HLR service failed; nothing was charged", failure,
                          refused(103, "the number lookup service answered HTTP 500; nothing "
                                       "was charged")),
            "503": answer("The database is unavailable; nothing was stored", failure,
                          refused(103, "the database is unavailable; nothing was stored, try "
                                       "again shortly")),
        },
    }


def build_routes(provider: lookups.LookupProvider) -> list[LeanRoute]:
    """Mounted under /v1 (documented) and at /, like the Omnimessage routes."""
    routes = Routes(tags=["Number Lookup"])

    @routes.operation("POST", "/hlr/sync", summary="Look up 1 to 10 phone numbers",
                      openapi_extra=secured(MESSENTE_BASIC, _body_doc()))
    async def fetch_info(request: Request) -> Response:
        runtime = runtime_of(request)
        account = await account_of(request)
        if account is None:
            return error(101, "Wrong username or password",
                         headers={"WWW-Authenticate": 'Basic realm="omnirelay"'})
        try:
            numbers = parse_request(await read_json(request, runtime.settings.max_body_bytes))
        except BodyError as exc:
            return error(106, exc.detail)
        except LookupRequestError as exc:
            return error(102, exc.detail)
        request_id = str(uuid.uuid4())
        db = runtime.store.db
        charge = await charge_lookups(db, account.id, request_id,
                                      [(n.number, n.region) for n in numbers], utcnow())
        if not charge.covered:
            count = f"{len(numbers)} lookup{'s' if len(numbers) > 1 else ''}"
            return error(104, f"the balance does not cover {count} "
                              f"({format_amount(charge.total)} EUR); nothing was charged")
        try:
            results = await provider.lookup(numbers)
        except lookups.LookupUnavailable as exc:
            await give_back(db, account.id, request_id, utcnow())
            return error(103, exc.detail, exc.status)
        except BaseException:
            await give_back(db, account.id, request_id, utcnow())
            raise
        return Response(orjson.dumps({"request_id": request_id, "result": results}),
                        media_type="application/json")

    return [*routes.mount("/v1"), *routes.mount(include_in_schema=False)]


def install(app: FastAPI, runtime: Runtime) -> None:
    """Serve POST /hlr/sync under /v1 and at /, with the lookup's error format there."""
    provider = lookups.build(runtime.settings.lookup)
    app.state.lookup_provider = provider  # closed with the app
    app.router.routes.extend(build_routes(provider))
    app.state.error_formatters.extend((prefix, formatter) for prefix in PREFIXES)
