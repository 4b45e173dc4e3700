"""SMS encoding and segmentation: known cases, properties against an independent counter, purity."""

from __future__ import annotations

import ast
import math
import pickle
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from omnirelay.core import gsm7
from omnirelay.core.sms import (
    DEFAULT_REPLACEMENTS,
    EncodedSms,
    SmsPart,
    TooManyParts,
    check_replacements,
    content_options,
    convert,
    count_segments,
    decode_part,
    encode_sms,
    measure_sms,
    normalize_autoconvert,
    parse_concat_udh,
    parse_udh,
    split_short_message,
)

SOURCES = [Path(gsm7.__file__), Path(gsm7.__file__).with_name("sms.py")]

# Written out independently of gsm7.BASIC, from the 3GPP TS 23.038 table, row by row.
SPEC_BASIC = {
    0x00: "@", 0x01: "£", 0x02: "$", 0x03: "¥", 0x04: "è", 0x05: "é", 0x06: "ù", 0x07: "ì",
    0x08: "ò", 0x09: "Ç", 0x0A: "\n", 0x0B: "Ø", 0x0C: "ø", 0x0D: "\r", 0x0E: "Å", 0x0F: "å",
    0x10: "Δ", 0x11: "_", 0x12: "Φ", 0x13: "Γ", 0x14: "Λ", 0x15: "Ω", 0x16: "Π", 0x17: "Ψ",
    0x18: "Σ", 0x19: "Θ", 0x1A: "Ξ", 0x1C: "Æ", 0x1D: "æ", 0x1E: "ß", 0x1F: "É",
    0x24: "¤", 0x40: "¡", 0x5B: "Ä", 0x5C: "Ö", 0x5D: "Ñ", 0x5E: "Ü", 0x5F: "§",
    0x60: "¿", 0x7B: "ä", 0x7C: "ö", 0x7D: "ñ", 0x7E: "ü", 0x7F: "à",
}
for _code in range(0x20, 0x80):
    SPEC_BASIC.setdefault(_code, chr(_code))  # the rest coincides with ASCII
SPEC_EXTENSION = {0x0A: "\f", 0x14: "^", 0x28: "{", 0x29: "}", 0x2F: "\\", 0x3C: "[", 0x3D: "~",
                  0x3E: "]", 0x40: "|", 0x65: "€"}


# --- an independent segment counter ---------------------------------------------------------------

def independent_count(text: str, udh_octets: int = 0) -> tuple[str, int]:
    """Greedy packing of whole characters, by bit arithmetic, knowing nothing of sms.py."""
    gsm = set(SPEC_BASIC.values()) | set(SPEC_EXTENSION.values())
    if all(char in gsm for char in text):
        costs = [2 if char in SPEC_EXTENSION.values() else 1 for char in text]

        def room(udh: int) -> int:
            header_bits = udh * 8
            fill = (7 - header_bits % 7) % 7 if udh else 0
            return (1120 - header_bits - fill) // 7

        encoding = "GSM-7"
    else:
        costs = [2 if ord(char) > 0xFFFF else 1 for char in text]

        def room(udh: int) -> int:
            return (140 - udh) // 2

        encoding = "UCS-2"
    if sum(costs) <= room(udh_octets):
        return encoding, 1
    capacity = room((udh_octets or 1) + 5)
    parts, used = 1, 0
    for cost in costs:
        if used + cost > capacity:
            parts, used = parts + 1, 0
        used += cost
    return encoding, parts


def assert_fits(part: SmsPart) -> None:
    udh_bits = len(part.udh) * 8
    if part.data_coding == 0:
        fill = (7 - udh_bits % 7) % 7 if part.udh else 0
        assert udh_bits + fill + 7 * len(part.payload) <= 1120
        assert all(byte < 0x80 for byte in part.payload)
    else:
        assert part.data_coding == 8
        assert len(part.short_message) <= 140
        assert len(part.payload) % 2 == 0
    assert part.esm_class == (0x40 if part.udh else 0)


def joined(sms: EncodedSms) -> str:
    return "".join(decode_part(part) for part in sms.parts)


def concat(part: SmsPart) -> tuple[int, int, int]:
    info = parse_concat_udh(part.udh)
    assert info is not None
    return info


def udh_of(octets: int) -> str:
    """A well-formed UDH of `octets` octets in all: one IE of filler."""
    return bytes((octets - 1, 0x7E, octets - 3)).hex() + "00" * (octets - 3)


# --- known cases --------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("text", "encoding", "payload_lengths"),
    [
        ("a" * 160, "GSM-7", [160]),
        ("a" * 161, "GSM-7", [153, 8]),
        ("a" * 306, "GSM-7", [153, 153]),
        ("a" * 307, "GSM-7", [153, 153, 1]),
        ("ж" * 70, "UCS-2", [140]),
        ("ж" * 71, "UCS-2", [134, 8]),
        ("€" * 80, "GSM-7", [160]),
        ("€" * 81, "GSM-7", [152, 10]),  # 153 would cut the 77th euro's escape off its code
        ("a" * 152 + "€" + "b" * 10, "GSM-7", [152, 12]),
        ("a" * 151 + "€" + "b" * 10, "GSM-7", [153, 10]),
        ("😀" * 35, "UCS-2", [140]),
        ("😀" * 36, "UCS-2", [132, 12]),  # 67 units would end on a high surrogate
        ("a" * 66 + "😀" + "b" * 10, "UCS-2", [132, 24]),
        ("", "GSM-7", [0]),
    ],
)
def test_known_segmentation(text: str, encoding: str, payload_lengths: list[int]) -> None:
    sms = encode_sms(text, autoconvert="off")
    assert sms.encoding == encoding
    assert [len(part.payload) for part in sms.parts] == payload_lengths
    assert sms.segment_count == len(payload_lengths) == count_segments(text, autoconvert="off")
    assert joined(sms) == text
    for part in sms.parts:
        assert_fits(part)
        assert part.data_coding == (0 if encoding == "GSM-7" else 8)


def test_single_part_has_no_udh() -> None:
    (part,) = encode_sms("Hello @ £5 {ok}").parts
    assert part.udh == b"" and part.esm_class == 0 and part.data_coding == 0
    assert part.payload == b"Hello \x00 \x015 \x1b(ok\x1b)"
    assert part.short_message == part.payload


def test_concatenated_parts_carry_the_8bit_reference_udh() -> None:
    sms = encode_sms("a" * 400, reference=0x42)
    assert [part.udh.hex() for part in sms.parts] == ["050003420301", "050003420302", "050003420303"]
    assert all(part.esm_class == 0x40 for part in sms.parts)
    assert sms.parts[1].short_message == bytes.fromhex("050003420302") + b"a" * 153
    assert [parse_concat_udh(part.udh) for part in sms.parts] == [(0x42, 3, 1), (0x42, 3, 2), (0x42, 3, 3)]


def test_ucs2_payload_is_utf16be_with_surrogate_pairs() -> None:
    (part,) = encode_sms("ж😀", autoconvert="off").parts
    assert part.payload == "ж😀".encode("utf-16-be") == bytes.fromhex("0436d83dde00")
    assert part.data_coding == 8


def test_escape_split_across_the_boundary_moves_whole_to_the_next_part() -> None:
    sms = encode_sms("a" * 152 + "€" + "b" * 10)
    assert sms.parts[0].payload.endswith(b"a")
    assert sms.parts[1].payload.startswith(b"\x1b\x65")


def test_default_reference_is_deterministic() -> None:
    text = "x" * 200
    assert encode_sms(text) == encode_sms(text)
    assert 0 <= concat(encode_sms(text).parts[0])[0] <= 255


SAMPLE = "“Hello” — it’s café… ł"  # noqa: RUF001


@pytest.mark.parametrize(
    ("mode", "text", "encoding"),
    [
        ("on", "\"Hello\" - it's café... l", "GSM-7"),
        ("true", "\"Hello\" - it's café... l", "GSM-7"),
        (True, "\"Hello\" - it's café... l", "GSM-7"),
        (None, "\"Hello\" - it's café... l", "GSM-7"),
        ("full", "\"Hello\" - it's café... l", "GSM-7"),
        ("off", SAMPLE, "UCS-2"),
        ("false", SAMPLE, "UCS-2"),
        (False, SAMPLE, "UCS-2"),
    ],
)
def test_autoconvert_modes(mode: str | bool | None, text: str, encoding: str) -> None:
    sms = encode_sms(SAMPLE, autoconvert=mode)
    assert (sms.text, sms.encoding) == (text, encoding)
    assert joined(sms) == text


def test_on_and_full_differ_where_the_table_has_no_answer() -> None:
    text = SAMPLE + " Привет 😀"
    assert convert(text, "on") == "\"Hello\" - it's café... l Привет 😀"
    assert convert(text, "full") == "\"Hello\" - it's café... l ?????? ?"
    assert convert(text, "off") == text
    assert encode_sms(text, autoconvert="on").encoding == "UCS-2"
    assert encode_sms(text, autoconvert="full").encoding == "GSM-7"


def test_full_strips_accents_and_composes_first() -> None:
    assert convert("e\u0301 q\u0301 ﬁ ² Ａ ħ ő", "full") == "é q fi 2 A h o"  # noqa: RUF001
    assert convert("\u00a0\u2003x\u200b", "full") == "  x"


def test_look_alike_table_contents() -> None:
    expected = {"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u2013": "-", "\u2014": "-",
                "\u2026": "...", "\u00a0": " ", "\u202f": " ", "á": "a", "ç": "c", "Ł": "L", "ş": "s",
                "ệ": "e", "\u0391": "A"}
    for char, replacement in expected.items():
        assert DEFAULT_REPLACEMENTS[char] == replacement, char
    # Nothing already in the alphabet is replaced, and every replacement is GSM.
    assert not set(DEFAULT_REPLACEMENTS) & gsm7.CHARSET
    assert all(gsm7.is_gsm7(value) for value in DEFAULT_REPLACEMENTS.values())
    assert "\u200d" not in DEFAULT_REPLACEMENTS  # ZWJ holds emoji sequences together


def test_replacement_table_is_overridable_per_call() -> None:
    assert convert(SAMPLE, "on", {"ł": "l"}) == "“Hello” — it’s café… l"  # noqa: RUF001
    assert convert(SAMPLE, "on", {}) == SAMPLE
    assert encode_sms(SAMPLE, replacements={}).encoding == "UCS-2"
    # full still guarantees GSM when the caller's table falls short
    assert convert("ł😀", "full", {"ł": "ĺ"}) == "l?"
    with pytest.raises(ValueError):
        convert("x", "on", {"ab": "c"})


@pytest.mark.parametrize("value", ["ON", " full ", "True", "FALSE"])
def test_normalize_autoconvert_is_lenient_about_case(value: str) -> None:
    assert normalize_autoconvert(value) in ("on", "off", "full")


@pytest.mark.parametrize("value", ["yes", "", "smart", "1"])
def test_normalize_autoconvert_rejects_unknown(value: str) -> None:
    with pytest.raises(ValueError, match="autoconvert"):
        normalize_autoconvert(value)


# --- caller UDH ---------------------------------------------------------------------------------

PORT_UDH = "06050415811581"  # application port addressing, 16-bit: 7 octets with the length octet


def test_caller_udh_is_sent_as_given_when_the_text_fits() -> None:
    assert count_segments("a" * 153, udh_hex=PORT_UDH) == 2  # 160 - ceil(7 * 8 / 7) = 152
    (part,) = encode_sms("a" * 152, udh_hex=PORT_UDH).parts
    assert part.udh == bytes.fromhex(PORT_UDH) and part.esm_class == 0x40
    assert_fits(part)


def test_caller_udh_reduces_capacity_and_gets_the_concat_ie_appended() -> None:
    sms = encode_sms("a" * 154, udh_hex=PORT_UDH, reference=7)
    assert sms.parts[0].udh[:7] == bytes.fromhex("0b050415811581")  # UDHL recomputed
    assert [part.udh.hex() for part in sms.parts] == ["0b0504158115810003070201", "0b0504158115810003070202"]
    assert [len(part.payload) for part in sms.parts] == [146, 8]  # 160 - ceil(12 * 8 / 7)
    for part in sms.parts:
        assert_fits(part)
    assert [parse_concat_udh(part.udh) for part in sms.parts] == [(7, 2, 1), (7, 2, 2)]


def test_caller_udh_in_ucs2() -> None:
    assert count_segments("ж" * 66, udh_hex=PORT_UDH) == 1
    sms = encode_sms("ж" * 67, udh_hex=PORT_UDH)
    assert [len(part.payload) // 2 for part in sms.parts] == [64, 3]  # (140 - 12) // 2
    # a 7-octet 16-bit-reference header leaves 152/66, as SMSCs expect (jsmpp#168)
    assert measure_sms("ж" * 66, udh_hex="06080412340201").segment_count == 1
    assert measure_sms("a" * 152, udh_hex="06080412340201").segment_count == 1
    with pytest.raises(ValueError, match="concatenation"):  # the caller already splits
        measure_sms("a" * 153, udh_hex="06080412340201")


@pytest.mark.parametrize("udh_hex", ["06000312", "0500031202", "zz", "0300"])
def test_malformed_caller_udh_is_rejected(udh_hex: str) -> None:
    with pytest.raises(ValueError):
        encode_sms("hi", udh_hex=udh_hex)


def test_caller_concat_udh_cannot_be_concatenated_again() -> None:
    assert encode_sms("hi", udh_hex="050003120201").parts[0].udh.hex() == "050003120201"
    with pytest.raises(ValueError, match="concatenation"):
        encode_sms("a" * 200, udh_hex="050003120201")


def test_udh_leaving_little_or_no_room() -> None:
    assert len(bytes.fromhex(udh_of(134))) == 134
    # 139 octets with the concat IE: one septet a part still carries plain text...
    assert encode_sms("a" * 10, udh_hex=udh_of(134)).segment_count == 10
    # ...but not an escape sequence, nor a surrogate pair in one unit
    with pytest.raises(ValueError, match="no room"):
        encode_sms("€" * 10, udh_hex=udh_of(134))
    with pytest.raises(ValueError, match="no room"):
        encode_sms("😀" * 10, udh_hex=udh_of(133))
    with pytest.raises(ValueError, match="no room"):  # the concat IE itself would not fit
        encode_sms("a" * 50, udh_hex=udh_of(136))
    with pytest.raises(ValueError):
        encode_sms("a", udh_hex=udh_of(141))


# --- limits -------------------------------------------------------------------------------------

def test_lone_surrogate() -> None:
    with pytest.raises(ValueError, match="lone surrogate"):
        encode_sms("a\ud800b")
    assert count_segments("a\ud800b", autoconvert="full") == 1
    assert convert("a\ud800b", "full") == "a?b"


def test_too_many_parts() -> None:
    with pytest.raises(TooManyParts) as caught:
        encode_sms("a" * (153 * 3 + 1), max_parts=3)
    assert caught.value.parts == 4 and caught.value.max_parts == 3
    assert isinstance(caught.value, ValueError)
    assert "4" in str(caught.value)
    again = pickle.loads(pickle.dumps(caught.value))
    assert (again.parts, again.max_parts, str(again)) == (4, 3, str(caught.value))
    assert encode_sms("a" * (153 * 3), max_parts=3).segment_count == 3
    # counting does not cap: the API surfaces report what sending would refuse
    assert count_segments("a" * 153 * 300) == 300


@pytest.mark.parametrize("kwargs", [{"max_parts": 0}, {"max_parts": 256}, {"reference": 256},
                                    {"reference": -1}])
def test_argument_ranges(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        encode_sms("a" * 200, **kwargs)  # type: ignore[arg-type]


# --- UDH parsing, decoding ----------------------------------------------------------------------

@pytest.mark.parametrize(
    ("udh", "expected"),
    [
        ("050003cc0302", (0xCC, 3, 2)),
        ("06080412340302", (0x1234, 3, 2)),
        ("0b0504158115810003070201", (7, 2, 1)),
        ("06050415811581", None),
        ("050003cc0300", None),  # sequence 0: ignore the IE (TS 23.040)
        ("050003cc0304", None),  # sequence beyond total
        ("050003cc0001", None),  # total 0
        ("050003cc03", None),  # malformed: the length octet says more than there is
        ("", None),
    ],
)
def test_parse_concat_udh(udh: str, expected: tuple[int, int, int] | None) -> None:
    assert parse_concat_udh(bytes.fromhex(udh)) == expected


def test_parse_udh_elements() -> None:
    assert parse_udh(bytes.fromhex("0b050415811581 0003070201".replace(" ", ""))) == (
        (0x05, bytes.fromhex("15811581")), (0x00, bytes.fromhex("070201")))
    with pytest.raises(ValueError):
        parse_udh(bytes.fromhex("0400051234"))


def test_split_short_message_round_trips() -> None:
    for part in encode_sms("z" * 300).parts:
        assert split_short_message(part.short_message) == (part.udh, part.payload)
    with pytest.raises(ValueError):
        split_short_message(b"\x09\x00\x03")


def test_decode_is_lenient_with_escapes_as_the_spec_asks() -> None:
    assert gsm7.decode_septets(b"\x1bA") == "A"  # unknown extension code: default-table character
    assert gsm7.decode_septets(b"ab\x1b") == "ab "  # dangling escape
    assert gsm7.decode_septets(b"\x1b\x1bx") == " x"  # 1B 1B: reserved, shown as a space
    with pytest.raises(ValueError):
        gsm7.decode_septets(b"\x80")
    with pytest.raises(ValueError, match="data_coding"):
        decode_part(SmsPart(b"x", b"", 3, 0))


# --- the alphabet ---------------------------------------------------------------------------------

def test_alphabet_matches_the_spec_table() -> None:
    for code, char in SPEC_BASIC.items():
        assert gsm7.encode_septets(char) == bytes((code,)), hex(code)
        assert gsm7.decode_septets(bytes((code,))) == char
    for code, char in SPEC_EXTENSION.items():
        assert gsm7.encode_septets(char) == bytes((0x1B, code))
        assert gsm7.decode_septets(bytes((0x1B, code))) == char
    assert len(gsm7.CHARSET) == 127 + 10
    for outsider in ("\x1b", "`", "ç", "\t", "ж"):
        assert not gsm7.is_gsm7(outsider)
        with pytest.raises(ValueError):
            gsm7.encode_septets(outsider)


def reference_septets(text: str) -> bytes | None:
    by_char = {char: bytes((code,)) for code, char in SPEC_BASIC.items()}
    by_char.update({char: bytes((0x1B, code)) for code, char in SPEC_EXTENSION.items()})
    if not all(char in by_char for char in text):
        return None
    return b"".join(by_char[char] for char in text)


def test_fast_encoder_matches_the_reference_on_every_latin1_and_gsm_character() -> None:
    for char in [chr(code) for code in range(256)] + sorted(gsm7.CHARSET) + ["\x1b", "\ufffe", "\ud800"]:
        text = f"x{char}y"
        assert gsm7.try_encode(text) == reference_septets(text), repr(char)


@given(st.text(st.sampled_from("aé@€Δ{ÿ\x80\x94ж`\x1b") | st.characters(codec="utf-8")))
def test_fast_encoder_matches_the_reference(text: str) -> None:
    assert gsm7.try_encode(text) == reference_septets(text)


def test_alphabet_agrees_with_the_gsm0338_package() -> None:
    codec = pytest.importorskip("gsm0338").Codec()
    for code in range(0x80):
        if code != 0x1B:
            assert codec.decode(bytes((code,)))[0] == gsm7.decode_septets(bytes((code,))), hex(code)
    for code, char in SPEC_EXTENSION.items():
        assert codec.decode(bytes((0x1B, code)))[0] == char
    # Where the package goes wrong: U+001B becomes a bare escape that swallows the next character.
    assert codec.encode("\x1b(")[0] == b"\x1b("
    assert codec.decode(b"\x1b(")[0] == "{"


# --- properties ---------------------------------------------------------------------------------

INTERESTING = "a €{\n😀жé“…ł\u0301Ç\x1b"
texts = st.text(st.sampled_from(INTERESTING) | st.characters(codec="utf-8"), max_size=700)
modes = st.sampled_from(["on", "off", "full", "true", "false"])


@settings(max_examples=400, deadline=None)
@given(text=texts, mode=modes, udh=st.sampled_from([None, PORT_UDH, "00", "020a00"]),
       reference=st.none() | st.integers(0, 255))
def test_parts_decode_back_fit_and_count_independently(text: str, mode: str, udh: str | None,
                                                       reference: int | None) -> None:
    sms = encode_sms(text, autoconvert=mode, udh_hex=udh, reference=reference)
    assert sms.text == convert(text, mode)
    assert joined(sms) == sms.text
    for part in sms.parts:
        assert_fits(part)
        assert part.short_message == part.udh + part.payload
    udh_octets = len(bytes.fromhex(udh)) if udh else 0
    encoding, expected = independent_count(sms.text, udh_octets)
    assert sms.encoding == encoding
    assert sms.segment_count == expected == count_segments(text, autoconvert=mode, udh_hex=udh)
    if sms.segment_count > 1:
        assert len({concat(part)[0] for part in sms.parts}) == 1
        assert [concat(part)[1:] for part in sms.parts] == [
            (sms.segment_count, seq) for seq in range(1, sms.segment_count + 1)]
    if mode == "full":
        assert sms.encoding == "GSM-7"
    if mode in ("off", "false"):
        assert sms.text == text


@given(text=st.text(st.sampled_from("ab€^ж😀"), max_size=400))
def test_measure_reports_units(text: str) -> None:
    size = measure_sms(text, autoconvert="off")
    if size.encoding == "GSM-7":
        assert size.units == len(text) + sum(char in SPEC_EXTENSION.values() for char in text)
    else:
        assert size.units == len(text.encode("utf-16-be")) // 2
    single, per_part = (160, 153) if size.encoding == "GSM-7" else (70, 67)
    assert (size.segment_count == 1) == (size.units <= single)
    if size.units > single:  # parts are never fuller than an unconstrained split
        fewest, most = math.ceil(size.units / per_part), math.ceil(size.units / (per_part - 1))
        assert fewest <= size.segment_count <= most


# --- purity -------------------------------------------------------------------------------------

@pytest.mark.parametrize("source", SOURCES, ids=lambda path: path.name)
def test_imports_only_the_standard_library(source: Path) -> None:
    allowed = set(sys.stdlib_module_names) | {"omnirelay"}
    for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "relative import"
            names = [node.module or ""]
            if node.module == "omnirelay.core":
                assert {alias.name for alias in node.names} <= {"gsm7"}
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            assert top in allowed, name
            if top == "omnirelay":
                assert name in ("omnirelay.core", "omnirelay.core.gsm7"), name


@pytest.mark.parametrize(("table", "problem"), [
    (["ж"], "JSON object"),
    ({"ab": "x"}, "single characters"),
    ({"ж": 5}, "must be a string"),
    ({"ж": "\ud800"}, "lone surrogate"),
])
def test_replacement_tables_are_checked(table: object, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        check_replacements(table)


def test_content_options_carry_the_account_table() -> None:
    content = {"text": "x" * 159 + "ж", "autoconvert": "on", "replacements": {"ж": "zh"}}
    assert count_segments(content["text"], **content_options(content)) == 2  # type: ignore[arg-type]
    assert count_segments(content["text"], **content_options({"autoconvert": "on"})) == 3
