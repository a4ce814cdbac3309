"""Loading experiments back from the store when the state deployment starts.

A restart must always be possible: an experiment whose stored config no longer validates, or
a row holding a value no valid delta can produce (an earlier version could store an
infinite sum), is left out and reported — logged, written to the experiment's audit log and
counted in ``bandit_state_restore_problems`` — and the app starts with everything else.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field

from pydantic import ValidationError

from serve_app.config import AppConfig, ExperimentConfig, describe_validation_error
from serve_app.experiment.live import LiveExperiment
from serve_app.state.store import ExperimentStore

logger = logging.getLogger("ray.serve")
ACTOR = "startup"


@dataclass
class Restored:
    """The experiments that loaded, and what was left out."""

    experiments: dict[str, LiveExperiment] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def restore_one(store: ExperimentStore, name: str) -> tuple[LiveExperiment | None, list[str]]:
    """One experiment from the store, and the problems found in its rows.

    Returns ``(None, problems)`` when the experiment itself cannot be loaded.
    """
    stored = store.load_experiment(name)
    if stored is None:
        return None, [f"experiment {name}: not in the store"]
    try:
        config = ExperimentConfig.model_validate(json.loads(stored.config))
    except (ValidationError, ValueError) as error:
        detail = (
            "; ".join(describe_validation_error(error))
            if isinstance(error, ValidationError)
            else str(error)
        )
        return None, [*stored.problems, f"experiment {name}: stored config is invalid: {detail}"]
    lifecycle = stored.lifecycle
    now = time.time()
    stats = {arm: value for arm, value in stored.stats.items() if arm in config.arm_names}
    key = config.context_key  # a contextual experiment: what it learned, for its encoding
    live = LiveExperiment.create(
        config,
        stored.revision,
        stats,
        context_stats=store.context_stats(name, key) if key else None,
        status=stored.status,
        outcome=stored.outcome,
        winner=stored.winner,
        counts=stored.counts,
        shadows=stored.shadows,
        metrics=stored.metrics,
        pairs=stored.pairs,
        periods=stored.periods,
        period_counts=stored.period_counts,
        started_at=lifecycle["started_at"],
        period_started_at=lifecycle["period_started_at"] or now,
        excluded=dict(lifecycle["excluded"]),
        mlflow_run_id=lifecycle["mlflow_run_id"],
        recommendation=lifecycle["recommendation"],
        delegate=lifecycle.get("delegate"),
    )
    if lifecycle["period_started_at"] is None or (
        live.status == "running" and live.started_at is None
    ):
        live.started_at = live.started_at or (now if live.status == "running" else None)
        store.set_lifecycle(
            name, started_at=live.started_at, period_started_at=live.period_started_at
        )
    return live, stored.problems


def restore_experiments(config: AppConfig, store: ExperimentStore) -> Restored:
    """Every experiment of the app config (created or updated in the store from it) and every
    experiment created through the control plane, skipping what cannot be loaded."""
    restored = Restored()
    for deployed in config.experiments:
        store.ensure_experiment(deployed.name, deployed.model_dump(mode="json"), actor=ACTOR)
    names = [experiment.name for experiment in config.experiments]
    names += [name for name in store.api_experiments() if name not in names]
    for name in names:
        live, problems = restore_one(store, name)
        for problem in problems:
            logger.error("restore left out %s", problem)
            store.audit(name, "restore_skipped", {"problem": problem[:1000]}, ACTOR)
        restored.problems.extend(problems)
        if live is not None:
            restored.experiments[name] = live
            logger.info("experiment %s restored: revision %d, %s", name, live.revision, live.status)
    return restored
