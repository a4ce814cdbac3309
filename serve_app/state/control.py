"""Control transitions: every change to an experiment's config or status, and what the
lifecycle decides, each one store transaction with its audit-log entry.

``draft -> running <-> paused -> concluded (promoted | rolled_back | stopped)``; a weight or
config change starts a new revision (a new period, so counts under different weights stay
apart). Requests that cannot apply raise :class:`ControlError` with the HTTP status the
router answers with (409 for the wrong state, 422 for an invalid change, 404).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from pydantic import ValidationError

from serve_app.config import ExperimentConfig, describe_validation_error
from serve_app.experiment.lifecycle import ACTOR, Action
from serve_app.experiment.live import LiveExperiment
from serve_app.state.restore import restore_one
from serve_app.state.store import ExperimentStore

logger = logging.getLogger("ray.serve")


class ControlError(ValueError):
    """A control request that cannot apply to the experiment as it is (HTTP 404/409/422)."""

    def __init__(self, message: str, status: int = 409) -> None:
        super().__init__(message)
        self.status = status


class ControlPlane:
    """The transitions of the experiments in ``experiments`` (shared with the state).

    Args:
        store: The experiment store.
        experiments: The state's live experiments, by name (created ones are added here).
        lock: The state's write lock: every store write and the memory change after it.
        on_concluded: Called with an experiment's name when it concludes.
        on_created: Awaited with a new experiment, and with one whose config changed (sets
            up its drift tracking).
    """

    def __init__(
        self,
        store: ExperimentStore,
        experiments: dict[str, LiveExperiment],
        lock: asyncio.Lock,
        on_concluded: Callable[[str], None],
        on_created: Callable[[LiveExperiment], Awaitable[None]],
    ) -> None:
        self.store = store
        self.experiments = experiments
        self.lock = lock
        self.on_concluded = on_concluded
        self.on_created = on_created

    async def control(self, action: str, name: str, actor: str, **kwargs: Any) -> dict[str, Any]:
        """One entry point for the control plane: ``{"ok": summary}`` or ``{"error": message,
        "status": http_status}`` (exceptions would lose their status crossing the actor)."""
        handlers = {
            "create": self.create,
            "update": self.update,
            "start": self.start,
            "stop": self.stop,
            "pause": self.pause,
            "resume": self.resume,
            "weights": self.set_weights,
            "promote": self.promote,
            "rollback": self.rollback,
        }
        try:
            return {"ok": await handlers[action](name, actor=actor, **kwargs)}
        except ControlError as error:
            return {"error": str(error), "status": error.status}

    def live(self, name: str) -> LiveExperiment:
        live = self.experiments.get(name)
        if live is None:
            raise ControlError(f"unknown experiment {name!r}", status=404)
        return live

    @staticmethod
    def validated(spec: Mapping[str, Any]) -> ExperimentConfig:
        try:
            return ExperimentConfig.model_validate(spec)
        except ValidationError as error:
            lines = "; ".join(describe_validation_error(error))
            raise ControlError(f"invalid experiment: {lines}", status=422) from None

    async def _change(
        self,
        live: LiveExperiment,
        action: str,
        actor: str,
        detail: Mapping[str, Any],
        *,
        config: ExperimentConfig | None = None,
        **values: Any,
    ) -> dict[str, Any]:
        columns = dict(values)
        if config is not None:
            columns["config"] = config.model_dump(mode="json")
        async with self.lock:
            revision = await asyncio.to_thread(
                self.store.update_experiment,
                live.name,
                action=action,
                detail=detail,
                actor=actor,
                new_revision=config is not None,
                **columns,
            )
            lifecycle: dict[str, Any] = {}
            now = time.time()
            if revision != live.revision:
                live.new_revision(config or live.config, revision, now)
                lifecycle["period_started_at"] = now
            if values.get("status") == "running" and live.started_at is None:
                lifecycle["started_at"] = live.started_at = now
            if lifecycle:
                await asyncio.to_thread(self.store.set_lifecycle, live.name, **lifecycle)
            for key, value in values.items():
                setattr(live, key, value)
        logger.info("experiment %s: %s by %s (%s)", live.name, action, actor, detail)
        if config is not None:
            await self.on_created(live)  # a new config: its drift watches may change
        if values.get("status") == "concluded":
            self.on_concluded(live.name)
        return live.summary()

    async def create(
        self, name: str, actor: str, spec: Mapping[str, Any], reason: str = ""
    ) -> dict[str, Any]:
        """A new experiment (the router has loaded its models and pinned their versions)."""
        if name in self.experiments:
            raise ControlError(f"experiment {name!r} exists already")
        config = self.validated({**spec, "name": name})
        async with self.lock:
            created = await asyncio.to_thread(
                self.store.create_experiment, name, config.model_dump(mode="json"), actor, reason
            )
            if not created:
                raise ControlError(f"experiment name {name!r} was used before; pick another")
            live, _ = await asyncio.to_thread(restore_one, self.store, name)
            assert live is not None, "an experiment just created loads"
            self.experiments[name] = live
        await self.on_created(live)
        logger.info("experiment %s created by %s", name, actor)
        return live.summary()

    async def update(
        self, name: str, actor: str, changes: Mapping[str, Any], reason: str = ""
    ) -> dict[str, Any]:
        """Change description, policy parameters, default arm, attribution window or the
        models of existing arms: a new revision (the arm names and the policy itself are
        fixed for an experiment's life)."""
        live = self.live(name)
        spec = live.config.model_dump(mode="json")
        for key, value in changes.items():
            if key == "policy_params":
                spec["policy"]["params"] = value
            else:
                spec[key] = value
        config = self.validated(spec)
        detail = {"changes": dict(changes), "reason": reason}
        return await self._change(live, "update", actor, detail, config=config)

    async def _move(
        self, name: str, action: str, actor: str, reason: str, source: str, target: str
    ) -> dict[str, Any]:
        """A status change that only applies from ``source`` (409 otherwise)."""
        live = self.live(name)
        if live.status != source:
            raise ControlError(f"experiment {name!r} is {live.status}, not {source}")
        return await self._change(live, action, actor, {"reason": reason}, status=target)

    async def _conclude(
        self, name: str, action: str, actor: str, reason: str, outcome: str, winner: str | None
    ) -> dict[str, Any]:
        """End the experiment: ``winner`` (or, with none, the default arm) takes all traffic."""
        live = self.live(name)
        if live.status == "concluded":
            raise ControlError(f"experiment {name!r} is already concluded ({live.outcome})")
        detail = {"arm": winner or live.config.default, "reason": reason}
        return await self._change(
            live, action, actor, detail, status="concluded", outcome=outcome, winner=winner
        )

    async def start(self, name: str, actor: str, reason: str = "") -> dict[str, Any]:
        """A draft starts running: the policy routes and learns from now on."""
        return await self._move(name, "start", actor, reason, "draft", "running")

    async def stop(self, name: str, actor: str, reason: str = "") -> dict[str, Any]:
        """Conclude without a winner: all traffic to the default (control) arm."""
        return await self._conclude(name, "stop", actor, reason, "stopped", None)

    async def pause(self, name: str, actor: str, reason: str = "") -> dict[str, Any]:
        """All traffic to the default arm, nothing learned, until resumed."""
        return await self._move(name, "pause", actor, reason, "running", "paused")

    async def resume(self, name: str, actor: str, reason: str = "") -> dict[str, Any]:
        """A paused experiment routes by its policy again."""
        return await self._move(name, "resume", actor, reason, "paused", "running")

    async def set_weights(
        self, name: str, weights: Mapping[str, float], actor: str, reason: str = ""
    ) -> dict[str, Any]:
        """New weights for a fixed split: a new revision, so counts per period stay apart."""
        live = self.live(name)
        if live.config.policy.name != "fixed":
            raise ControlError(
                f"experiment {name!r} uses policy {live.config.policy.name!r}; only a fixed "
                "split takes weights (bandits set their own)",
                status=422,
            )
        if set(weights) != set(live.config.arm_names):
            raise ControlError(
                f"weights must name exactly the arms {live.config.arm_names}, "
                f"got {sorted(weights)}",
                status=422,
            )
        spec = live.config.model_dump(mode="json")
        for arm in spec["arms"]:
            arm["weight"] = weights[arm["name"]]
        config = self.validated(spec)
        detail = {"weights": dict(weights), "reason": reason}
        return await self._change(live, "set_weights", actor, detail, config=config)

    async def promote(self, name: str, arm: str, actor: str, reason: str = "") -> dict[str, Any]:
        """The winner takes all traffic; the experiment is concluded."""
        live = self.live(name)
        if arm not in live.config.arm_names:
            raise ControlError(f"unknown arm {arm!r}; arms are {live.config.arm_names}", 422)
        return await self._conclude(name, "promote", actor, reason, "promoted", arm)

    async def rollback(self, name: str, actor: str, reason: str = "") -> dict[str, Any]:
        """The default (control) arm takes all traffic; the experiment is concluded."""
        default = self.live(name).config.default
        return await self._conclude(name, "rollback", actor, reason, "rolled_back", default)

    async def follow_versions(self, live: LiveExperiment, versions: Mapping[str, str]) -> None:
        """Pin models (arms or shadows, by name) to the versions their alias or ``latest``
        URI points to now. A model seen for the first time is pinned in place; a model
        whose version moved starts a new revision (its counts stay apart), audited as
        ``alias_moved``."""
        spec = live.config.model_dump(mode="json")
        moved, first = {}, {}
        for model in [*spec["arms"], *spec["shadows"]]:
            version = versions.get(model["name"])
            if version is None or version == model.get("version"):
                continue
            target = first if model.get("version") is None else moved
            target[model["name"]] = {
                "uri": model["model_uri"],
                "from": model.get("version"),
                "to": version,
            }
            model["version"] = version
        if not (moved or first):
            return
        config = self.validated(spec)
        if moved:
            await self._change(live, "alias_moved", ACTOR, {"models": moved}, config=config)
            return
        async with self.lock:  # first resolution: same revision (nothing served differs)
            await asyncio.to_thread(
                self.store.update_experiment,
                live.name,
                action="alias_resolved",
                detail={"models": first},
                actor=ACTOR,
                config=config.model_dump(mode="json"),
            )
            live.config = config

    async def delegate(self, live: LiveExperiment, child: str | None, reason: str) -> None:
        """Hand the experiment's traffic to the retraining challenger ``child`` (routers
        serve it instead), or take it back (None); audited as ``delegated`` or
        ``delegation_ended``."""
        if child is not None and child not in self.experiments:
            raise ControlError(f"unknown experiment {child!r}", status=404)
        action = "delegated" if child is not None else "delegation_ended"
        detail = {"to": child, "from": live.delegate, "reason": reason}
        logger.info("experiment %s: %s (%s)", live.name, action, detail)
        await self._set_lifecycle(live, action, detail, "retrain", delegate=child)

    # ---------------------------------------------------------------- the lifecycle's actions

    async def act(self, live: LiveExperiment, action: Action) -> None:
        """Carry out one action the lifecycle decided (actor ``lifecycle``)."""
        name = live.name
        logger.info("lifecycle %s: %s %s (%s)", name, action.kind, action.arm, action.reason)
        if action.kind == "exclude":
            assert action.arm is not None
            excluded = {**live.excluded, action.arm: action.reason}
            detail = {"arm": action.arm, "reason": action.reason, "revision": live.revision}
            await self._set_lifecycle(live, "guardrail_rollback", detail, excluded=excluded)
        elif action.kind == "recommend":
            recommendation = {"winner": action.arm, "reason": action.reason}
            await self._set_lifecycle(
                live, "recommendation", recommendation, recommendation=recommendation
            )
        elif action.kind == "ramp":
            assert action.weights is not None
            await self.set_weights(name, action.weights, ACTOR, action.reason)
        elif action.kind == "promote":
            assert action.arm is not None
            await self.promote(name, action.arm, ACTOR, action.reason)
        elif action.kind == "rollback":
            await self.rollback(name, ACTOR, action.reason)
        else:
            await self.stop(name, ACTOR, action.reason)

    async def _set_lifecycle(
        self,
        live: LiveExperiment,
        action: str,
        detail: Mapping[str, Any],
        actor: str = ACTOR,
        **values: Any,
    ) -> None:
        async with self.lock:
            await asyncio.to_thread(
                self.store.set_lifecycle, live.name, audit=(action, detail, actor), **values
            )
            for key, value in values.items():
                setattr(live, key, value)
