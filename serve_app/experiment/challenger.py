"""The experiment that tests a retrained version against the champion.

A retraining does not change the experiment that triggered it: its version is tested in a
new experiment, ``<parent>-r<n>``, linked to the parent (``parent`` in its config, the
parent's ``delegate`` while it runs), which takes the parent's traffic until it concludes.
A new experiment rather than a new revision of the parent, because

- the test is fair and self-contained: two arms (``champion`` and ``challenger``), counts
  from zero, its own stopping rule, report and MLflow conclusion run, which the lineage links
  to the retraining;
- the parent keeps its own arms, history and policy untouched, whatever the outcome: a win
  moves the champion's registry alias and the parent follows it (a new revision on the new
  version, like any alias move), a loss leaves nothing to undo;
- a parent with several arms (a bandit over models) can hand its traffic over whole and take
  it back, which a revision could not do without changing the parent's arms.
"""

from __future__ import annotations

from typing import Any

from serve_app.config import ExperimentConfig, StoppingConfig

CHAMPION = "champion"
CHALLENGER = "challenger"

DEFAULT_STOPPING = StoppingConfig(rule="sequential", min_samples_per_arm=200)
"""The challenger's stopping rule when the parent has none."""


def challenger_name(parent: str, number: int) -> str:
    """``<parent>-r<number>``, within the 64 characters a name may have.

    >>> challenger_name("digits", 3)
    'digits-r3'
    """
    suffix = f"-r{number}"
    return parent[: 64 - len(suffix)] + suffix


def challenger_spec(
    parent: ExperimentConfig, name: str, challenger_uri: str, reason: str
) -> dict[str, Any]:
    """The config of the experiment testing ``challenger_uri`` against the parent's default
    arm as it serves now (see :class:`~serve_app.config.ChallengerConfig`)."""
    assert parent.retrain is not None, "only an experiment that retrains has challengers"
    settings = parent.retrain.challenger
    champion = parent.model(parent.default).model_dump(mode="json")
    champion.pop("weight", None)
    arms: list[dict[str, Any]] = [
        {**champion, "name": CHAMPION},
        {"name": CHALLENGER, "model_uri": challenger_uri, "placement": "pool"},
    ]
    policy = settings.policy or (parent.policy if len(parent.arms) > 1 else None)
    spec: dict[str, Any] = {
        "name": name,
        "description": f"Retrained {challenger_uri} against {parent.name}'s champion: {reason}",
        "reward": parent.reward,
        "arms": arms,
        "default_arm": CHAMPION,
        "feedback_window_s": parent.feedback_window_s,
        "n_features": parent.n_features,
        "feature_dtype": parent.feature_dtype,
        "seed": parent.seed,
        "sticky_assignments": parent.sticky_assignments,
        "guardrails": parent.guardrails.model_dump(mode="json"),
        "metrics": list(parent.metrics),
        "decision_log": parent.decision_log.model_dump(mode="json")
        if parent.decision_log
        else None,
        "stopping": (settings.stopping or parent.stopping or DEFAULT_STOPPING).model_dump(
            mode="json"
        ),
        "promotion": {"log_to_mlflow": True, "registry_alias": champion_alias(parent)},
        "parent": parent.name,
    }
    if policy is not None and policy.name != "fixed":
        spec["policy"] = policy.model_dump(mode="json")
        return spec
    spec["policy"] = {"name": "fixed", "params": dict(policy.params) if policy else {}}
    ramp = settings.ramp
    if ramp is None and parent.ramp is not None:
        ramp = parent.ramp  # the parent's own steps, on the challenger
    if ramp is not None:
        spec["ramp"] = {
            "arm": CHALLENGER,
            "steps": list(ramp.steps),
            "min_samples": ramp.min_samples,
            "min_duration_s": ramp.min_duration_s,
        }
    else:
        arms[0]["weight"], arms[1]["weight"] = 1.0 - settings.share, settings.share
    return spec


def champion_alias(parent: ExperimentConfig) -> str:
    """The registry alias the parent's default arm follows (a win moves it)."""
    from serve_app.models.uris import parse_model_uri

    alias = parse_model_uri(parent.model(parent.default).model_uri).alias
    assert alias is not None, "ExperimentConfig checks that a retraining champion follows one"
    return alias
