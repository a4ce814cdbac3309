"""The config schema: valid configs parse, every mistake names its path."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from serve_app.config import HOME_ENV, AppConfig, parse_config
from serve_app.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def local_args() -> dict[str, Any]:
    document = yaml.safe_load((ROOT / "configs" / "local.yaml").read_text())
    return copy.deepcopy(document["applications"][0]["args"])


def error_of(args: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_config(args)
    return str(caught.value)


def test_shipped_config_parses_and_resolves_paths(tmp_path, monkeypatch):
    monkeypatch.setenv(HOME_ENV, str(tmp_path))
    config = parse_config(local_args())
    assert isinstance(config, AppConfig)
    assert config.data_dir == str(tmp_path.resolve())
    assert config.store_url == f"sqlite:///{tmp_path.resolve() / 'experiments.db'}"
    assert config.mlflow_tracking_uri == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"
    assert [e.name for e in config.experiments] == ["digits", "digits-ab", "digits-context"]
    assert config.experiments[0].default == "logreg"


def test_shipped_experiment_bodies_parse():
    """configs/experiments/*.json are POST /experiments bodies (the README's walkthroughs)."""
    import json

    from serve_app.config import ExperimentConfig

    bodies = sorted((ROOT / "configs" / "experiments").glob("*.json"))
    assert bodies
    for path in bodies:
        body = json.loads(path.read_text())
        body.pop("reason")
        assert ExperimentConfig.model_validate(body).name == path.stem


def test_fixed_split_params_come_from_arm_weights():
    config = parse_config(local_args())
    params = config.experiment("digits-ab").policy_params(revision=3)
    assert params == {"weights": {"logreg": 0.5, "forest": 0.5}, "salt": "digits-ab:3"}


def test_misspelled_key_is_named_with_a_suggestion():
    args = local_args()
    arm = args["experiments"][1]["arms"][0]
    arm["wieght"] = arm.pop("weight")
    message = error_of(args)
    assert "experiments[1].arms[0]: unknown key 'wieght'; did you mean 'weight'?" in message


def test_unknown_top_level_key():
    args = local_args()
    args["experimentz"] = []
    assert "unknown key 'experimentz'; did you mean 'experiments'?" in error_of(args)


def test_weights_must_add_up():
    args = local_args()
    args["experiments"][1]["arms"][0]["weight"] = 0.6
    message = error_of(args)
    assert "experiments[1]: arm weights must add up to 1, they add up to 1.1" in message
    assert "logreg=0.6, forest=0.5" in message


def test_fixed_split_needs_every_weight():
    args = local_args()
    del args["experiments"][1]["arms"][1]["weight"]
    assert "needs a weight on every arm; missing: ['forest']" in error_of(args)


def test_weights_rejected_for_bandit_policies():
    args = local_args()
    args["experiments"][0]["arms"][0]["weight"] = 0.5
    assert "only used by policy 'fixed'" in error_of(args)


def test_unknown_policy_suggests_the_closest():
    args = local_args()
    args["experiments"][0]["policy"]["name"] = "thomson"
    message = error_of(args)
    assert "experiments[0].policy: unknown policy 'thomson'; did you mean 'thompson'?" in message


def test_bad_policy_parameter_is_named():
    args = local_args()
    args["experiments"][0]["policy"]["params"] = {"floor": 0.9}
    message = error_of(args)
    assert "experiments[0].policy.params:" in message
    assert "floor" in message


def test_unknown_policy_parameter_is_named():
    args = local_args()
    args["experiments"][0]["policy"]["params"] = {"flor": 0.1}
    assert "unknown parameter 'flor'" in error_of(args)


def test_reward_model_must_match_policy():
    args = local_args()
    args["experiments"][0]["reward"] = "continuous"
    message = error_of(args)
    assert "policy 'thompson' learns binary rewards" in message
    assert "use gaussian_thompson" in message


def test_missing_model_uri_and_too_few_arms():
    args = local_args()
    del args["experiments"][0]["arms"][0]["model_uri"]
    args["experiments"][1]["arms"] = args["experiments"][1]["arms"][:1]
    message = error_of(args)
    assert "experiments[0].arms[0].model_uri: required key is missing" in message
    assert "experiments[1]: arms: an experiment needs two or more arms" in message


def test_duplicate_names():
    args = local_args()
    args["experiments"][0]["arms"][1]["name"] = "logreg"
    assert "experiments[0]: arm names must be unique; repeated: logreg" in error_of(args)
    args = local_args()
    args["experiments"][1]["name"] = "digits"
    assert "experiment names must be unique; repeated: ['digits']" in error_of(args)


def test_default_arm_must_exist():
    args = local_args()
    args["experiments"][0]["default_arm"] = "svm"
    assert "default_arm 'svm' is not one of the arms" in error_of(args)


def test_wrong_types_and_ranges():
    args = local_args()
    args["router"]["sync_interval_s"] = "fast"
    args["router"]["max_batch_rows"] = 0
    args["experiments"][0]["name"] = "has space"
    message = error_of(args)
    assert "router.sync_interval_s: Input should be a valid number" in message
    assert "router.max_batch_rows: Input should be greater than or equal to 1" in message
    assert "experiments[0].name: String should match pattern" in message


def test_scaling_modes_are_exclusive_and_autoscaling_is_checked():
    args = local_args()
    deployment = args["experiments"][0]["arms"][1]["deployment"]
    deployment["num_replicas"] = 2
    assert "give num_replicas or autoscaling_config, not both" in error_of(args)
    del deployment["num_replicas"]
    deployment["autoscaling_config"] = {"min_replicas": 3, "max_replicas": 1}
    assert "autoscaling_config" in error_of(args)


def test_config_must_be_a_mapping():
    with pytest.raises(ConfigError, match="expected a mapping"):
        parse_config(["not", "a", "mapping"])  # type: ignore[arg-type]


def ab_with(**extra: Any) -> dict[str, Any]:
    args = local_args()
    args["experiments"][1].update(extra)
    return args


def test_lifecycle_sections_parse():
    args = ab_with(
        draft=True,
        stopping={"rule": "sequential", "alpha": 0.01, "max_duration_s": 86400},
        guardrails={
            "max_p95_latency_ratio": 1.5,
            "metrics": [{"name": "refund", "direction": "increase", "max_relative_change": 0.05}],
        },
        promotion={"registry_alias": "champion"},
    )
    experiment = parse_config(args).experiment("digits-ab")
    assert experiment.draft
    assert experiment.stopping is not None
    assert experiment.stopping.rule == "sequential"
    assert experiment.guardrails.metrics[0].name == "refund"
    assert experiment.promotion.registry_alias == "champion"


def test_ramp_needs_a_fixed_split_and_a_challenger_arm():
    args = local_args()
    args["experiments"][0]["ramp"] = {"arm": "forest"}
    assert "experiments[0]: ramp needs policy 'fixed', not 'thompson'" in error_of(args)
    assert "ramp.arm 'nope' is not one of the arms" in error_of(ab_with(ramp={"arm": "nope"}))
    assert "is the default (control) arm" in error_of(ab_with(ramp={"arm": "logreg"}))
    message = error_of(ab_with(ramp={"arm": "forest", "steps": [50, 25]}))
    assert "experiments[1].ramp: ramp steps must increase within (0, 100], got [50.0, 25.0]" in (
        message
    )


def test_ramp_sets_the_first_step_when_no_weights_are_given():
    args = local_args()
    for arm in args["experiments"][1]["arms"]:
        del arm["weight"]
    args["experiments"][1]["ramp"] = {"arm": "forest", "steps": [10, 100]}
    arms = parse_config(args).experiment("digits-ab").arms
    assert [(arm.name, arm.weight) for arm in arms] == [("logreg", 0.9), ("forest", 0.1)]


def test_stopping_and_guardrail_values_are_checked():
    message = error_of(ab_with(stopping={"prob_best": 0.4, "rule": "frequentist"}))
    assert "experiments[1].stopping.rule" in message
    assert "experiments[1].stopping.prob_best: Input should be greater than 0.5" in message
    message = error_of(ab_with(guardrails={"metrics": [{"name": "x", "direction": "up"}]}))
    assert "experiments[1].guardrails.metrics[0].direction" in message


def test_a_bare_yaml_on_key_is_the_retrain_triggers():
    """PyYAML reads ``on:`` as ``True``; the retrain section takes it as ``on``."""
    from serve_app.config import RetrainConfig

    section = yaml.safe_load("entrypoint: pkg.mod:fn\non: [concept_drift]\n")
    assert True in section
    assert RetrainConfig.model_validate(section).on == ["concept_drift"]
