"""``python -m bench.contextual [--quick] [--out DIR]``: contextual bandits, off-policy evaluation.

Three parts, printed and written to ``DIR/contextual.json`` and ``DIR/contextual.png``
(``DIR`` defaults to ``bench/results``):

1. **Cost and accuracy.** Median ``select()`` time for ``K = 3`` arms and ``d = 64`` context
   dimensions, both policies (budget: 50 us), with a traffic floor so the floor's draw is
   included, best of three rounds; and the error of linear Thompson sampling's quadrature
   propensities against the closed forms (``K = 2``: ``Phi``; ``K = 3``: a bivariate normal
   orthant), next to a seeded Monte Carlo estimate with 1,000 draws.
2. **Reward.** Average expected reward per decision over time (min / median / max over seeds)
   of ``lin_thompson``, ``lin_ucb``, context-free Beta Thompson sampling and the uniform split,
   against the best single arm and the per-context oracle, on

   * ``synthetic``: three arms, each best in its own third of a 2-D context plane and all
     earning 0.5 on average, Bernoulli rewards;
   * ``digits_same_data``: sklearn's digits, three classifiers of different kinds (logistic
     regression, random forest, MLP) trained on the same half of the data; reward = the routed
     model's prediction is correct; context = intercept + PCA(12) of the image (fitted on the
     training half). The models make nearly the same mistakes, so there is little to route on:
     this variant shows what a contextual router does when context does not help;
   * ``digits_skewed_data``: the same, but each model is trained on all training images of its
     "home" digits (0-2, 3-6, 7-9) and 5 % of the others, as models from different teams or
     data sources would be; now the image says which model to trust.

3. **Off-policy evaluation.** ``lin_thompson`` (floor 0.05) routes the synthetic problem and
   logs its propensities; IPS, SNIPS and DR then estimate the uniform split's value from that
   log alone (several seeds), and the uniform split is run too, on fresh traffic, to measure
   it.

A full run takes about a minute on 2 cores; ``--quick`` about 20 s.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats
from scipy.special import ndtr

from bandits import ArmStats, make_policy
from bandits.contextual import RidgeStats, make_contextual_policy, prob_max_normal
from bandits.ope import BanditLog, evaluate

ARMS = ("a", "b", "c")
POLICIES = ("lin_thompson", "lin_ucb", "thompson", "uniform")


# ----------------------------------------------------------------------------- part 1


def time_select(
    name: str, calls: int, dim: int = 64, rounds: int = 3, seed: int = 0
) -> dict[str, Any]:
    """Per-call ``select()`` time in microseconds over fresh contexts.

    ``rounds`` rounds of ``calls`` calls; ``median_us`` is the smallest of the rounds' medians
    (as ``timeit`` takes the best repeat: the other jobs on a shared machine only add time),
    and every round's median is kept too.
    """
    rng = np.random.default_rng(seed)
    policy = make_contextual_policy(name, ARMS, dim, {"floor": 0.01}, seed=seed)
    x = rng.normal(size=(3000, dim))
    policy.update(
        {arm: RidgeStats.from_observations(x[i::3], rng.random(1000)) for i, arm in enumerate(ARMS)}
    )
    contexts = rng.normal(size=(calls, dim))
    for c in contexts[:200]:  # warm-up: fits, caches
        policy.select(c)
    clock = time.perf_counter_ns
    summaries = []
    for _ in range(rounds):
        timings = np.empty(calls)
        for i, c in enumerate(contexts):
            start = clock()
            policy.select(c)
            timings[i] = clock() - start
        summaries.append(np.percentile(timings, [10, 50, 90]) / 1e3)
    p10, median, p90 = min(summaries, key=lambda s: s[1])
    return {
        "median_us": round(float(median), 1),
        "p10_us": round(float(p10), 1),
        "p90_us": round(float(p90), 1),
        "round_medians_us": [round(float(s[1]), 1) for s in summaries],
        "calls_per_round": calls,
    }


def propensity_accuracy(cases: int, seed: int = 0) -> dict[str, float]:
    """Largest absolute error of the quadrature and of 1,000-draw Monte Carlo."""
    rng = np.random.default_rng(seed)
    mean = rng.normal(size=(cases, 2))
    sd = np.exp(rng.uniform(-6.0, 3.0, size=(cases, 2)))
    exact = ndtr((mean[:, 0] - mean[:, 1]) / np.hypot(sd[:, 0], sd[:, 1]))
    quad2 = float(np.abs(prob_max_normal(mean, sd)[:, 0] - exact).max())
    draws = mean[:, None, :] + sd[:, None, :] * rng.standard_normal((cases, 1000, 2))
    mc2 = float(np.abs((draws[:, :, 0] > draws[:, :, 1]).mean(axis=1) - exact).max())
    errors3 = []
    for _ in range(max(cases // 20, 20)):
        m, s = rng.normal(size=3), np.exp(rng.uniform(-4.0, 2.0, size=3))
        v = s**2
        mvn = stats.multivariate_normal(
            mean=[m[1] - m[0], m[2] - m[0]],
            cov=[[v[0] + v[1], v[0]], [v[0], v[0] + v[2]]],
            abseps=1e-13,
            releps=1e-13,
        )
        errors3.append(abs(float(prob_max_normal(m, s)[0]) - float(mvn.cdf([0.0, 0.0]))))
    return {
        "quadrature_max_abs_error_k2": quad2,
        "quadrature_max_abs_error_k3": max(errors3),
        "monte_carlo_1000_draws_max_abs_error_k2": mc2,
        "cases_k2": cases,
        "cases_k3": len(errors3),
    }


# ----------------------------------------------------------------------------- problems


@dataclass(frozen=True)
class Problem:
    """A pool of contexts with the expected reward of every arm; requests sample the pool."""

    name: str
    contexts: np.ndarray  # (n, d), intercept first
    means: np.ndarray  # (n, K), expected reward of each arm for each context
    arm_names: tuple[str, ...]

    @property
    def best_single(self) -> float:
        return float(self.means.mean(axis=0).max())

    @property
    def oracle(self) -> float:
        return float(self.means.max(axis=1).mean())


DIRECTIONS = np.array([[1.0, 0.0], [-0.5, math.sqrt(0.75)], [-0.5, -math.sqrt(0.75)]])


def synthetic_problem(n: int = 20_000, seed: int = 12345) -> Problem:
    """Arm ``k`` has mean ``clip(0.5 + 0.25 z'u_k, 0, 1)``, ``u_k`` 120 degrees apart."""
    z = np.random.default_rng(seed).standard_normal((n, 2))
    means = np.clip(0.5 + 0.25 * z @ DIRECTIONS.T, 0.0, 1.0)
    return Problem("synthetic", np.column_stack([np.ones(n), z]), means, ARMS)


def digits_problems(seed: int = 0) -> list[Problem]:
    """The two digits variants (see the module docstring)."""
    from sklearn.datasets import load_digits
    from sklearn.decomposition import PCA
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPClassifier
    from sklearn.preprocessing import StandardScaler

    images, labels = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(
        images, labels, train_size=0.5, random_state=seed, stratify=labels
    )
    pca = PCA(12, random_state=seed).fit(x_train)
    scaler = StandardScaler().fit(pca.transform(x_train))
    contexts = np.column_stack([np.ones(len(x_test)), scaler.transform(pca.transform(x_test))])
    names = ("logreg", "forest", "mlp")

    def models() -> list[Any]:
        return [
            LogisticRegression(max_iter=2000),
            RandomForestClassifier(n_estimators=50, random_state=seed),
            MLPClassifier(hidden_layer_sizes=(32,), max_iter=500, random_state=seed),
        ]

    homes = [(0, 1, 2), (3, 4, 5, 6), (7, 8, 9)]
    rng = np.random.default_rng(seed)
    problems = []
    for variant in ("same_data", "skewed_data"):
        correct = []
        for model, home in zip(models(), homes, strict=True):
            keep = np.ones(len(y_train), dtype=bool)
            if variant == "skewed_data":
                keep = np.isin(y_train, home) | (rng.random(len(y_train)) < 0.05)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # MLP convergence notices
                model.fit(x_train[keep], y_train[keep])
            correct.append(model.predict(x_test) == y_test)
        means = np.column_stack(correct).astype(np.float64)
        problems.append(Problem(f"digits_{variant}", contexts, means, names))
    return problems


# ----------------------------------------------------------------------------- part 2


def simulate(
    problem: Problem,
    kind: str,
    horizon: int,
    seed: int,
    floor: float = 0.01,
    record: bool = False,
) -> dict[str, Any]:
    """One seeded run: expected reward per step (and, if ``record``, the decision log)."""
    env = np.random.default_rng(seed)
    rows = env.integers(0, len(problem.contexts), horizon)
    noise = env.random(horizon)
    arms = list(problem.arm_names)
    dim = problem.contexts.shape[1]
    choose: Callable[[np.ndarray], tuple[str, float]]
    learn: Callable[[str, np.ndarray, float], None]
    if kind in ("lin_thompson", "lin_ucb"):
        contextual = make_contextual_policy(kind, arms, dim, {"floor": floor}, seed=seed + 7)

        def choose(x: np.ndarray) -> tuple[str, float]:
            d = contextual.select(x)
            return d.arm, d.propensity

        def learn(arm: str, x: np.ndarray, reward: float) -> None:
            contextual.observe(arm, x, reward)
    else:
        params: dict[str, Any] = {"weight_draws": 100} if kind == "thompson" else {}
        policy = make_policy("thompson" if kind == "thompson" else "fixed", arms, params, seed=seed)

        def choose(x: np.ndarray) -> tuple[str, float]:
            d = policy.select()
            return d.arm, d.propensity

        def learn(arm: str, x: np.ndarray, reward: float) -> None:
            policy.update({arm: ArmStats.from_rewards([reward])})

    expected = np.empty(horizon)
    log: dict[str, list[Any]] = {"arm": [], "propensity": [], "reward": [], "row": []}
    for t in range(horizon):
        x = problem.contexts[rows[t]]
        arm, propensity = choose(x)
        k = arms.index(arm)
        mean = problem.means[rows[t], k]
        reward = float(noise[t] < mean)
        expected[t] = mean
        learn(arm, x, reward)
        if record:
            for key, value in (("arm", arm), ("propensity", propensity), ("reward", reward)):
                log[key].append(value)
            log["row"].append(int(rows[t]))
    return {"expected": expected, "log": log if record else None}


def checkpoints(horizon: int, n: int = 30) -> list[int]:
    points = np.unique(np.round(np.geomspace(10, horizon, n)).astype(int))
    return sorted({int(p) for p in points} | {horizon})


def reward_curves(problem: Problem, horizon: int, seeds: int) -> dict[str, Any]:
    """Running average expected reward at checkpoints, min/median/max over seeds."""
    at = checkpoints(horizon)
    out: dict[str, Any] = {
        "horizon": horizon,
        "seeds": seeds,
        "checkpoints": at,
        "best_single_arm": round(problem.best_single, 4),
        "oracle": round(problem.oracle, 4),
        "arm_means": dict(
            zip(problem.arm_names, problem.means.mean(axis=0).round(4).tolist(), strict=True)
        ),
        "policies": {},
    }
    for kind in POLICIES:
        curves = []
        for s in range(seeds):
            expected = simulate(problem, kind, horizon, seed=1000 * s + 17)["expected"]
            running = np.cumsum(expected) / np.arange(1, horizon + 1)
            curves.append(running[np.array(at) - 1])
        c = np.array(curves)
        out["policies"][kind] = {
            "min": c.min(axis=0).round(4).tolist(),
            "median": np.median(c, axis=0).round(4).tolist(),
            "max": c.max(axis=0).round(4).tolist(),
            "final": {
                "min": round(float(c[:, -1].min()), 4),
                "median": round(float(np.median(c[:, -1])), 4),
                "max": round(float(c[:, -1].max()), 4),
            },
        }
    return out


# ----------------------------------------------------------------------------- part 3


def ope_check(problem: Problem, horizon: int, reps: int) -> dict[str, Any]:
    """Estimate the uniform split's value from lin_thompson logs; run the split to measure it.

    Each repetition logs ``horizon`` decisions of ``lin_thompson`` (floor 0.05: every arm keeps
    a propensity of at least 0.05, which the estimators need) and estimates the uniform split
    from that log alone. The uniform split is then run for ``5 horizon`` decisions on fresh
    traffic; its measured mean reward (and the exact value from the problem's means) is what
    the intervals should contain.
    """
    uniform = simulate(problem, "uniform", 5 * horizon, seed=424242, record=True)["log"]
    realised = np.array(uniform["reward"])
    measured = float(realised.mean())
    measured_se = float(realised.std(ddof=1)) / math.sqrt(len(realised))
    exact = float(problem.means.mean())
    per_rep: dict[str, list[dict[str, Any]]] = {"ips": [], "snips": [], "dr": []}
    logging_reward = []
    for rep in range(reps):
        run = simulate(problem, "lin_thompson", horizon, 5 + 31 * rep, floor=0.05, record=True)
        data = run["log"]
        logging_reward.append(float(np.mean(data["reward"])))
        log = BanditLog.from_records(
            problem.arm_names,
            data["arm"],
            data["propensity"],
            data["reward"],
            problem.contexts[np.array(data["row"])],
        )
        for e in evaluate(log, ["uniform"], list(per_rep), seed=rep):
            per_rep[e.estimator].append(
                {
                    "value": round(e.value, 4),
                    "ci": [round(e.ci_low, 4), round(e.ci_high, 4)],
                    "ess": round(e.ess, 1),
                    "warning": e.reason,
                    "covers_measured": e.covers(measured),
                    "covers_exact": e.covers(exact),
                }
            )
    return {
        "horizon": horizon,
        "reps": reps,
        "logging_policy": "lin_thompson, floor 0.05",
        "logging_policy_reward": round(float(np.mean(logging_reward)), 4),
        "uniform_measured": round(measured, 4),
        "uniform_measured_se": round(measured_se, 4),
        "uniform_measured_decisions": len(realised),
        "uniform_exact": round(exact, 4),
        "estimates": per_rep,
        "covered_measured": {k: sum(e["covers_measured"] for e in v) for k, v in per_rep.items()},
        "covered_exact": {k: sum(e["covers_exact"] for e in v) for k, v in per_rep.items()},
    }


# ----------------------------------------------------------------------------- report


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    problems = results["reward"]
    fig, axes = plt.subplots(1, len(problems) + 1, figsize=(5 * (len(problems) + 1), 4.2))
    colours = {"lin_thompson": "C0", "lin_ucb": "C1", "thompson": "C2", "uniform": "C7"}
    for ax, (name, res) in zip(axes, problems.items(), strict=False):
        at = res["checkpoints"]
        for kind, curve in res["policies"].items():
            ax.plot(at, curve["median"], color=colours[kind], label=kind)
            ax.fill_between(at, curve["min"], curve["max"], color=colours[kind], alpha=0.2)
        ax.axhline(res["best_single_arm"], color="k", ls="--", lw=1, label="best single arm")
        ax.axhline(res["oracle"], color="k", ls=":", lw=1, label="per-context oracle")
        ax.set_xscale("log")
        ax.set_title(name)
        ax.set_xlabel("decisions")
        ax.set_ylabel("average expected reward")
    axes[0].legend(fontsize=8, loc="lower right")
    ope = results["ope"]
    ax = axes[-1]
    for i, reps in enumerate(ope["estimates"].values()):
        for j, e in enumerate(reps):
            x = i + (j - (len(reps) - 1) / 2) * 0.12
            err = [[e["value"] - e["ci"][0]], [e["ci"][1] - e["value"]]]
            ax.errorbar([x], [e["value"]], yerr=err, fmt="o", color=f"C{i}", capsize=3, ms=4)
    ax.set_xticks(range(len(ope["estimates"])), list(ope["estimates"]))
    ax.axhline(ope["uniform_measured"], color="k", ls="--", lw=1, label="uniform, measured")
    ax.axhline(ope["uniform_exact"], color="k", ls=":", lw=1, label="uniform, exact")
    ax.set_title(f"uniform split from lin_thompson logs ({ope['reps']} seeds)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.contextual", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small horizons, few seeds")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args(argv)
    run(quick=args.quick, out=args.out)
    return 0


def run(quick: bool = False, out: Path | None = None) -> dict[str, Any]:
    """Run every part; print the figures; write ``contextual.json`` and ``.png`` into ``out``.

    Runs with one BLAS thread, as in a Ray Serve replica (Ray sets ``OMP_NUM_THREADS=1`` per
    worker): on a 2-core machine, OpenBLAS threads spinning after a large matrix product slow
    every later small matrix operation of the policies by 10x or more.

    Returns:
        The results written to ``contextual.json``.
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        return _run(quick, Path(__file__).parent / "results" if out is None else out)


def _run(quick: bool, out: Path) -> dict[str, Any]:
    started = time.monotonic()

    def log(message: str) -> None:
        print(f"[{time.monotonic() - started:5.0f}s] {message}", flush=True)

    calls, cases, horizon, seeds, ope_horizon, ope_reps = (
        (5_000, 500, 2_000, 3, 4_000, 3) if quick else (20_000, 4_000, 6_000, 5, 10_000, 5)
    )
    results: dict[str, Any] = {
        "meta": {
            "mode": "quick" if quick else "full",
            "command": "python -m bench.contextual" + (" --quick" if quick else ""),
            "machine": f"{os.cpu_count()} cores, {platform.machine()}, "
            f"Python {platform.python_version()}",
        }
    }
    log("select() cost, K=3, d=64")
    results["select_us"] = {name: time_select(name, calls) for name in ("lin_thompson", "lin_ucb")}
    for name, t in results["select_us"].items():
        print(
            f"    {name:13s} median {t['median_us']:6.1f} us (p10 {t['p10_us']}, p90 {t['p90_us']})"
        )
    log("propensity accuracy")
    acc = propensity_accuracy(cases)
    results["propensity_accuracy"] = acc
    print(
        f"    quadrature max |error|: K=2 {acc['quadrature_max_abs_error_k2']:.1e}, "
        f"K=3 {acc['quadrature_max_abs_error_k3']:.1e}; Monte Carlo (1000 draws) K=2 "
        f"{acc['monte_carlo_1000_draws_max_abs_error_k2']:.1e}"
    )
    log("building problems (digits: training 3 classifiers x 2 variants)")
    problems = [synthetic_problem(), *digits_problems()]
    results["reward"] = {}
    for problem in problems:
        log(f"reward curves: {problem.name}, T={horizon}, {seeds} seeds")
        res = reward_curves(problem, horizon, seeds)
        results["reward"][problem.name] = res
        finals = ", ".join(
            f"{k} {v['final']['median']:.3f} [{v['final']['min']:.3f}..{v['final']['max']:.3f}]"
            for k, v in res["policies"].items()
        )
        print(
            f"    best single arm {res['best_single_arm']:.3f}, oracle {res['oracle']:.3f}; "
            f"{finals}"
        )
    log(f"off-policy evaluation, T={ope_horizon}, {ope_reps} seeds")
    results["ope"] = ope_check(problems[0], ope_horizon, ope_reps)
    ope = results["ope"]
    print(
        f"    uniform measured {ope['uniform_measured']:.4f} (se {ope['uniform_measured_se']:.4f}"
        f" over {ope['uniform_measured_decisions']} decisions), exact {ope['uniform_exact']:.4f}"
    )
    for name, reps in ope["estimates"].items():
        shown = "; ".join(f"{e['value']:.4f} [{e['ci'][0]:.4f}, {e['ci'][1]:.4f}]" for e in reps)
        print(
            f"    {name:5s} covers measured {ope['covered_measured'][name]}/{len(reps)}, "
            f"exact {ope['covered_exact'][name]}/{len(reps)}: {shown}"
        )
    results["meta"]["wall_s"] = round(time.monotonic() - started, 1)
    out.mkdir(parents=True, exist_ok=True)
    json_path, png_path = out / "contextual.json", out / "contextual.png"
    json_path.write_text(json.dumps(results, indent=1) + "\n")
    plot(results, png_path)
    log(f"wrote {json_path} and {png_path}")
    return results


if __name__ == "__main__":
    sys.exit(main())
