"""Report fixtures: realistic ``GET /experiments/{name}/report`` bodies for render/tracking tests.

The reports are simulated, not served: per-arm traffic and rewards over ~20 timeline
snapshots from a seeded generator, with the summary fields derived from the last one, so
plots and tables see data shaped like the lead's report endpoint.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pytest

START = 1_763_870_000.0


def _posterior(reward: str, feedback: int, reward_sum: float, sd: float) -> dict[str, Any]:
    if reward == "binary":
        return {"family": "beta", "alpha": 1.0 + reward_sum, "beta": 1.0 + feedback - reward_sum}
    mean = reward_sum / feedback if feedback else 0.0
    return {"family": "normal", "mean": mean, "sd": sd / max(feedback, 1) ** 0.5}


def _timeline(
    arms: Sequence[tuple[str, float]], reward: str, snapshots: int, rng: np.random.Generator
) -> list[dict[str, Any]]:
    """Cumulative per-arm counts; the best arm's weight grows over time."""
    timeline: list[dict[str, Any]] = []
    totals = {name: [0, 0, 0.0] for name, _ in arms}
    best = max(arms, key=lambda a: a[1])[0]
    for step in range(snapshots):
        progress = step / max(snapshots - 1, 1)
        weights = {name: (0.2 + 0.6 * progress) if name == best else 0.0 for name, _ in arms}
        rest = (1.0 - weights[best]) / (len(arms) - 1)
        weights = {name: w or rest for name, w in weights.items()}
        for name, rate in arms:
            pulls = int(rng.poisson(100 * weights[name]))
            feedback = int(pulls * 0.9)
            if reward == "binary":
                gained = float(rng.binomial(feedback, rate))
            else:
                gained = float(rng.normal(rate, 0.2, size=feedback).sum())
            totals[name][0] += pulls
            totals[name][1] += feedback
            totals[name][2] += gained
            timeline.append(
                {
                    "at": START + 30.0 * step,
                    "arm": name,
                    "pulls": totals[name][0],
                    "feedback": totals[name][1],
                    "reward_sum": round(totals[name][2], 6),
                    "weight": round(weights[name], 4),
                }
            )
    return timeline


def _arm_entries(
    arms: Sequence[tuple[str, float]], reward: str, timeline: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    last = {point["arm"]: point for point in timeline}
    entries = []
    for index, (name, _) in enumerate(arms):
        point = last.get(name, {"pulls": 0, "feedback": 0, "reward_sum": 0.0, "weight": 0.0})
        feedback = point["feedback"]
        excluded = name == "slow"
        entries.append(
            {
                "name": name,
                "model_uri": f"models:/digits-{name}/{index + 1}",
                "requests": point["pulls"],
                "feedback": feedback,
                "reward_mean": point["reward_sum"] / feedback if feedback else None,
                "reward_sum": point["reward_sum"],
                "weight": point["weight"],
                "prob_best": None,
                "expected_loss": 0.01 * index,
                "errors": index,
                "error_rate": index / max(point["pulls"], 1),
                "p95_latency_ms": None if index == 0 else 12.5 * index,
                "excluded": excluded,
                "exclusion_reason": "p95 latency 80 ms > 1.5 x control 20 ms" if excluded else None,
                "posterior": _posterior(reward, feedback, point["reward_sum"], 0.2),
            }
        )
    return entries


def _comparison(arm: str, control: str, lift: float) -> dict[str, Any]:
    return {
        "arm": arm,
        "control": control,
        "frequentist": {
            "estimate": lift,
            "se": 0.01,
            "ci": [lift - 0.02, lift + 0.02],
            "p_value": 0.001,
            "p_value_adjusted": 0.002,
            "significant": True,
        },
        "bayesian": {
            "chance_to_win": 0.99,
            "mean": lift,
            "ci": [lift - 0.02, lift + 0.02],
            "risk": [lift, 0.0001],
        },
        "sequential": {
            "estimate": lift,
            "ci": [lift - 0.04, lift + 0.04],
            "p_value": 0.01,
            "significant": True,
        },
    }


def make_report(
    name: str,
    arms: Sequence[tuple[str, float]],
    *,
    reward: str = "binary",
    snapshots: int = 20,
    seed: int = 0,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A concluded, promoted report: ``arms`` are ``(name, true rate)``, first is control."""
    rng = np.random.default_rng(seed)
    timeline = _timeline(arms, reward, snapshots, rng)
    entries = _arm_entries(arms, reward, timeline)
    control = arms[0][0]
    winner = max(arms, key=lambda a: a[1])[0]
    for entry in entries:
        entry["prob_best"] = 0.97 if entry["name"] == winner else 0.03 / (len(arms) - 1)
    report: dict[str, Any] = {
        "experiment": name,
        "generated_at": START + 30.0 * snapshots,
        "status": "concluded",
        "outcome": "promoted",
        "winner": winner,
        "policy": "thompson",
        "reward": reward,
        "control": control,
        "started_at": START,
        "duration_s": 30.0 * snapshots,
        "arms": entries,
        "comparisons": [
            _comparison(arm, control, round((rate - arms[0][1]) / abs(arms[0][1]), 4))
            for arm, rate in arms[1:]
        ],
        "srm": {"p_value": 0.4, "mismatch": False},
        "stopping": {
            "met": True,
            "winner": winner,
            "reason": f"P(best) of {winner} 0.97 >= 0.95 & min samples reached",
            "rules": [
                {"name": "min_samples", "met": True, "detail": "every arm has >= 100 <feedback>"},
                {"name": "prob_best", "met": True, "detail": "0.97 >= 0.95"},
            ],
        },
        "guardrails": [
            {
                "arm": arm,
                "rule": "error_rate",
                "value": 0.01,
                "threshold": 0.05,
                "breached": False,
                "detail": "0.01 <= 0.05",
            }
            for arm, _ in arms[1:]
        ]
        + [
            {
                "arm": arms[-1][0],
                "rule": "p95_latency",
                "value": 80.0,
                "threshold": 30.0,
                "breached": True,
                "detail": "80 ms > 1.5 x control 20 ms",
            }
        ],
        "ramp": None,
        "timeline": timeline,
        "audit": [
            {"at": START, "action": "create", "actor": "config", "detail": {"arms": len(arms)}},
            {
                "at": START + 30.0 * snapshots,
                "action": "promote",
                "actor": "lifecycle",
                "detail": {"arm": winner, "note": "Tom & Jerry <b>won</b>"},
            },
        ],
        "drift": None,
        "mlflow_run_id": None,
    }
    report.update(copy.deepcopy(dict(extra or {})))
    return report


def drift_block(n_features: int = 30) -> dict[str, Any]:
    """A drift result with ``n_features`` continuous features, two of them drifted."""
    features = [
        {
            "name": f"f{i}",
            "kind": "continuous",
            "statistic": 0.01 * i,
            "p_value": max(0.0, 0.9 - 0.03 * i),
            "psi": 0.3 if i in (3, 7) else 0.004 * i,
            "drifted": i in (3, 7),
        }
        for i in range(n_features)
    ]
    return {
        "alert": True,
        "features": features,
        "arms": [
            {"arm": "logreg", "statistic": 0.02, "p_value": 0.6, "psi": 0.01, "drifted": False}
        ],
    }


@pytest.fixture
def binary_report() -> dict[str, Any]:
    """Two arms, binary rewards, 20 snapshots, drift on 30 features, a ramp in progress."""
    return make_report(
        "digits",
        [("logreg", 0.85), ("forest", 0.92)],
        extra={
            "drift": drift_block(),
            "ramp": {"arm": "forest", "steps": [5, 25, 50, 100], "step": 1, "percent": 25},
            "mlflow_run_id": None,
        },
    )


@pytest.fixture
def continuous_report() -> dict[str, Any]:
    """Three arms, continuous rewards, one arm excluded for latency, no drift check."""
    return make_report(
        "revenue",
        [("logreg", 1.0), ("forest", 1.2), ("slow", 0.9)],
        reward="continuous",
        seed=1,
    )


@pytest.fixture
def empty_report() -> dict[str, Any]:
    """A draft report with no timeline and no feedback yet."""
    report = make_report("fresh", [("a", 0.5), ("b", 0.5)], snapshots=0)
    report.update(status="draft", outcome=None, winner=None, comparisons=[], guardrails=[])
    for arm in report["arms"]:
        arm["posterior"] = None
    return report


# --------------------------------------------------------------------------- in-process state


ARMS = [
    {"name": "a", "model_uri": "/m/a", "weight": 0.5},
    {"name": "b", "model_uri": "/m/b", "weight": 0.5},
]


def state_args(data_dir: str, **extra: Any) -> dict[str, Any]:
    """A small app config for the state deployment run in-process (no models are loaded)."""
    experiments = extra.pop(
        "experiments",
        [
            {"name": "exp", "policy": {"name": "fixed"}, "arms": ARMS, "metrics": ["refund"]},
            {"name": "ts", "policy": {"name": "thompson"}, "arms": [
                {"name": "a", "model_uri": "/m/a"}, {"name": "b", "model_uri": "/m/b"}]},
        ],
    )  # fmt: skip
    return {
        "data_dir": data_dir,
        "check_models": False,
        "lifecycle": {"evaluate_interval_s": 3600, "timeline_interval_s": 3600},
        "experiments": experiments,
        **extra,
    }


async def start_state(config: Any) -> Any:
    """The experiment-state deployment's class, run in this process (its constructor is
    async, as Serve allows)."""
    from serve_app.state.deployment import ExperimentState

    cls = ExperimentState.func_or_class
    state = cls.__new__(cls)
    await cls.__init__(state, config)
    return state


class LocalHandle:
    """Calls an in-process deployment object the way a DeploymentHandle does
    (``handle.method.remote(...)`` is awaitable). ``lose`` makes the next answers of a method
    get lost after the call ran: what a router sees when the state dies after its commit."""

    def __init__(self, target: Any) -> None:
        self.target = target
        self.lose: dict[str, int] = {}
        self.down = False
        self.calls: dict[str, int] = {}

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.target, name)
        handle = self

        class Method:
            def remote(self, *args: Any, **kwargs: Any) -> Any:
                async def call() -> Any:
                    handle.calls[name] = handle.calls.get(name, 0) + 1
                    if handle.down:
                        raise ConnectionError(f"{name}: the state is down")
                    result = await method(*args, **kwargs)
                    if handle.lose.get(name, 0) > 0:
                        handle.lose[name] -= 1
                        raise ConnectionError(f"{name}: the answer was lost")
                    return result

                return call()

        return Method()


@pytest.fixture
def in_process() -> Any:
    """``state_args``, ``start_state`` and ``LocalHandle`` (test modules cannot import conftest)."""
    from types import SimpleNamespace

    return SimpleNamespace(state_args=state_args, start_state=start_state, LocalHandle=LocalHandle)
