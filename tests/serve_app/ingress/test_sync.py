"""A router's link to the state without Ray: the real state logic runs in this process behind
a handle that can lose answers, so retries, duplicates and outages are exact."""

from __future__ import annotations

import asyncio
import time

import pytest

from serve_app.config import RouterConfig, parse_config
from serve_app.errors import Unavailable
from serve_app.experiment.records import FeedbackOutcome, FeedbackRecord, LoggedDecision
from serve_app.ingress.sync import StateLink


def run(coroutine):
    return asyncio.run(coroutine)


def record(key: str, reward: float = 1.0, commit: str = "c1") -> FeedbackRecord:
    return FeedbackRecord(key, "exp", 1, "a", reward, 0.5, time.time(), True, (), commit)


async def link_to(in_process, tmp_path, **limits):
    config = parse_config(in_process.state_args(str(tmp_path)))
    state = await in_process.start_state(config)
    handle = in_process.LocalHandle(state)
    snapshots = []
    settings = RouterConfig(feedback_commit_window_s=0.0, **limits)
    link = StateLink(handle, "router-1", settings, snapshots.append, lambda: {}, lambda: {})
    return state, handle, link, snapshots


def test_a_batch_whose_answer_was_lost_is_sent_again_and_counted_once(in_process, tmp_path):
    async def scenario():
        state, handle, link, snapshots = await link_to(in_process, tmp_path)
        for _ in range(5):
            link.outbox.count("exp", 1, "a", "pulls")
        handle.lose["sync"] = 2  # the state commits, the router never hears it: twice
        assert await link.sync_once() is False
        link.outbox.count("exp", 1, "a", "pulls")  # a later decision waits in the outbox
        assert await link.sync_once() is False
        assert await link.sync_once() is True  # the same batch a third time: acknowledged
        assert (await state.experiment_summary("exp"))["arms"][0]["requests"] == 5
        assert state.ledger.duplicate_batches == 2
        assert await link.sync_once() is True  # then the next batch with the later decision
        assert (await state.experiment_summary("exp"))["arms"][0]["requests"] == 6
        assert snapshots[-1].experiments["exp"].stats["a"].pulls == 6
        await state.close()

    run(scenario())


def test_unsynced_holds_until_the_state_acknowledged_every_count(in_process, tmp_path):
    async def scenario():
        state, handle, link, _ = await link_to(in_process, tmp_path)
        assert link.unsynced is False
        link.outbox.latency("exp", "a", 0, 0.01)
        assert link.unsynced is True  # a latency count alone is something to send
        link.outbox.count("exp", 1, "a", "pulls")
        handle.lose["sync"] = 1  # committed, but the answer is lost: still unacknowledged
        assert await link.sync_once() is False
        assert link.outbox.empty
        assert link.unsynced is True
        assert await link.sync_once() is True
        assert link.unsynced is False
        assert (await state.experiment_summary("exp"))["arms"][0]["requests"] == 1
        await state.close()

    run(scenario())


def test_a_snapshot_that_fails_to_apply_does_not_stop_the_sync_loop(in_process, tmp_path):
    async def scenario():
        config = parse_config(in_process.state_args(str(tmp_path)))
        state = await in_process.start_state(config)
        handle = in_process.LocalHandle(state)
        applied = []

        def apply(snapshot):
            applied.append(snapshot)
            if len(applied) == 1:
                raise RuntimeError("a bug in applying the first snapshot")

        settings = RouterConfig(sync_interval_s=0.02, idle_sync_interval_s=0.02)
        link = StateLink(handle, "router-1", settings, apply, lambda: {}, lambda: {})
        link.start()
        link.outbox.count("exp", 1, "a", "pulls")
        deadline = time.monotonic() + 5.0
        while len(applied) < 3:
            assert time.monotonic() < deadline, "the loop stopped after the failed snapshot"
            await asyncio.sleep(0.01)
        assert (await state.experiment_summary("exp"))["arms"][0]["requests"] == 1
        await link.close()
        await state.close()

    run(scenario())


def test_feedback_is_acknowledged_when_the_sync_before_its_commit_fails_to_apply(
    in_process, tmp_path
):
    """Feedback whose decision still waits in the outbox syncs first; a snapshot that fails
    to apply there must not leave the commit (and its client) waiting forever."""

    async def scenario():
        config = parse_config(in_process.state_args(str(tmp_path)))
        state = await in_process.start_state(config)

        def apply(snapshot):
            raise RuntimeError("a bug in applying the snapshot")

        settings = RouterConfig(feedback_commit_window_s=0.0)
        link = StateLink(
            in_process.LocalHandle(state), "router-1", settings, apply, lambda: {}, lambda: {}
        )
        link.outbox.count("exp", 1, "a", "pulls")
        link.outbox.log_decision(LoggedDecision("k1", "exp", 1, "a", 0.5, time.time(), (), ()))
        outcome = await asyncio.wait_for(link.commit(record("k1")), timeout=10)
        assert outcome is FeedbackOutcome.STORED
        assert link.unsynced is False  # the decision went out with the sync before the commit
        await state.close()

    run(scenario())


def test_counts_wait_in_the_outbox_while_the_state_is_down(in_process, tmp_path):
    async def scenario():
        state, handle, link, _ = await link_to(in_process, tmp_path)
        handle.down = True
        for _ in range(3):
            link.outbox.count("exp", 1, "a", "pulls")
            assert await link.sync_once() is False
        assert link.failures == 3
        handle.down = False
        assert await link.sync_once() is True
        assert await link.sync_once() is True
        assert (await state.experiment_summary("exp"))["arms"][0]["requests"] == 3
        await state.close()

    run(scenario())


def test_a_commit_whose_answer_was_lost_is_retried_not_answered_503(in_process, tmp_path):
    async def scenario():
        state, handle, link, _ = await link_to(in_process, tmp_path)
        handle.lose["record_feedback"] = 1  # committed, answer lost: the router retries
        assert await link.commit(record("k1")) is FeedbackOutcome.STORED
        assert handle.calls["record_feedback"] == 2
        assert (await state.experiment_summary("exp"))["arms"][0]["feedback"] == 1
        # a client repeating the request afterwards is told it was a replay
        assert await link.commit(record("k1", commit="c2")) is FeedbackOutcome.REPLAYED
        assert await link.commit(record("k1", reward=0.0, commit="c3")) is FeedbackOutcome.CONFLICT
        await state.close()

    run(scenario())


def test_feedback_gets_503_only_after_the_commit_timeout(in_process, tmp_path):
    async def scenario():
        state, handle, link, _ = await link_to(in_process, tmp_path, feedback_commit_timeout_s=0.5)
        handle.down = True
        started = time.monotonic()
        with pytest.raises(Unavailable):
            await link.commit(record("k1"))
        waited = time.monotonic() - started
        assert 0.4 <= waited < 2.0
        assert handle.calls["record_feedback"] >= 2  # it was retried meanwhile
        assert (await state.experiment_summary("exp"))["arms"][0]["feedback"] == 0
        handle.down = False
        assert await link.commit(record("k1")) is FeedbackOutcome.STORED  # the client's retry
        await state.close()

    run(scenario())


def test_a_group_commit_answers_every_request(in_process, tmp_path):
    async def scenario():
        state, handle, link, _ = await link_to(in_process, tmp_path)
        link.limits = RouterConfig(feedback_commit_window_s=0.02)
        keys = [f"k{i}" for i in range(50)]
        outcomes = await asyncio.gather(*(link.commit(record(k, commit=k)) for k in keys))
        assert outcomes == [FeedbackOutcome.STORED] * 50
        assert handle.calls["record_feedback"] == 1  # one transaction for all 50
        await state.close()

    run(scenario())


def test_an_outbox_past_its_decision_bound_drops_the_oldest_and_says_so(monkeypatch, caplog):
    import logging

    from serve_app.experiment.records import LoggedDecision
    from serve_app.ingress import sync

    monkeypatch.setattr(sync, "MAX_LOGGED_DECISIONS", 3)
    outbox = sync.Outbox()
    keys = [f"k{i}" for i in range(5)]
    with caplog.at_level(logging.WARNING, logger="ray.serve"):
        for key in keys:
            outbox.log_decision(LoggedDecision(key, "exp", 1, "a", 0.5, 1.0, ((0.0,),), (1,)))
    assert outbox.dropped_decisions == 2
    assert not outbox.holds_decision(keys[:2])
    assert all(outbox.holds_decision([key]) for key in keys[2:])
    warnings = [r.getMessage() for r in caplog.records if "decisions dropped" in r.getMessage()]
    assert len(warnings) == 1  # the first drop, not every one
    assert warnings[0].startswith("decision log: 1 decisions dropped")


def test_an_idle_router_backs_off_to_the_idle_interval(in_process, tmp_path):
    async def scenario():
        state, handle, link, _ = await link_to(
            in_process, tmp_path, sync_interval_s=0.02, idle_sync_interval_s=0.32
        )
        link.start()
        await asyncio.sleep(0.8)  # empty syncs after 0.02, 0.04, 0.08, 0.16, then every 0.32 s
        assert link.interval == 0.32
        before = handle.calls["sync"]
        await asyncio.sleep(1.0)
        idle_syncs = handle.calls["sync"] - before
        assert 2 <= idle_syncs <= 5  # about 3; 50 at the busy interval
        link.outbox.count("exp", 1, "a", "pulls")
        link.counted()
        assert link.interval == 0.02  # counts to send: the busy interval again
        await link.close()
        await state.close()

    run(scenario())


@pytest.mark.parametrize("activity", ["request", "feedback"])
def test_a_request_or_feedback_after_an_idle_spell_syncs_at_once(in_process, tmp_path, activity):
    async def scenario():
        state, handle, link, _ = await link_to(
            in_process, tmp_path, sync_interval_s=0.02, idle_sync_interval_s=5.0
        )
        link.interval = 5.0  # as after a long idle spell: the loop waits 5 s
        link.start()
        await asyncio.sleep(0.05)
        synced = handle.calls.get("sync", 0)
        if activity == "request":
            link.outbox.count("exp", 1, "a", "pulls")
            link.counted()
        else:
            assert await link.commit(record("k1")) is FeedbackOutcome.STORED
        deadline = time.monotonic() + 1.0
        while handle.calls.get("sync", 0) == synced:
            assert time.monotonic() < deadline, f"the {activity} waited for the idle sync"
            await asyncio.sleep(0.005)
        assert link.interval <= 0.04
        if activity == "request":  # and that sync carried the request's count
            while (await state.experiment_summary("exp"))["arms"][0]["requests"] != 1:
                assert time.monotonic() < deadline, "the count did not arrive with the sync"
                await asyncio.sleep(0.005)
        await link.close()
        await state.close()

    run(scenario())


def test_the_idle_interval_cannot_be_shorter_than_the_busy_one():
    with pytest.raises(ValueError, match=r"idle_sync_interval_s \(0.05\) must be at least"):
        RouterConfig(sync_interval_s=0.1, idle_sync_interval_s=0.05)
