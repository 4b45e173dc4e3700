"""The GCRA arithmetic of per-account rate limits (core.ratelimit, store.ratelimits.take_up_to)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from omnirelay.core.ratelimit import SECOND_US, decide, retry_after_seconds, slot
from omnirelay.store.ratelimits import take_up_to

NOW = 1_000 * SECOND_US


def test_a_full_bucket_admits_its_rate_then_refuses_for_at_least_a_second() -> None:
    tat = None
    for _ in range(10):
        decision = decide(tat, NOW, 1, 10)
        assert decision.allowed
        tat = decision.tat
    refused = decide(tat, NOW, 1, 10)
    assert not refused.allowed and refused.retry_after == 1 and refused.tat == tat
    assert decide(tat, NOW + SECOND_US // 10, 1, 10).allowed  # a tenth refills one


def test_a_request_larger_than_the_bucket_passes_when_full_and_holds_the_account_back() -> None:
    big = decide(None, NOW, 25, 10)
    assert big.allowed and big.tat == NOW + 25 * SECOND_US // 10
    refused = decide(big.tat, NOW, 1, 10)
    assert refused.retry_after == 2  # 2.5 s of backlog, 0.9 s of room: 1.6 s, rounded up
    assert not decide(big.tat, NOW + 15 * SECOND_US // 10, 1, 10).allowed
    assert decide(big.tat, NOW + 16 * SECOND_US // 10, 1, 10).allowed


def test_retry_after_is_whole_seconds_and_never_zero() -> None:
    assert [retry_after_seconds(us) for us in (0, 1, SECOND_US, SECOND_US + 1)] == [1, 1, 1, 2]


@given(st.integers(1, 1000), st.lists(st.integers(0, 2 * SECOND_US), max_size=50))
def test_over_any_span_no_more_than_the_rate_plus_one_bucket_is_admitted(
        rate: int, gaps: list[int]) -> None:
    tat, now, admitted = None, NOW, 0
    for gap in gaps:
        now += gap
        decision = decide(tat, now, 1, rate)
        if decision.allowed:
            admitted += 1
            tat = decision.tat
    span = (now - NOW) / SECOND_US
    assert admitted <= rate * span + rate + 1


def test_take_up_to_gives_what_is_free_and_slots_follow_the_rate() -> None:
    granted, tat = take_up_to(0, NOW, 12, 5)
    assert (granted, tat) == (5, NOW + SECOND_US)
    assert take_up_to(tat, NOW, 3, 5)[0] == 0
    turns = [slot(tat, NOW, 5, i) for i in range(3)]
    assert turns == [NOW + SECOND_US // 5 * (i + 1) for i in range(3)]
    assert take_up_to(tat, turns[0], 3, 5)[0] == 1
