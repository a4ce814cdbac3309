"""Router-local routing without Ray: circuit-aware re-draws keep propensities exact."""

from __future__ import annotations

from collections import Counter

import pytest

from serve_app.config import CircuitConfig, ExperimentConfig
from serve_app.errors import InvalidRequest, Unavailable
from serve_app.experiment.live import ExperimentSnapshot
from serve_app.ingress.routing import RoutedExperiment


def snapshot(revision=1, status="running", route_to=None, excluded=(), config=None):
    return ExperimentSnapshot(revision, status, route_to, frozenset(excluded), {}, config)


def routed(weights: dict[str, float], status: str = "running", route_to=None):
    config = ExperimentConfig.model_validate(
        {
            "name": "exp",
            "policy": {"name": "fixed", "params": {"sticky": False}},
            "seed": 1,
            "arms": [{"name": n, "model_uri": f"/m/{n}", "weight": w} for n, w in weights.items()],
        }
    )
    handles = {name: object() for name in weights}
    return RoutedExperiment.create(
        config,
        snapshot(status=status, route_to=route_to),
        handles,
        {},
        CircuitConfig(failure_threshold=1, cooldown_s=60),  # type: ignore[arg-type]
    )


def test_open_circuit_renormalises_over_healthy_arms():
    experiment = routed({"a": 0.5, "b": 0.3, "c": 0.2})
    experiment.breakers["a"].record_failure()  # threshold 1: open
    routes = [experiment.route(None, None) for _ in range(20_000)]
    counts = Counter(route.arm for route in routes)
    assert "a" not in counts
    assert counts["b"] / 20_000 == pytest.approx(0.6, abs=0.015)  # 0.3 / 0.5
    propensities = {route.arm: route.propensity for route in routes}
    assert propensities == pytest.approx({"b": 0.6, "c": 0.4})
    assert all(route.learned for route in routes)


def test_all_closed_logs_the_policy_propensity():
    experiment = routed({"a": 0.5, "b": 0.5})
    route = experiment.route(None, None)
    assert route.propensity == 0.5


def test_half_open_arm_gets_exactly_one_probe():
    experiment = routed({"a": 0.5, "b": 0.5})
    breaker = experiment.breakers["a"]
    breaker.record_failure(now=0.0)
    breaker.opened_at = -1000.0  # cool-down long past: half-open
    arms = [experiment.route(None, None).arm for _ in range(200)]
    assert arms.count("a") == 1


def test_forced_and_overridden_routes_are_not_learned():
    experiment = routed({"a": 0.5, "b": 0.5})
    forced = experiment.route("unit", "b")
    assert (forced.arm, forced.propensity, forced.learned, forced.forced) == ("b", 1.0, False, True)
    with pytest.raises(InvalidRequest) as caught:
        experiment.route(None, "zzz")
    assert caught.value.field == "arm"
    experiment.breakers["b"].record_failure()  # threshold 1: open
    with pytest.raises(Unavailable, match="circuit breaker refuses"):
        experiment.route(None, "b")  # a forced call never reaches an arm whose circuit is open
    paused = routed({"a": 0.5, "b": 0.5}, status="paused", route_to="a")
    assert {paused.route(None, None).arm for _ in range(50)} == {"a"}
    assert paused.route(None, None).learned is False


def test_snapshot_with_new_revision_rebuilds_the_policy():
    experiment = routed({"a": 0.5, "b": 0.5})
    spec = experiment.config.model_dump(mode="json")
    spec["arms"][0]["weight"], spec["arms"][1]["weight"] = 0.0, 1.0
    experiment.apply(snapshot(revision=2, config=ExperimentConfig.model_validate(spec)))
    assert experiment.revision == 2
    assert {experiment.route(None, None).arm for _ in range(50)} == {"b"}


def test_an_arm_rolled_back_by_a_guardrail_gets_no_traffic_and_exact_propensities():
    experiment = routed({"a": 0.5, "b": 0.3, "c": 0.2})
    experiment.apply(snapshot(excluded=["b"]))
    routes = [experiment.route(None, None) for _ in range(20_000)]
    counts = Counter(route.arm for route in routes)
    assert "b" not in counts
    assert counts["a"] / 20_000 == pytest.approx(0.5 / 0.7, abs=0.015)
    assert {route.arm: route.propensity for route in routes} == pytest.approx(
        {"a": 0.5 / 0.7, "c": 0.2 / 0.7}
    )
