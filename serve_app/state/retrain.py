"""The closed loop: retrain on logged feedback when a trigger fires, test the new version as
a challenger, and hand the traffic back when the test is over.

:class:`Retrainer` runs in the state deployment, one :meth:`Retrainer.step` every few
seconds. For an experiment with ``retrain`` (see :class:`~serve_app.config.RetrainConfig`):

1. **Trigger.** A retraining starts when one of ``retrain.on`` fires (its data drift alert,
   its concept drift alert, ``schedule_s`` since the last start), no retraining or
   challenger of it is running, ``cooldown_s`` passed since the last start, and the decision
   log holds ``min_rows`` labelled rows (the experiment's and its challengers', which served
   its traffic).
2. **Train.** The newest ``max_rows`` labelled rows go to the entrypoint in a Ray task sized
   by ``ray_actor_options`` (:func:`~serve_app.models.retraining.run_retraining`), never on
   the serving path; past ``timeout_s`` it is cancelled. Start, success, failure and timeout
   are ``retrain_runs`` rows with audit entries.
3. **Test.** The version it registered is loaded (like any experiment created at runtime,
   :meth:`~serve_app.ingress.placement.Placements.prepare`) and tested in a new experiment
   ``<name>-r<n>`` (:mod:`serve_app.experiment.challenger`), which takes the parent's
   traffic (the parent's ``delegate``).
4. **Hand back.** When the challenger concludes, its conclusion run moves the champion's
   alias if the challenger won; the parent keeps delegating (the concluded challenger
   serves its winner) until the parent's own alias following has pinned the new version,
   then takes its traffic back. Any other outcome hands the traffic back at once. The run's
   lineage tags link the version to the conclusion run.

A restart loses a retraining in flight (``interrupted``; the next trigger starts another);
a challenger and the delegation survive it like every experiment.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from serve_app.config import AppConfig, ExperimentConfig
from serve_app.experiment.challenger import (
    CHALLENGER,
    challenger_name,
    challenger_spec,
)
from serve_app.experiment.live import LiveExperiment
from serve_app.models.retraining import LoggedRows, RetrainRequest, tag_conclusion
from serve_app.models.uris import first_line, registry_version
from serve_app.state.control import ControlPlane
from serve_app.state.store import ExperimentStore

logger = logging.getLogger("ray.serve")

RETRAIN_ACTOR = "retrain"
OUTCOMES = ("succeeded", "failed", "timed_out", "interrupted")
"""How a retraining ends (``succeeded``: it registered a version, now a challenger)."""

Runner = Callable[[str, RetrainRequest, dict[str, Any], float], Awaitable[dict[str, str]]]
"""Runs ``(entrypoint, request, ray_actor_options, timeout_s)``; raises TimeoutError past
the timeout."""


async def run_in_ray_task(
    entrypoint: str, request: RetrainRequest, options: dict[str, Any], timeout_s: float
) -> dict[str, str]:
    """The retraining in its own Ray task (no retries: a failure is reported, not hidden);
    cancelled (the worker killed) past ``timeout_s``."""
    import ray

    from serve_app.models.retraining import run_retraining

    task = ray.remote(run_retraining).options(max_retries=0, **options)
    reference = task.remote(entrypoint, request)
    try:
        return await asyncio.wait_for(asyncio.wrap_future(reference.future()), timeout_s)
    except TimeoutError:
        ray.cancel(reference, force=True)
        raise


@dataclass
class Running:
    """A retraining in flight."""

    run_id: int
    task: asyncio.Task[None]


class Retrainer:
    """Triggers, runs and follows up retrainings (see the module docstring).

    Args:
        experiments: The state's live experiments.
        control: The control plane (creates challengers, moves the delegation).
        store: The experiment store.
        config: The app config (MLflow tracking URI).
        prepare: Loads a new experiment's models and pins their versions (the state's
            :class:`~serve_app.ingress.placement.Placements`).
        runner: Runs a retraining (a Ray task by default).
    """

    def __init__(
        self,
        experiments: dict[str, LiveExperiment],
        control: ControlPlane,
        store: ExperimentStore,
        config: AppConfig,
        prepare: Callable[[dict[str, Any]], Awaitable[ExperimentConfig]],
        runner: Runner = run_in_ray_task,
    ) -> None:
        self.experiments = experiments
        self.control = control
        self.store = store
        self.tracking_uri = config.mlflow_tracking_uri
        self.prepare = prepare
        self.runner = runner
        self.running: dict[str, Running] = {}
        self.ended: dict[tuple[str, str], int] = {}  # (experiment, outcome) -> runs
        self._checked: dict[str, float] = {}
        self._concluded_seen: dict[str, float] = {}  # challenger -> when seen concluded
        self._stepping = asyncio.Lock()  # one step at a time, whoever calls it

    def restore(self) -> None:
        """After a restart: count past runs; runs that were in flight are ``interrupted``."""
        for name, live in self.experiments.items():
            if live.config.retrain is None:
                continue
            for run in self.store.retrain_runs(name):
                if run["status"] == "running":
                    self.store.update_retrain(
                        run["id"],
                        audit=("retrain_interrupted", {"reason": "the state restarted"}),
                        status="interrupted",
                        ended_at=time.time(),
                        error="the state restarted while it ran",
                    )
                    run["status"] = "interrupted"
                if run["status"] in OUTCOMES or run["status"] == "concluded":
                    status = "succeeded" if run["status"] == "concluded" else run["status"]
                    self.ended[(name, status)] = self.ended.get((name, status), 0) + 1

    # ---------------------------------------------------------------- the loop

    async def step(self, now: float | None = None) -> None:
        async with self._stepping:
            await self._step(time.time() if now is None else now)

    async def _step(self, now: float) -> None:
        for name, live in list(self.experiments.items()):
            try:
                if live.config.parent is not None:
                    await self._follow_up(live)
                elif live.config.retrain is not None:
                    await self._hand_back(live)
                    await self._maybe_start(live, now)
            except Exception:  # one experiment's failure must not stop the others
                logger.exception("retraining check of %s failed", name)

    def trigger(self, live: LiveExperiment, now: float, last_start: float | None) -> str | None:
        """The trigger that fires now, or None."""
        settings = live.config.retrain
        assert settings is not None
        if "concept_drift" in settings.on and live.concept is not None and live.concept.alert:
            return "concept_drift"
        report = live.drift.report if live.drift is not None else None
        if "data_drift" in settings.on and report is not None and report.alert:
            return "data_drift"
        if "schedule" in settings.on and settings.schedule_s is not None:
            since = last_start if last_start is not None else live.started_at
            if since is not None and now - since >= settings.schedule_s:
                return "schedule"
        return None

    async def _maybe_start(self, live: LiveExperiment, now: float) -> None:
        settings = live.config.retrain
        assert settings is not None
        name = live.name
        if name in self.running or live.delegate is not None or live.status != "running":
            return
        if now - self._checked.get(name, 0.0) < settings.check_interval_s:
            return
        self._checked[name] = now
        runs = await asyncio.to_thread(self.store.retrain_runs, name)
        last_start = max((run["started_at"] for run in runs), default=None)
        trigger = self.trigger(live, now, last_start)
        if trigger is None:
            return
        if last_start is not None and now - last_start < settings.cooldown_s:
            return
        # after a reward drop, train on what came after its estimated start (and wait for
        # min_rows of it): the rows before it are the concept that no longer holds
        since = (
            live.concept.changed_since() if trigger == "concept_drift" and live.concept else None
        )
        sources = self.sources(name)
        labelled = await asyncio.to_thread(
            self.store.decision_count, sources, labelled=True, since=since
        )
        if labelled < settings.min_rows:
            return
        records = await asyncio.to_thread(
            self.store.decision_rows, sources, labelled=True, newest=settings.max_rows, since=since
        )
        rows = LoggedRows.from_log(records)
        if len(rows) < settings.min_rows:
            return
        champion = live.config.model(live.config.default)
        champion_uri = champion.serving_uri
        lineage = {
            "experiment": name,
            "trigger": trigger,
            "parent_model_uri": champion_uri,
            "parent_version": champion.model_version or "",
            "rows_since": "" if since is None else f"{since:.3f}",
            **rows.lineage(),
        }
        request = RetrainRequest(
            experiment=name,
            trigger=trigger,
            champion_uri=champion_uri,
            tracking_uri=self.tracking_uri,
            rows=rows,
            params=dict(settings.params),
            lineage=lineage,
        )
        run_id = await asyncio.to_thread(
            self.store.start_retrain,
            name,
            trigger,
            {"rows": len(rows), "champion": champion_uri, "entrypoint": settings.entrypoint},
            rows=len(rows),
            rows_sha256=lineage["rows_sha256"],
            rows_from=float(rows.issued_at.min()),
            rows_to=float(rows.issued_at.max()),
            champion_uri=champion_uri,
        )
        logger.info(
            "experiment %s: retraining %d on %d rows (%s)", name, run_id, len(rows), trigger
        )
        task = asyncio.create_task(self._run(live, run_id, request))
        self.running[name] = Running(run_id, task)

    def sources(self, name: str) -> list[str]:
        """The experiments whose decision log belongs to ``name``: itself and its
        challengers (they served its traffic)."""
        return [name] + [n for n, live in self.experiments.items() if live.config.parent == name]

    async def _run(self, live: LiveExperiment, run_id: int, request: RetrainRequest) -> None:
        settings = live.config.retrain
        assert settings is not None
        options = settings.ray_actor_options.model_dump(exclude_none=True)
        started = time.monotonic()
        try:
            try:
                result = await self.runner(
                    settings.entrypoint, request, options, settings.timeout_s
                )
            except TimeoutError:
                await self._end(run_id, live.name, "timed_out", f"ran past {settings.timeout_s}s")
                return
            except Exception as error:
                await self._end(run_id, live.name, "failed", first_line(error)[:2000])
                return
            model_uri = result["model_uri"]
            elapsed = time.monotonic() - started
            number = len(await asyncio.to_thread(self.store.retrain_runs, live.name))
            child = challenger_name(live.name, number)
            while child in self.experiments:  # a name a user took: the next free number
                number += 1
                child = challenger_name(live.name, number)
            try:
                await self._challenge(live, child, model_uri, request.trigger)
            except Exception as error:
                await self._end(
                    run_id,
                    live.name,
                    "failed",
                    f"{model_uri} could not be tested: {first_line(error)}"[:2000],
                    model_uri=model_uri,
                )
                return
            await asyncio.to_thread(
                self.store.update_retrain,
                run_id,
                (
                    "retrain_succeeded",
                    {"model_uri": model_uri, "challenger": child, "seconds": round(elapsed, 1)},
                ),
                status="succeeded",
                ended_at=time.time(),
                model_uri=model_uri,
                challenger=child,
            )
            self._count(live.name, "succeeded")
            logger.info("experiment %s: %s is tested in %s", live.name, model_uri, child)
        finally:
            self.running.pop(live.name, None)

    async def _end(self, run_id: int, name: str, status: str, error: str, **values: Any) -> None:
        logger.warning("experiment %s: retraining %d %s: %s", name, run_id, status, error)
        await asyncio.to_thread(
            self.store.update_retrain,
            run_id,
            (f"retrain_{status}", {"error": error}),
            status=status,
            ended_at=time.time(),
            error=error,
            **values,
        )
        self._count(name, status)

    def _count(self, name: str, status: str) -> None:
        self.ended[(name, status)] = self.ended.get((name, status), 0) + 1

    async def _challenge(
        self, live: LiveExperiment, child: str, model_uri: str, trigger: str
    ) -> None:
        """Create the challenger experiment and give it the parent's traffic."""
        spec = challenger_spec(live.config, child, model_uri, f"retrained on {trigger}")
        prepared = await self.prepare(spec)  # loads both versions where they serve
        answer = await self.control.create(
            child,
            RETRAIN_ACTOR,
            prepared.model_dump(mode="json"),
            reason=f"retraining of {live.name} ({trigger})",
        )
        assert answer["status"] == "running", answer
        await self.control.delegate(live, child, f"challenger {child} tests {model_uri}")

    # ---------------------------------------------------------------- after the test

    async def _follow_up(self, child: LiveExperiment) -> None:
        """A concluded challenger (its own lifecycle concludes it: the stopping rule, the
        ramp, or a guardrail breach rolling the challenger back): record the outcome on the
        retraining run, and link the version to the conclusion run when there is one."""
        if child.status != "concluded":
            return
        self._concluded_seen.setdefault(child.name, time.time())
        runs = await asyncio.to_thread(self.store.retrain_runs, child.config.parent or "")
        run = next((r for r in runs if r["challenger"] == child.name), None)
        if run is None:
            return
        outcome = self.outcome(child)
        if run["outcome"] is None:
            await asyncio.to_thread(
                self.store.update_retrain,
                run["id"],
                ("retrain_concluded", {"challenger": child.name, "outcome": outcome}),
                status="concluded",
                outcome=outcome,
            )
        if child.mlflow_run_id is None or run["conclusion_run"] is not None:
            return
        try:
            await asyncio.to_thread(
                tag_conclusion, self.tracking_uri, run["model_uri"], child.mlflow_run_id, outcome
            )
        except Exception as error:  # the registry is down: the tags come next time
            logger.warning("linking %s to %s failed: %r", run["model_uri"], child.name, error)
            return
        await asyncio.to_thread(
            self.store.update_retrain, run["id"], conclusion_run=child.mlflow_run_id
        )

    @staticmethod
    def outcome(child: LiveExperiment) -> str:
        """``won`` (the challenger was promoted), ``lost`` (rolled back, or the champion
        won), or ``stopped`` (no answer)."""
        if child.outcome == "promoted" and child.winner == CHALLENGER:
            return "won"
        if child.outcome == "stopped":
            return "stopped"
        return "lost"

    async def _hand_back(self, live: LiveExperiment) -> None:
        """Take the traffic back from a concluded challenger: at once after a loss; after a
        win once this experiment serves the new version (its alias moved and was followed),
        or after ``follow_timeout_s``."""
        child = self.experiments.get(live.delegate) if live.delegate else None
        if live.delegate is None:
            return
        if child is None:  # cannot happen unless the store was edited: do not strand traffic
            await self.control.delegate(live, None, f"challenger {live.delegate} is gone")
            return
        if child.status != "concluded":
            return
        outcome = self.outcome(child)
        if outcome == "won":
            new = registry_version(child.config.model(CHALLENGER).serving_uri)
            champion = live.config.model(live.config.default)
            followed = new is not None and champion.model_version == new[1]
            settings = live.config.retrain
            assert settings is not None
            waited = time.time() - self._concluded_seen.get(child.name, time.time())
            if not followed and waited < settings.challenger.follow_timeout_s:
                return  # the concluded challenger serves the new version meanwhile
            reason = (
                f"serving follows {child.name}'s winner (version {new[1] if new else '?'})"
                if followed
                else f"the alias did not reach version {new[1] if new else '?'} in "
                f"{settings.challenger.follow_timeout_s:g}s; back on the champion"
            )
        else:
            reason = f"{child.name} concluded: {outcome} ({child.outcome})"
        await self.control.delegate(live, None, reason)

    def metrics(self, name: str) -> dict[str, Any]:
        """Runs per outcome and whether one is in flight (for the metrics)."""
        return {
            "running": name in self.running,
            "ended": {s: n for (e, s), n in self.ended.items() if e == name},
        }

    async def close(self) -> None:
        for running in list(self.running.values()):
            running.task.cancel()
