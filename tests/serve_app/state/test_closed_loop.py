"""The closed loop inside the state, run in this process on a real SQLite store: the decision
log joins decisions and feedback in either order and stays within its bounds; a concept drift
alarm starts one retraining on the rows after the drop, whose version is tested by a
challenger experiment that takes the traffic and hands it back; failures, timeouts, the
cooldown and a restart leave the right audit trail.

The retraining function itself runs in a Ray task in the app; here the runner is replaced by
coroutines that answer as the task would (tests/serve_app/models/test_retraining.py runs the
real function on a real MLflow store, tests/e2e/test_closed_loop.py the whole loop)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from serve_app.config import ExperimentConfig, GuardrailConfig, parse_config
from serve_app.experiment.records import (
    ArmCounts,
    FeedbackOutcome,
    FeedbackRecord,
    LoggedDecision,
    SyncBatch,
)
from serve_app.state.store import ExperimentStore

LOOP = "loop"


def loop_experiment(**retrain: Any) -> dict[str, Any]:
    return {
        "name": LOOP,
        "policy": {"name": "fixed"},
        "arms": [
            {"name": "current", "model_uri": "models:/m@champion", "weight": 1.0, "version": "1"}
        ],
        "concept_drift": {"reference": 50, "drop": 0.3, "arl": 1000, "labels": False},
        "decision_log": {"max_rows": 10_000},
        "retrain": {
            "entrypoint": "tests.fake:retrain",
            "min_rows": 40,
            "cooldown_s": 100,
            "timeout_s": 5,
            "check_interval_s": 0.001,
            **retrain,
        },
    }


class Traffic:
    """Decisions and feedback as routers would send them: one sync batch per call, then the
    feedback (with labels) as one group commit."""

    def __init__(self, state: Any, experiment: str = LOOP, arm: str = "current") -> None:
        self.state = state
        self.experiment = experiment
        self.arm = arm
        self.seq = 0
        self.n = 0

    async def serve(self, rewards: list[float], at: float | None = None) -> list[str]:
        at = time.time() if at is None else at
        decisions, records = [], []
        revision = self.state.experiments[self.experiment].revision
        for reward in rewards:
            self.n += 1
            key = f"{self.experiment}-{self.n:06d}"
            decisions.append(
                LoggedDecision(key, self.experiment, revision, self.arm, 1.0, at, ((0.5,),), (7,))
            )
            records.append(
                FeedbackRecord(
                    key, self.experiment, revision, self.arm, reward, 1.0, at, commit_id=key,
                    label=7 if reward else 3,
                )
            )  # fmt: skip
            at += 0.001
        self.seq += 1
        await self.state.sync(
            SyncBatch(f"router-{self.experiment}", self.seq, decisions=tuple(decisions)),
            {},
            "r1",
            {},
        )
        outcomes = await self.state.record_feedback(records)
        assert set(outcomes) == {FeedbackOutcome.STORED}
        return [d.decision_key for d in decisions]


class FakeRunner:
    """Answers like the Ray task: a new version, an error, a timeout or nothing (hangs)."""

    def __init__(self, answer: Any = "models:/m/2") -> None:
        self.answer = answer
        self.requests: list[Any] = []
        self.release = asyncio.Event()

    async def __call__(self, entrypoint: str, request: Any, options: dict, timeout: float) -> Any:
        self.requests.append(request)
        if self.answer == "hang":
            await self.release.wait()
        if isinstance(self.answer, BaseException):
            raise self.answer
        return {"model_uri": self.answer, "run_id": ""}


async def loaded(spec: dict[str, Any]) -> ExperimentConfig:
    """What the state's placements return for a challenger (no model deployments here)."""
    return ExperimentConfig.model_validate(spec)


async def started(in_process: Any, tmp_path: Any, runner: FakeRunner, **retrain: Any) -> Any:
    config = parse_config(
        in_process.state_args(str(tmp_path), experiments=[loop_experiment(**retrain)])
    )
    state = await in_process.start_state(config)
    state.retrainer.runner = runner
    state.retrainer.prepare = loaded
    state.control_plane.on_concluded = lambda name: None  # MLflow records: the e2e test
    return state


async def drift(traffic: Traffic, after: int = 40) -> float:
    """Reference rewards at 0.9, then a drop to 0, then ``after`` more rows: returns the
    decision time of the drop."""
    await traffic.serve(([1.0] * 9 + [0.0]) * 5 + [1.0] * 5, at=time.time() - 60)
    dropped_at = time.time() - 30
    await traffic.serve([0.0] * after, at=dropped_at)
    return dropped_at


async def finished(state: Any) -> None:
    running = state.retrainer.running.get(LOOP)
    if running is not None:
        await running.task


def actions(store: ExperimentStore, name: str) -> list[str]:
    return [entry["action"] for entry in store.audit_log(name)]


def test_feedback_and_decisions_join_in_either_order_and_replays_add_nothing(tmp_path):
    store = ExperimentStore(f"sqlite:///{tmp_path / 'store.db'}")
    decision = LoggedDecision("k1", "e", 1, "a", 0.5, 100.0, ((1.0, 2.0),), ("x",))
    record = FeedbackRecord("k1", "e", 1, "a", 1.0, 0.5, 100.0, commit_id="c", label="x")
    store.commit_feedback([record], frozenset({"e"}))  # the feedback first
    assert store.decision_rows(["e"], labelled=True) == []  # no features yet
    assert store.commit_sync("r", 1, _empty_delta(), [decision])
    assert not store.commit_sync("r", 1, _empty_delta(), [decision])  # a resent batch
    rows = store.decision_rows(["e"], labelled=True)
    assert len(rows) == 1
    assert rows[0]["features"] == [[1.0, 2.0]]
    assert rows[0]["label"] == "x"
    assert rows[0]["reward"] == 1.0
    assert rows[0]["predictions"] == ["x"]
    other = LoggedDecision("k2", "e", 1, "a", 0.5, 101.0, ((3.0, 4.0),), ("y",))
    store.commit_sync("r", 2, _empty_delta(), [other])  # the decision first
    assert store.decision_count(["e"]) == 1  # no feedback yet: not a training row
    store.commit_feedback(
        [FeedbackRecord("k2", "e", 1, "a", 0.0, 0.5, 101.0, commit_id="d")], frozenset({"e"})
    )
    assert store.decision_count(["e"]) == 2
    assert store.decision_count(["e"], labelled=True) == 1
    assert [r["decision_key"] for r in store.decision_rows(["e"], newest=1)] == ["k2"]
    assert [r["decision_key"] for r in store.decision_rows(["e"], since=100.5)] == ["k2"]
    page = store.decision_rows(["e"], limit=1)
    assert [r["decision_key"] for r in store.decision_rows(["e"], after=page[-1]["cursor"])] == [
        "k2"
    ]
    store.close()


def _empty_delta() -> Any:
    from serve_app.experiment.records import Delta

    return Delta()


def test_the_log_stays_within_its_rows_and_age(in_process, tmp_path):
    experiment = {**loop_experiment(), "decision_log": {"max_rows": 100, "max_age_s": 3600}}
    config = parse_config(in_process.state_args(str(tmp_path), experiments=[experiment]))

    async def scenario():
        state = await in_process.start_state(config)
        traffic = Traffic(state)
        old = time.time() - 7200
        await traffic.serve([1.0] * 30, at=old)  # past max_age_s
        for _ in range(5):
            await traffic.serve([1.0] * 60)
            await state.decision_log.step()
            assert state.store.decision_log_rows(LOOP) <= 100
        await state.decision_log.step(time.time() + 120)  # the minute's age check
        rows = state.store.decision_rows([LOOP])
        assert len(rows) == 100
        assert min(row["issued_at"] for row in rows) > old + 1  # the oldest went first
        assert [row["decision_key"] for row in rows][-1] == f"{LOOP}-000330"
        metrics = (await state.metrics_text()).decode()
        assert f'bandit_experiment_decision_log_rows{{experiment="{LOOP}"}} 100.0' in metrics
        await state.close()

    asyncio.run(scenario())


def test_a_reward_drop_retrains_on_the_rows_after_it_and_a_winner_takes_over(in_process, tmp_path):
    runner = FakeRunner()

    async def scenario():
        state = await started(in_process, tmp_path, runner)
        traffic = Traffic(state)
        await traffic.serve([1.0] * 9 + [0.0], at=time.time() - 90)
        await state.retrainer.step()
        assert not runner.requests  # no alarm yet
        await drift(traffic, after=10)
        live = state.experiments[LOOP]
        assert live.concept.alert
        await state.retrainer.step()
        assert not runner.requests  # alarm, but only ~10 rows after the drop
        await traffic.serve([0.0] * 40)
        await state.retrainer.step()
        await finished(state)
        (request,) = runner.requests
        since = live.concept.changed_since()
        assert since is not None
        assert request.rows.issued_at.min() >= since
        assert len(request.rows) == 50  # the ~10 + 40 after the drop, none of the reference
        assert request.champion_uri == "models:/m/1"
        assert request.trigger == "concept_drift"
        assert request.lineage["rows_sha256"] == request.rows.digest()
        child = state.experiments[f"{LOOP}-r1"]
        assert child.status == "running"
        assert child.config.parent == LOOP
        assert [a.model_uri for a in child.config.arms] == ["models:/m@champion", "models:/m/2"]
        assert child.config.promotion.registry_alias == "champion"
        assert child.config.stopping.rule == "sequential"
        assert live.delegate == child.name
        await state.retrainer.step()
        assert len(runner.requests) == 1  # one at a time: the challenger is running

        await state.control("promote", child.name, "test", arm="challenger")
        await state.retrainer.step()
        assert live.delegate == child.name  # serving waits for the alias to be followed
        await state.control_plane.follow_versions(live, {"current": "2"})
        assert not live.concept.alert  # a new version: a new reference
        await state.retrainer.step()
        assert live.delegate is None
        (run,) = state.store.retrain_runs(LOOP)
        assert run["status"] == "concluded"
        assert run["outcome"] == "won"
        assert run["model_uri"] == "models:/m/2"
        assert run["challenger"] == child.name
        assert run["rows"] == 50
        assert run["rows_sha256"] == request.rows.digest()
        assert actions(state.store, LOOP)[-6:] == [
            "retrain_started",
            "delegated",
            "retrain_succeeded",
            "retrain_concluded",
            "alias_moved",
            "delegation_ended",
        ]
        metrics = (await state.metrics_text()).decode()
        assert (
            f'bandit_retrain_runs_total{{experiment="{LOOP}",outcome="succeeded"}} 1.0' in metrics
        )
        await state.close()

    asyncio.run(scenario())


def test_a_guardrail_breach_rolls_the_challenger_back_and_hands_the_traffic_back(
    in_process, tmp_path
):
    runner = FakeRunner()

    async def scenario():
        state = await started(in_process, tmp_path, runner)
        state.experiments[LOOP].config = state.experiments[LOOP].config.model_copy(
            update={"guardrails": GuardrailConfig(max_error_rate=0.05, min_requests=20)}
        )
        await drift(Traffic(state), after=45)
        await state.retrainer.step()
        await finished(state)
        child = state.experiments[f"{LOOP}-r1"]
        assert child.config.guardrails.max_error_rate == 0.05  # the parent's guardrails
        counts = {
            (child.name, child.revision, "champion"): ArmCounts(pulls=50, expected=25.0),
            (child.name, child.revision, "challenger"): ArmCounts(
                pulls=50, errors=20, expected=25.0
            ),
        }
        await state.sync(SyncBatch("router-x", 1, arms=counts), {}, "r1", {})
        await state.evaluate(child.name)  # the challenger's own lifecycle judges it
        assert child.status == "concluded"
        assert child.outcome == "rolled_back"
        await state.retrainer.step()
        assert state.experiments[LOOP].delegate is None
        (run,) = state.store.retrain_runs(LOOP)
        assert run["outcome"] == "lost"
        await state.close()

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("answer", "status"),
    [
        (RuntimeError("no labels"), "failed"),
        (TimeoutError(), "timed_out"),
        ("not-a-version", "failed"),
    ],
)
def test_failures_are_audited_and_the_cooldown_holds(in_process, tmp_path, answer, status):
    runner = FakeRunner(answer)

    async def scenario():
        state = await started(in_process, tmp_path, runner)
        if answer == "not-a-version":  # a version the registry does not have: load fails
            state.retrainer.prepare = _refuse
        await drift(Traffic(state), after=45)
        await state.retrainer.step()
        await finished(state)
        (run,) = state.store.retrain_runs(LOOP)
        assert run["status"] == status
        assert run["error"]
        assert actions(state.store, LOOP)[-1] == f"retrain_{status}"
        assert state.experiments[LOOP].delegate is None
        assert len(state.experiments) == 1
        await state.retrainer.step()  # the alarm still holds, within the cooldown
        assert len(runner.requests) == 1
        await state.retrainer.step(time.time() + 101)  # past it
        await finished(state)
        assert len(runner.requests) == 2
        metrics = (await state.metrics_text()).decode()
        assert f'bandit_retrain_runs_total{{experiment="{LOOP}",outcome="{status}"}} 2.0' in metrics
        await state.close()

    asyncio.run(scenario())


async def _refuse(spec: dict[str, Any]) -> ExperimentConfig:
    raise ValueError("arms[1] (challenger): cannot load not-a-version")


def test_a_restart_marks_a_retraining_in_flight_interrupted(in_process, tmp_path):
    runner = FakeRunner("hang")

    async def scenario():
        state = await started(in_process, tmp_path, runner)
        await drift(Traffic(state), after=45)
        await state.retrainer.step()
        assert state.retrainer.metrics(LOOP)["running"]
        await state.close()
        restarted = await started(in_process, tmp_path, FakeRunner())
        (run,) = restarted.store.retrain_runs(LOOP)
        assert run["status"] == "interrupted"
        assert actions(restarted.store, LOOP)[-1] == "retrain_interrupted"
        assert restarted.retrainer.metrics(LOOP) == {
            "running": False,
            "ended": {"interrupted": 1},
        }
        await restarted.close()

    asyncio.run(scenario())


def test_a_retraining_champion_must_follow_an_alias():
    experiment = loop_experiment()
    experiment["arms"][0]["model_uri"] = "models:/m/1"
    with pytest.raises(ValueError, match="must follow a registry alias"):
        ExperimentConfig.model_validate(experiment)
    without_log = {**loop_experiment(), "decision_log": None}
    with pytest.raises(ValueError, match="retrain needs decision_log"):
        ExperimentConfig.model_validate(without_log)
    single = {**loop_experiment(), "retrain": None}
    with pytest.raises(ValueError, match="two or more arms"):
        ExperimentConfig.model_validate(single)


def test_a_challenger_name_a_user_took_is_skipped(in_process, tmp_path):
    taken = {
        "name": f"{LOOP}-r1",
        "policy": {"name": "fixed"},
        "arms": [
            {"name": "a", "model_uri": "models:/m/1", "weight": 0.5},
            {"name": "b", "model_uri": "models:/m/2", "weight": 0.5},
        ],
    }
    runner = FakeRunner()

    async def scenario():
        config = parse_config(
            in_process.state_args(str(tmp_path), experiments=[loop_experiment(), taken])
        )
        state = await in_process.start_state(config)
        state.retrainer.runner = runner
        state.retrainer.prepare = loaded
        state.control_plane.on_concluded = lambda name: None
        await drift(Traffic(state))
        await state.retrainer.step()
        await finished(state)
        (run,) = state.store.retrain_runs(LOOP)
        assert run["status"] == "succeeded", run
        assert run["challenger"] == f"{LOOP}-r2"
        assert state.experiments[LOOP].delegate == f"{LOOP}-r2"
        assert state.experiments[f"{LOOP}-r1"].config.parent is None  # the user's, untouched
        await state.close()

    asyncio.run(scenario())
