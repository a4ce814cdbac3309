from __future__ import annotations

import hashlib
import math
from collections import Counter

import numpy as np
import pytest

from bandits import ArmStats, FixedSplit, FixedSplitParams, PolicyConfigError
from bandits.fixed_split import rendezvous_uniform

WEIGHTS = {"a": 0.5, "b": 0.3, "c": 0.2}


def _policy(**params: object) -> FixedSplit:
    return FixedSplit(list(WEIGHTS), {"weights": WEIGHTS, **params}, seed=0)


# ------------------------------------------------------------------ validation


@pytest.mark.parametrize(
    ("weights", "fragment"),
    [
        ({"a": 0.5, "b": 0.4}, r"weights must sum to 1 \(within 1e-09\), got 0.9"),
        ({"a": 1.2, "b": -0.2}, r"weights\['b'\] must be in \[0, inf\)"),
        ({"a": 0.5, "b": math.nan}, r"weights\['b'\] must be finite"),
        ([0.5, 0.5], "weights must be a mapping"),
    ],
)
def test_bad_weights_are_named(weights: object, fragment: str) -> None:
    with pytest.raises(PolicyConfigError, match=fragment):
        FixedSplitParams(weights=weights)  # type: ignore[arg-type]


def test_weights_must_key_exactly_the_arms() -> None:
    with pytest.raises(PolicyConfigError, match="no entry for arm 'c'"):
        FixedSplit(["a", "b", "c"], {"weights": {"a": 0.5, "b": 0.5}})
    with pytest.raises(PolicyConfigError, match="unknown arm 'x'"):
        FixedSplit(["a", "b"], {"weights": {"a": 0.5, "b": 0.25, "x": 0.25}})


def test_sticky_and_salt_types() -> None:
    with pytest.raises(PolicyConfigError, match="sticky"):
        FixedSplitParams(sticky="yes")  # type: ignore[arg-type]
    with pytest.raises(PolicyConfigError, match="salt"):
        FixedSplitParams(salt=3)  # type: ignore[arg-type]


def test_weights_within_tolerance_are_accepted_and_renormalised() -> None:
    policy = FixedSplit(["a", "b"], {"weights": {"a": 0.5 + 4e-10, "b": 0.5}})
    assert sum(policy.weights().values()) == pytest.approx(1.0, abs=1e-15)


def test_default_is_equal_split_and_params_are_read_only() -> None:
    policy = FixedSplit(["a", "b", "c", "d"])
    assert policy.weights() == dict.fromkeys("abcd", 0.25)
    with pytest.raises(TypeError):
        _policy().params.weights["a"] = 1.0  # type: ignore[index]


# ------------------------------------------------------------------ exact values


def _reference_choice(weights: dict[str, float], salt: str, unit: str) -> str:
    """Independent re-implementation of weighted rendezvous hashing."""

    def u(arm: str) -> float:
        parts = [s.encode() for s in (salt, arm, unit)]
        data = b"".join(len(p).to_bytes(4, "big") + p for p in parts)
        h = int.from_bytes(hashlib.blake2b(data, digest_size=8, person=b"bandit-rdv").digest())
        return ((h >> 11) + 0.5) / 2**53

    return max((a for a in weights if weights[a] > 0), key=lambda a: -weights[a] / math.log(u(a)))


def test_sticky_choice_is_weighted_rendezvous() -> None:
    policy = _policy(salt="exp1")
    for i in range(300):
        assert policy.select(f"user-{i}").arm == _reference_choice(WEIGHTS, "exp1", f"user-{i}")


def test_pinned_assignments() -> None:
    policy = _policy(salt="exp1")
    got = {u: policy.select(u).arm for u in ["user-1", "user-2", "user-3", "user-5"]}
    assert got == {"user-1": "a", "user-2": "b", "user-3": "a", "user-5": "c"}
    assert rendezvous_uniform("exp1", "a", "user-1") == rendezvous_uniform("exp1", "a", "user-1")


def test_pinned_unsticky_sequence() -> None:
    policy = FixedSplit(["a", "b", "c"], seed=42)
    assert "".join(policy.select().arm for _ in range(30)) == "cbccacccabbcbcbabacbcbcccabaac"


# ------------------------------------------------------------------ invariants


def test_shares_over_units_are_binomially_exact() -> None:
    policy = _policy(salt="s")
    n = 20_000
    counts = Counter(policy.select(f"unit-{i}").arm for i in range(n))
    for arm, w in WEIGHTS.items():
        assert abs(counts[arm] - n * w) <= 4 * math.sqrt(n * w * (1 - w))


def test_unit_keeps_its_arm_across_calls_updates_and_routers() -> None:
    r1, r2 = _policy(salt="s"), FixedSplit(list(WEIGHTS), {"weights": WEIGHTS, "salt": "s"}, seed=7)
    first = {f"u{i}": r1.select(f"u{i}").arm for i in range(500)}
    r1.update({"a": ArmStats.from_rewards([0] * 100), "c": ArmStats.from_rewards([1] * 100)})
    for _ in range(3):
        assert all(r1.select(u).arm == arm == r2.select(u).arm for u, arm in first.items())
    assert r1.weights() == pytest.approx(WEIGHTS)


def test_salt_reassigns_units() -> None:
    a, b = _policy(salt="exp1"), _policy(salt="exp2")
    moved = sum(a.select(f"u{i}").arm != b.select(f"u{i}").arm for i in range(1000))
    assert 400 < moved < 800  # independent assignments disagree with probability 0.62


def test_weight_change_moves_only_units_of_the_arm_that_shrank() -> None:
    before = _policy(salt="s")
    after = FixedSplit(list(WEIGHTS), {"weights": {"a": 0.6, "b": 0.3, "c": 0.1}, "salt": "s"})
    moved = 0
    for i in range(3000):
        old, new = before.select(f"u{i}").arm, after.select(f"u{i}").arm
        # a gained and c lost: a keeps all its units, c gains none, b only loses to a.
        assert new == old or new == "a" or old == "c"
        assert old != "a" or new == "a"
        assert new != "c" or old == "c"
        moved += new != old
    assert moved / 3000 < 0.2  # a 0.1 shift of share moves few units, not a reshuffle


@pytest.mark.parametrize("sticky", [True, False])
def test_zero_weight_arm_is_never_chosen(sticky: bool) -> None:
    policy = FixedSplit(
        ["a", "b", "c"], {"weights": {"a": 0.0, "b": 0.5, "c": 0.5}, "sticky": sticky}, seed=1
    )
    arms = {policy.select(f"u{i}").arm for i in range(3000)} | {
        policy.select().arm for _ in range(3000)
    }
    assert arms == {"b", "c"}


def test_not_sticky_draws_at_random_even_with_a_unit() -> None:
    policy = _policy(sticky=False)
    assert len({policy.select("same-user").arm for _ in range(100)}) == 3


def test_floor_with_sticky_units_keeps_exact_shares() -> None:
    weights = {"a": 0.9, "b": 0.1, "c": 0.0}
    policy = FixedSplit(list(weights), {"weights": weights, "floor": 0.05})
    expected = {arm: 0.05 + (1 - 0.15) * w for arm, w in weights.items()}
    assert policy.weights() == pytest.approx(expected)
    n = 20_000
    counts = Counter(policy.select(f"unit-{i}").arm for i in range(n))
    for arm, p in expected.items():
        assert abs(counts[arm] - n * p) <= 4 * math.sqrt(n * p * (1 - p))
    assert policy.select("unit-1") == policy.select("unit-1")


def test_rendezvous_uniform_is_uniform() -> None:
    u = np.array([rendezvous_uniform("", "a", str(i)) for i in range(20_000)])
    assert ((u > 0) & (u < 1)).all()
    assert abs(u.mean() - 0.5) < 4 * math.sqrt(1 / 12 / len(u))
