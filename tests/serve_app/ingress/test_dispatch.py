"""Arm calls without Ray: fallback and what it counts, forced calls kept out of guardrails,
and shadows that fail, time out or crawl without touching the served answer."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from serve_app.config import CircuitConfig, ExperimentConfig, RouterConfig
from serve_app.errors import Unavailable
from serve_app.experiment.live import ExperimentSnapshot
from serve_app.ingress.dispatch import Dispatcher
from serve_app.ingress.routing import Route, RoutedExperiment
from serve_app.ingress.sync import Outbox

ROWS = np.zeros((3, 2))


class Backend:
    """An in-process arm: answers ``answer`` per row after ``delay_s``, or raises."""

    def __init__(self, answer=0, delay_s: float = 0.0, fails: bool = False) -> None:
        self.answer, self.delay_s, self.fails, self.calls = answer, delay_s, fails, 0

    async def predict(self, features, uri, timeout_s):
        self.calls += 1
        self.uri = uri

        async def work():
            await asyncio.sleep(self.delay_s)
            if self.fails:
                raise RuntimeError("model failed")
            return [self.answer] * len(features)

        return await asyncio.wait_for(work(), timeout=timeout_s)


def experiment(backends, shadows=None, shadow_timeout=0.2):
    arms = [{"name": name, "model_uri": f"/m/{name}"} for name in backends]
    spec = {"name": "exp", "arms": arms, "n_features": 2}
    if shadows:
        spec["shadows"] = [
            {"name": n, "model_uri": f"/s/{n}", "deployment": {"timeout_s": shadow_timeout}}
            for n in shadows
        ]
    config = ExperimentConfig.model_validate(spec)
    snapshot = ExperimentSnapshot(1, "running", None, frozenset(), {})
    return RoutedExperiment.create(
        config, snapshot, backends, shadows or {}, CircuitConfig(failure_threshold=2, cooldown_s=60)
    )


def dispatcher(**limits):
    outbox = Outbox()
    return Dispatcher(outbox, RouterConfig(**limits)), outbox


def counts(outbox: Outbox):
    batch = outbox.take("r", 1)
    return (
        batch.arms if batch else {},
        batch.latency if batch else {},
        batch.shadows if batch else {},
    )


def test_a_cold_start_is_a_fallback_not_an_error_of_the_arm():
    from serve_app.ingress.backends import ModelLoading

    class Cold(Backend):
        async def predict(self, features, uri, timeout_s):
            raise ModelLoading(f"{uri} is still loading")

    routed = experiment({"a": Backend(answer=1), "b": Cold()})
    dispatch, outbox = dispatcher()
    answer = asyncio.run(dispatch.answer(routed, Route("b", 0.5, learned=True), ROWS))
    assert (answer.arm, answer.fallback, answer.learned) == ("a", True, False)
    arms, _, _ = counts(outbox)
    assert (arms[("exp", 1, "b")].errors, arms[("exp", 1, "b")].fallbacks) == (0, 1)
    assert routed.breakers["b"].consecutive_failures == 0  # not held against the arm


def test_calls_name_the_arms_pinned_version():
    backend = Backend(answer=1)
    config_arms = {"a": backend, "b": Backend()}
    routed = experiment(config_arms)
    dispatch, _ = dispatcher()
    asyncio.run(dispatch.answer(routed, Route("a", 0.5, learned=True), ROWS))
    assert backend.uri == "/m/a"


def test_a_failing_arm_falls_back_and_is_counted_against_the_arm():
    routed = experiment({"a": Backend(answer=1), "b": Backend(fails=True)})
    dispatch, outbox = dispatcher()
    answer = asyncio.run(dispatch.answer(routed, Route("b", 0.5, learned=True), ROWS))
    assert (answer.arm, answer.fallback, answer.learned, answer.predictions) == (
        "a",
        True,
        False,
        [1, 1, 1],
    )
    arms, latency, _ = counts(outbox)
    assert arms[("exp", 1, "b")].errors == 1
    assert arms[("exp", 1, "b")].fallbacks == 1
    assert ("exp", "b") not in latency  # a failed call has no latency to judge


def test_forced_calls_feed_no_guardrail():
    routed = experiment({"a": Backend(answer=1), "b": Backend(fails=True)})
    dispatch, outbox = dispatcher()
    forced = Route("b", 1.0, learned=False, forced=True)
    for _ in range(2):
        asyncio.run(dispatch.answer(routed, forced, ROWS))
    arms, _, _ = counts(outbox)
    assert arms[("exp", 1, "b")].forced_errors == 2
    assert arms[("exp", 1, "b")].errors == 0
    ok = experiment({"a": Backend(answer=1), "b": Backend(answer=2)})
    asyncio.run(dispatch.answer(ok, Route("b", 1.0, learned=False, forced=True), ROWS))
    assert counts(outbox)[1] == {}  # forced latency is not the arm's routed latency
    # the breaker opened on the forced failures: the next forced call is refused, not made
    with pytest.raises(Unavailable):
        routed.route(None, "b")


def test_the_default_arm_failing_too_is_503():
    routed = experiment({"a": Backend(fails=True), "b": Backend(fails=True)})
    dispatch, outbox = dispatcher()
    with pytest.raises(Unavailable, match="could not answer"):
        asyncio.run(dispatch.answer(routed, Route("b", 0.5, learned=True), ROWS))
    arms, _, _ = counts(outbox)
    assert (arms[("exp", 1, "b")].errors, arms[("exp", 1, "a")].errors) == (1, 1)


@pytest.mark.parametrize(
    ("shadow", "field"),
    [
        (Backend(fails=True), "errors"),
        (Backend(answer=1, delay_s=5.0), "timeouts"),  # past its 0.2 s timeout
    ],
)
def test_a_broken_shadow_never_changes_or_delays_the_answer(shadow, field):
    served = Backend(answer=7)
    routed = experiment({"a": served, "b": Backend(answer=8)}, shadows={"s": shadow})
    dispatch, outbox = dispatcher()

    async def scenario():
        started = time.perf_counter()
        answer = await dispatch.answer(routed, Route("a", 0.5, learned=True), ROWS)
        dispatch.mirror(routed, ROWS, answer.predictions)
        elapsed = time.perf_counter() - started
        await asyncio.sleep(0.4)  # let the shadow call end
        return answer, elapsed

    answer, elapsed = asyncio.run(scenario())
    assert answer.predictions == [7, 7, 7]  # exactly the served arm's own answer
    assert elapsed < 0.05
    _, _, shadows = counts(outbox)
    assert getattr(shadows[("exp", "s")], field) == 1
    assert shadows[("exp", "s")].requests == 1


def test_shadow_agreement_and_dropped_copies_are_exact():
    routed = experiment(
        {"a": Backend(answer=7), "b": Backend()},
        shadows={"same": Backend(answer=7, delay_s=0.05), "other": Backend(answer=3, delay_s=0.05)},
    )
    dispatch, outbox = dispatcher(mirror_max_in_flight=2)

    async def scenario():
        for _ in range(3):  # 6 copies wanted, at most 2 in flight
            dispatch.mirror(routed, ROWS, [7, 7, 7])
        await asyncio.sleep(0.3)

    asyncio.run(scenario())
    _, _, shadows = counts(outbox)
    same, other = shadows[("exp", "same")], shadows[("exp", "other")]
    assert same.requests + other.requests == 2
    assert same.dropped + other.dropped == 4
    assert (same.rows, same.agree_rows) == (3 * same.requests, 3 * same.requests)
    assert (other.rows, other.agree_rows) == (3 * other.requests, 0)
