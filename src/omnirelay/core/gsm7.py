"""The GSM 03.38 default alphabet and its extension table (3GPP TS 23.038 §6.2.1), as unpacked septets.

Kept here rather than taken from the `gsm0338` package: that codec encodes U+001B as a bare escape
septet (so "\\x1b(" comes back as "{"), silently drops a trailing escape, raises on an escape followed by
a code the extension table does not define (the spec says show the default-table character), and runs
about two orders of magnitude slower than `str.translate`. The tables are short enough to read.

Septets are "unpacked": one byte per septet, the high bit clear. This is what SMPP `short_message`
carries with data_coding 0; packing eight septets into seven octets is the radio interface's business.
"""

from __future__ import annotations

import re

ESCAPE = 0x1B

# Index = septet value. 0x1B is the escape to the extension table, not a character, hence the
# placeholder; 0x09 is the capital C-cedilla the spec's table shows (unicode.org's GSM0338.TXT maps it
# to the small one), so what we send decodes to exactly what we were given.
BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ"
    " !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmnopqrstuvwxyzäöñüà"
)

# Septet after ESC -> character. Each of these costs two septets.
EXTENSION = {
    0x0A: "\f",
    0x14: "^",
    0x28: "{",
    0x29: "}",
    0x2F: "\\",
    0x3C: "[",
    0x3D: "~",
    0x3E: "]",
    0x40: "|",
    0x65: "€",
}

EXTENSION_CHARS = frozenset(EXTENSION.values())
CHARSET = frozenset(BASIC.replace("\x1b", "")) | EXTENSION_CHARS

_ENCODE: dict[int, str] = {ord(char): chr(code) for code, char in enumerate(BASIC) if code != ESCAPE}
_ENCODE.update({ord(char): f"\x1b{chr(code)}" for code, char in EXTENSION.items()})
_DECODE = {code: char for code, char in enumerate(BASIC) if code != ESCAPE}
_ESCAPED = re.compile("\x1b(.?)", re.DOTALL)

# Most texts are Latin-1, where bytes.translate is ten times quicker than str.translate. An extension
# character becomes 0x80 | its code, expanded to ESC + code afterwards; anything else outside the
# alphabet becomes 0xFF.
_OUTSIDE = 0xFF
_LATIN1 = bytearray([_OUTSIDE]) * 256
for _code, _char in enumerate(BASIC):
    if _code != ESCAPE and ord(_char) < 256:
        _LATIN1[ord(_char)] = _code
for _code, _char in EXTENSION.items():
    if ord(_char) < 256:
        _LATIN1[ord(_char)] = 0x80 | _code
_LATIN1_TABLE = bytes(_LATIN1)
_EXPANSIONS = [(bytes((0x80 | code,)), bytes((ESCAPE, code))) for code, char in EXTENSION.items()
               if ord(char) < 256]
del _LATIN1, _code, _char


def is_gsm7(text: str) -> bool:
    return CHARSET.issuperset(text)


def try_encode(text: str) -> bytes | None:
    """Unpacked septets for `text`, or None when a character is not in the alphabet."""
    try:
        septets = text.encode("latin-1").translate(_LATIN1_TABLE)
    except UnicodeEncodeError:
        return text.translate(_ENCODE).encode("ascii") if is_gsm7(text) else None
    if septets.isascii():
        return septets
    if _OUTSIDE in septets:
        return None
    for marker, escaped in _EXPANSIONS:
        septets = septets.replace(marker, escaped)
    return septets


def encode_septets(text: str) -> bytes:
    """Unpacked septets for `text`. Raises ValueError when a character is not in the alphabet."""
    septets = try_encode(text)
    if septets is None:
        bad = next(char for char in text if char not in CHARSET)
        raise ValueError(f"{bad!r} (U+{ord(bad):04X}) is not in the GSM 03.38 alphabet")
    return septets


def _unescape(match: re.Match[str]) -> str:
    if not match[1]:
        # A dangling escape; receivers that do not understand one show a space.
        return " "
    code = ord(match[1])
    if code == ESCAPE:
        # 1B 1B is reserved for a further extension table; TS 23.038 says display a space.
        return " "
    # An unknown extension code shows as the default-table character (TS 23.038 §6.2.1.1).
    return EXTENSION.get(code) or _DECODE[code]


def decode_septets(septets: bytes) -> str:
    """The inverse of `encode_septets`, lenient with escapes the way the spec asks receivers to be.
    Raises ValueError for a byte with the high bit set (not an unpacked septet)."""
    text = septets.decode("ascii")
    if "\x1b" not in text:
        return text.translate(_DECODE)
    pieces: list[str] = []
    start = 0
    for match in _ESCAPED.finditer(text):
        pieces.append(text[start : match.start()].translate(_DECODE))
        pieces.append(_unescape(match))
        start = match.end()
    pieces.append(text[start:].translate(_DECODE))
    return "".join(pieces)
