"""Validating the create form (`POST .../Messages.json`) the way Twilio does, with Twilio's codes.

Checks run in a fixed order (recipient, sender, content, options, schedule) and stop at the first
problem, as Twilio answers one error at a time. Unknown parameter names are ignored, as on Twilio
(which adds parameters without notice); parameters omnirelay cannot honour are refused rather
than silently dropped.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from omnirelay.core import validation
from omnirelay.core.omnimessage import parse_phone_number
from omnirelay.core.sms import count_segments
from omnirelay.core.twilio.dates import parse_moment
from omnirelay.core.twilio.errors import invalid_parameter, twilio_error

Form = Mapping[str, Sequence[str]]

MAX_BODY = 1600  # characters as Twilio counts them: UTF-16 code units, so an emoji counts two
MAX_VALIDITY = 36000  # seconds; also Twilio's default
MAX_CALLBACK_URL = 4000
_ALPHANUMERIC = re.compile(r"^[A-Za-z0-9 ]{1,11}$")
_SHORT_CODE = re.compile(r"^[0-9]{3,8}$")
_CHANNEL_ADDRESS = re.compile(r"^[a-z][a-z0-9-]*:", re.IGNORECASE)
_MG_SID = re.compile(r"^MG[0-9a-fA-F]{32}$")
_AP_SID = re.compile(r"^AP[0-9a-fA-F]{32}$")


@dataclass(frozen=True, slots=True)
class ScheduleWindow:
    """How far ahead SendAt may be. Twilio's pages disagree (900 s - 7 days, 300 s - 35 days);
    the reference suggests 900 s - 35 days, inclusive."""

    min_seconds: int = 900
    max_seconds: int = 35 * 24 * 3600


@dataclass(frozen=True, slots=True)
class CreateRequest:
    to: str  # E.164
    from_: str  # as stored and shown: E.164, short code or alphanumeric sender ID
    body: str
    autoconvert: str  # "on" with SmartEncoded=true, else "off"
    validity_seconds: int
    send_at: datetime | None  # naive UTC
    status_callback: str | None
    discard_content: bool  # ContentRetention=discard
    segments: int  # Twilio's num_segments, as the SMS encoder will split the body


def first(form: Form, name: str) -> str | None:
    """A parameter's value; an empty value counts as absent, as Twilio treats it."""
    values = form.get(name)
    if not values or values[0] == "":
        return None
    return values[0]


def parse_create(form: Form, *, now: datetime, window: ScheduleWindow = ScheduleWindow()
                 ) -> CreateRequest:
    """Raises TwilioError."""
    to = _recipient(first(form, "To"))
    _no_messaging_service(first(form, "MessagingServiceSid"))
    sender = _sender(first(form, "From"))
    _no_media(form, sender)
    _no_content_template(first(form, "ContentSid"), first(form, "ContentVariables"))
    body = _body(first(form, "Body"))
    callback = _status_callback(first(form, "StatusCallback"))
    if callback is None:
        _no_application(first(form, "ApplicationSid"))
    validity = _validity(first(form, "ValidityPeriod"))
    smart = _boolean(form, "SmartEncoded")
    discard = _content_retention(first(form, "ContentRetention"))
    _address_retention(first(form, "AddressRetention"))
    if _boolean(form, "ShortenUrls"):
        raise invalid_parameter("ShortenUrls requires a MessagingServiceSid; omnirelay does not "
                                "shorten links")
    send_at = _schedule(first(form, "ScheduleType"), first(form, "SendAt"), now, window)
    autoconvert = "on" if smart else "off"
    try:
        segments = count_segments(body, autoconvert=autoconvert)
    except ValueError as exc:
        raise invalid_parameter(f"Body cannot be sent as SMS: {exc}") from None
    return CreateRequest(to=to, from_=sender, body=body, autoconvert=autoconvert,
                         validity_seconds=validity, send_at=send_at, status_callback=callback,
                         discard_content=discard, segments=segments)


def utf16_length(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _recipient(to: str | None) -> str:
    if to is None:
        raise twilio_error(21604)
    try:
        return parse_phone_number(to, "To")
    except validation.RequestError:
        raise twilio_error(21211, to=to) from None


def _no_messaging_service(sid: str | None) -> None:
    if sid is None:
        return
    if not _MG_SID.fullmatch(sid):
        raise twilio_error(21705)
    raise twilio_error(21701, sid=sid)


def _sender(sender: str | None) -> str:
    if sender is None:
        raise twilio_error(21603)
    if _CHANNEL_ADDRESS.match(sender):  # whatsapp:+1..., messenger:...: not an SMS sender
        raise twilio_error(21606, from_=sender)
    if sender.startswith("+"):
        try:
            return parse_phone_number(sender, "From")
        except validation.RequestError:
            raise twilio_error(21212, from_=sender) from None
    if _SHORT_CODE.fullmatch(sender):
        return sender
    # An alphanumeric sender ID: ASCII letters, digits and spaces, not only digits.
    if _ALPHANUMERIC.fullmatch(sender) and not sender.replace(" ", "").isdigit():
        return sender
    raise twilio_error(21212, from_=sender)


def _no_media(form: Form, sender: str) -> None:
    if first(form, "MediaUrl") is not None or _boolean(form, "SendAsMms"):
        raise twilio_error(21621, from_=sender)


def _no_content_template(content_sid: str | None, variables: str | None) -> None:
    if content_sid is not None:
        raise twilio_error(21655)
    if variables is not None:
        raise twilio_error(21654)


def _body(body: str | None) -> str:
    if body is None:
        raise twilio_error(21619)
    if utf16_length(body) > MAX_BODY:
        raise twilio_error(21617)
    control = validation.control_character(body, multiline=True)
    if control is not None:
        raise invalid_parameter(f"Body must not contain control characters other than tab and "
                                f"line breaks (found {control})")
    return body


def _status_callback(url: str | None) -> str | None:
    if url is None:
        return None
    problem = validation.url_problem(url, max_length=MAX_CALLBACK_URL, allow_userinfo=False)
    if problem is None and "_" in (urlsplit(url).hostname or ""):
        problem = "no underscore is allowed in the host name"
    if problem is not None:
        raise twilio_error(21609, url=url, problem=problem)
    return url


def _no_application(sid: str | None) -> None:
    if sid is None:
        return
    if not _AP_SID.fullmatch(sid):
        raise twilio_error(21218)
    raise twilio_error(21420)


def _validity(text: str | None) -> int:
    if text is None:
        return MAX_VALIDITY
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= MAX_VALIDITY:
        raise twilio_error(21624)
    return int(text)


def _boolean(form: Form, name: str) -> bool:
    text = first(form, name)
    if text is None:
        return False
    lowered = text.lower()
    if lowered not in ("true", "false"):
        raise invalid_parameter(f"{name} must be true or false, not {text!r}")
    return lowered == "true"


def _content_retention(text: str | None) -> bool:
    if text is None or text == "retain":
        return False
    if text == "discard":
        return True
    raise twilio_error(30029)


def _address_retention(text: str | None) -> None:
    if text is None or text == "retain":
        return
    if text == "obfuscate":
        raise twilio_error(30030, detail="omnirelay does not obfuscate addresses; use retain")
    raise twilio_error(30030, detail="use retain or obfuscate")


def _schedule(schedule_type: str | None, send_at: str | None, now: datetime,
              window: ScheduleWindow) -> datetime | None:
    if schedule_type is None:
        if send_at is not None:
            # Twilio would send at once; a message meant for later must not go out now.
            raise twilio_error(35126, detail="SendAt needs ScheduleType=fixed")
        return None
    if schedule_type != "fixed":
        raise twilio_error(35126, detail="the only ScheduleType is 'fixed'")
    if send_at is None:
        raise twilio_error(35111)
    try:
        moment = parse_moment(send_at)
    except ValueError:
        raise twilio_error(35115, send_at=send_at) from None
    ahead = moment - now
    if not timedelta(seconds=window.min_seconds) <= ahead <= timedelta(seconds=window.max_seconds):
        raise twilio_error(35114, minimum=window.min_seconds, maximum=window.max_seconds)
    return moment

