from __future__ import annotations

import json
from types import ModuleType

import numpy as np
import pytest

from bandits import PolicyConfigError, make_policy
from bandits.contextual import make_contextual_policy
from bandits.ope import (
    AlwaysArm,
    BanditLog,
    ContextualCandidate,
    FixedWeights,
    RegisteredPolicy,
    candidate_from_dict,
    evaluate,
    fold_ids,
)


@pytest.fixture
def log(synthetic: ModuleType) -> BanditLog:
    log, _ = synthetic.simulate(500, seed=0)
    result: BanditLog = log
    return result


def test_fixed_candidates(log: BanditLog) -> None:
    ids = fold_ids(log.n, 5, seed=0)
    np.testing.assert_array_equal(AlwaysArm("c").probabilities(log, ids, 0), np.eye(3)[[2] * 500])
    np.testing.assert_allclose(FixedWeights().probabilities(log, ids, 0), 1 / 3)
    split = FixedWeights({"a": 0.5, "b": 0.5}).probabilities(log, ids, 0)
    np.testing.assert_allclose(split, np.tile([0.5, 0.5, 0.0], (500, 1)))


def test_registered_policy_is_trained_on_the_other_folds(log: BanditLog) -> None:
    ids = fold_ids(log.n, 4, seed=3)
    candidate = RegisteredPolicy("epsilon_greedy", {"epsilon": 0.2})
    pi = candidate.probabilities(log, ids, seed=1)
    for f in range(4):
        policy = make_policy("epsilon_greedy", log.arms, {"epsilon": 0.2}, seed=1)
        policy.set_stats(log.arm_stats(np.flatnonzero(ids != f)))
        expected = [policy.weights()[a] for a in log.arms]
        np.testing.assert_allclose(pi[ids == f], np.tile(expected, ((ids == f).sum(), 1)))


def test_contextual_candidate_is_trained_on_the_other_folds(log: BanditLog) -> None:
    assert log.contexts is not None
    ids = fold_ids(log.n, 3, seed=2)
    candidate = ContextualCandidate("lin_ucb", {"floor": 0.05})
    pi = candidate.probabilities(log, ids, seed=0)
    for f in range(3):
        policy = make_contextual_policy("lin_ucb", log.arms, 4, {"floor": 0.05}, seed=0)
        policy.set_stats(log.ridge_stats(np.flatnonzero(ids != f)))
        np.testing.assert_allclose(pi[ids == f], policy.probability_matrix(log.contexts[ids == f]))
    np.testing.assert_allclose(pi.sum(axis=1), 1.0)


def test_learned_contextual_policy_beats_uniform_offline(
    log: BanditLog, synthetic: ModuleType
) -> None:
    results = evaluate(
        log, ["uniform", {"type": "contextual", "name": "lin_thompson"}], ["dr"], ridge=1.0
    )
    uniform, learned = results
    assert uniform.covers(synthetic.true_value(np.full((4, 3), 1 / 3)))
    assert learned.value > uniform.value + 0.1
    assert learned.value < synthetic.true_value(synthetic.ORACLE) + 0.1


def test_evaluate_returns_one_labelled_json_result_per_candidate_and_estimator(
    log: BanditLog,
) -> None:
    candidates = [
        "uniform",
        "always:a",
        {"type": "fixed", "weights": {"a": 0.2, "b": 0.3, "c": 0.5}},
        {"type": "policy", "name": "thompson", "params": {"weight_draws": 200}},
        {"type": "contextual", "name": "lin_ucb", "params": {"floor": 0.1}},
    ]
    results = evaluate(log, candidates)
    assert [(r.candidate, r.estimator) for r in results[:4]] == [
        ("uniform", e) for e in ("ips", "snips", "dm", "dr")
    ]
    assert {r.candidate for r in results} == {
        "uniform", "always:a", "fixed:a=0.2,b=0.3,c=0.5", "policy:thompson", "contextual:lin_ucb",
    }  # fmt: skip
    assert len(results) == 20
    payload = json.loads(json.dumps([r.to_dict() for r in results]))
    assert payload[0]["candidate"] == "uniform"


def test_evaluate_is_seeded(log: BanditLog) -> None:
    spec = [{"type": "contextual", "name": "lin_thompson"}]
    assert evaluate(log, spec, seed=4) == evaluate(log, spec, seed=4)


def test_candidate_specs_round_trip() -> None:
    for candidate in (
        AlwaysArm("b"),
        FixedWeights({"a": 1.0}),
        RegisteredPolicy("ucb1", {"exploration": 1.0}),
        ContextualCandidate("lin_thompson", {"noise_scale": 0.5}),
    ):
        assert candidate_from_dict(json.loads(json.dumps(candidate.to_dict()))) == candidate


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("always", "'uniform' or 'always:<arm>'"),
        ({"type": "oracle"}, "type in"),
        ({"type": "always"}, "missing 1 required"),
        ({"type": "fixed", "weights": {"a": 0.4}}, "weights must sum to 1"),
    ],
)
def test_bad_candidate_specs(spec: object, fragment: str) -> None:
    with pytest.raises(PolicyConfigError, match=fragment):
        candidate_from_dict(spec)  # type: ignore[arg-type]


def test_candidate_errors_against_the_log(log: BanditLog) -> None:
    with pytest.raises(PolicyConfigError, match="'z' is not in the log"):
        evaluate(log, ["always:z"], ["ips"])
    with pytest.raises(PolicyConfigError, match="unknown policy 'greedy'"):
        evaluate(log, [{"type": "policy", "name": "greedy"}], ["ips"])
    with pytest.raises(ValueError, match="unknown estimator"):
        evaluate(log, ["uniform"], ["switch"])
    bare = BanditLog.from_records(log.arms, log.actions, log.propensities, log.rewards)
    with pytest.raises(ValueError, match="needs a log with contexts"):
        evaluate(bare, [{"type": "contextual", "name": "lin_ucb"}], ["ips"])
