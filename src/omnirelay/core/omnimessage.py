"""An omnimessage request: validating what Messente's clients send, and planning the attempts.

`parse_omnimessage` takes the decoded JSON body and returns an `OmnimessageRequest` or raises a
`RequestError` naming the offending field as `source` (e.g. "messages[0].text"). The rules are the
union of Messente's spec 2.0.0 (Telegram) and 2.1.0 (RCS, Viber template and carousel).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import phonenumbers

from omnirelay.core import senders
from omnirelay.core import validation as v
from omnirelay.core.timefmt import EARLIEST, LATEST, parse_iso8601

PRIORITIES = {"high": 0, "regular": 1, "low": 2}
TEXT_STORES = ("plaintext", "sha256", "nostore")
AUTOCONVERT = {"on": "on", "off": "off", "full": "full", "true": "on", "false": "off"}
MAX_SENDER_LENGTH = senders.MAX_SENDER_LENGTH
MAX_PHONE_LENGTH = 32  # with spaces; E.164 itself has at most 15 digits

_COMMON = ("channel", "sender", "validity", "ttl")
MAX_TEMPLATE_PARAMS = 100
MAX_PARAMETER_TEXT = 32768  # WhatsApp's limit for a template's whole body


@dataclass(frozen=True, slots=True)
class Variant:
    channel: str
    sender: str | None
    validity_seconds: int | None
    content: dict[str, Any]


@dataclass(frozen=True, slots=True)
class OmnimessageRequest:
    to: str
    variants: tuple[Variant, ...]
    dlr_url: str | None = None
    text_store: str = "plaintext"
    time_to_send: datetime | None = None
    priority: int = PRIORITIES["regular"]


@dataclass(frozen=True, slots=True)
class PlannedAttempt:
    message_id: str
    seq: int
    channel: str
    sender: str
    content: dict[str, Any]
    validity_seconds: int
    parts_count: int | None = None  # an SMS's parts, counted once at accept (core.accept)


def parse_omnimessage(body: Any, path: str = "") -> OmnimessageRequest:
    data = v.fields(
        v.obj(body, path), path,
        ("to", "messages", "dlr_url", "text_store", "time_to_send", "priority"),
    )
    to = parse_phone_number(v.required(data, "to", path), v.join(path, "to"))
    messages_path = v.join(path, "messages")
    raw_messages = v.required(data, "messages", path)
    variants = v.array(raw_messages, messages_path, _parse_variant, min_items=1)
    seen: dict[str, int] = {}
    for index, variant in enumerate(variants):
        if variant.channel in seen:
            v.fail(
                v.join(v.join(messages_path, index), "channel"),
                f"{variant.channel} appears twice in messages; each channel may appear once",
            )
        seen[variant.channel] = index
    dlr_url = (v.url(data["dlr_url"], v.join(path, "dlr_url"), callback=True)
               if "dlr_url" in data else None)
    text_store = (
        v.one_of(data["text_store"], v.join(path, "text_store"), TEXT_STORES)
        if "text_store" in data else "plaintext"
    )
    time_to_send = None
    if "time_to_send" in data:
        source = v.join(path, "time_to_send")
        # The years are bounded so that the deadline (time_to_send + validity) always fits.
        try:
            time_to_send = parse_iso8601(v.string(data["time_to_send"], source, min_length=1,
                                                  max_length=64))
        except ValueError:
            v.fail(source, f"{source} must be an ISO-8601 date-time from {EARLIEST.year} to "
                           f"{LATEST.year - 1} (UTC), e.g. 2030-06-22T09:05:07Z")
    priority = PRIORITIES["regular"]
    if "priority" in data:
        priority = PRIORITIES[v.one_of(data["priority"], v.join(path, "priority"), PRIORITIES)]
    return OmnimessageRequest(
        to=to,
        variants=tuple(variants),
        dlr_url=dlr_url,
        text_store=text_store,
        time_to_send=time_to_send,
        priority=priority,
    )


def parse_phone_number(value: Any, path: str) -> str:
    """E.164 as Messente expects: '+' and digits that form a valid number. Only ASCII digits:
    str.isdigit() and libphonenumber also take Arabic-Indic and other scripts' digits."""
    text = v.string(value, path, min_length=1, max_length=MAX_PHONE_LENGTH)
    compact = text.replace(" ", "")
    if not compact.startswith("+") or not compact[1:].isascii() or not compact[1:].isdigit():
        v.fail(path, f"{path} must be a phone number in E.164 format, e.g. +37251234567")
    normalised = _valid_e164(compact)
    if normalised is None:
        v.fail(path, f"{path} is not a valid phone number")
    return normalised


@functools.lru_cache(maxsize=65536)
def _valid_e164(compact: str) -> str | None:
    """libphonenumber is among the costliest steps of accepting a message, and traffic repeats
    its recipients (OTPs to the same users), so the verdicts are cached."""
    try:
        number = phonenumbers.parse(compact)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _parse_variant(value: Any, path: str) -> Variant:
    body = v.obj(value, path)
    channel_path = v.join(path, "channel")
    channel = v.one_of(
        v.required(body, "channel", path), channel_path, ("sms", "viber", "whatsapp", "telegram", "rcs")
    )
    parse_content, extra = _CHANNELS[channel]
    data = v.fields(body, path, (*_COMMON, *extra))
    sender = None
    if "sender" in data:
        check = senders.sms_sender if channel == "sms" else senders.sender
        sender = check(data["sender"], v.join(path, "sender"))
    if channel == "rcs" and sender is None:
        raise v.Missing(v.join(path, "sender"), f"{v.join(path, 'sender')} is required for rcs")
    validity_seconds = _validity(data, path)
    content = {key: value for key, value in data.items() if key not in _COMMON}
    parse_content(content, path)
    return Variant(channel=channel, sender=sender, validity_seconds=validity_seconds,
                   content=content)


def _validity(data: dict[str, Any], path: str) -> int | None:
    if "validity" in data and "ttl" in data:
        v.fail(v.join(path, "ttl"), "only one of validity and ttl can be used")
    if "validity" in data:
        return 60 * v.integer(data["validity"], v.join(path, "validity"), minimum=1,
                              maximum=60 * 24 * 30)
    if "ttl" in data:
        return v.integer(data["ttl"], v.join(path, "ttl"), minimum=1, maximum=3600 * 24 * 30)
    return None


# --- SMS ---------------------------------------------------------------------------------------

def _sms(content: dict[str, Any], path: str) -> None:
    # Bounded by engine.max_sms_parts (check_sms_fits) and the request body size.
    v.text(v.required(content, "text", path), v.join(path, "text"), min_length=1,
           max_length=None)
    if "autoconvert" in content:
        source = v.join(path, "autoconvert")
        raw = content["autoconvert"]
        if isinstance(raw, bool):
            raw = "true" if raw else "false"
        content["autoconvert"] = AUTOCONVERT[v.one_of(raw, source, AUTOCONVERT)]
    if "udh" in content:
        source = v.join(path, "udh")
        udh = v.string(content["udh"], source, min_length=2, max_length=280)
        try:
            raw_udh = bytes.fromhex(udh)
        except ValueError:
            v.fail(source, f"{source} must be hex-encoded")
        if raw_udh[0] != len(raw_udh) - 1:
            v.fail(source, f"{source}: the first byte (UDHL) must equal the length that follows")


# --- Viber -------------------------------------------------------------------------------------

_VIBER_COMBINATIONS = {
    frozenset({"image_url"}),
    frozenset({"text"}),
    frozenset({"text", "button_text", "button_url"}),
    frozenset({"text", "image_url", "button_text", "button_url"}),
    frozenset({"video"}),
    frozenset({"video", "text"}),
    frozenset({"video", "text", "button_text"}),
    frozenset({"video", "text", "button_text", "button_url"}),
    frozenset({"carousel", "text"}),
    frozenset({"template"}),
}


def _viber(content: dict[str, Any], path: str) -> None:
    if "text" in content:
        v.text(content["text"], v.join(path, "text"), min_length=1, max_length=1000)
    for key in ("image_url", "button_url"):
        if key in content:
            v.url(content[key], v.join(path, key))
    if "button_text" in content:
        v.string(content["button_text"], v.join(path, "button_text"), min_length=1, max_length=30)
    if "video" in content:
        _viber_video(content["video"], v.join(path, "video"))
    if "template" in content:
        _viber_template(content["template"], v.join(path, "template"))
    if "carousel" in content:
        _viber_carousel(content["carousel"], v.join(path, "carousel"))
    if frozenset(content) not in _VIBER_COMBINATIONS:
        given = "+".join(sorted(content)) or "nothing"
        v.fail(
            path or None,
            f"{path}: {given} is not a valid Viber combination; use image_url; text; "
            "text+button_text+button_url; text+image_url+button_text+button_url; video; "
            "video+text[+button_text[+button_url]]; carousel+text; or template",
        )


def _viber_video(value: Any, path: str) -> None:
    data = v.fields(v.obj(value, path), path, ("url", "thumbnail", "file_size", "duration"))
    v.url(v.required(data, "url", path), v.join(path, "url"))
    v.url(v.required(data, "thumbnail", path), v.join(path, "thumbnail"))
    v.integer(v.required(data, "file_size", path), v.join(path, "file_size"), minimum=1,
              maximum=200 * 1024 * 1024)
    v.integer(v.required(data, "duration", path), v.join(path, "duration"), minimum=1,
              maximum=600)


def _viber_template(value: Any, path: str) -> None:
    data = v.fields(v.obj(value, path), path, ("id", "lang", "params"))
    v.string(v.required(data, "id", path), v.join(path, "id"), min_length=1, max_length=256)
    v.string(v.required(data, "lang", path), v.join(path, "lang"), min_length=2, max_length=16)
    if "params" in data:
        params_path = v.join(path, "params")
        params = v.obj(data["params"], params_path)
        if len(params) > MAX_TEMPLATE_PARAMS:
            v.fail(params_path, f"{params_path} must have at most {MAX_TEMPLATE_PARAMS} entries")
        for key, param in params.items():
            v.string(key, v.join(params_path, "(a name)"), min_length=1, max_length=256)
            v.text(param, v.join(params_path, key), max_length=1024)


def _viber_carousel(value: Any, path: str) -> None:
    data = v.fields(v.obj(value, path), path, ("items",))
    v.array(v.required(data, "items", path), v.join(path, "items"), _viber_carousel_item,
            min_items=2, max_items=5)


def _viber_carousel_item(value: Any, path: str) -> None:
    data = v.fields(v.obj(value, path), path,
                    ("title", "image_url", "primary_button", "secondary_button"))
    v.string(v.required(data, "title", path), v.join(path, "title"), min_length=2, max_length=38)
    v.url(v.required(data, "image_url", path), v.join(path, "image_url"))
    _viber_button(v.required(data, "primary_button", path), v.join(path, "primary_button"))
    if "secondary_button" in data:
        _viber_button(data["secondary_button"], v.join(path, "secondary_button"))


def _viber_button(value: Any, path: str) -> None:
    data = v.fields(v.obj(value, path), path, ("label", "action_url"))
    v.string(v.required(data, "label", path), v.join(path, "label"), min_length=1,
             max_length=30)
    v.url(v.required(data, "action_url", path), v.join(path, "action_url"))


# --- WhatsApp ----------------------------------------------------------------------------------

_WHATSAPP_KINDS = ("template", "text", "image", "video", "audio", "document", "sticker")
_WHATSAPP_MEDIA_FIELDS = {
    "image": ("id", "caption", "mime_type", "link"),
    "video": ("id", "caption", "mime_type", "link"),
    "audio": ("id", "mime_type", "link"),
    "document": ("id", "caption", "mime_type", "file_name", "link"),
    "sticker": ("id", "mime_type", "animated", "link"),
}


def _whatsapp(content: dict[str, Any], path: str) -> None:
    kind = v.exactly_one(content, path or "message", _WHATSAPP_KINDS)
    kind_path = v.join(path, kind)
    if kind == "template":
        _whatsapp_template(content[kind], kind_path)
    elif kind == "text":
        data = v.fields(v.obj(content[kind], kind_path), kind_path, ("body", "preview_url"))
        v.text(v.required(data, "body", kind_path), v.join(kind_path, "body"), min_length=1,
               max_length=4096)
        if "preview_url" in data:
            v.boolean(data["preview_url"], v.join(kind_path, "preview_url"))
    else:
        data = v.fields(v.obj(content[kind], kind_path), kind_path, _WHATSAPP_MEDIA_FIELDS[kind])
        if ("id" in data) == ("link" in data):
            v.fail(kind_path, f"{kind_path}: either id or link must be provided, but not both")
        for key, item in data.items():
            if key == "animated":
                v.boolean(item, v.join(kind_path, key))
            elif key == "link":
                v.url(item, v.join(kind_path, key))
            elif key == "caption":
                v.text(item, v.join(kind_path, key), max_length=1024)
            else:
                v.string(item, v.join(kind_path, key), max_length=256)


def _whatsapp_template(value: Any, path: str) -> None:
    data = v.fields(v.obj(value, path), path, ("name", "language", "components"))
    v.string(v.required(data, "name", path), v.join(path, "name"), min_length=1, max_length=512)
    language_path = v.join(path, "language")
    language = v.fields(v.obj(v.required(data, "language", path), language_path), language_path,
                        ("code", "policy"))
    v.string(v.required(language, "code", language_path), v.join(language_path, "code"),
             min_length=2, max_length=16)
    if "policy" in language:
        v.string(language["policy"], v.join(language_path, "policy"), max_length=16)
    v.array(v.required(data, "components", path), v.join(path, "components"),
            _whatsapp_component)


def _whatsapp_component(value: Any, path: str) -> None:
    data = v.fields(v.obj(value, path), path, ("type", "sub_type", "index", "parameters"))
    v.string(v.required(data, "type", path), v.join(path, "type"), min_length=1, max_length=32)
    if "sub_type" in data:
        v.string(data["sub_type"], v.join(path, "sub_type"), max_length=32)
    if "index" in data:
        v.integer(data["index"], v.join(path, "index"), minimum=0)
    if "parameters" in data:
        v.array(data["parameters"], v.join(path, "parameters"), _whatsapp_parameter)


def _whatsapp_parameter(value: Any, path: str) -> None:
    data = v.fields(
        v.obj(value, path), path,
        ("type", "text", "currency", "date_time", "image", "document", "video", "coupon_code",
         "payload"),
    )
    v.string(v.required(data, "type", path), v.join(path, "type"), min_length=1, max_length=32)
    if "text" in data:
        v.text(data["text"], v.join(path, "text"), max_length=MAX_PARAMETER_TEXT)
    for key in ("coupon_code", "payload"):
        if key in data:
            v.string(data[key], v.join(path, key), max_length=256)
    if "currency" in data:
        currency_path = v.join(path, "currency")
        currency = v.fields(v.obj(data["currency"], currency_path), currency_path,
                            ("fallback_value", "code", "amount_1000"))
        for key in ("fallback_value", "code", "amount_1000"):
            v.string(v.required(currency, key, currency_path), v.join(currency_path, key),
                     max_length=256)
    if "date_time" in data:
        dt_path = v.join(path, "date_time")
        date_time = v.fields(v.obj(data["date_time"], dt_path), dt_path, ("fallback_value",))
        v.string(v.required(date_time, "fallback_value", dt_path),
                 v.join(dt_path, "fallback_value"), max_length=256)
    for key in ("image", "document", "video"):
        if key in data:
            media_path = v.join(path, key)
            media = v.fields(v.obj(data[key], media_path), media_path,
                             ("id", "link", "caption", "filename"))
            for media_key, item in media.items():
                if media_key == "link":
                    v.url(item, v.join(media_path, media_key))
                elif media_key == "caption":
                    v.text(item, v.join(media_path, media_key), max_length=1024)
                else:
                    v.string(item, v.join(media_path, media_key), max_length=256)


# --- Telegram (spec 2.0.0) ---------------------------------------------------------------------

def _telegram(content: dict[str, Any], path: str) -> None:
    media = [key for key in ("image_url", "document_url", "audio_url") if key in content]
    if len(media) > 1:
        v.fail(v.join(path, media[1]), "image_url, document_url and audio_url are mutually exclusive")
    if not media and "text" not in content:
        raise v.Missing(v.join(path, "text"), f"{path}: text or a media URL is required")
    if "text" in content:
        v.text(content["text"], v.join(path, "text"), min_length=1, max_length=4096)
    for key in media:
        v.url(content[key], v.join(path, key))


# --- RCS (spec 2.1.0) --------------------------------------------------------------------------

def _rcs(content: dict[str, Any], path: str) -> None:
    kind = v.exactly_one(content, path or "message", ("text", "content_info", "rich_card"))
    if kind == "text":
        v.text(content["text"], v.join(path, "text"), min_length=1, max_length=3072)
    elif kind == "content_info":
        _rcs_content_info(content[kind], v.join(path, kind))
    else:
        card_path = v.join(path, kind)
        card = v.fields(v.obj(content[kind], card_path), card_path,
                        ("standalone_card", "carousel_card"))
        v.exactly_one(card, card_path, ("standalone_card", "carousel_card"))
        v.json_value(card, card_path)
    if "suggestions" in content:
        v.array(content["suggestions"], v.join(path, "suggestions"), _rcs_suggestion,
                max_items=11)


def _rcs_content_info(value: Any, path: str) -> None:
    data = v.fields(v.obj(value, path), path, ("file_url", "thumbnail_url", "force_refresh"))
    v.url(v.required(data, "file_url", path), v.join(path, "file_url"))
    if "thumbnail_url" in data:
        v.url(data["thumbnail_url"], v.join(path, "thumbnail_url"))
    v.boolean(v.required(data, "force_refresh", path), v.join(path, "force_refresh"))


def _rcs_suggestion(value: Any, path: str) -> None:
    data = v.fields(v.obj(value, path), path, ("reply", "action"))
    kind = v.exactly_one(data, path, ("reply", "action"))
    kind_path = v.join(path, kind)
    item = v.obj(data[kind], kind_path)
    v.json_value(item, kind_path)
    v.string(v.required(item, "text", kind_path), v.join(kind_path, "text"), min_length=1,
             max_length=25)
    v.string(v.required(item, "postback_data", kind_path), v.join(kind_path, "postback_data"),
             min_length=1, max_length=2048)


_CHANNELS: dict[str, tuple[Callable[[dict[str, Any], str], None], tuple[str, ...]]] = {
    "sms": (_sms, ("text", "autoconvert", "udh")),
    "viber": (_viber, ("text", "image_url", "button_url", "button_text", "video", "template",
                       "carousel")),
    "whatsapp": (_whatsapp, _WHATSAPP_KINDS),
    "telegram": (_telegram, ("text", "image_url", "document_url", "audio_url")),
    "rcs": (_rcs, ("text", "suggestions", "rich_card", "content_info")),
}
