"""The pure rules of number verification: parameters, PINs, hashes, send times, the answers."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from omnirelay.core import verification as rules
from omnirelay.core.verification import Answer, Decision, PinState

NOW = dt.datetime(2026, 12, 2, 12, 0, 0)


def state(**changes: object) -> PinState:
    values: dict[str, object] = {"expires_at": NOW + dt.timedelta(seconds=1), "verified": False,
                                 "wrong_pins": 0, "destination_wrong_pins": 0, **changes}
    return PinState(**values)  # type: ignore[arg-type]


def test_start_defaults() -> None:
    asked = rules.parse_start({"to": "+37255512345"})
    assert (asked.template, asked.pin_length, asked.sender, asked.max_tries, asked.retry_delay,
            asked.validity, asked.ip, asked.cookie) == (
        "Your Verification PIN code is <PIN>", 4, None, 2, 30, 300, None, None)


@pytest.mark.parametrize("params, code", [
    ({}, 102),
    ({"to": " "}, 102),
    ({"to": "+3725", "pin_length": "3"}, 102),
    ({"to": "+3725", "pin_length": "17"}, 102),
    ({"to": "+3725", "pin_length": "٤"}, 102),  # a digit, but not an ASCII one
    ({"to": "+3725", "validity": "0"}, 102),
    ({"to": "+3725", "validity": "1801"}, 102),
    ({"to": "+3725", "max_tries": "6"}, 102),
    ({"to": "+3725", "retry_delay": "-1"}, 102),
    ({"to": "+3725", "cookie": "c" * 513}, 102),
    ({"to": "+3725", "ip": "192.0.2.1\x00"}, 102),
    ({"to": "+3725", "template": "<PIN>\x00"}, 102),
    ({"to": "+3725", "template": "Your code is PIN"}, 109),
    ({"to": "+3725", "from": "Twelve chars"}, 111),
    ({"to": "+3725", "from": "Tab\tName"}, 111),
])
def test_start_errors(params: dict[str, str], code: int) -> None:
    with pytest.raises(rules.StartError) as caught:
        rules.parse_start(params)
    assert caught.value.code == code


@given(st.integers(rules.MIN_PIN_LENGTH, rules.MAX_PIN_LENGTH))
def test_pins_are_digits_of_the_asked_length(length: int) -> None:
    pin = rules.new_pin(length)
    assert len(pin) == length and pin.isascii() and pin.isdigit()


def test_pins_vary() -> None:
    assert len({rules.new_pin(6) for _ in range(50)}) > 40


def test_the_hash_is_keyed_and_bound_to_the_verification() -> None:
    hasher = rules.PinHasher("server-key-0123456789")
    stored = hasher.pin_hash("v1", "1234")
    assert "1234" not in stored and len(stored) == 64
    assert hasher.matches("v1", "1234", stored)
    assert not hasher.matches("v1", "1235", stored)
    assert not hasher.matches("v2", "1234", stored)
    assert not rules.PinHasher("another-server-key-0").matches("v1", "1234", stored)


def test_send_offsets_stop_at_max_tries_and_validity() -> None:
    assert rules.send_offsets(2, 30, 300) == [0, 30]
    assert rules.send_offsets(5, 100, 300) == [0, 100, 200]  # not when the PIN has expired
    assert rules.send_offsets(1, 30, 300) == [0]


def test_the_country_code_may_come_without_a_plus() -> None:
    assert [rules.international(n) for n in ("+37255512345", "37255512345", "0037255512345")] \
        == ["+37255512345"] * 3


def test_render_fills_every_placeholder() -> None:
    assert rules.render("<PIN> is your code (<PIN>)", "0042") == "0042 is your code (0042)"


@pytest.mark.parametrize("current, matches, expected", [
    (state(), True, (Decision.VERIFY, Answer.VERIFIED)),
    (state(), False, (Decision.COUNT_WRONG, Answer.INVALID)),
    (state(wrong_pins=rules.MAX_WRONG_PINS - 1), False, (Decision.COUNT_WRONG, Answer.INVALID)),
    (state(wrong_pins=rules.MAX_WRONG_PINS), True, (Decision.NOTHING, Answer.THROTTLED)),
    (state(destination_wrong_pins=rules.DESTINATION_WRONG_PINS), True,
     (Decision.NOTHING, Answer.THROTTLED)),
    (state(verified=True), True, (Decision.NOTHING, Answer.EXPIRED)),
    (state(expires_at=NOW), True, (Decision.NOTHING, Answer.EXPIRED)),
    (state(expires_at=NOW, wrong_pins=9), False, (Decision.NOTHING, Answer.EXPIRED)),
])
def test_the_answers(current: PinState, matches: bool,
                     expected: tuple[Decision, Answer]) -> None:
    assert rules.decide(current, matches, NOW) == expected


@given(st.integers(0, 20), st.integers(0, 30), st.booleans(), st.booleans(),
       st.integers(-5, 5))
def test_verified_only_when_open_and_right(wrong: int, destination_wrong: int, verified: bool,
                                           matches: bool, seconds_left: int) -> None:
    current = state(wrong_pins=wrong, destination_wrong_pins=destination_wrong,
                    verified=verified, expires_at=NOW + dt.timedelta(seconds=seconds_left))
    decision, answer = rules.decide(current, matches, NOW)
    is_open = (not verified and seconds_left > 0 and wrong < rules.MAX_WRONG_PINS
               and destination_wrong < rules.DESTINATION_WRONG_PINS)
    assert (answer is Answer.VERIFIED) == (is_open and matches)
    assert (decision is Decision.COUNT_WRONG) == (is_open and not matches)
