"""A real log: the Open Bandit Dataset (Saito et al. 2021) small sample.

The same campaign was served by a uniform random policy and by Bernoulli Thompson sampling
(BTS). The uniform policy's value is measured on-policy from its own log (the mean click
rate, 0.0038 over 10,000 impressions) and estimated off-policy from the BTS log alone.

Positions are handled as obp does: the position is part of the context, and the logged
propensity is the BTS probability of the item *at that position*; the uniform target gives
every item 1/80 at every position, so ``w_i = (1/80) / p_i``. Values are per impression,
pooled over the three positions in both logs.
"""

from __future__ import annotations

import numpy as np
import pytest

from bandits.contextual import CategoricalField, ContextSpec
from bandits.ope import BanditLog, evaluate, importance_weights

N_ITEMS = 80
USER_FEATURES = tuple(f"user_feature_{i}" for i in range(4))


def _log(columns: dict[str, np.ndarray], spec: ContextSpec) -> BanditLog:
    n = len(columns["click"])
    contexts = spec.encode_many(
        [
            {"position": int(columns["position"][i]), **{f: columns[f][i] for f in USER_FEATURES}}
            for i in range(n)
        ]
    )
    return BanditLog.from_records(
        [str(i) for i in range(N_ITEMS)],
        columns["item_id"],
        columns["propensity_score"],
        columns["click"],
        contexts,
    )


@pytest.fixture(scope="module")
def logs(obd: dict[str, dict[str, np.ndarray]]) -> dict[str, BanditLog]:
    fields = [CategoricalField("position", (1, 2, 3))] + [  # type: ignore[arg-type]
        CategoricalField(f, tuple(sorted(set(obd["bts"][f]) | set(obd["random"][f]))))
        for f in USER_FEATURES
    ]
    spec = ContextSpec(tuple(fields))
    return {policy: _log(columns, spec) for policy, columns in obd.items()}


def test_the_dataset_is_what_we_expect(logs: dict[str, BanditLog]) -> None:
    random, bts = logs["random"], logs["bts"]
    assert random.n == bts.n == 10_000
    np.testing.assert_allclose(random.propensities, 1 / N_ITEMS)
    assert bts.propensities.min() < 1e-3 < 0.5 < bts.propensities.max()
    assert random.rewards.mean() == pytest.approx(0.0038)


def test_uniform_policy_value_from_the_bts_log(logs: dict[str, BanditLog]) -> None:
    on_policy = float(logs["random"].rewards.mean())
    bts = logs["bts"]
    results = {r.estimator: r for r in evaluate(bts, ["uniform"], ["ips", "snips", "dm", "dr"])}
    # Independent reference: IPS and SNIPS written out.
    w = (1 / N_ITEMS) / bts.propensities
    np.testing.assert_allclose(importance_weights(bts, np.full((bts.n, N_ITEMS), 1 / 80)), w)
    assert results["ips"].value == pytest.approx(float(np.mean(w * bts.rewards)), rel=1e-12)
    assert results["snips"].value == pytest.approx(
        float(np.sum(w * bts.rewards) / np.sum(w)), rel=1e-12
    )
    assert results["ips"].ess == pytest.approx(float(w.sum() ** 2 / (w**2).sum()), rel=1e-12)
    for name in ("ips", "snips", "dr"):
        estimate = results[name]
        assert estimate.covers(on_policy), (name, estimate, on_policy)
        assert estimate.ess > 300
        assert not estimate.warning
    # Off-policy minus on-policy, with both standard errors: well within 2 combined se.
    on_se = float(logs["random"].rewards.std(ddof=1)) / np.sqrt(logs["random"].n)
    for name in ("ips", "dr"):
        gap = abs(results[name].value - on_policy)
        assert gap < 2 * np.hypot(results[name].se, on_se)
