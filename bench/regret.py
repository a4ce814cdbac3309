"""Cumulative regret through the real policy objects of :mod:`bandits`.

Each run builds a policy with :func:`bandits.make_policy`, calls :meth:`Policy.select` once per
step and feeds rewards back with :meth:`Policy.update` in batches of ``batch`` steps, exactly
as a router sees them (it learns only at a sync). The regret is the pseudo-regret::

    R(t) = sum_{s <= t} (mu* - mu_{a_s})

(the expected loss of the arms chosen; lower variance than realised rewards). Thompson
policies run with ``weight_draws=100``: the weights only give the logged propensity, never
the choice, and recomputing them after every update is the dominant cost of batch size 1.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from typing import Any

import numpy as np

from bandits import ArmStats, make_policy
from bench.bounds import lai_robbins

__all__ = [
    "PolicySpec",
    "Scenario",
    "checkpoints",
    "default_policies",
    "default_scenarios",
    "run_regret_suite",
    "simulate",
]


@dataclass(frozen=True)
class Scenario:
    """A stationary bandit: arm means and the reward distribution.

    Attributes:
        name: Short label used in tables and file names.
        means: Mean reward of every arm.
        reward: ``"bernoulli"`` (0/1 rewards) or ``"gaussian"`` (``N(mu_i, sigma^2)``).
        sigma: Standard deviation of Gaussian rewards.
    """

    name: str
    means: tuple[float, ...]
    reward: str = "bernoulli"
    sigma: float = 1.0

    @property
    def k(self) -> int:
        return len(self.means)


@dataclass(frozen=True)
class PolicySpec:
    """A policy as the config names it, plus the update batch size of the simulation."""

    label: str
    name: str
    params: Mapping[str, Any] = field(default_factory=dict)
    batch: int = 1


def default_scenarios() -> list[Scenario]:
    """Bernoulli K = 2 and 10 with large and small gaps, and Gaussian K = 2."""
    return [
        Scenario("bernoulli_k2_large_gap", (0.5, 0.3)),
        Scenario("bernoulli_k2_small_gap", (0.5, 0.45)),
        Scenario("bernoulli_k10_large_gap", (0.5,) + (0.3,) * 9),
        Scenario("bernoulli_k10_small_gap", (0.5,) + (0.45,) * 9),
        Scenario("gaussian_k2", (1.0, 0.75), reward="gaussian", sigma=1.0),
    ]


def default_policies(reward: str) -> list[PolicySpec]:
    """Thompson with update batches 1, 10, 100, 1000; uniform split; epsilon-greedy; UCB1."""
    thompson = "thompson" if reward == "bernoulli" else "gaussian_thompson"
    specs = [
        PolicySpec(f"thompson_b{b}", thompson, {"weight_draws": 100}, batch=b)
        for b in (1, 10, 100, 1000)
    ]
    specs += [
        PolicySpec("uniform", "fixed"),
        PolicySpec("epsilon_greedy", "epsilon_greedy", {"epsilon": 0.1}),
        PolicySpec("ucb1", "ucb1"),
    ]
    return specs


def checkpoints(horizon: int, n: int = 40) -> list[int]:
    """About ``n`` log-spaced steps in ``[1, horizon]``, always ending at ``horizon``.

    Example:
        >>> checkpoints(1000, 4)
        [1, 10, 100, 1000]
    """
    points = np.unique(np.round(np.logspace(0, math.log10(horizon), n)).astype(int))
    return sorted({int(p) for p in points if 1 <= p <= horizon} | {horizon})


def simulate(
    scenario: Scenario,
    spec: PolicySpec,
    horizon: int,
    seed: int,
    at: Sequence[int] | None = None,
) -> list[float]:
    """One seeded run; the cumulative pseudo-regret at each step in ``at`` (default: end).

    The environment and the policy have separate generators, both derived from ``seed``.
    """
    at = sorted(at or [horizon])
    arms = [f"arm{i}" for i in range(scenario.k)]
    params = dict(spec.params)
    if spec.name == "fixed":
        params["weights"] = dict.fromkeys(arms, 1.0 / scenario.k)
    policy = make_policy(spec.name, arms, params, seed=seed + 1_000_003)
    env = np.random.default_rng(seed)
    means = np.asarray(scenario.means, dtype=np.float64)
    gaps = means.max() - means
    index = {arm: i for i, arm in enumerate(arms)}
    # Pre-drawn noise: a Bernoulli reward is u < mu, a Gaussian one mu + sigma z.
    noise = env.random(horizon) if scenario.reward == "bernoulli" else env.standard_normal(horizon)
    bernoulli = scenario.reward == "bernoulli"
    pending: dict[str, list[float]] = {}
    regret, out, next_at = 0.0, [], 0
    for t in range(horizon):
        arm = policy.select().arm
        i = index[arm]
        regret += gaps[i]
        reward = float(noise[t] < means[i]) if bernoulli else means[i] + scenario.sigma * noise[t]
        acc = pending.setdefault(arm, [0, 0.0, 0.0])
        acc[0] += 1
        acc[1] += reward
        acc[2] += reward * reward
        if (t + 1) % spec.batch == 0:
            policy.update({a: _stats(*v) for a, v in pending.items()})
            pending.clear()
        while next_at < len(at) and at[next_at] == t + 1:
            out.append(regret)
            next_at += 1
    return out


def _stats(n: float, total: float, squares: float) -> ArmStats:
    return ArmStats(pulls=int(n), feedback=int(n), reward_sum=total, reward_sum_squares=squares)


def _run_one(job: tuple[Scenario, PolicySpec, int, int, list[int]]) -> list[float]:
    scenario, spec, horizon, seed, at = job
    return simulate(scenario, spec, horizon, seed, at)


def run_jobs(
    jobs: Iterable[tuple[Scenario, PolicySpec, int, int, list[int]]], workers: int
) -> list[list[float]]:
    """Run simulations in ``workers`` processes (spawned: safe next to a Ray driver)."""
    jobs = list(jobs)
    if workers <= 1:
        return [_run_one(job) for job in jobs]
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        return list(pool.map(_run_one, jobs, chunksize=1))


def summarise(curves: np.ndarray) -> dict[str, list[float]]:
    """Mean, min, median, max and standard error over repetitions (axis 0)."""
    n = curves.shape[0]
    return {
        "mean": curves.mean(axis=0).round(3).tolist(),
        "min": curves.min(axis=0).round(3).tolist(),
        "median": np.median(curves, axis=0).round(3).tolist(),
        "max": curves.max(axis=0).round(3).tolist(),
        "stderr": (curves.std(axis=0, ddof=1) / math.sqrt(n)).round(3).tolist()
        if n > 1
        else [0.0] * curves.shape[1],
    }


def run_regret_suite(horizon: int, reps: int, workers: int = 2, seed: int = 0) -> dict[str, Any]:
    """Every default scenario x policy, ``reps`` seeded repetitions, curves at log steps.

    Returns:
        ``{"horizon", "reps", "checkpoints", "scenarios": {name: {"means", "reward",
        "lai_robbins": [...], "policies": {label: summary}}}}``.
    """
    at = checkpoints(horizon)
    scenarios = default_scenarios()
    jobs, keys = [], []
    for s_index, scenario in enumerate(scenarios):
        for spec in default_policies(scenario.reward):
            for rep in range(reps):
                jobs.append((scenario, spec, horizon, seed + 7919 * rep + 104729 * s_index, at))
                keys.append((scenario.name, spec.label))
    curves = run_jobs(jobs, workers)
    out: dict[str, Any] = {"horizon": horizon, "reps": reps, "checkpoints": at, "scenarios": {}}
    for scenario in scenarios:
        entry: dict[str, Any] = {
            "means": list(scenario.means),
            "reward": scenario.reward,
            "lai_robbins": lai_robbins(scenario.means, at, scenario.reward, scenario.sigma)
            .round(3)
            .tolist(),
            "policies": {},
        }
        for spec in default_policies(scenario.reward):
            rows = [
                c for c, key in zip(curves, keys, strict=True) if key == (scenario.name, spec.label)
            ]
            entry["policies"][spec.label] = summarise(np.asarray(rows))
        out["scenarios"][scenario.name] = entry
    return out


def run_arm_scaling(
    horizon: int,
    reps: int,
    arm_counts: Sequence[int] = (2, 10, 50),
    workers: int = 2,
    seed: int = 0,
) -> dict[str, Any]:
    """Regret as K grows: best arm 0.5, the others 0.4 (Bernoulli); Thompson batched 100 as a
    router syncs, UCB1 and the uniform split."""
    specs = [
        PolicySpec("thompson_b100", "thompson", {"weight_draws": 100}, batch=100),
        PolicySpec("ucb1", "ucb1"),
        PolicySpec("uniform", "fixed"),
    ]
    jobs, keys = [], []
    for k in arm_counts:
        scenario = Scenario(f"bernoulli_k{k}", (0.5,) + (0.4,) * (k - 1))
        for spec in specs:
            for rep in range(reps):
                jobs.append((scenario, spec, horizon, seed + 7919 * rep + 31 * k, [horizon]))
                keys.append((k, spec.label))
    finals = run_jobs(jobs, workers)
    table: dict[str, Any] = {}
    for k in arm_counts:
        row: dict[str, Any] = {
            "lai_robbins": round(float(lai_robbins((0.5,) + (0.4,) * (k - 1), horizon)), 3)
        }
        for spec in specs:
            values = [f[0] for f, key in zip(finals, keys, strict=True) if key == (k, spec.label)]
            row[spec.label] = {
                "mean": round(float(np.mean(values)), 2),
                "min": round(float(np.min(values)), 2),
                "max": round(float(np.max(values)), 2),
            }
        table[str(k)] = row
    return {"horizon": horizon, "reps": reps, "arms": table}
