"""SMS text: character conversion, encoding choice, segmentation and the UDH, ready for SMPP.

A text is sent in the GSM 03.38 alphabet when every character is in it, otherwise in UCS-2 (UTF-16BE,
so a character outside the BMP takes a surrogate pair). One part holds 160 septets or 70 units; a
longer text is split into parts of 153 septets or 67 units, each behind the 8-bit-reference
concatenation header `05 00 03 ref total seq`. An escape sequence or a surrogate pair is never split.

What `SmsPart` carries is what `submit_sm` needs: GSM-7 payloads are *unpacked* septets, one byte each
(the SMPP convention for data_coding 0, which assumes the SMSC's default alphabet is GSM 03.38), UCS-2
payloads are UTF-16BE bytes with data_coding 8, and esm_class has the UDHI bit (0x40) whenever a UDH
is present.

The conversion modes are Messente's `autoconvert`: `on` applies a replacement table (by default
`DEFAULT_REPLACEMENTS`, look-alikes for characters missing from GSM 03.38; Twilio's SmartEncoded is the
same thing), `full` additionally forces every remaining character into GSM 03.38, `off` sends the text
as given.
"""

from __future__ import annotations

import functools
import re
import unicodedata
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal, TypedDict

from omnirelay.core import gsm7

Encoding = Literal["GSM-7", "UCS-2"]
AutoConvert = Literal["on", "off", "full"]

DATA_CODING_GSM7 = 0
DATA_CODING_UCS2 = 8
ESM_CLASS_UDHI = 0x40
MAX_PARTS = 255  # the total-parts field of the concatenation IE is one octet

_USER_DATA_OCTETS = 140
_CONCAT_IE_8BIT = 0x00
_CONCAT_IE_16BIT = 0x08

_AUTOCONVERT: dict[str, AutoConvert] = {
    "on": "on", "off": "off", "full": "full", "true": "on", "false": "off",
}


class TooManyParts(ValueError):
    """The text needs more parts than allowed."""

    def __init__(self, parts: int, max_parts: int) -> None:
        super().__init__(f"the text needs {parts} SMS parts; at most {max_parts} are allowed")
        self.parts = parts
        self.max_parts = max_parts

    def __reduce__(self) -> tuple[type[TooManyParts], tuple[int, int]]:
        # The default would call __init__ with the message alone.
        return TooManyParts, (self.parts, self.max_parts)


@dataclass(frozen=True, slots=True)
class SmsPart:
    payload: bytes
    udh: bytes
    data_coding: int
    esm_class: int

    @property
    def short_message(self) -> bytes:
        return self.udh + self.payload


@dataclass(frozen=True, slots=True)
class EncodedSms:
    text: str  # after conversion: what the recipient will read
    encoding: Encoding
    parts: tuple[SmsPart, ...]

    @property
    def segment_count(self) -> int:
        return len(self.parts)


@dataclass(frozen=True, slots=True)
class SmsSize:
    text: str
    encoding: Encoding
    units: int  # septets for GSM-7, 16-bit code units for UCS-2
    segment_count: int


# --- conversion --------------------------------------------------------------------------------

def _look_alikes() -> dict[str, str]:
    # The glyphs below are the point of the table, hence the RUF001 (confusable character) waivers.
    table: dict[str, str] = {}
    table.update(dict.fromkeys("‘’‚‛′´`ʼ‹›", "'"))  # noqa: RUF001
    table.update(dict.fromkeys("“”„‟″«»", '"'))
    table.update(dict.fromkeys("‐‑‒–—―−", "-"))  # noqa: RUF001
    table["…"] = "..."
    table.update(dict.fromkeys("\t\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
                               "\u2009\u200a\u202f\u205f\u3000", " "))
    table.update(dict.fromkeys("\u2028\u2029", "\n"))
    # Invisible; ZWJ/ZWNJ are left alone because emoji sequences and several scripts need them.
    table.update(dict.fromkeys("\u00ad\u200b\u2060\ufeff", ""))
    # Latin letters whose accent GSM lacks, down to the base letter. ç goes to c, not to the Ç at 0x09:
    # handsets show that septet as a capital, and "franÇais" reads worse than "francais".
    for code in (*range(0xC0, 0x180), *range(0x1E00, 0x1F00)):
        char = chr(code)
        base = "".join(c for c in unicodedata.normalize("NFD", char) if not unicodedata.combining(c))
        if char not in gsm7.CHARSET and base != char and base.isascii() and gsm7.is_gsm7(base):
            table[char] = base
    table.update({"ł": "l", "Ł": "L", "đ": "d", "Đ": "D", "ħ": "h", "Ħ": "H", "ŧ": "t", "Ŧ": "T",
                  "œ": "oe", "Œ": "OE"})
    table["ı"] = "i"  # noqa: RUF001
    # Greek capitals that look Latin; GSM has only the ones that do not.
    table.update(zip("ΑΒΕΖΗΙΚΜΝΟΡΤΥΧ", "ABEZHIKMNOPTYX", strict=True))  # noqa: RUF001
    return table


DEFAULT_REPLACEMENTS: Mapping[str, str] = MappingProxyType(_look_alikes())
_DEFAULT_TRANSLATION = str.maketrans(dict(DEFAULT_REPLACEMENTS))
# str.translate looks up every character; most texts have nothing to replace, which a search finds fast.
_DEFAULT_KEYS = re.compile("[" + re.escape("".join(sorted(DEFAULT_REPLACEMENTS))) + "]")
_NOT_GSM = re.compile("[^" + re.escape("".join(sorted(gsm7.CHARSET))) + "]")


def normalize_autoconvert(value: str | bool | None) -> AutoConvert:
    """Messente's `on|off|full`, its 2.1.0 spelling `true|false`, a boolean (Twilio's SmartEncoded) or
    None (the default, `on`). Raises ValueError for anything else."""
    if value is None:
        return "on"
    if isinstance(value, bool):
        return "on" if value else "off"
    mode = _AUTOCONVERT.get(value.strip().lower())
    if mode is None:
        raise ValueError(f"autoconvert must be one of {', '.join(_AUTOCONVERT)}, not {value!r}")
    return mode


def _replace(text: str, replacements: Mapping[str, str] | None) -> str:
    if replacements is None:
        return text.translate(_DEFAULT_TRANSLATION) if _DEFAULT_KEYS.search(text) else text
    translation: dict[int, str] = str.maketrans(dict(replacements))  # ValueError for a longer key
    return text.translate(translation)


@functools.lru_cache(maxsize=4096)
def _force_gsm(char: str) -> str:
    stripped = "".join(c for c in unicodedata.normalize("NFKD", char) if not unicodedata.combining(c))
    if gsm7.is_gsm7(stripped):
        return stripped  # empty for a lone combining mark: the accent goes, as it does elsewhere
    return "?"


def convert(text: str, mode: str | bool | None = "on", replacements: Mapping[str, str] | None = None) -> str:
    """Apply an autoconvert mode. `replacements` maps single characters to strings and replaces
    `DEFAULT_REPLACEMENTS` (it does not extend it; merge them yourself for that)."""
    mode = normalize_autoconvert(mode)
    if mode == "off":
        return text
    if mode == "full":
        # Compose first so that a letter followed by a combining accent can still match GSM (e + ́ → é).
        text = unicodedata.normalize("NFC", text)
    text = _replace(text, replacements)
    if mode == "full":
        text = _NOT_GSM.sub(lambda match: _force_gsm(match[0]), text)
    return text


def check_replacements(table: object) -> dict[str, str]:
    """An account's replacement table: single characters to strings. Raises ValueError."""
    if not isinstance(table, Mapping):
        raise ValueError("a replacement table is a JSON object of single characters to strings")
    for key, value in table.items():
        if not isinstance(key, str) or len(key) != 1:
            raise ValueError(f"replacement keys are single characters, not {key!r}")
        if not isinstance(value, str):
            raise ValueError(f"the replacement for {key!r} must be a string")
        try:
            (key + value).encode("utf-16-be")
        except UnicodeEncodeError:
            raise ValueError(f"the replacement for {key!r} holds a lone surrogate") from None
    return dict(table)


class SmsOptions(TypedDict):
    autoconvert: str | bool | None
    replacements: Mapping[str, str] | None
    udh_hex: str | None


def content_options(content: Mapping[str, Any]) -> SmsOptions:
    """The encoder's options as an SMS variant's stored content carries them: its autoconvert mode,
    the account's replacement table (copied in at accept time, so a later edit of the table changes
    nothing already accepted) and a caller's UDH."""
    return SmsOptions(autoconvert=content.get("autoconvert", "on"),
                      replacements=content.get("replacements"), udh_hex=content.get("udh") or None)


# --- UDH ---------------------------------------------------------------------------------------

def parse_udh(udh: bytes) -> tuple[tuple[int, bytes], ...]:
    """The information elements (identifier, data) of a UDH that starts with its length octet.
    Raises ValueError when the lengths do not add up."""
    if not udh or udh[0] != len(udh) - 1:
        raise ValueError("the UDH length octet does not match the header")
    elements: list[tuple[int, bytes]] = []
    at = 1
    while at < len(udh):
        if at + 2 > len(udh) or at + 2 + udh[at + 1] > len(udh):
            raise ValueError(f"the UDH information element at octet {at} overruns the header")
        elements.append((udh[at], udh[at + 2 : at + 2 + udh[at + 1]]))
        at += 2 + udh[at + 1]
    return tuple(elements)


def parse_concat_udh(udh: bytes) -> tuple[int, int, int] | None:
    """(reference, total, sequence) from the first concatenation IE (8- or 16-bit reference), or None
    when there is none usable. Total-less and out-of-range elements are ignored as TS 23.040 §9.2.3.24.1
    asks, and so is a malformed UDH: the receiver then treats the message as standalone."""
    try:
        elements = parse_udh(udh)
    except ValueError:
        return None
    for identifier, data in elements:
        if identifier == _CONCAT_IE_8BIT and len(data) == 3:
            reference, total, sequence = data[0], data[1], data[2]
        elif identifier == _CONCAT_IE_16BIT and len(data) == 4:
            reference, total, sequence = int.from_bytes(data[:2], "big"), data[2], data[3]
        else:
            continue
        if total and 1 <= sequence <= total:
            return reference, total, sequence
    return None


def split_short_message(short_message: bytes) -> tuple[bytes, bytes]:
    """(udh, payload) of a short_message whose esm_class has the UDHI bit. Raises ValueError when the
    UDH length octet points past the end."""
    if not short_message or short_message[0] + 1 > len(short_message):
        raise ValueError("short_message is shorter than its UDH length octet says")
    cut = short_message[0] + 1
    return short_message[:cut], short_message[cut:]


def _caller_udh(udh_hex: str | None) -> bytes:
    if not udh_hex:
        return b""
    udh = bytes.fromhex(udh_hex)
    if len(udh) > _USER_DATA_OCTETS:
        raise ValueError(f"the UDH is {len(udh)} octets; user data holds {_USER_DATA_OCTETS}")
    parse_udh(udh)
    return udh


def _capacity(encoding: Encoding, udh_octets: int) -> int:
    """Septets or UCS-2 units that fit next to a UDH of `udh_octets` (length octet included)."""
    if encoding == "UCS-2":
        return (_USER_DATA_OCTETS - udh_octets) // 2
    # The UDH is padded with fill bits to a septet boundary: 160 - ceil(8 * udh_octets / 7).
    return (_USER_DATA_OCTETS - udh_octets) * 8 // 7


# --- segmentation ------------------------------------------------------------------------------

def _ends_in_escape(data: bytes, end: int) -> bool:
    return data[end - 1] == gsm7.ESCAPE


def _ends_in_high_surrogate(data: bytes, end: int) -> bool:
    return 0xD8 <= data[end - 2] <= 0xDB


def _part_ends(data: bytes, width: int, capacity: int, splits: Callable[[bytes, int], bool]) -> list[int]:
    ends: list[int] = []
    start, size, step = 0, len(data), capacity * width
    while start < size:
        end = min(start + step, size)
        if end < size and splits(data, end):
            end -= width
        if end <= start:
            raise ValueError("the UDH leaves no room for the text")
        ends.append(end)
        start = end
    return ends


def _utf16(text: str) -> bytes:
    try:
        return text.encode("utf-16-be")
    except UnicodeEncodeError as error:
        # json.loads lets "\ud800" through; say what is wrong rather than surface a codec error.
        raise ValueError(f"the text has a lone surrogate (U+{ord(text[error.start]):04X}) at "
                         f"{error.start}; it cannot be sent as UCS-2") from error


@dataclass(frozen=True, slots=True)
class _Layout:
    text: str
    encoding: Encoding
    data: bytes
    ends: tuple[int, ...]
    concatenated: bool


def _layout(text: str, autoconvert: str | bool | None, replacements: Mapping[str, str] | None,
            udh: bytes) -> _Layout:
    text = convert(text, autoconvert, replacements)
    encoding: Encoding
    septets = gsm7.try_encode(text)
    if septets is not None:
        encoding, data, width, splits = "GSM-7", septets, 1, _ends_in_escape
    else:
        encoding, data, width, splits = "UCS-2", _utf16(text), 2, _ends_in_high_surrogate
    if len(data) <= _capacity(encoding, len(udh)) * width:
        return _Layout(text, encoding, data, (len(data),), concatenated=False)
    if udh and any(identifier in (_CONCAT_IE_8BIT, _CONCAT_IE_16BIT) for identifier, _ in parse_udh(udh)):
        raise ValueError("the text needs several parts but the caller's UDH already has a concatenation IE")
    # The concatenation IE takes 5 octets; a UDH of our own also needs its length octet.
    concat_udh_octets = (len(udh) or 1) + 5
    ends = _part_ends(data, width, _capacity(encoding, concat_udh_octets), splits)
    return _Layout(text, encoding, data, tuple(ends), concatenated=True)


def measure_sms(text: str, *, autoconvert: str | bool | None = "on",
                replacements: Mapping[str, str] | None = None, udh_hex: str | None = None) -> SmsSize:
    """Encoding, length and segment count as `encode_sms` would produce them, without building parts
    and without a cap on the number of parts (the API surfaces report it; sending enforces it)."""
    layout = _layout(text, autoconvert, replacements, _caller_udh(udh_hex))
    width = 1 if layout.encoding == "GSM-7" else 2
    return SmsSize(layout.text, layout.encoding, len(layout.data) // width, len(layout.ends))


def count_segments(text: str, *, autoconvert: str | bool | None = "on",
                   replacements: Mapping[str, str] | None = None, udh_hex: str | None = None) -> int:
    """What Twilio reports as num_segments and Messente as price_info.parts_count."""
    size = measure_sms(text, autoconvert=autoconvert, replacements=replacements, udh_hex=udh_hex)
    return size.segment_count


def encode_sms(text: str, *, autoconvert: str | bool | None = "on",
               replacements: Mapping[str, str] | None = None, udh_hex: str | None = None,
               max_parts: int = MAX_PARTS, reference: int | None = None) -> EncodedSms:
    """Convert, choose the encoding and split `text` into parts ready for submit_sm.

    `udh_hex` is a caller's UDH (Messente's `udh`, length octet first); it is sent as given when the
    text fits one part beside it, otherwise the concatenation IE is appended to it. `reference` is the
    concatenation reference (0-255). Handsets join parts by sender and reference, so the SMPP sender
    should pass a per-recipient rolling counter; the default is a checksum of the converted text,
    which keeps encoding deterministic and makes a resend of the same message reuse its reference.

    Raises TooManyParts above `max_parts` (1-255), ValueError for a malformed UDH, an unknown
    autoconvert mode, a reference out of range or a lone surrogate in UCS-2 text.
    """
    if not 1 <= max_parts <= MAX_PARTS:
        raise ValueError(f"max_parts must be between 1 and {MAX_PARTS}, not {max_parts}")
    if reference is not None and not 0 <= reference <= 0xFF:
        raise ValueError(f"reference must be between 0 and 255, not {reference}")
    caller_udh = _caller_udh(udh_hex)
    layout = _layout(text, autoconvert, replacements, caller_udh)
    total = len(layout.ends)
    if total > max_parts:
        raise TooManyParts(total, max_parts)
    data_coding = DATA_CODING_GSM7 if layout.encoding == "GSM-7" else DATA_CODING_UCS2

    if not layout.concatenated:
        part = SmsPart(layout.data, caller_udh, data_coding, ESM_CLASS_UDHI if caller_udh else 0)
        return EncodedSms(layout.text, layout.encoding, (part,))

    if reference is None:
        reference = zlib.crc32(layout.text.encode("utf-8", "surrogatepass")) & 0xFF
    elements = caller_udh[1:]
    parts: list[SmsPart] = []
    start = 0
    for sequence, end in enumerate(layout.ends, start=1):
        header = elements + bytes((_CONCAT_IE_8BIT, 3, reference, total, sequence))
        parts.append(SmsPart(layout.data[start:end], bytes((len(header),)) + header, data_coding,
                             ESM_CLASS_UDHI))
        start = end
    return EncodedSms(layout.text, layout.encoding, tuple(parts))


def decode_part(part: SmsPart) -> str:
    """The text of one part's payload (data_coding 0 or 8). For inbound UCS-2 from other senders,
    join the payloads before decoding: they may split a surrogate pair where we never do."""
    if part.data_coding == DATA_CODING_GSM7:
        return gsm7.decode_septets(part.payload)
    if part.data_coding == DATA_CODING_UCS2:
        return part.payload.decode("utf-16-be")
    raise ValueError(f"data_coding {part.data_coding} is neither GSM-7 (0) nor UCS-2 (8)")
