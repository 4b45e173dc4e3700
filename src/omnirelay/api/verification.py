"""Messente's Number Verification: POST /verify/start and POST /verify/pin.

Legacy api2 endpoints like /get_balance: the credentials and parameters come in the query (as the
official SDK sends them) or in an application/x-www-form-urlencoded body, and every answer is
HTTP 200 with plain text: `OK <verification id>`, `VERIFIED`, `INVALID`, `EXPIRED`, `THROTTLED` or
`ERROR <code>`.

The PIN goes out as an ordinary Messente omnimessage (one SMS variant) through the same accept use
case as POST /v1/omnimessage, so it appears in the history, is charged at submit, and its delivery
reports go to the account's dlr_url. Each re-send is an omnimessage of its own, scheduled with
`time_to_send` when the verification starts and canceled when the verification ends (verified, or
out of tries); a crash between that end and the cancel can let one scheduled re-send go out.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import Response

from omnirelay.api.account_api import legacy_account, text
from omnirelay.api.messente import is_omnimessage_id, runtime_of
from omnirelay.api.openapi import legacy, query_parameter, text_answer
from omnirelay.api.requests import BodyError, read_body
from omnirelay.api.routing import LeanRoute, Routes
from omnirelay.core import verification as rules
from omnirelay.core.accept import NewOmnimessage, messente_omnimessage
from omnirelay.core.omnimessage import OmnimessageRequest, Variant, parse_phone_number
from omnirelay.core.timefmt import utcnow
from omnirelay.core.validation import RequestError
from omnirelay.runtime import Runtime
from omnirelay.store.database import StoreUnavailable
from omnirelay.store.queries import Account
from omnirelay.store.verification import NewVerification, Verifications

log = logging.getLogger(__name__)

_FORM = "application/x-www-form-urlencoded"


def _query(name: str, description: str, required: bool = False) -> dict[str, Any]:
    return query_parameter(name, description=description, required=required)


_HINTS = [_query("ip", "the end user's IP address"),
          _query("browser", "the end user's browser (User-Agent); accepted, not used"),
          _query("cookie", "a cookie of the end user's session: once verified, the same "
                           "cookie skips the PIN for this number")]


# The credentials are the legacy query parameters, declared as security schemes.
_START_DOC: dict[str, Any] = legacy({
    "parameters": [
        _query("to", "the number to verify, E.164", True),
        _query("template", f"the SMS text, with {rules.PLACEHOLDER} where the PIN goes "
                           f"(default \"{rules.DEFAULT_TEMPLATE}\")"),
        _query("pin_length", f"digits, {rules.MIN_PIN_LENGTH} to {rules.MAX_PIN_LENGTH} "
                             f"(default {rules.DEFAULT_PIN_LENGTH})"),
        _query("from", "the SMS sender (default: the account's default sender)"),
        _query("max_tries", f"how many times the PIN is sent in all, 1 to "
                            f"{rules.MAX_TRIES_LIMIT} (default {rules.DEFAULT_MAX_TRIES})"),
        _query("retry_delay", f"seconds between sends while unverified (default "
                              f"{rules.DEFAULT_RETRY_DELAY})"),
        _query("validity", f"seconds the PIN is valid, at most {rules.MAX_VALIDITY} "
                           f"(default {rules.DEFAULT_VALIDITY})"),
        *_HINTS],
    "responses": {"200": text_answer(
        "OK <verification id>; VERIFIED (a remembered cookie: nothing sent); ERROR 101 "
        "(credentials), 102 (parameters), 109 (no <PIN> in the template), 111 (a sender an SMS "
        "cannot carry), 209 (store unavailable, or the account's rate limit reached)",
        "OK 6f1c2d3e-4b5a-4c6d-8e7f-9a0b1c2d3e4f")},
})
_PIN_DOC: dict[str, Any] = legacy({
    "parameters": [_query("verification_id", "what /verify/start answered", True),
                   _query("pin", "the PIN the end user typed", True), *_HINTS],
    "responses": {"200": text_answer(
        "VERIFIED; INVALID (wrong PIN); EXPIRED (past its validity, or already used); THROTTLED "
        "(out of tries); ERROR 101, 102, 110 (no such verification), 209", "VERIFIED")},
})


async def legacy_params(request: Request, limit: int) -> dict[str, str]:
    """The query's parameters, and a form body's under them (the query wins)."""
    params: dict[str, str] = {}
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == _FORM:
        body = await read_body(request, limit)
        try:
            params.update(parse_qsl(body.decode(), keep_blank_values=True))
        except UnicodeDecodeError:
            raise BodyError("the form body is not UTF-8") from None
    params.update(request.query_params)
    return params


class NumberVerification:
    """The two operations, with the clock they run on (injectable for tests of expiry)."""

    def __init__(self, runtime: Runtime, clock: Callable[[], datetime] = utcnow) -> None:
        self.runtime = runtime
        self.clock = clock
        self.hasher = rules.PinHasher(runtime.settings.secret_key)
        self.store = Verifications(runtime.store.db)

    async def start(self, account: Account, params: Mapping[str, str]) -> str:
        try:
            asked = rules.parse_start(params)
            destination = parse_phone_number(rules.international(asked.to), "to")
        except rules.StartError as exc:
            return f"ERROR {exc.code}"
        except RequestError:
            return "ERROR 102"
        now = self.clock()
        cookie_hash = self.hasher.cookie_hash(asked.cookie) if asked.cookie else None
        if cookie_hash is not None and await self.store.remembered(
                account.id, destination, cookie_hash, asked.ip, now - rules.REMEMBER_COOKIE):
            return "VERIFIED"
        verification_id = str(uuid.uuid4())
        pin = rules.new_pin(asked.pin_length)
        try:
            messages = [self._pin_message(account, asked, destination, pin, now, offset)
                        for offset in rules.send_offsets(asked.max_tries, asked.retry_delay,
                                                         asked.validity)]
        except RequestError:  # a template an SMS cannot carry within the engine's parts
            return "ERROR 102"
        # Held to the account's accept rate like any send (each scheduled re-send counts): api2
        # has no rate-limit answer, and 209 is the one that tells a client to try again shortly.
        if await self.runtime.limits.admit(account, len(messages)) is not None:
            return "ERROR 209"
        # The verification first: a PIN that reaches a phone must always be checkable.
        await self.store.create(NewVerification(
            id=verification_id, account_id=account.id, destination=destination,
            pin_hash=self.hasher.pin_hash(verification_id, pin), cookie_hash=cookie_hash,
            ip=asked.ip, created_at=now, expires_at=now + timedelta(seconds=asked.validity),
            sends=[(m.id, m.time_to_send or now) for m in messages]))
        try:
            await self.runtime.accept(messages)
        except StoreUnavailable:
            try:
                await self.store.forget(account.id, verification_id)
            except StoreUnavailable:
                log.warning("verification %s: its PIN was not sent and it stays stored",
                            verification_id)
            raise
        return f"OK {verification_id}"

    def _pin_message(self, account: Account, asked: rules.StartRequest, destination: str,
                     pin: str, now: datetime, offset: int) -> NewOmnimessage:
        # The SMS lives only as long as the PIN it carries.
        sms = Variant(channel="sms", sender=asked.sender, validity_seconds=asked.validity - offset,
                      content={"text": rules.render(asked.template, pin)})
        request = OmnimessageRequest(
            to=destination, variants=(sms,),
            time_to_send=now + timedelta(seconds=offset) if offset else None)
        return messente_omnimessage(account, request, self.runtime.settings.engine)

    async def check(self, account: Account, params: Mapping[str, str]) -> str:
        verification_id, pin = params.get("verification_id"), params.get("pin")
        if not verification_id or pin is None or pin == "":
            return "ERROR 102"
        if not is_omnimessage_id(verification_id):  # the same form of id
            return "ERROR 110"
        typed = pin.strip()

        def matches(stored: str) -> bool:
            return (len(typed) <= rules.MAX_PIN_LENGTH
                    and self.hasher.matches(verification_id, typed, stored))

        result = await self.store.check_pin(account.id, verification_id, matches, self.clock())
        if result is None:
            return "ERROR 110"
        for omnimessage_id in result.cancel:
            try:
                await self.runtime.cancel(account.id, omnimessage_id)
            except StoreUnavailable:
                log.warning("verification %s: a scheduled re-send could not be canceled",
                            verification_id)
        return result.answer.value


def verification_of(request: Request) -> NumberVerification:
    service: NumberVerification = request.app.state.number_verification
    return service


def build_routes() -> list[LeanRoute]:
    """Mounted at / (api2's paths) and under /v1, like the other legacy endpoints."""
    routes = Routes()

    async def answer(request: Request, start: bool) -> Response:
        runtime = runtime_of(request)
        try:
            params = await legacy_params(request, runtime.settings.max_body_bytes)
        except BodyError:
            return text("ERROR 102")
        found = await legacy_account(request, params)
        if isinstance(found, Response):
            return found
        service = verification_of(request)
        try:
            if start:
                return text(await service.start(found, params))
            return text(await service.check(found, params))
        except StoreUnavailable:
            return text("ERROR 209")

    @routes.operation("POST", "/verify/start", tags=["Number Verification"],
                      summary="Send a PIN by SMS: OK <verification id>",
                      openapi_extra=_START_DOC)
    async def verify_start(request: Request) -> Response:
        return await answer(request, start=True)

    @routes.operation("POST", "/verify/pin", tags=["Number Verification"],
                      summary="Check the PIN the user typed: VERIFIED, INVALID, EXPIRED or "
                              "THROTTLED", openapi_extra=_PIN_DOC)
    async def verify_pin(request: Request) -> Response:
        return await answer(request, start=False)

    return [*routes.mount("/v1"), *routes.mount(include_in_schema=False)]
