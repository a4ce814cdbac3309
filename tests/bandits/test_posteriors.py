from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import pytest
from scipy import integrate, special, stats

from bandits import ArmStats, BetaPosterior, NormalGammaPosterior, posterior_for, prob_best
from bandits.posteriors import prob_best_of

# ------------------------------------------------------------------ Beta


def test_beta_from_stats_exact() -> None:
    s = ArmStats.from_rewards([1, 0, 1, 1])
    assert BetaPosterior.from_stats(s) == BetaPosterior(4.0, 2.0)
    assert BetaPosterior.from_stats(s, prior_alpha=0.5, prior_beta=2) == BetaPosterior(3.5, 3.0)
    # Fractional rewards are fractional counts.
    assert BetaPosterior.from_stats(ArmStats.from_rewards([0.25, 0.5])) == BetaPosterior(1.75, 2.25)
    assert BetaPosterior(3.0, 1.0).mean == 0.75


@pytest.mark.parametrize(
    ("kwargs", "name"), [({"prior_alpha": 0}, "prior_alpha"), ({"prior_beta": -1}, "prior_beta")]
)
def test_beta_prior_validation(kwargs: dict[str, float], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        BetaPosterior.from_stats(ArmStats(), **kwargs)


def test_beta_rejects_rewards_outside_unit_interval() -> None:
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        BetaPosterior.from_stats(ArmStats.from_rewards([3.0, 2.0]))
    with pytest.raises(ValueError, match="alpha"):
        BetaPosterior(0.0, 1.0)


def test_beta_sampling_is_seeded_and_correct() -> None:
    post = BetaPosterior(3.0, 7.0)
    assert post.sample(np.random.default_rng(5)) == post.sample(np.random.default_rng(5))
    draws = post.sample_many(np.random.default_rng(0), 100_000)
    assert draws.shape == (100_000,)
    assert stats.kstest(draws, stats.beta(3.0, 7.0).cdf).pvalue > 1e-3


# ------------------------------------------------------------------ Normal-Gamma


def test_normal_gamma_closed_form() -> None:
    x = np.array([2.0, 4.0, 9.0])
    mu0, k0, a0, b0 = 1.0, 2.0, 3.0, 4.0
    post = NormalGammaPosterior.from_stats(ArmStats.from_rewards(x), mu0, k0, a0, b0)
    n, xbar = 3, 5.0
    s = float(((x - xbar) ** 2).sum())  # 26
    assert post.kappa == k0 + n
    assert post.mu == pytest.approx((k0 * mu0 + x.sum()) / (k0 + n), rel=1e-15)
    assert post.alpha == a0 + n / 2
    assert post.beta == pytest.approx(b0 + s / 2 + k0 * n * (xbar - mu0) ** 2 / (2 * (k0 + n)))
    assert post.beta == pytest.approx(4 + 13 + 2 * 3 * 16 / 10)
    assert post.mean == post.mu
    assert post.t_scale == pytest.approx(math.sqrt(post.beta / (post.alpha * post.kappa)))


def test_normal_gamma_without_data_is_the_prior() -> None:
    post = NormalGammaPosterior.from_stats(ArmStats(pulls=5), 0.5, 2.0, 3.0, 4.0)
    assert post == NormalGammaPosterior(0.5, 2.0, 3.0, 4.0)


def test_normal_gamma_constant_rewards_clip_sum_of_squares() -> None:
    post = NormalGammaPosterior.from_stats(ArmStats.from_rewards([0.1] * 7), prior_mean=0.1)
    assert post.beta == pytest.approx(1.0, abs=1e-12)
    assert post.beta >= 1.0


@pytest.mark.parametrize("name", ["prior_kappa", "prior_alpha", "prior_beta"])
def test_normal_gamma_prior_validation(name: str) -> None:
    with pytest.raises(ValueError, match=name):
        NormalGammaPosterior.from_stats(ArmStats(), **{name: 0.0})
    with pytest.raises(ValueError, match="prior_mean"):
        NormalGammaPosterior.from_stats(ArmStats(), prior_mean=math.nan)


def _t_marginal(post: NormalGammaPosterior) -> stats.rv_continuous:
    return stats.t(df=2 * post.alpha, loc=post.mu, scale=post.t_scale)


def test_normal_gamma_mean_marginal_is_student_t() -> None:
    post = NormalGammaPosterior.from_stats(ArmStats.from_rewards([1.2, 0.7, 2.9, 1.1, 1.6]))
    marginal = _t_marginal(post)
    many = post.sample_many(np.random.default_rng(11), 200_000)
    assert stats.kstest(many, marginal.cdf).pvalue > 1e-3
    qs = np.array([0.05, 0.25, 0.5, 0.75, 0.95])
    np.testing.assert_allclose(np.quantile(many, qs), marginal.ppf(qs), atol=0.02)
    rng = np.random.default_rng(12)
    scalar = np.array([post.sample(rng) for _ in range(20_000)])
    assert stats.kstest(scalar, marginal.cdf).pvalue > 1e-3


# ------------------------------------------------------------------ posterior_for


def test_posterior_for_dispatches() -> None:
    s = ArmStats.from_rewards([1, 0, 1])
    assert posterior_for(s, "binary") == BetaPosterior.from_stats(s)
    assert posterior_for(s, "continuous", prior_mean=1.0) == NormalGammaPosterior.from_stats(
        s, prior_mean=1.0
    )
    with pytest.raises(ValueError, match="reward"):
        posterior_for(s, "poisson")  # type: ignore[arg-type]


# ------------------------------------------------------------------ prob_best


def _evan_miller_b_beats_a(a_a: int, b_a: int, a_b: int, b_b: int) -> float:
    """Exact P(p_B > p_A) for integer Beta parameters (Evan Miller's closed form)."""
    i = np.arange(a_b)
    log_terms = (
        special.betaln(a_a + i, b_a + b_b)
        - np.log(b_b + i)
        - special.betaln(1 + i, b_b)
        - special.betaln(a_a, b_a)
    )
    return float(np.exp(log_terms).sum())


@pytest.mark.parametrize(
    ("succ_a", "fail_a", "succ_b", "fail_b"),
    [(10, 90, 20, 80), (30, 70, 35, 65), (3, 4, 2, 5), (0, 0, 0, 0)],
)
def test_prob_best_two_betas_matches_closed_form(
    succ_a: int, fail_a: int, succ_b: int, fail_b: int
) -> None:
    a = ArmStats.from_rewards([1] * succ_a + [0] * fail_a)
    b = ArmStats.from_rewards([1] * succ_b + [0] * fail_b)
    exact = _evan_miller_b_beats_a(1 + succ_a, 1 + fail_a, 1 + succ_b, 1 + fail_b)
    draws = 100_000
    p = prob_best({"a": a, "b": b}, draws=draws, seed=1)
    sigma = math.sqrt(exact * (1 - exact) / draws)
    assert abs(p["b"] - exact) <= 3 * sigma + 1e-12
    assert p["a"] + p["b"] == pytest.approx(1.0, abs=1e-12)


def test_evan_miller_formula_itself_against_quadrature() -> None:
    exact = _evan_miller_b_beats_a(4, 5, 6, 3)
    fa, fb = stats.beta(4, 5), stats.beta(6, 3)
    quad, _ = integrate.quad(lambda x: fa.pdf(x) * fb.sf(x), 0, 1)
    assert exact == pytest.approx(quad, abs=1e-10)


def test_prob_best_two_gaussians_matches_exact_and_normal_cdf() -> None:
    rng = np.random.default_rng(2)
    arms = {
        "a": ArmStats.from_rewards(rng.normal(1.0, 2.0, size=400)),
        "b": ArmStats.from_rewards(rng.normal(1.2, 2.0, size=400)),
    }
    draws = 100_000
    p = prob_best(arms, "continuous", draws=draws, seed=3)
    pa, pb = (NormalGammaPosterior.from_stats(s) for s in arms.values())
    ta, tb = _t_marginal(pa), _t_marginal(pb)
    exact, _ = integrate.quad(lambda x: ta.pdf(x) * tb.sf(x), -np.inf, np.inf)
    # With 2 alpha_n ~ 400 dof the t marginals are nearly normal: the difference is Gaussian.
    normal = stats.norm.cdf((pb.mu - pa.mu) / math.hypot(pa.t_scale, pb.t_scale))
    sigma = math.sqrt(exact * (1 - exact) / draws)
    assert abs(p["b"] - exact) <= 3 * sigma
    assert abs(p["b"] - normal) <= 3 * sigma + 0.003


@pytest.mark.parametrize("reward", ["binary", "continuous"])
def test_prob_best_identical_arms_is_uniform(reward: str) -> None:
    s = ArmStats.from_rewards([1, 0, 0, 1, 1])
    k, draws = 4, 40_000
    p = prob_best({f"arm{i}": s for i in range(k)}, reward, draws=draws, seed=0)  # type: ignore[arg-type]
    sigma = math.sqrt((1 / k) * (1 - 1 / k) / draws)
    assert all(abs(v - 1 / k) <= 4 * sigma for v in p.values())
    assert sum(p.values()) == pytest.approx(1.0, abs=1e-12)


def test_prob_best_is_seeded_and_handles_edge_cases() -> None:
    s = {"a": ArmStats.from_rewards([1, 0]), "b": ArmStats.from_rewards([0, 0])}
    assert prob_best(s, seed=4) == prob_best(s, seed=4)
    assert prob_best({"only": ArmStats()}) == {"only": 1.0}
    with pytest.raises(ValueError, match="at least one arm"):
        prob_best({})
    with pytest.raises(ValueError, match="draws"):
        prob_best(s, draws=0)


class _Constant:
    """A degenerate posterior: every draw is the same number."""

    def __init__(self, value: float) -> None:
        self.value = value

    @property
    def mean(self) -> float:
        return self.value

    def sample(self, rng: np.random.Generator) -> float:
        return self.value

    def sample_many(self, rng: np.random.Generator, size: int) -> npt.NDArray[np.float64]:
        return np.full(size, self.value)


def test_prob_best_splits_exact_ties_equally() -> None:
    p = prob_best_of(
        {"a": _Constant(1.0), "b": _Constant(1.0), "c": _Constant(0.0)},
        draws=10,
        rng=np.random.default_rng(0),
    )
    assert p == {"a": 0.5, "b": 0.5, "c": 0.0}
