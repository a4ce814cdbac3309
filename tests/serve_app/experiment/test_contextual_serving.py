"""Contextual experiments and off-policy evaluation outside Ray: config validation, request
encoding (422 naming the field), what the store learns from, candidates and the OPE answer,
and its table and report section."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError
from rich.console import Console

from bandits.contextual import LinThompson, RidgeStats
from bandits.ope import AlwaysArm, ContextualCandidate, FixedWeights, RegisteredPolicy
from serve_app.cli.commands import ope_table
from serve_app.config import ExperimentConfig
from serve_app.errors import Conflict, InvalidRequest
from serve_app.experiment.contextual import ContextModel, encode_request, ridge_delta
from serve_app.experiment.offpolicy import (
    bandit_log,
    check_estimators,
    default_candidates,
    evaluate_log,
    parse_candidate,
)
from serve_app.report.html import render_html

ARMS = [{"name": "a", "model_uri": "/m/a"}, {"name": "b", "model_uri": "/m/b"}]
CONTEXT = {
    "fields": [
        {"name": "device", "type": "categorical", "vocabulary": ["ios", "android"]},
        {"name": "age", "type": "numeric", "mean": 40, "sd": 10, "required": False},
    ]
}


def contextual(**extra: Any) -> dict[str, Any]:
    return {
        "name": "ctx",
        "policy": {"name": "lin_thompson", "params": {"floor": 0.05}},
        "arms": ARMS,
        "decision_log": {},
        "context": CONTEXT,
        **extra,
    }


def config(**extra: Any) -> ExperimentConfig:
    return ExperimentConfig.model_validate(contextual(**extra))


# --------------------------------------------------------------------------- config


def test_a_contextual_config_builds_both_policies_from_one_place():
    built = config(seed=1)
    assert built.context_spec is not None
    assert built.context_spec.columns == ("intercept", "device=ios", "device=android", "age")
    policy = built.build_contextual_policy(revision=1)
    assert isinstance(policy, LinThompson)
    assert policy.dim == 4
    assert policy.params.floor == 0.05
    # the context-free view keeps the counts: an equal split
    assert built.build_policy(revision=1).weights() == {"a": 0.5, "b": 0.5}
    # the key names the encoding, not the policy's parameters
    other_params = config(policy={"name": "lin_ucb", "params": {"alpha": 2.0}})
    assert other_params.context_key == built.context_key
    other = config(context={"fields": [CONTEXT["fields"][0]]})
    assert other.context_key != built.context_key
    plain = ExperimentConfig.model_validate({"name": "p", "arms": ARMS})
    assert plain.build_contextual_policy(1) is None
    assert plain.context_key is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"decision_log": None}, "decision_log: required by the contextual policy"),
        ({"context": None}, "context: required by the contextual policy"),
        ({"policy": {"name": "thompson"}}, "context: policy 'thompson' is not contextual"),
        ({"context": {"fields": [{"name": "x", "type": "colour"}]}}, "unknown type 'colour'"),
        (
            {"context": {"fields": [{"name": "x", "type": "numeric", "sd": 0}]}},
            "context: sd must be in (0, inf)",
        ),
        ({"sticky_assignments": True}, "sticky_assignments: a contextual policy"),
        (
            {"context": {"fields": [{"type": "feature_columns", "indices": [9]}]}, "n_features": 4},
            "context: feature column 9 is out of range",
        ),
        ({"policy": {"name": "lin_thompson", "params": {"ridge": -1}}}, "ridge must be in"),
        ({"policy": {"name": "lin_thomson"}}, "did you mean 'lin_thompson'"),
    ],
)
def test_contextual_config_errors_name_the_field(change, message):
    with pytest.raises(ValidationError) as error:
        ExperimentConfig.model_validate({**contextual(), **change})
    assert message in str(error.value)


# --------------------------------------------------------------------------- requests


def test_encode_request_names_the_field():
    spec = config().context_spec
    assert spec is not None
    row = np.zeros((1, 3))
    assert encode_request(spec, {"device": "ios", "age": 50}, row).tolist() == [1, 1, 0, 1]
    assert encode_request(spec, {"device": "web"}, row).tolist() == [1, 0, 0, 0]
    for context, field in (
        (None, "context.device"),
        ({"device": 1.5}, "context.device"),
        ({"device": "ios", "age": "old"}, "context.age"),
    ):
        with pytest.raises(InvalidRequest) as error:
            encode_request(spec, context, row)
        assert error.value.field == field
        assert error.value.status == 422


def test_feature_columns_read_the_one_row():
    spec = config(context={"fields": [{"type": "feature_columns", "indices": [2, 0]}]}).context_spec
    assert spec is not None
    assert encode_request(spec, None, np.array([[1.0, 2.0, 3.0]])).tolist() == [1, 3, 1]
    with pytest.raises(InvalidRequest) as error:
        encode_request(spec, None, np.zeros((2, 3)))
    assert error.value.field == "features"
    with pytest.raises(InvalidRequest) as error:
        encode_request(spec, None, np.zeros((1, 2)))
    assert error.value.field == "features"


def test_ridge_delta_is_order_free_and_skips_what_it_cannot_learn():
    model = ContextModel.of(config())
    assert model is not None
    assert model.dim == 4
    rows = [
        (f"k{i}", "ctx", "ab"[i % 2], [1.0, float(i % 3 == 0), 0.0, i / 7], float(i % 2))
        for i in range(20)
    ]
    skipped = [
        ("z1", "ctx", "c", [1.0, 0.0, 0.0, 0.0], 1.0),  # unknown arm
        ("z2", "ctx", "a", [1.0, 0.0], 1.0),  # another dimension
        ("z3", "other", "a", [1.0, 0.0, 0.0, 0.0], 1.0),  # not contextual
    ]
    forward = ridge_delta(rows + skipped, {"ctx": model})
    backward = ridge_delta(list(reversed(rows)), {"ctx": model})
    assert forward == backward
    want = RidgeStats.zeros(4)
    for _key, _, arm, x, r in sorted(rows):
        if arm == "a":
            want = want + RidgeStats.from_observation(x, r)
    assert forward[("ctx", "a")] == want
    assert set(forward) == {("ctx", "a"), ("ctx", "b")}


# --------------------------------------------------------------------------- OPE


def test_candidates_from_text():
    built = config()
    assert isinstance(parse_candidate("uniform", built), FixedWeights)
    assert parse_candidate("always:b", built) == AlwaysArm("b")
    assert parse_candidate(" fixed:a=0.3, b=0.7 ", built).label == "fixed:a=0.3,b=0.7"
    assert parse_candidate('policy:thompson{"floor": 0.1}', built) == RegisteredPolicy(
        "thompson", {"floor": 0.1}
    )
    own = parse_candidate("experiment", built)
    assert own == ContextualCandidate("lin_thompson", {"floor": 0.05})
    assert parse_candidate('experiment{"floor": 0.2}', built) == ContextualCandidate(
        "lin_thompson", {"floor": 0.2}
    )
    assert parse_candidate('contextual:lin_ucb{"alpha": 2}', built).label == "contextual:lin_ucb"
    assert parse_candidate('{"type": "always", "arm": "a"}', built) == AlwaysArm("a")
    plain = ExperimentConfig.model_validate(
        {"name": "p", "policy": {"name": "fixed"}, "arms": [
            {**ARMS[0], "weight": 0.25}, {**ARMS[1], "weight": 0.75}]}
    )  # fmt: skip
    assert parse_candidate("experiment", plain) == FixedWeights({"a": 0.25, "b": 0.75})


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("always:c", "names arm 'c'"),
        ("fixed:a=0.5,c=0.5", "names arm 'c'"),
        ("fixed:a=half", "fixed:a=0.3,b=0.7"),
        ("fixed:a=0.5,b=0.6", "must sum to 1"),
        ("sometimes", "is not a candidate"),
        ("policy:nope", "unknown policy"),
        ('policy:thompson{"floor": 3}', "floor"),
        ("policy:thompson{oops", "JSON object"),
        ("contextual:lin_ucb[1]", "unknown contextual policy"),
        ('{"type": "magic"}', "candidate must be"),
        ("x" * 2001, "1 to 2000 characters"),
        ("", "1 to 2000 characters"),
    ],
)
def test_bad_candidates_are_422_naming_policy(spec, message):
    with pytest.raises(InvalidRequest) as error:
        parse_candidate(spec, config())
    assert error.value.field == "policy"
    assert message in str(error.value)


def test_contextual_candidates_need_a_contextual_experiment():
    plain = ExperimentConfig.model_validate({"name": "p", "arms": ARMS})
    with pytest.raises(InvalidRequest, match="needs a contextual experiment"):
        parse_candidate("contextual:lin_ucb", plain)


def test_estimators_are_checked():
    assert check_estimators(None) == ["ips", "snips", "dm", "dr"]
    assert check_estimators(["dr", "ips", "dr"]) == ["dr", "ips"]
    with pytest.raises(InvalidRequest) as error:
        check_estimators(["magic"])
    assert error.value.field == "estimator"


def uniform_rows(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """A uniformly logged contextual log: arm a is right on ios (0.8 vs 0.2), b on android."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        ios = bool(rng.random() < 0.5)
        arm = "a" if rng.random() < 0.5 else "b"
        good = (arm == "a") == ios
        rows.append(
            {
                "arm": arm,
                "propensity": 0.5,
                "reward": float(rng.random() < (0.8 if good else 0.2)),
                "context": [1.0, float(ios), float(not ios), 0.0],
            }
        )
    return rows


def test_evaluate_log_answers_with_intervals_that_cover_the_truth():
    built = config()
    rows = uniform_rows(2000)
    rows.append({"arm": "c", "propensity": 0.5, "reward": 1.0, "context": [1, 0, 0, 0]})
    rows.append({"arm": "a", "propensity": 0.5, "reward": 1.0, "context": [1, 0]})
    candidates = [*default_candidates(built), parse_candidate("experiment", built)]
    result = evaluate_log(rows, built, candidates, ["snips", "dr"], level=0.99)
    assert result["records"] == 2000  # the unknown arm and the short context are left out
    assert result["contextual"] is True
    values = {(r["candidate"], r["estimator"]): r for r in result["results"]}
    for candidate, truth in (("uniform", 0.5), ("always:a", 0.5), ("always:b", 0.5)):
        for estimator in ("snips", "dr"):
            found = values[(candidate, estimator)]
            assert found["ci_low"] <= truth <= found["ci_high"], (candidate, estimator, found)
    # the contextual policy, trained on the log (cross-fitted), is worth ~0.8 - 0.6 f
    learned = values[("contextual:lin_thompson", "dr")]
    assert learned["ci_low"] <= 0.77 <= learned["ci_high"]


def test_evaluate_log_needs_records():
    with pytest.raises(Conflict, match="at least 10"):
        evaluate_log(uniform_rows(5), config(), [FixedWeights()], ["ips"])


def test_context_free_log():
    plain = ExperimentConfig.model_validate({"name": "p", "arms": ARMS})
    rows = [{**row, "context": None} for row in uniform_rows(50)]
    log = bandit_log(rows, plain)
    assert log.contexts is None
    assert log.n == 50


def test_table_and_report_section():
    built = config()
    result = evaluate_log(uniform_rows(200), built, default_candidates(built), ["ips", "snips"])
    console = Console(record=True, width=160)
    console.print(ope_table(result))
    text = console.export_text()
    assert "always:b" in text
    assert "95% interval" in text
    assert "200 logged" in text
    page = render_html({"experiment": "ctx", "arms": [], "offpolicy": result}, {})
    assert "<h2>Off-policy evaluation</h2>" in page
    assert "always:a" in page
    empty = render_html(
        {"experiment": "ctx", "arms": [], "offpolicy": {"results": [], "reason": "too few"}}, {}
    )
    assert "too few" in empty
    assert "Off-policy" not in render_html({"experiment": "ctx", "arms": []}, {})


def test_a_protocol_parameter_context_is_checked_as_the_predict_field():
    from serve_app.ingress.schemas import checked_context

    assert checked_context(None, "parameters.context") is None
    assert checked_context({"device": "ios", "age": 3}, "p") == {"device": "ios", "age": 3}
    for value, field in (
        ({"device": ["ios"]}, "parameters.context.device"),
        ({"device": "x" * 257}, "parameters.context.device"),
        ({f"k{i}": 1 for i in range(65)}, "parameters.context"),
        ("ios", "parameters.context"),
    ):
        with pytest.raises(InvalidRequest) as error:
            checked_context(value, "parameters.context")
        assert error.value.field == field
