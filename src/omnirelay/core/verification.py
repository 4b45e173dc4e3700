"""Number verification (Messente's /verify/start and /verify/pin): the rules, without I/O.

A verification sends a PIN by SMS and later checks the PIN the user typed. The rules here:

- the PIN comes from the `secrets` module (a CSPRNG), `pin_length` decimal digits;
- it is never stored: the store keeps an HMAC-SHA256 of it under a key derived from the server's
  `secret_key`, bound to the verification id (so equal PINs of two verifications hash apart), and a
  typed PIN is compared with `hmac.compare_digest`;
- a verification allows `MAX_WRONG_PINS` wrong PINs, after which every answer (even for the right
  PIN) is THROTTLED, and a destination allows `DESTINATION_WRONG_PINS` wrong PINs per
  `DESTINATION_WINDOW` across all of an account's verifications, so starting new verifications does
  not buy more guesses;
- a PIN is good once: after VERIFIED the verification is spent;
- `max_tries` is, as in Messente's spec, how many times the PIN is *sent* in all: the first SMS and
  `max_tries - 1` re-sends, `retry_delay` seconds apart, while the PIN is still valid and not yet
  verified. A re-send carries the same PIN (one verification has one PIN: a user who types the code
  of the first SMS after the second arrived is still right).

`answer_pin` is the state machine of /verify/pin, decided on what the store read in the same
transaction; the store then applies its decision with conditional updates (store/verification.py).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum

from omnirelay.core import senders
from omnirelay.core import validation as v
from omnirelay.core.secrets import same_secret
from omnirelay.core.validation import RequestError

PLACEHOLDER = "<PIN>"
DEFAULT_TEMPLATE = "Your Verification PIN code is <PIN>"
MIN_PIN_LENGTH, MAX_PIN_LENGTH, DEFAULT_PIN_LENGTH = 4, 16, 4
MAX_TRIES_LIMIT, DEFAULT_MAX_TRIES = 5, 2  # PIN sends in all
DEFAULT_RETRY_DELAY = 30  # seconds
MAX_VALIDITY, DEFAULT_VALIDITY = 1800, 300  # seconds
MAX_WRONG_PINS = 3  # per verification
DESTINATION_WRONG_PINS = 10  # per destination and account, within the window
DESTINATION_WINDOW = timedelta(hours=1)
REMEMBER_COOKIE = timedelta(days=30)  # how long a verified cookie skips the PIN
MAX_HINT_LENGTH = 512  # ip, browser, cookie


class Answer(Enum):
    VERIFIED = "VERIFIED"
    INVALID = "INVALID"
    EXPIRED = "EXPIRED"
    THROTTLED = "THROTTLED"


class StartError(Exception):
    """A /verify/start request refused: `code` is Messente's (102, 109, 111)."""

    def __init__(self, code: int, detail: str) -> None:
        super().__init__(detail)
        self.code = code


@dataclass(frozen=True, slots=True)
class StartRequest:
    to: str  # as given; normalised to E.164 by the caller
    template: str
    pin_length: int
    sender: str | None
    max_tries: int
    retry_delay: int
    validity: int
    ip: str | None
    cookie: str | None


@dataclass(frozen=True, slots=True)
class PinState:
    """What /verify/pin needs to know of a verification, read in the deciding transaction."""

    expires_at: datetime
    verified: bool
    wrong_pins: int
    destination_wrong_pins: int  # within the current window


class Decision(Enum):
    """What the store does for a typed PIN: nothing (answer as is), mark it verified, or count a
    wrong PIN (on the verification and on the destination)."""

    NOTHING = "nothing"
    VERIFY = "verify"
    COUNT_WRONG = "count_wrong"


def _integer(params: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    text = raw.strip()
    if not text.isascii() or not text.isdigit() or len(text) > 6:
        raise StartError(102, f"{name} must be a whole number")
    value = int(text)
    if not low <= value <= high:
        raise StartError(102, f"{name} must be between {low} and {high}")
    return value


def _hint(params: Mapping[str, str], name: str) -> str | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    if len(value) > MAX_HINT_LENGTH:
        raise StartError(102, f"{name} must have at most {MAX_HINT_LENGTH} characters")
    if (found := v.control_character(value)) is not None:
        raise StartError(102, f"{name} holds the control character {found}")
    return value


def parse_start(params: Mapping[str, str]) -> StartRequest:
    """The /verify/start parameters, or StartError. `to` is checked as a number by the caller."""
    to = params.get("to", "").strip()
    if not to:
        raise StartError(102, "to is required")
    template = params.get("template") or DEFAULT_TEMPLATE
    if (found := v.control_character(template, multiline=True)) is not None:
        raise StartError(102, f"template holds the control character {found}")
    if PLACEHOLDER not in template:
        raise StartError(109, f"template must contain the {PLACEHOLDER} placeholder")
    sender = params.get("from") or None
    if sender is not None:
        try:
            senders.sms_sender(sender, "from")
        except RequestError as exc:
            raise StartError(111, exc.detail) from None
    validity = _integer(params, "validity", DEFAULT_VALIDITY, 1, MAX_VALIDITY)
    return StartRequest(
        to=to, template=template,
        pin_length=_integer(params, "pin_length", DEFAULT_PIN_LENGTH, MIN_PIN_LENGTH,
                            MAX_PIN_LENGTH),
        sender=sender,
        max_tries=_integer(params, "max_tries", DEFAULT_MAX_TRIES, 1, MAX_TRIES_LIMIT),
        retry_delay=_integer(params, "retry_delay", DEFAULT_RETRY_DELAY, 1, MAX_VALIDITY),
        validity=validity, ip=_hint(params, "ip"), cookie=_hint(params, "cookie"))


def international(to: str) -> str:
    """The number with its country code, as Messente asks for it, written the E.164 way: a
    leading + (or 00) is optional here."""
    if to.startswith("+"):
        return to
    return "+" + (to[2:] if to.startswith("00") else to)


def new_pin(length: int) -> str:
    return "".join(secrets.choice("0123456789") for _ in range(length))


def render(template: str, pin: str) -> str:
    return template.replace(PLACEHOLDER, pin)


def send_offsets(max_tries: int, retry_delay: int, validity: int) -> list[int]:
    """Seconds after the start at which the PIN is sent: at once, then every `retry_delay`
    while the PIN is still valid, `max_tries` times at most."""
    return [k * retry_delay for k in range(max_tries) if k * retry_delay < validity]


class PinHasher:
    def __init__(self, server_key: str) -> None:
        # A key of its own, so that no other use of secret_key yields PIN hashes.
        self._key = hashlib.sha256(f"omnirelay-verification-pin-v1:{server_key}".encode()
                                   ).digest()

    def pin_hash(self, verification_id: str, pin: str) -> str:
        message = f"{verification_id}:{pin}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def matches(self, verification_id: str, pin: str, stored: str) -> bool:
        return same_secret(self.pin_hash(verification_id, pin), stored)

    def cookie_hash(self, cookie: str) -> str:
        return hmac.new(self._key, b"cookie:" + cookie.encode(), hashlib.sha256).hexdigest()


def decide(state: PinState, pin_matches: bool, now: datetime) -> tuple[Decision, Answer]:
    """The answer to a typed PIN, and what the store must do for it. Order matters: a spent or
    expired verification says EXPIRED without counting; an exhausted one says THROTTLED whatever
    was typed, so a loop that reaches the right PIN after its guesses are used learns nothing."""
    if state.verified or now >= state.expires_at:
        return Decision.NOTHING, Answer.EXPIRED
    if state.wrong_pins >= MAX_WRONG_PINS or state.destination_wrong_pins >= DESTINATION_WRONG_PINS:
        return Decision.NOTHING, Answer.THROTTLED
    if pin_matches:
        return Decision.VERIFY, Answer.VERIFIED
    return Decision.COUNT_WRONG, Answer.INVALID
