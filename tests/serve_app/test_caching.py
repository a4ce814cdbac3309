"""SharedResults: one build per key at a time, kept until it expires, bounded, and errors
and cancellations that stay with whoever they belong to."""

import asyncio
import contextvars
import time

import pytest

from serve_app.caching import SharedResults
from serve_app.errors import Unavailable


def run(coroutine):
    return asyncio.run(coroutine)


class Builder:
    """Counts builds; each answers ``(value, fresh_s)`` after ``delay_s``."""

    def __init__(self, fresh_s=60.0, delay_s=0.01, fail=False):
        self.fresh_s, self.delay_s, self.fail = fresh_s, delay_s, fail
        self.calls = 0

    async def __call__(self):
        self.calls += 1
        number = self.calls
        await asyncio.sleep(self.delay_s)
        if self.fail:
            raise RuntimeError(f"build {number} failed")
        return f"value {number}", self.fresh_s


def test_concurrent_callers_share_one_build_and_the_value_is_kept():
    async def scenario():
        kept, build = SharedResults(), Builder(fresh_s=60.0)
        answers = await asyncio.gather(*(kept.get("k", build) for _ in range(50)))
        assert build.calls == 1
        assert {value for value, _ in answers} == {"value 1"}
        assert all(0 < fresh <= 60.0 for _, fresh in answers)
        value, fresh = await kept.get("k", build)
        assert (value, build.calls) == ("value 1", 1)
        assert 59.0 < fresh <= 60.0
        assert (await kept.get("other", build))[0] == "value 2"  # keys are apart

    run(scenario())


def test_a_value_is_built_again_once_it_expired():
    async def scenario():
        kept, build = SharedResults(), Builder(fresh_s=0.05, delay_s=0.0)
        assert (await kept.get("k", build))[0] == "value 1"
        assert (await kept.get("k", build))[0] == "value 1"
        await asyncio.sleep(0.08)
        assert (await kept.get("k", build))[0] == "value 2"

    run(scenario())


def test_a_copy_kept_for_what_remains_is_never_older_than_the_first_keeper_allows():
    async def scenario():
        state, router = SharedResults(), SharedResults()
        ttl = 0.2
        built_at: dict[str, float] = {}

        async def build():
            value = f"built {len(built_at)}"
            built_at[value] = time.monotonic()
            return value, ttl

        oldest = 0.0
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            value, _ = await router.get("k", lambda: state.get("k", build))
            oldest = max(oldest, time.monotonic() - built_at[value])
            await asyncio.sleep(0.01)
        assert len(built_at) >= 4  # rebuilt about every 0.2 s
        assert oldest <= ttl + 0.02

    run(scenario())


def test_a_failed_build_reaches_every_waiter_and_is_not_kept():
    async def scenario():
        kept, build = SharedResults(), Builder(fail=True)
        answers = await asyncio.gather(
            *(kept.get("k", build) for _ in range(5)), return_exceptions=True
        )
        assert [str(a) for a in answers] == ["build 1 failed"] * 5
        build.fail = False
        assert (await kept.get("k", build))[0] == "value 2"
        assert len(kept) == 1

    run(scenario())


def test_a_cancelled_caller_does_not_cancel_the_build_the_others_wait_on():
    async def scenario():
        kept, build = SharedResults(), Builder(delay_s=0.05)
        first = asyncio.ensure_future(kept.get("k", build))
        second = asyncio.ensure_future(kept.get("k", build))
        await asyncio.sleep(0.01)
        first.cancel()
        assert (await second)[0] == "value 1"
        assert first.cancelled()
        assert build.calls == 1

    run(scenario())


def test_it_keeps_at_most_max_entries_expired_ones_leaving_first():
    async def scenario():
        kept = SharedResults(max_entries=4)
        short, long = Builder(fresh_s=0.02, delay_s=0.0), Builder(fresh_s=60.0, delay_s=0.0)
        for key in ("a", "b", "c"):
            await kept.get(key, long)
        await kept.get("d", short)
        await asyncio.sleep(0.03)
        await kept.get("e", long)  # "d" expired: it leaves, not the oldest
        assert len(kept) == 4
        calls = long.calls
        for key in ("a", "b", "c", "e"):
            await kept.get(key, long)
        assert long.calls == calls  # all four still kept
        for key in range(100):  # a client choosing keys cannot grow it
            await kept.get(key, long)
        assert len(kept) == 4
        await kept.get("a", long)
        assert long.calls == calls + 101  # "a" was pushed out by the newer keys

    run(scenario())


def test_max_entries_must_be_positive():
    with pytest.raises(ValueError, match="max_entries must be at least 1"):
        SharedResults(max_entries=0)


def test_freshness_counts_from_the_start_of_the_build():
    async def scenario():
        kept = SharedResults()
        started = time.monotonic()
        _, fresh = await kept.get("k", Builder(fresh_s=0.3, delay_s=0.1))
        assert fresh <= 0.3 - (time.monotonic() - started) + 0.01
        assert fresh < 0.25

    run(scenario())


CALLER = contextvars.ContextVar("caller", default=None)


def test_a_build_sees_nothing_of_the_caller_that_started_it():
    async def scenario():
        kept = SharedResults()
        seen = []

        async def build():
            seen.append(CALLER.get())
            return "value", 60.0

        CALLER.set("request 1")  # what Ray Serve keeps per request (and cancels it by)
        await kept.get("k", build)
        assert seen == [None]

    run(scenario())


def test_a_build_cancelled_even_before_it_ran_answers_503_once_and_is_forgotten():
    async def scenario():
        kept, build = SharedResults(), Builder(delay_s=0.05)
        waiter = asyncio.ensure_future(kept.get("k", build))
        await asyncio.sleep(0)  # the waiter started the build, which has not run yet
        (task,) = kept._builds.values()
        task.cancel()  # as at shutdown
        with pytest.raises(Unavailable, match="retry"):
            await waiter
        assert build.calls == 0
        assert (await kept.get("k", build))[0] == "value 1"  # not stuck on the cancelled one

    run(scenario())
