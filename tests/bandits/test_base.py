"""The policy contract, checked for every registered policy."""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np
import pytest

from bandits import POLICIES, ArmStats, Decision, Policy, PolicyConfigError, make_policy

StatsFactory = Callable[[np.random.Generator, Sequence[str]], dict[str, ArmStats]]
NAMES = sorted(POLICIES)
ARMS = ("a", "b", "c")


@pytest.fixture(params=NAMES)
def name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# ------------------------------------------------------------------ construction


@pytest.mark.parametrize(
    ("arms", "fragment"),
    [
        ([], "at least 1"),
        (["a", "a"], "unique"),
        (["a", ""], "non-empty"),
        (["a", 3], "non-empty"),
        ("ab", "list of arm names"),
    ],
)
def test_bad_arms_are_rejected(name: str, arms: object, fragment: str) -> None:
    with pytest.raises(PolicyConfigError, match=fragment):
        make_policy(name, arms)  # type: ignore[arg-type]


def test_unknown_param_key_is_named(name: str) -> None:
    with pytest.raises(PolicyConfigError, match=r"unknown parameter 'flor'.*allowed: floor"):
        make_policy(name, ARMS, {"flor": 0.1})


@pytest.mark.parametrize("floor", [-0.1, 1.0, 0.34, math.nan, "0.1", True])
def test_bad_floor_is_named_with_its_range(name: str, floor: object) -> None:
    with pytest.raises(PolicyConfigError, match=r"floor must be"):
        make_policy(name, ARMS, {"floor": floor})


def test_floor_of_exactly_one_over_k_is_allowed_and_uniform(name: str) -> None:
    policy = make_policy(name, ARMS, {"floor": 1 / 3}, seed=0)
    assert all(w == pytest.approx(1 / 3, abs=1e-12) for w in policy.weights().values())


def test_params_instance_and_wrong_params_type(name: str) -> None:
    cls = POLICIES[name]
    params = cls.params_type(floor=0.1)
    assert cls(ARMS, params).params is params
    other = next(c for n, c in POLICIES.items() if n != name)
    with pytest.raises(PolicyConfigError, match=cls.params_type.__name__):
        cls(ARMS, other.params_type())
    with pytest.raises(PolicyConfigError, match="mapping"):
        cls(ARMS, 0.1)  # type: ignore[arg-type]


def test_params_are_frozen(name: str) -> None:
    policy = make_policy(name, ARMS)
    with pytest.raises(AttributeError):
        policy.params.floor = 0.5  # type: ignore[misc]


# ------------------------------------------------------------------ weights and floor


@pytest.mark.parametrize("floor", [0.0, 0.05, 0.2])
def test_weights_sum_to_one_and_respect_floor(
    name: str, floor: float, random_stats: StatsFactory
) -> None:
    rng = np.random.default_rng(7)
    for k in (1, 2, 3, 5):
        arms = [f"arm{i}" for i in range(k)]
        f = min(floor, 1 / k)
        policy = make_policy(name, arms, {"floor": f}, seed=1)
        for _ in range(15):
            policy.set_stats(random_stats(rng, arms))
            weights = policy.weights()
            assert list(weights) == arms
            assert math.fsum(weights.values()) == pytest.approx(1.0, abs=1e-12)
            assert all(w >= f - 1e-15 for w in weights.values())


def test_floor_formula_is_exact(name: str, random_stats: StatsFactory) -> None:
    rng = np.random.default_rng(8)
    f = 0.07
    policy = make_policy(name, ARMS, {"floor": f}, seed=2)
    for _ in range(10):
        policy.set_stats(random_stats(rng, ARMS))
        base = policy._base_weights()
        assert policy.weights() == {arm: f + (1 - 3 * f) * base[arm] for arm in ARMS}


def test_propensity_is_the_weight(name: str, random_stats: StatsFactory) -> None:
    policy = make_policy(name, ARMS, {"floor": 0.05}, seed=3)
    policy.set_stats(random_stats(np.random.default_rng(9), ARMS))
    weights = policy.weights()
    for i in range(50):
        decision = policy.select(f"unit-{i}")
        assert isinstance(decision, Decision)
        assert decision.propensity == weights[decision.arm]


def test_weights_are_a_copy_and_track_updates(name: str) -> None:
    policy = make_policy(name, ARMS, seed=0)
    before = policy.weights()
    before["a"] = 99.0
    assert policy.weights()["a"] != 99.0
    zeros = ArmStats.from_rewards([0] * 30)
    policy.update({"a": ArmStats.from_rewards([1] * 30), "b": zeros, "c": zeros})
    after = policy.weights()
    if name == "fixed":
        assert after == policy.weights() == dict.fromkeys(ARMS, 1 / 3)
    else:
        assert after["a"] > after["b"]


@pytest.mark.parametrize("floor", [0.0, 0.1])
def test_empirical_shares_match_weights(name: str, floor: float) -> None:
    """What select() does is what weights() says, within 4 sigma (the floor holds too)."""
    policy = make_policy(name, ARMS, {"floor": floor}, seed=4)
    policy.set_stats(
        {
            "a": ArmStats.from_rewards([1] * 14 + [0] * 6),
            "b": ArmStats.from_rewards([1] * 10 + [0] * 10),
            "c": ArmStats.from_rewards([1] * 8 + [0] * 12),
        }
    )
    n = 20_000
    counts = Counter(policy.select().arm for _ in range(n))
    weights = policy.weights()
    # Thompson weights are themselves Monte Carlo estimates from weight_draws samples.
    mc_draws = getattr(policy.params, "weight_draws", math.inf)
    for arm, w in weights.items():
        sigma = math.sqrt(max(w * (1 - w), 1e-12) * (1 / n + 1 / mc_draws))
        assert abs(counts[arm] / n - w) <= 4 * sigma + 1e-9
        assert counts[arm] / n >= floor - 4 * math.sqrt(floor * (1 - floor) / n)


# ------------------------------------------------------------------ learned state


def test_stats_view_is_read_only_and_complete(name: str) -> None:
    policy = make_policy(name, ARMS)
    assert dict(policy.stats) == {arm: ArmStats() for arm in ARMS}
    with pytest.raises(TypeError):
        policy.stats["a"] = ArmStats()  # type: ignore[index]


def test_batch_update_equals_smaller_updates(name: str, random_stats: StatsFactory) -> None:
    rng = np.random.default_rng(10)
    parts = [random_stats(rng, ARMS) for _ in range(4)]
    one = make_policy(name, ARMS, seed=0)
    many = make_policy(name, ARMS, seed=0)
    merged = {arm: sum((p[arm] for p in parts), ArmStats()) for arm in ARMS}
    one.update(merged)
    for part in parts:
        many.update(part)
    many.update({})
    assert dict(one.stats) == dict(many.stats)
    assert one.weights() == many.weights()
    assert [one.select().arm for _ in range(30)] == [many.select().arm for _ in range(30)]


def test_update_unknown_arm_raises_and_applies_nothing(name: str) -> None:
    policy = make_policy(name, ARMS)
    with pytest.raises(KeyError, match="'z'"):
        policy.update({"a": ArmStats(pulls=1), "z": ArmStats(pulls=1)})
    assert policy.stats["a"] == ArmStats()
    with pytest.raises(TypeError, match="ArmStats"):
        policy.update({"a": {"pulls": 1}})  # type: ignore[dict-item]


def test_set_stats_replaces_and_zero_fills(name: str) -> None:
    policy = make_policy(name, ARMS)
    policy.update({"a": ArmStats(pulls=5), "b": ArmStats(pulls=2)})
    policy.set_stats({"b": ArmStats(pulls=9)})
    assert dict(policy.stats) == {"a": ArmStats(), "b": ArmStats(pulls=9), "c": ArmStats()}
    with pytest.raises(KeyError, match="'z'"):
        policy.set_stats({"z": ArmStats()})


# ------------------------------------------------------------------ randomness and state


def test_same_seed_same_sequence_and_weights_do_not_perturb_it(name: str) -> None:
    stats = {"a": ArmStats.from_rewards([1, 0, 1]), "b": ArmStats.from_rewards([0, 1])}
    p1 = make_policy(name, ARMS, {"floor": 0.1}, seed=123)
    p2 = make_policy(name, ARMS, {"floor": 0.1}, seed=123)
    p1.set_stats(stats)
    p2.set_stats(stats)
    seq1 = [p1.select().arm for _ in range(50)]
    seq2 = []
    for _ in range(50):
        p2.weights()
        p2._base_weights()
        seq2.append(p2.select().arm)
    assert seq1 == seq2


@pytest.mark.parametrize("via", ["policy", "class"])
def test_state_dict_json_round_trip(name: str, via: str, random_stats: StatsFactory) -> None:
    policy = make_policy(name, ARMS, {"floor": 0.05}, seed=99)
    policy.set_stats(random_stats(np.random.default_rng(11), ARMS))
    for _ in range(17):  # advance the generator so its state, not the seed, must travel
        policy.select()
    state = json.loads(json.dumps(policy.state_dict()))
    assert state["policy"] == name
    assert state["arms"] == list(ARMS)
    restored = (Policy if via == "policy" else POLICIES[name]).from_state_dict(state)
    assert type(restored) is type(policy)
    assert restored.params == policy.params
    assert dict(restored.stats) == dict(policy.stats)
    assert restored.weights() == policy.weights()
    units = [None if i % 2 else f"u{i}" for i in range(50)]
    assert [restored.select(u) for u in units] == [policy.select(u) for u in units]


def test_from_state_dict_checks_name_and_keys(name: str) -> None:
    state = make_policy(name, ARMS).state_dict()
    other = next(c for n, c in POLICIES.items() if n != name)
    with pytest.raises(PolicyConfigError, match="state dict is for policy"):
        other.from_state_dict(state)
    del state["rng"]
    with pytest.raises(PolicyConfigError, match="rng"):
        Policy.from_state_dict(state)


def test_repr_names_arms_and_params(name: str) -> None:
    text = repr(make_policy(name, ARMS))
    assert "arms=['a', 'b', 'c']" in text
    assert "floor=0.0" in text
