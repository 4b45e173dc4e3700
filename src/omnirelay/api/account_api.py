"""Messente's account APIs: statistics reports, the balance, the price list and a country's prices.

POST /statistics/reports is a JSON API with HTTP Basic credentials and its own error shape
(ErrorStatistics: title, details, code "100" / "103" / "104" / "105"). /get_balance, /pricelist and
/prices are Messente's legacy api2 endpoints: credentials in the query (`username`, `password`),
every answer HTTP 200, failures as plain text `ERROR <code>`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from xml.sax.saxutils import escape

import orjson
from starlette.requests import Request
from starlette.responses import Response

from omnirelay.api.messente import account_of, runtime_of
from omnirelay.api.openapi import (
    MESSENTE_BASIC,
    RETRY_AFTER,
    UNAVAILABLE,
    answer,
    error_list,
    json_content,
    legacy,
    query_parameter,
    secured,
    text_answer,
)
from omnirelay.api.requests import BodyError, read_json
from omnirelay.api.routing import LeanRoute, Routes
from omnirelay.core.money import format_amount
from omnirelay.core.pricing import CHANNELS, country_name, prices_body, region_known, render_csv
from omnirelay.core.secrets import same_secret
from omnirelay.core.validation import control_character
from omnirelay.store.database import StoreUnavailable
from omnirelay.store.pricing import Pricing
from omnirelay.store.queries import Account
from omnirelay.store.statistics import country_totals

# what message_types may name: the priced channels, hlr (number lookups) among them
MESSAGE_TYPES = frozenset(CHANNELS)
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_STAND_IN = "omnirelay-no-such-account-stand-in-password"
_TITLES = {"100": "Client Error", "103": "Unauthorized", "104": "Invalid data",
           "105": "Internal Server Error"}
_STATUSES = {"100": 400, "103": 401, "104": 422, "105": 500}
STATISTICS_PREFIXES = ("/v1/statistics", "/statistics")


class ReportRequestError(Exception):
    pass


def statistics_error_body(code: str, details: str) -> dict[str, Any]:
    return {"errors": [{"title": _TITLES[code], "details": details, "code": code}]}


def statistics_error(code: str, details: str, status: int | None = None) -> Response:
    headers = {"WWW-Authenticate": 'Basic realm="omnirelay"'} if code == "103" else None
    if status == 503:
        headers = {"Retry-After": "1"}
    return Response(orjson.dumps(statistics_error_body(code, details)),
                    status_code=status or _STATUSES[code], media_type="application/json",
                    headers=headers)


def statistics_formatter(_request: Request, status: int, detail: str) -> Response:
    """Errors raised outside the handler (405, 500, 503) in the statistics error shape."""
    code = {401: "103", 422: "104"}.get(status, "105" if status >= 500 else "100")
    return statistics_error(code, detail, status)


_STATISTICS_ERROR = error_list("ErrorStatistics", _TITLES, "details")
_REPORT_DOC: dict[str, Any] = secured(MESSENTE_BASIC, {
    "requestBody": {"required": True, "content": json_content({
        "type": "object", "title": "StatisticsReportSettings",
        "required": ["start_date", "end_date"],
        "properties": {
            "start_date": {"type": "string", "format": "date"},
            "end_date": {"type": "string", "format": "date",
                         "description": "inclusive: the report covers whole UTC days"},
            "message_types": {"type": "array", "items": {
                "type": "string", "enum": sorted(MESSAGE_TYPES)}}}},
        {"start_date": "2026-01-01", "end_date": "2026-01-31", "message_types": ["sms"]})},
    "responses": {
        "200": answer("Messages sent and their price, per destination country", {
            "type": "object", "title": "StatisticsReportSuccess", "required": ["reports"],
            "properties": {"reports": {"type": "array", "items": {
                "type": "object", "title": "StatisticsReport",
                "required": ["total_messages", "total_price", "country"],
                "properties": {"total_messages": {"type": "integer"},
                               "total_price": {"type": "string"},
                               "country": {"type": "string"}}}}}},
            {"reports": [{"total_messages": 12, "total_price": "0.42", "country": "Estonia"}]}),
        "400": answer("The body is not JSON", _STATISTICS_ERROR,
                      statistics_error_body("100", "the body is not valid JSON")),
        "401": answer("Missing or wrong credentials", _STATISTICS_ERROR,
                      statistics_error_body("103", "Wrong username or password"),
                      {"WWW-Authenticate": {"schema": {"type": "string"}}}),
        "422": answer("Invalid dates or message types", _STATISTICS_ERROR,
                      statistics_error_body("104", "start_date is after end_date")),
        "500": answer("Something failed on the server; 503 with Retry-After while the database "
                      "is unavailable", _STATISTICS_ERROR,
                      statistics_error_body("105", UNAVAILABLE), RETRY_AFTER)},
})
_ERROR_CODES = ("`ERROR 101` wrong credentials, `ERROR 102` a parameter missing, `ERROR 209` "
                "the database unavailable")
_BALANCE_DOC = legacy({"responses": {"200": text_answer(
    f"`OK <balance>`, `OK unlimited` for an account without a prepaid balance; or "
    f"{_ERROR_CODES}", "OK 10.23")}})
_PRICELIST_DOC = legacy({
    "parameters": [query_parameter("channel", {"type": "string", "default": "sms"},
                                   description="whose prices: sms, viber, whatsapp, telegram, "
                                               "hlr")],
    "responses": {"200": text_answer(
        f"The price list as CSV (one row per network); or {_ERROR_CODES}", render_csv([]))}})
_PRICES_DOC = legacy({
    "parameters": [
        query_parameter("country", {"type": "string", "minLength": 2, "maxLength": 2},
                        description="ISO 3166-1 alpha-2 code", required=True),
        query_parameter("format", {"type": "string", "enum": ["json", "xml"],
                                   "default": "json"}),
        query_parameter("channel", {"type": "string", "default": "sms"})],
    "responses": {"200": {
        "description": "The country's prices per network; or `ERROR 104` an unknown country, "
                       "`ERROR 105` no price for it, `ERROR 106` an unknown format, "
                       + _ERROR_CODES,
        "content": {
            "application/json": {"schema": {
                "type": "object", "title": "Price",
                "required": ["country", "name", "prefix", "networks"],
                "properties": {"country": {"type": "string"}, "name": {"type": "string"},
                               "prefix": {"type": "string"},
                               "networks": {"type": "array", "items": {
                                   "type": "object", "required": ["name", "price", "mccmnc"],
                                   "properties": {"name": {"type": "string"},
                                                  "price": {"type": "string"},
                                                  "mccmnc": {"type": "string"}}}}}},
                "example": {"country": "EE", "name": "Estonia", "prefix": "372", "networks": [
                    {"name": "Telia", "price": "0.0350", "mccmnc": "24801"}]}},
            "application/xml": {"schema": {"type": "string"}},
            "text/plain": {"schema": {"type": "string"}, "example": "ERROR 105"}}}}})


def _day(body: dict[str, Any], name: str) -> date:
    value = body.get(name)
    if value is None:
        raise ReportRequestError(f"{name} is required (YYYY-MM-DD)")
    if not isinstance(value, str) or not _DATE.fullmatch(value):
        raise ReportRequestError(f"{name} must be a date as YYYY-MM-DD")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ReportRequestError(f"{name} {value!r} is not a date") from None


def parse_report_settings(body: Any) -> tuple[datetime, datetime, list[str] | None]:
    """[start, end) in naive UTC, and the channels asked for (None: all)."""
    if not isinstance(body, dict):
        raise ReportRequestError("the body must be a JSON object")
    start, end = _day(body, "start_date"), _day(body, "end_date")
    if start > end:
        raise ReportRequestError("start_date is after end_date")
    types = body.get("message_types")
    channels: list[str] | None = None
    if types is not None:
        if not isinstance(types, list) or not all(isinstance(t, str) for t in types):
            raise ReportRequestError("message_types must be an array of strings")
        unknown = sorted({t for t in types if t.lower() not in MESSAGE_TYPES})
        if unknown:
            raise ReportRequestError(f"unknown message_types {', '.join(unknown)}; known: "
                                     f"{', '.join(sorted(MESSAGE_TYPES))}")
        channels = sorted({t.lower() for t in types})
    begin = datetime.combine(start, time(), tzinfo=UTC).replace(tzinfo=None)
    return begin, datetime.combine(end + timedelta(days=1), time()), channels


def text(body: str, media_type: str = "text/plain") -> Response:
    return Response(body, status_code=200, media_type=media_type)


async def legacy_account(request: Request, params: Mapping[str, str] | None = None
                         ) -> Account | Response:
    """The account named by the query's username and password (or by `params`, when the caller
    read them from a form body too), or the `ERROR` answer: 102 when either is missing, 101 when
    they open no active account (compared in constant time)."""
    given = request.query_params if params is None else params
    username = given.get("username")
    password = given.get("password")
    if not username or password is None:
        return text("ERROR 102")
    if control_character(username) is not None:
        return text("ERROR 101")
    account = await runtime_of(request).accounts.by_username(username)
    expected = account.api_password if account is not None else _STAND_IN
    if not same_secret(password, expected) or account is None:
        return text("ERROR 101")
    return account


def prices_xml(body: dict[str, Any]) -> str:
    networks = "".join(
        f"<network><name>{escape(n['name'])}</name><price>{escape(n['price'])}</price>"
        f"<mccmnc>{n['mccmnc']}</mccmnc></network>" for n in body["networks"])
    return (f'<?xml version="1.0" encoding="UTF-8"?><price><country>{escape(body["country"])}'
            f"</country><name>{escape(body['name'])}</name><prefix>{body['prefix']}</prefix>"
            f"<networks>{networks}</networks></price>")


def build_routes() -> list[LeanRoute]:
    """Mounted under /v1 (where the SDK sends them with host=.../v1) and at / (api2's paths)."""
    routes = Routes()

    @routes.operation("POST", "/statistics/reports", tags=["Statistics"],
                      summary="Messages sent and what they cost, per country",
                      openapi_extra=_REPORT_DOC)
    async def statistics_reports(request: Request) -> Response:
        runtime = runtime_of(request)
        account = await account_of(request)
        if account is None:
            return statistics_error("103", "Wrong username or password")
        try:
            body = await read_json(request, runtime.settings.max_body_bytes)
        except BodyError as exc:
            return statistics_error("100", exc.detail)
        try:
            start, end, channels = parse_report_settings(body)
        except ReportRequestError as exc:
            return statistics_error("104", str(exc))
        totals = await country_totals(runtime.store.db, account.id, start, end, channels)
        return Response(orjson.dumps({"reports": [
            {"total_messages": count, "total_price": format_amount(total),
             "country": country_name(code)} for code, count, total in totals]}),
            media_type="application/json")

    async def balance(request: Request) -> Response:
        found = await legacy_account(request)
        if isinstance(found, Response):
            return found
        try:
            amount = await Pricing(runtime_of(request).store.db).balance(found.id)
        except StoreUnavailable:
            return text("ERROR 209")
        return text("OK unlimited" if amount is None else f"OK {format_amount(amount)}")

    for method in ("GET", "POST"):
        routes.operation(method, "/get_balance", tags=["Account Balance"],
                         summary="The prepaid balance: OK <amount>, or OK unlimited",
                         openapi_extra=_BALANCE_DOC)(balance)

    @routes.operation("GET", "/pricelist", tags=["Pricing"],
                      summary="The account's prices as CSV: Country,Code,MCCMNC,Network,Price",
                      openapi_extra=_PRICELIST_DOC)
    async def pricelist(request: Request) -> Response:
        found = await legacy_account(request)
        if isinstance(found, Response):
            return found
        channel = request.query_params.get("channel", "sms").lower()
        try:
            rows = await Pricing(runtime_of(request).store.db).price_list(found.id, channel)
        except StoreUnavailable:
            return text("ERROR 209")
        # CSV in a text/plain answer, the media type Messente's spec gives it
        return text(render_csv(rows))

    @routes.operation("GET", "/prices", tags=["Pricing"],
                      summary="One country's prices per network, as JSON or XML",
                      openapi_extra=_PRICES_DOC)
    async def country_prices(request: Request) -> Response:
        found = await legacy_account(request)
        if isinstance(found, Response):
            return found
        code = request.query_params.get("country", "").strip().upper()
        if not code:
            return text("ERROR 102")
        answer_format = request.query_params.get("format", "json").lower()
        if answer_format not in ("json", "xml"):
            return text("ERROR 106")
        if not region_known(code):
            return text("ERROR 104")
        channel = request.query_params.get("channel", "sms").lower()
        try:
            rows = await Pricing(runtime_of(request).store.db).price_list(found.id, channel, code)
        except StoreUnavailable:
            return text("ERROR 209")
        if not rows:
            return text("ERROR 105")
        body = prices_body(code, rows)
        if answer_format == "xml":
            return text(prices_xml(body), "application/xml")
        return Response(orjson.dumps(body), media_type="application/json")

    return [*routes.mount("/v1"), *routes.mount(include_in_schema=False)]
