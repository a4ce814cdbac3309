"""The experiment-state deployment's logic, run in this process on a real SQLite store: every
batch and every feedback applied once, memory equal to the store, a restart that survives
rows it cannot load, reports built off the loop and bounded."""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import time

import sqlalchemy as sa

from bandits import ArmStats
from serve_app.config import parse_config
from serve_app.experiment.records import (
    ArmCounts,
    FeedbackOutcome,
    FeedbackRecord,
    LatencyHistogram,
    SyncBatch,
)
from serve_app.state.schema import arm_stats_table


def run(coroutine):
    return asyncio.run(coroutine)


def batch(seq: int, pulls: int = 3, router: str = "r1", latency: float = 0.004) -> SyncBatch:
    return SyncBatch(
        router,
        seq,
        arms={("exp", 1, "a"): ArmCounts(pulls=pulls, expected=pulls / 2)},
        latency={("exp", "a"): LatencyHistogram.of(latency)},
    )


def feedback(key: str, reward: float = 1.0, commit: str = "c1", metrics=()) -> FeedbackRecord:
    return FeedbackRecord(key, "exp", 1, "a", reward, 0.5, time.time(), True, metrics, commit)


def test_a_resent_batch_is_acknowledged_once(in_process, tmp_path):
    config = parse_config(in_process.state_args(str(tmp_path)))

    async def scenario():
        state = await in_process.start_state(config)
        for _ in range(3):  # the router resends batch 1 twice (answers lost)
            snapshot = await state.sync(batch(1), {}, "r1", {})
        await state.sync(batch(2, pulls=4), {}, "r1", {})
        summary = await state.experiment_summary("exp")
        assert summary["arms"][0]["requests"] == 7
        assert state.experiments["exp"].latency["a"].total == 2  # memory-only parts once too
        assert state.ledger.duplicate_batches == 2
        assert snapshot.experiments["exp"].stats["a"].pulls == 3
        await state.close()
        restarted = await in_process.start_state(config)  # the store decides after a restart
        await restarted.sync(batch(2, pulls=4), {}, "r1", {})
        assert (await restarted.experiment_summary("exp"))["arms"][0]["requests"] == 7
        await restarted.sync(batch(3), {}, "r1", {})
        assert (await restarted.experiment_summary("exp"))["arms"][0]["requests"] == 10
        await restarted.close()

    run(scenario())


def test_feedback_outcomes_and_memory_equal_to_the_store(in_process, tmp_path):
    config = parse_config(in_process.state_args(str(tmp_path)))

    async def scenario():
        state = await in_process.start_state(config)
        first = feedback("k1", metrics=(("refund", 2.0),))
        outcomes = await state.record_feedback([first, feedback("k2", 0.0), first])
        assert outcomes == [FeedbackOutcome.STORED, FeedbackOutcome.STORED, FeedbackOutcome.STORED]
        again = feedback("k1", metrics=(("refund", 2.0),), commit="c2")
        other = feedback("k2", 1.0, commit="c3")
        assert await state.record_feedback([again, other]) == [
            FeedbackOutcome.REPLAYED,
            FeedbackOutcome.CONFLICT,
        ]
        live = state.experiments["exp"]
        in_memory = (dict(live.policy.stats), dict(live.metrics))
        await state.close()
        restarted = await in_process.start_state(config)
        reloaded = restarted.experiments["exp"]
        assert (dict(reloaded.policy.stats), dict(reloaded.metrics)) == in_memory
        assert reloaded.policy.stats["a"] == ArmStats(0, 2, 1.0, 1.0)
        await restarted.close()

    run(scenario())


def test_a_row_an_older_version_could_store_does_not_stop_the_restart(in_process, tmp_path):
    config = parse_config(in_process.state_args(str(tmp_path)))

    async def scenario():
        state = await in_process.start_state(config)
        await state.record_feedback([feedback("k1")])
        with state.store.engine.begin() as connection:
            connection.execute(
                sa.update(arm_stats_table)
                .where(arm_stats_table.c.arm == "a")
                .values(reward_sum_squares=math.inf)
            )
        await state.close()
        restarted = await in_process.start_state(config)  # starts
        assert len(restarted.restore_problems) == 1
        assert "reward_sum_squares" in restarted.restore_problems[0]
        audit = await restarted.audit_log("exp")
        assert audit[-1]["action"] == "restore_skipped"
        text = (await restarted.metrics_text()).decode()
        assert "bandit_state_restore_problems 1.0" in text
        summary = await restarted.experiment_summary("exp")
        assert summary["arms"][0]["feedback"] == 0  # the row was left out
        await restarted.record_feedback([feedback("k2")])  # and the app keeps working
        await restarted.close()

    run(scenario())


def test_an_invalid_stored_config_leaves_that_experiment_out(in_process, tmp_path):
    config = parse_config(in_process.state_args(str(tmp_path)))

    async def scenario():
        state = await in_process.start_state(config)
        arms = [
            {"name": "a", "model_uri": "/m/a", "weight": 1.0},
            {"name": "b", "model_uri": "/m/b", "weight": 0.0},
        ]
        spec = {"policy": {"name": "fixed"}, "arms": arms}
        await state.control("create", "api-made", "tester", spec=spec)
        with state.store.engine.begin() as connection:
            connection.execute(
                sa.text("UPDATE experiments SET config = '{\"name\": 5}' WHERE name = 'api-made'")
            )
        await state.close()
        restarted = await in_process.start_state(config)
        assert "api-made" not in restarted.experiments
        assert any("stored config is invalid" in p for p in restarted.restore_problems)
        assert set(restarted.experiments) == {"exp", "ts"}
        await restarted.close()

    run(scenario())


def test_reports_are_cached_shared_and_bounded(in_process, tmp_path):
    config = parse_config(in_process.state_args(str(tmp_path)))

    async def scenario():
        state = await in_process.start_state(config)
        rows = [
            {"experiment": "exp", "at": float(i), "decisions": i, "arm": arm, "pulls": i,
             "feedback": 0, "reward_sum": 0.0, "weight": 0.5}
            for i in range(1, 301) for arm in ("a", "b")
        ]  # fmt: skip
        state.store.add_timeline(rows)
        answers = await asyncio.gather(*(state.report("exp", False, 50) for _ in range(20)))
        reports = [encoded for encoded, _ in answers]
        assert state.reports.builds == 1  # 20 concurrent requests, one build
        assert all(report is reports[0] for report in reports)  # the same encoded bytes
        report = json.loads(reports[0])
        assert len({row["at"] for row in report["timeline"]}) == 50
        assert report["audit"] is None  # no control token, no audit log
        with_audit = json.loads((await state.report("exp", True, 50))[0])
        assert [entry["action"] for entry in with_audit["audit"]] == ["create"]
        await state.close()

    run(scenario())


def test_the_timeline_samples_by_decisions(in_process, tmp_path):
    config = parse_config(
        in_process.state_args(str(tmp_path), lifecycle={"timeline_every_decisions": 10})
    )

    async def scenario():
        state = await in_process.start_state(config)
        for seq in range(1, 31):  # 90 decisions in 30 batches, all in the same second
            await state.sync(batch(seq), {}, "r1", {})
            await state.timeline.step(now=1000.0)
        timeline = state.store.timeline("exp")
        decisions = sorted({row["decisions"] for row in timeline})
        assert decisions[0] == 3
        assert len(decisions) >= 8  # every ~10 decisions, not once per interval
        assert all(b - a >= 10 for a, b in itertools.pairwise(decisions))
        await state.close()

    run(scenario())
