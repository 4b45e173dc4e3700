"""The pure part of idempotency keys: which header values are keys, and what makes two requests
the same."""

from __future__ import annotations

from omnirelay.core.idempotency import (
    MESSENTE_BULK,
    MESSENTE_SEND,
    TWILIO_CREATE,
    form_fingerprint,
    json_fingerprint,
    key_problem,
)


def test_usable_keys() -> None:
    for key in ("a", "order 1234", "0b6f2a52-3c1e-4f6a-9d2b-7e5c4a3b2d10", "~" * 255):
        assert key_problem([key]) is None


def test_unusable_keys_say_why() -> None:
    assert "empty" in (key_problem([""]) or "")
    assert "at most 255" in (key_problem(["k" * 256]) or "")
    for bad in ("caf\u00e9", "nul\x00", "del\x7f", "line\nbreak"):
        assert "printable ASCII" in (key_problem([bad]) or "")
    assert "not 2" in (key_problem(["a", "a"]) or "")


def test_a_json_body_is_the_same_request_in_any_key_order() -> None:
    one = {"to": "+1", "messages": [{"channel": "sms", "text": "hi"}]}
    two = {"messages": [{"text": "hi", "channel": "sms"}], "to": "+1"}
    assert json_fingerprint(MESSENTE_SEND, one) == json_fingerprint(MESSENTE_SEND, two)
    assert json_fingerprint(MESSENTE_SEND, one) != json_fingerprint(MESSENTE_BULK, one)
    # Array order is meaning (fallback order), so it is another request.
    swapped = {"to": "+1", "messages": [{"channel": "viber", "text": "hi"},
                                        {"channel": "sms", "text": "hi"}]}
    kept = {"to": "+1", "messages": swapped["messages"][::-1]}
    assert json_fingerprint(MESSENTE_SEND, swapped) != json_fingerprint(MESSENTE_SEND, kept)


def test_a_form_is_the_same_request_in_any_field_order_but_values_keep_theirs() -> None:
    one = {"To": ["+1"], "Body": ["hi"], "MediaUrl": ["a", "b"]}
    two = {"MediaUrl": ["a", "b"], "Body": ["hi"], "To": ["+1"]}
    assert form_fingerprint(TWILIO_CREATE, one) == form_fingerprint(TWILIO_CREATE, two)
    assert form_fingerprint(TWILIO_CREATE, one) != form_fingerprint(
        TWILIO_CREATE, {**one, "MediaUrl": ["b", "a"]})
