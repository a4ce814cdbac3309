from __future__ import annotations

import json
import math

import numpy as np
import pytest

from bandits import ArmStats


def test_defaults_are_zero_and_mean_is_zero_not_nan() -> None:
    s = ArmStats()
    assert (s.pulls, s.feedback, s.reward_sum, s.reward_sum_squares) == (0, 0, 0.0, 0.0)
    assert s.reward_mean == 0.0
    assert s.reward_variance == 0.0


def test_from_rewards_exact_fields() -> None:
    s = ArmStats.from_rewards([1.0, 0.0, 2.5])
    assert s == ArmStats(pulls=3, feedback=3, reward_sum=3.5, reward_sum_squares=7.25)
    assert ArmStats.from_rewards([1.0], pulls=7).pulls == 7


def test_mean_and_variance_match_numpy() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(2.0, 3.0, size=101)
    s = ArmStats.from_rewards(x)
    assert s.reward_mean == pytest.approx(x.mean(), rel=1e-12)
    assert s.reward_variance == pytest.approx(x.var(ddof=1), rel=1e-10)


def test_variance_is_zero_below_two_and_never_negative() -> None:
    assert ArmStats.from_rewards([5.0]).reward_variance == 0.0
    assert ArmStats.from_rewards([0.1] * 10).reward_variance >= 0.0


def test_pulls_may_be_below_feedback() -> None:
    # Feedback and assignments are synced on different paths.
    assert ArmStats(pulls=0, feedback=3, reward_sum=1.0, reward_sum_squares=1.0).feedback == 3


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"pulls": -1}, "pulls"),
        ({"feedback": -2}, "feedback"),
        ({"reward_sum_squares": -0.5}, "reward_sum_squares"),
        ({"reward_sum": math.nan}, "reward_sum"),
        ({"reward_sum": math.inf}, "reward_sum"),
        ({"reward_sum_squares": math.inf}, "reward_sum_squares"),
        ({"pulls": 1.5}, "pulls"),
        ({"feedback": True}, "feedback"),
    ],
)
def test_invalid_fields_raise_naming_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        ArmStats(**kwargs)  # type: ignore[arg-type]


def test_numpy_scalars_are_normalised() -> None:
    s = ArmStats(pulls=np.int64(3), feedback=np.int32(2), reward_sum=np.float32(1.0))  # type: ignore[arg-type]
    assert type(s.pulls) is int
    assert type(s.feedback) is int
    assert type(s.reward_sum) is float


def test_add_rejects_other_types() -> None:
    with pytest.raises(TypeError):
        ArmStats() + 1  # type: ignore[operator]


def test_add_is_commutative_and_associative_for_integer_rewards() -> None:
    rng = np.random.default_rng(0)
    for _ in range(500):
        a, b, c = (
            ArmStats.from_rewards(rng.integers(-5, 6, size=rng.integers(0, 30)).astype(float))
            for _ in range(3)
        )
        assert a + b == b + a
        assert (a + b) + c == a + (b + c)
        assert a + ArmStats() == a


def test_sum_of_parts_equals_whole() -> None:
    rng = np.random.default_rng(1)
    rewards = rng.integers(0, 2, size=1000).astype(float)
    parts = [ArmStats.from_rewards(chunk) for chunk in np.array_split(rewards, 17)]
    assert sum(parts, ArmStats()) == ArmStats.from_rewards(rewards)


def test_dict_round_trip_through_json() -> None:
    s = ArmStats(pulls=10, feedback=4, reward_sum=2.5, reward_sum_squares=3.25)
    assert ArmStats.from_dict(json.loads(json.dumps(s.to_dict()))) == s
    assert ArmStats.from_dict({"pulls": 2}) == ArmStats(pulls=2)


def test_from_dict_unknown_key_is_named() -> None:
    with pytest.raises(ValueError, match="rewards_sum"):
        ArmStats.from_dict({"rewards_sum": 1.0})


def test_frozen() -> None:
    s = ArmStats()
    with pytest.raises(AttributeError):
        s.pulls = 3  # type: ignore[misc]
