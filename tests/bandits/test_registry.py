from __future__ import annotations

import pytest

import bandits
from bandits import POLICIES, Policy, PolicyConfigError, PolicyParams, make_policy


def test_registry_names_and_classes() -> None:
    assert set(POLICIES) == {"fixed", "thompson", "gaussian_thompson", "epsilon_greedy", "ucb1"}
    for name, cls in POLICIES.items():
        assert cls.name == name
        assert issubclass(cls, Policy)
        assert issubclass(cls.params_type, PolicyParams)


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_make_policy_builds_each(name: str) -> None:
    policy = make_policy(name, ["x", "y"], {"floor": 0.1}, seed=3)
    assert type(policy) is POLICIES[name]
    assert policy.arms == ("x", "y")
    assert policy.params.floor == 0.1


def test_unknown_policy_lists_known_names() -> None:
    with pytest.raises(PolicyConfigError, match="unknown policy 'thomson'") as info:
        make_policy("thomson", ["a", "b"])
    for name in POLICIES:
        assert name in str(info.value)


def test_public_api_is_exported() -> None:
    for name in bandits.__all__:
        assert hasattr(bandits, name), name
    assert issubclass(PolicyConfigError, ValueError)
