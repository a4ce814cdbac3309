"""A contextual experiment over real HTTP on a real local Ray Serve: created through the
control plane, it routes on each request's ``context``, learns from feedback which arm is
right for which context, logs every decision's context vector and propensity, and its log
answers off-policy questions over HTTP and through the CLI: the uniform split's value
estimated from the contextual log agrees with the uniform split's reward measured on-policy.
Bad contexts are 422s naming the field."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from typer.testing import CliRunner

from serve_app.cli.commands import app as cli_app

from .conftest import CONTROL_TOKEN, code_model
from .waiting import synced

pytestmark = pytest.mark.e2e

CONTROL = {"Authorization": f"Bearer {CONTROL_TOKEN}"}
NAME = "contextual"
UNIFORM = "contextual-uniform"
SEGMENTS = ("x", "y")
CORRECT = 0.9  # the right arm for a segment is correct 90% of the time, the other 10%

CONSTANT_MODEL = """
import mlflow
import numpy as np


class Constant(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return np.full(len(model_input), {value}, dtype=np.int64)


mlflow.models.set_model(Constant())
"""


@pytest.fixture(scope="module")
def arms(demo_store: dict[str, Any]) -> list[dict[str, Any]]:
    """Arm ``zero`` always predicts 0 (right for segment x), ``one`` always 1 (right for y)."""
    root = Path(demo_store["root"])
    return [
        {
            "name": name,
            "model_uri": code_model(root, f"const-{name}", CONSTANT_MODEL.format(value=v)),
        }
        for name, v in (("zero", 0), ("one", 1))
    ]


def contextual_spec(arms: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "name": NAME,
        "description": "each segment has its own right model",
        "policy": {"name": "lin_thompson", "params": {"floor": 0.05}},
        "seed": 0,
        "arms": arms,
        "decision_log": {"max_rows": 10_000},
        "context": {
            "fields": [
                {"name": "segment", "type": "categorical", "vocabulary": list(SEGMENTS),
                 "unknown": "error"},
                {"name": "score", "type": "numeric", "mean": 0.0, "sd": 1.0, "required": False},
            ]
        },
        "reason": "e2e",
    }  # fmt: skip


def create(client: httpx.Client, spec: dict[str, Any]) -> None:
    if client.get(f"/experiments/{spec['name']}").status_code == 200:
        return
    created = client.post("/experiments", json=spec, headers=CONTROL)
    assert created.status_code == 201, created.text


def serve(
    client: httpx.Client, name: str, n: int, rng: np.random.Generator
) -> list[tuple[str, str, float]]:
    """``n`` requests with a random segment each, and their feedback (reward: correctness
    against a label that is the segment's class 90% of the time): (segment, arm, reward)."""
    out = []
    for _ in range(n):
        segment = str(rng.choice(SEGMENTS))
        label = int(segment == "y") if rng.random() < CORRECT else int(segment == "x")
        answer = client.post(
            "/predict",
            json={"experiment": name, "features": [[0.5, 0.5]], "context": {"segment": segment}},
        )
        assert answer.status_code == 200, answer.text
        body = answer.json()
        reward = float(body["predictions"][0] == label)
        fed = client.post("/feedback", json={"decision_id": body["decision_id"], "reward": reward})
        assert fed.status_code == 200, fed.text
        assert fed.json()["learned"] is True
        out.append((segment, body["arm"], reward))
    return out


def right(segment: str, arm: str) -> bool:
    return (arm == "zero") == (segment == "x")


def test_contextual_experiment_learns_logs_and_answers_ope(app_url: str, arms) -> None:
    rng = np.random.default_rng(7)
    with httpx.Client(base_url=app_url, timeout=30) as client:
        create(client, contextual_spec(arms))
        started = time.monotonic()
        served = serve(client, NAME, 360, rng)
        print(f"360 contextual requests with feedback in {time.monotonic() - started:.1f} s")

        early = np.mean([right(s, a) for s, a, _ in served[:60]])
        late = np.mean([right(s, a) for s, a, _ in served[-150:]])
        print(f"right arm for the context: first 60 {early:.2f}, last 150 {late:.2f}")
        # a context-free policy could at best be right half the time: one arm for both
        assert late > 0.85
        for segment in SEGMENTS:
            shares = [right(s, a) for s, a, _ in served[-150:] if s == segment]
            assert np.mean(shares) > 0.8, segment

        # every decision is logged with its context vector and propensity
        synced(client)  # the last decisions travel with the next sync
        logged = client.get(f"/experiments/{NAME}/decisions", headers=CONTROL).json()["rows"]
        assert len(logged) == len(served)
        for row in logged:
            # intercept, segment=x, segment=y, score (absent: its mean, 0)
            assert row["context"] in ([1.0, 1.0, 0.0, 0.0], [1.0, 0.0, 1.0, 0.0])
            assert 0.0 < row["propensity"] <= 1.0
        late_propensities = [row["propensity"] for row in logged[-100:]]
        assert np.median(late_propensities) > 0.9  # the learned choice, floor 0.05

        # the uniform split's reward, measured on-policy on the same traffic
        uniform = {
            "name": UNIFORM,
            "policy": {"name": "fixed"},
            "arms": [{**arm, "weight": 0.5} for arm in arms],
            "reason": "e2e",
        }
        create(client, uniform)
        measured = [reward for _, _, reward in serve(client, UNIFORM, 300, rng)]
        on_policy = float(np.mean(measured))
        on_policy_se = float(np.std(measured, ddof=1) / np.sqrt(len(measured)))

        answer = client.get(
            f"/experiments/{NAME}/ope",
            params={"policy": ["uniform", "always:zero", "experiment"], "level": 0.99},
            headers=CONTROL,
        )
        assert answer.status_code == 200, answer.text
        result = answer.json()
        assert result["records"] == len(served)
        assert result["contextual"] is True
        rewards = [reward for _, _, reward in served]
        assert result["logged_reward"] == pytest.approx(np.mean(rewards))
        estimates = {(r["candidate"], r["estimator"]): r for r in result["results"]}
        assert {e for _, e in estimates} == {"ips", "snips", "dm", "dr"}
        for estimator in ("snips", "dr"):
            found = estimates[("uniform", estimator)]
            low, high = found["ci_low"], found["ci_high"]
            print(f"uniform by {estimator}: {found['value']:.3f} [{low:.3f}, {high:.3f}], "
                  f"measured on-policy {on_policy:.3f}")  # fmt: skip
            # the measured value has its own noise: widen the interval by its 99% half-width
            slack = 2.576 * on_policy_se
            assert found["ci_low"] - slack <= on_policy <= found["ci_high"] + slack
        # the learned contextual policy, frozen, is worth far more than any single arm
        assert estimates[("contextual:lin_thompson", "dr")]["value"] > 0.75
        assert estimates[("always:zero", "dr")]["value"] < 0.65

        # the CLI asks the same endpoint and prints a table
        printed = CliRunner().invoke(
            cli_app,
            ["ope", NAME, "--policy", "uniform", "--policy", "always:one", "--estimator", "snips",
             "--url", app_url, "--control-token", CONTROL_TOKEN],
        )  # fmt: skip
        assert printed.exit_code == 0, printed.output
        assert "uniform" in printed.output
        assert "always:one" in printed.output
        as_json = CliRunner().invoke(
            cli_app,
            ["ope", NAME, "--policy", "always:one", "--json", "--url", app_url,
             "--control-token", CONTROL_TOKEN],
        )  # fmt: skip
        assert as_json.exit_code == 0, as_json.output
        assert {r["estimator"] for r in json.loads(as_json.output)["results"]} == {
            "ips", "snips", "dm", "dr"
        }  # fmt: skip


@pytest.mark.parametrize(
    ("context", "field"),
    [
        (None, "context.segment"),  # a required field is missing
        ({"segment": "z"}, "context.segment"),  # not in the vocabulary (unknown: error)
        ({"segment": ["x"]}, "context.segment"),  # not a scalar
        ({"segment": "x", "score": "high"}, "context.score"),  # not a number
        ({"segment": "x", "score": True}, "context.score"),
        ({"segment": "x" * 300}, "context.segment"),  # too long
        ({f"k{i}": 1 for i in range(65)}, "context"),  # too many keys
        ("x", "context"),  # not an object
    ],
)
def test_a_context_that_does_not_fit_is_a_422_naming_the_field(
    app_url: str, arms, context: Any, field: str
) -> None:
    with httpx.Client(base_url=app_url, timeout=30) as client:
        create(client, contextual_spec(arms))
        body: dict[str, Any] = {"experiment": NAME, "features": [[0.5, 0.5]]}
        if context is not None:
            body["context"] = context
        answer = client.post("/predict", json=body)
        assert answer.status_code == 422, answer.text
        assert answer.json()["field"] == field, answer.json()


def test_ope_rejects_bad_candidates_naming_the_field(app_url: str, arms) -> None:
    with httpx.Client(base_url=app_url, timeout=30) as client:
        create(client, contextual_spec(arms))
        path = f"/experiments/{NAME}/ope"
        assert client.get(path, params={"policy": "uniform"}).status_code == 401
        for params, field in (
            ({"policy": "always:nope"}, "policy"),
            ({"policy": "sometimes"}, "policy"),
            ({"policy": 'policy:thompson{"floor": 7}'}, "policy"),
            ({"policy": "contextual:neural"}, "policy"),
            ({"policy": "uniform", "estimator": "magic"}, "estimator"),
            # query parameters FastAPI checks are named as it names them
            ({"policy": "uniform", "level": 2}, "query.level"),
            ({"policy": ["uniform"] * 17}, "query.policy"),
            ({}, "query.policy"),
        ):
            answer = client.get(path, params=params, headers=CONTROL)
            assert answer.status_code == 422, (params, answer.text)
            assert answer.json()["field"] == field, (params, answer.json())
