"""The scheduling and fallback-chain policies the store applies (core.schedule, core.fallback)."""

from datetime import datetime, timedelta

from omnirelay.core.fallback import next_variant
from omnirelay.core.schedule import deadline, first_due

NOW = datetime(2026, 12, 2, 8, 0, 0)


def test_the_first_attempt_is_due_now_unless_scheduled_ahead() -> None:
    assert first_due(None, NOW) == NOW
    assert first_due(NOW - timedelta(minutes=5), NOW) == NOW, "a time in the past sends at once"
    ahead = NOW + timedelta(hours=2)
    assert first_due(ahead, NOW) == ahead


def test_an_attempt_expires_its_validity_after_it_starts() -> None:
    assert deadline(NOW, 90) == NOW + timedelta(seconds=90)


def test_a_failed_variant_hands_over_to_the_next_one_still_waiting() -> None:
    waiting = [("viber", 1, 60), ("sms", 2, 3600)]
    assert next_variant(waiting, 0, NOW) == ("viber", NOW + timedelta(seconds=60))
    # a skipped or canceled variant is not waiting: the chain goes on past it
    assert next_variant([("sms", 2, 3600)], 0, NOW) == ("sms", NOW + timedelta(hours=1))
    assert next_variant(waiting, 1, NOW) == ("sms", NOW + timedelta(hours=1))


def test_the_chain_ends_when_no_later_variant_waits() -> None:
    assert next_variant([("sms", 2, 3600)], 2, NOW) is None
    assert next_variant([], 0, NOW) is None
