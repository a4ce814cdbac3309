"""A contextual experiment inside the state, on a real SQLite store: a decision's context and
its learned reward meet in the decision log in either order and teach the arm's ridge model
exactly once; forced decisions teach nothing; memory equals the store, across a restart;
routers get the learned statistics with their snapshot; OPE answers on the log."""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections.abc import Callable, Coroutine
from typing import Any

import numpy as np
import pytest

from bandits.contextual import RidgeStats
from serve_app.config import parse_config
from serve_app.experiment.records import (
    FeedbackOutcome,
    FeedbackRecord,
    LoggedDecision,
    SyncBatch,
)
from serve_app.ingress.routing import RoutedExperiment

CTX = "ctx"
SEGMENTS = ["x", "y"]


def synchronously(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test in its own event loop (the state's loops need one)."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    return run


def contextual_experiment(**extra: Any) -> dict[str, Any]:
    return {
        "name": CTX,
        "policy": {"name": "lin_ucb", "params": {"alpha": 0.1, "floor": 0.05}},
        "arms": [{"name": "a", "model_uri": "/m/a"}, {"name": "b", "model_uri": "/m/b"}],
        "decision_log": {"max_rows": 10_000},
        "context": {"fields": [{"name": "segment", "type": "categorical", "vocabulary": SEGMENTS}]},
        "seed": 3,
        **extra,
    }


def vector(segment: str) -> tuple[float, ...]:
    return (1.0, float(segment == "x"), float(segment == "y"))


class Traffic:
    """Decisions (sync batches) and feedback (group commits) as routers send them."""

    def __init__(self, state: Any) -> None:
        self.state = state
        self.seq = 0
        self.n = 0

    def decide(
        self, arm: str, segment: str, reward: float, learned: bool = True
    ) -> tuple[LoggedDecision, FeedbackRecord]:
        self.n += 1
        key = f"d{self.n:05d}"
        at = time.time()
        revision = self.state.experiments[CTX].revision
        decision = LoggedDecision(
            key, CTX, revision, arm, 0.5, at, ((0.0,),), (0,), context=vector(segment)
        )
        record = FeedbackRecord(
            key, CTX, revision, arm, reward, 0.5, at, learned=learned, commit_id=key
        )
        return decision, record

    async def sync(self, decisions: list[LoggedDecision]) -> None:
        self.seq += 1
        batch = SyncBatch("router-1", self.seq, decisions=tuple(decisions))
        await self.state.sync(batch, {}, "r1", {})

    async def feedback(self, records: list[FeedbackRecord]) -> list[FeedbackOutcome]:
        return await self.state.record_feedback(records)


def expected(observations: list[tuple[str, str, float]]) -> dict[str, RidgeStats]:
    out: dict[str, RidgeStats] = {}
    for arm, segment, reward in observations:
        out[arm] = out.get(arm, RidgeStats.zeros(3)) + RidgeStats.from_observation(
            vector(segment), reward
        )
    return out


async def start(in_process: Any, tmp_path: Any, **extra: Any) -> Any:
    config = parse_config(
        in_process.state_args(str(tmp_path), experiments=[contextual_experiment(**extra)])
    )
    return await in_process.start_state(config)


def stored(state: Any) -> dict[str, RidgeStats]:
    live = state.experiments[CTX]
    return state.store.context_stats(CTX, live.config.context_key)


@synchronously
async def test_context_and_reward_meet_in_either_order_and_teach_once(in_process, tmp_path):
    state = await start(in_process, tmp_path)
    traffic = Traffic(state)
    first = traffic.decide("a", "x", 1.0)  # decision first, then its feedback
    second = traffic.decide("b", "y", 1.0)  # feedback first, then its decision
    forced = traffic.decide("a", "y", 1.0, learned=False)  # forced: logged, never learned
    await traffic.sync([first[0]])
    assert dict(state.experiments[CTX].contextual.stats)["a"].n == 0
    assert await traffic.feedback([first[1], second[1], forced[1]]) == [FeedbackOutcome.STORED] * 3
    await traffic.sync([second[0], forced[0]])
    # a replay and a resent batch change nothing
    assert await traffic.feedback([first[1]]) == [FeedbackOutcome.STORED]
    await state.sync(SyncBatch("router-1", traffic.seq, decisions=(second[0],)), {}, "r1", {})

    live = state.experiments[CTX]
    want = expected([("a", "x", 1.0), ("b", "y", 1.0)])
    assert dict(live.contextual.stats) == want
    assert stored(state) == want
    # the router's snapshot carries them
    assert dict(live.snapshot(with_config=False).context_stats) == want
    # and the counters stay context-free: two learned rewards
    assert sum(s.feedback for s in live.policy.stats.values()) == 2
    await state.close()


@synchronously
async def test_learning_survives_a_restart_and_pruning(in_process, tmp_path):
    state = await start(in_process, tmp_path)
    traffic = Traffic(state)
    pairs = [traffic.decide("a" if i % 2 else "b", SEGMENTS[i % 3 % 2], float(i % 5 > 1))
             for i in range(40)]  # fmt: skip
    await traffic.sync([d for d, _ in pairs])
    await traffic.feedback([r for _, r in pairs])
    learned = dict(state.experiments[CTX].contextual.stats)
    assert sum(s.n for s in learned.values()) == 40
    # the bounded log forgets rows; the learned statistics do not
    state.store.prune_decision_log(CTX, max_rows=10, older_than=0.0)
    await state.close()

    restarted = await start(in_process, tmp_path)
    assert dict(restarted.experiments[CTX].contextual.stats) == learned
    await restarted.close()


@synchronously
async def test_a_new_encoding_starts_afresh(in_process, tmp_path):
    state = await start(in_process, tmp_path)
    traffic = Traffic(state)
    decision, record = traffic.decide("a", "x", 1.0)
    await traffic.sync([decision])
    await traffic.feedback([record])
    await state.close()
    other = {"fields": [{"name": "segment", "type": "categorical", "vocabulary": ["x", "z"]}]}
    restarted = await start(in_process, tmp_path, context=other)
    live = restarted.experiments[CTX]
    assert all(s.n == 0 for s in live.contextual.stats.values())
    # a decision logged under the old encoding has the same dimension but another key:
    # its feedback, arriving now, teaches the new encoding (documented)
    assert live.config.context_key != state.experiments[CTX].config.context_key
    await restarted.close()


@synchronously
async def test_the_router_learns_which_arm_is_best_for_which_context(in_process, tmp_path):
    state = await start(in_process, tmp_path)
    traffic = Traffic(state)
    rng = np.random.default_rng(0)
    pairs = []
    for _ in range(200):  # arm a is right for segment x, arm b for y (90% vs 10%)
        arm, segment = rng.choice(["a", "b"]), rng.choice(SEGMENTS)
        good = (arm == "a") == (segment == "x")
        pairs.append(
            traffic.decide(str(arm), str(segment), float(rng.random() < (0.9 if good else 0.1)))
        )
    await traffic.sync([d for d, _ in pairs])
    await traffic.feedback([r for _, r in pairs])
    live = state.experiments[CTX]
    routed = RoutedExperiment.create(
        live.config, live.snapshot(with_config=True), {"a": None, "b": None}, {},
        state.config.router.circuit,
    )  # fmt: skip
    for segment, best in (("x", "a"), ("y", "b")):
        route = routed.route(None, None, np.array(vector(segment)))
        assert route.learned
        assert route.arm == best
        assert route.propensity == pytest.approx(0.95)  # 1 - floor
        assert route.weights == pytest.approx({best: 0.95, ("b" if best == "a" else "a"): 0.05})

    # OPE on that log: always-a earns ~0.5 (half the segments), the experiment's own policy
    # (cross-fitted, frozen) ~0.9
    result = await state.ope(
        CTX, [{"type": "always", "arm": "a"}, {"type": "contextual", "name": "lin_ucb",
              "params": {"alpha": 0.1, "floor": 0.05}}], ["snips", "dr"]
    )  # fmt: skip
    report = result["ok"]
    assert report["records"] == 200
    assert report["contextual"] is True
    values = {(r["candidate"], r["estimator"]): r for r in report["results"]}
    assert values[("always:a", "snips")]["value"] == pytest.approx(0.5, abs=0.12)
    assert values[("contextual:lin_ucb", "dr")]["value"] > 0.75

    # the report has the same section for the uniform split and each arm alone
    report = json.loads((await state.report(CTX, False, 100))[0])
    section = report["offpolicy"]
    assert section["records"] == 200
    assert {r["candidate"] for r in section["results"]} == {"uniform", "always:a", "always:b"}
    assert {r["estimator"] for r in section["results"]} == {"ips", "snips", "dr"}
    summary = await state.experiment_summary(CTX)
    assert summary["policy"] == "lin_ucb"
    assert sum(arm["weight"] for arm in summary["arms"]) == pytest.approx(1.0)
    await state.close()


@synchronously
async def test_ope_needs_enough_logged_feedback(in_process, tmp_path):
    state = await start(in_process, tmp_path)
    result = await state.ope(CTX, [{"type": "fixed", "weights": {}}], ["ips"])
    assert result["status"] == 409
    assert "at least" in result["error"]
    await state.close()


def test_policy_log_leaves_out_decisions_not_learned_from(in_process, tmp_path):
    async def scenario() -> list[dict[str, Any]]:
        state = await start(in_process, tmp_path)
        traffic = Traffic(state)
        learned, forced = traffic.decide("a", "x", 1.0), traffic.decide("b", "x", 0.0, False)
        await traffic.sync([learned[0], forced[0]])
        await traffic.feedback([learned[1], forced[1]])
        rows = state.store.policy_log(CTX, 100)
        await state.close()
        return rows

    rows = asyncio.run(scenario())
    assert [(r["arm"], r["reward"], r["context"]) for r in rows] == [("a", 1.0, [1.0, 1.0, 0.0])]
    assert json.dumps(rows)  # JSON-able
