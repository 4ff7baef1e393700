"""The run-wide rate limit's accounting (RateWindow) on a hand-moved clock, and its async front
(SharedRateLimiter) on the real clock with sub-second waits."""
from __future__ import annotations

import asyncio
import time

import pytest

from flowpo.llm.limiter import RateLimits, RateWindow, SharedRateLimiter, estimate_tokens


def test_estimate_counts_text_messages_and_the_whole_answer():
    # 9 characters -> ceil(9 / 4) = 3 tokens, + 4 for the message, + max_tokens 10 = 17
    assert estimate_tokens([{"role": "user", "content": "abcdefghi"}], 10) == 17
    # two messages of 8 and 0 characters: 2 + 0 + 2 * 4 + 0 = 10
    assert estimate_tokens([{"role": "system", "content": "x" * 8}, {"role": "user", "content": ""}], 0) == 10


def test_a_request_keeps_its_place_until_a_window_after_it_ended():
    w = RateWindow(RateLimits(rpm=2, window_s=10, grant_timeout_s=600))
    a = w.grant(1, now=0)
    w.grant(1, now=1)
    assert w.wait_s(1, now=2) == 598  # two in flight: only a release (or A's grant timing out at 600) frees one
    w.release(a, 1, now=3)
    assert w.wait_s(1, now=4) == 9  # A ended at 3: it leaves the window at 3 + 10 = 13
    assert w.wait_s(1, now=13) == 0
    w.grant(1, now=13)
    assert w.snapshot(now=13)["requests_in_window"] == 2  # B in flight, C in flight (A left)


def test_tokens_count_the_estimate_in_flight_and_what_was_used_after():
    w = RateWindow(RateLimits(tpm=100, window_s=10, grant_timeout_s=600))
    a = w.grant(60, now=0)
    assert w.wait_s(50, now=1) == 599  # 60 + 50 = 110 > 100, and nothing ended yet
    w.release(a, 30, now=2)  # it used 30, not the 60 estimated
    assert w.tokens_in_window() == 30
    assert w.wait_s(50, now=2) == 0  # 30 + 50 = 80


def test_tokens_wait_until_enough_finished_requests_leave():
    w = RateWindow(RateLimits(tpm=100, window_s=10, grant_timeout_s=600))
    w.release(w.grant(30, now=0), 30, now=2)
    w.release(w.grant(40, now=3), 40, now=5)
    w.grant(20, now=6)
    # 30 + 40 + 20 in flight = 90; 50 more is 40 too many: the one ended at 2 frees 30 (not enough),
    # the one ended at 5 brings it to 70: wait until 5 + 10 = 15
    assert w.wait_s(50, now=7) == 8
    assert w.wait_s(50, now=12) == 3  # at 12 the first one left: 40 + 20 + 50 = 110, still 10 over


def test_a_request_bigger_than_the_whole_budget_goes_alone():
    w = RateWindow(RateLimits(tpm=100, window_s=10))
    assert w.wait_s(500, now=0) == 0
    w.grant(500, now=0)
    assert w.tokens_in_window() == 100  # charged as the whole budget, not 500


def test_a_429_pauses_every_caller_until_its_retry_after():
    w = RateWindow(RateLimits(rpm=100, window_s=60, default_backoff_s=2))
    a, b = w.grant(1, now=0), w.grant(1, now=0)
    w.release(a, 0, now=1, rate_limited=True, retry_after_s=5)
    assert w.wait_s(1, now=2) == 4  # paused until 1 + 5 = 6
    w.release(b, 0, now=2, rate_limited=True, retry_after_s=1)  # ends at 3, before 6: no new pause
    assert w.paused_until == 6
    w.release(w.grant(1, now=6), 0, now=7, rate_limited=True)  # no Retry-After: default 2 s
    assert w.paused_until == 9
    assert (w.counts["rate_limited"], w.counts["shared_backoffs"]) == (3, 2)


def test_concurrency_cap():
    w = RateWindow(RateLimits(max_concurrent=1, grant_timeout_s=100))
    a = w.grant(1, now=0)
    assert w.wait_s(1, now=1) == 99
    w.release(a, 1, now=2)
    assert w.wait_s(1, now=2) == 0  # no rpm: an ended request holds nothing


def test_a_grant_never_released_frees_its_slot_after_the_grant_timeout():
    w = RateWindow(RateLimits(rpm=1, window_s=10, grant_timeout_s=30))
    lost = w.grant(1, now=0)
    assert w.wait_s(1, now=35) == 5  # counted as ended at 0 + 30, so it leaves the window at 40
    assert w.counts["expired_grants"] == 1
    w.release(lost, 1, now=36)  # its caller comes back late: nothing to free twice
    assert w.counts["unknown_releases"] == 1 and w.snapshot(now=36)["requests_in_window"] == 1


def test_limits_reject_negative_values():
    with pytest.raises(ValueError, match="RateLimits.rpm must be >= 0, got -1"):
        RateLimits(rpm=-1)
    assert not RateLimits().active and RateLimits(tpm=5).active


def test_callers_are_served_in_order_and_wake_on_a_release():
    async def scenario():
        limiter = SharedRateLimiter(RateLimits(max_concurrent=1))
        first = await limiter.acquire(1)
        order = []

        async def take(name):
            grant = await limiter.acquire(1)
            order.append(name)
            await limiter.release(grant, 1)

        waiting = [asyncio.ensure_future(take(name)) for name in "BCD"]
        await asyncio.sleep(0.05)
        assert order == []  # all wait behind the first grant
        await limiter.release(first, 1)
        await asyncio.wait_for(asyncio.gather(*waiting), 5)  # a release wakes them: no 600 s timeout wait
        return order, await limiter.stats()

    order, stats = asyncio.run(scenario())
    assert order == ["B", "C", "D"]
    assert stats["granted"] == stats["released"] == 4 and stats["in_flight"] == 0
    assert stats["waits"] == 3 and stats["max_wait_s"] >= 0.05


def test_a_reported_429_holds_back_the_next_caller():
    async def scenario():
        limiter = SharedRateLimiter(RateLimits(rpm=100))
        await limiter.release(await limiter.acquire(1), 0, rate_limited=True, retry_after_s=0.3)
        start = time.monotonic()
        await limiter.release(await limiter.acquire(1), 1)
        return time.monotonic() - start, await limiter.stats()

    waited, stats = asyncio.run(scenario())
    assert 0.25 <= waited < 2
    assert stats["rate_limited"] == stats["shared_backoffs"] == 1 and stats["waited_s"] >= 0.25
