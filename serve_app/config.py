"""The app config: the ``args`` of a ``serve run`` YAML, validated strictly at startup.

Ray ignores unknown keys in its own config; ours does not. A misspelled key, weights that do
not add up, an unknown policy or a bad policy parameter stop the app with a message that names
the path of every offending value, e.g.::

    invalid bandit-serve config:
      experiments[0].arms[1].wieght: unknown key; did you mean 'weight'? (allowed: name, ...)

:func:`parse_config` is the only entry point; everything downstream takes an :class:`AppConfig`.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import itertools
import json
import os
import re
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from bandits import POLICIES, Policy, PolicyConfigError, make_policy
from bandits.contextual import (
    CONTEXTUAL_POLICIES,
    ContextSpec,
    ContextualPolicy,
    FeatureColumns,
    make_contextual_policy,
)
from serve_app.errors import ConfigError
from serve_app.models.uris import parse_model_uri, pinned, registry_version

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$"
HOME_ENV = "BANDIT_SERVE_HOME"
SECRET_ENV = "BANDIT_SERVE_SECRET"
CONTROL_TOKEN_ENV = "BANDIT_SERVE_CONTROL_TOKEN"
DATA_TOKEN_ENV = "BANDIT_SERVE_DATA_TOKEN"
QA_TOKEN_ENV = "BANDIT_SERVE_QA_TOKEN"
MIN_SECRET_BYTES = 32
"""Tokens and signing keys shorter than this are refused at startup."""
KEY_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
SECRET_FIELDS = frozenset({"control_token", "data_token", "qa_token"})
"""Config keys whose values never appear in an error message."""
FEATURE_DTYPES = ("float64", "float32", "float16", "int64", "int32", "int16", "int8", "uint8")
FLOAT32_MAX = float(np.finfo(np.float32).max)

# Which reward model each policy learns with; policies absent here work with either.
POLICY_REWARDS = {"thompson": "binary", "gaussian_thompson": "continuous"}


class StrictModel(BaseModel):
    """Base of every config section: frozen, and an unknown key is an error with a suggestion."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _reject_unknown_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            allowed = list(cls.model_fields)
            for key in data:
                if key not in cls.model_fields:
                    close = difflib.get_close_matches(str(key), allowed, n=1)
                    hint = f"did you mean {close[0]!r}? " if close else ""
                    raise ValueError(f"unknown key {key!r}; {hint}(allowed: {', '.join(allowed)})")
        return data


class BatchingConfig(StrictModel):
    """``@serve.batch`` settings for one arm; absent means one request per model call."""

    max_batch_size: int = Field(8, ge=1, le=4096)
    batch_wait_timeout_s: float = Field(0.005, ge=0.0, le=1.0)


class ActorOptions(StrictModel):
    """The subset of Ray's ``ray_actor_options`` that sizes and places a replica
    (``resources``: custom node resources, e.g. ``{"models": 0.01}`` to keep a replica on
    the nodes that declare ``models``)."""

    num_cpus: float = Field(0.25, ge=0.0)
    num_gpus: float = Field(0.0, ge=0.0)
    memory: int | None = Field(None, ge=0, description="bytes")
    resources: dict[str, float] | None = Field(None, description="custom resources")


class DeploymentOptions(StrictModel):
    """How one deployment (the router, or one model arm) is scaled.

    Give either ``num_replicas`` or ``autoscaling_config`` (Ray's own schema: ``min_replicas``,
    ``max_replicas``, ``target_ongoing_requests``, ...). ``max_ongoing_requests`` is set
    deliberately: Serve's default of 5 collapses throughput under many connections.
    """

    num_replicas: int | None = Field(None, ge=1)
    autoscaling_config: dict[str, Any] | None = None
    max_ongoing_requests: int = Field(64, ge=1)
    ray_actor_options: ActorOptions = ActorOptions()
    timeout_s: float = Field(10.0, gt=0.0, description="per-call timeout the router applies")
    health_check_period_s: float = Field(
        5.0, gt=0.0, description="how soon Serve notices a dead replica (Ray's default: 10)"
    )
    batching: BatchingConfig | None = None

    @model_validator(mode="after")
    def _one_scaling_mode(self) -> DeploymentOptions:
        if self.num_replicas is not None and self.autoscaling_config is not None:
            raise ValueError("give num_replicas or autoscaling_config, not both")
        if self.autoscaling_config is not None:
            from ray.serve.config import AutoscalingConfig

            try:
                AutoscalingConfig(**self.autoscaling_config)
            except Exception as error:  # Ray's pydantic error names the bad key
                raise ValueError(f"autoscaling_config: {error}") from None
        return self

    def serve_options(self) -> dict[str, Any]:
        """Keyword arguments for ``Deployment.options``."""
        options: dict[str, Any] = {
            "max_ongoing_requests": self.max_ongoing_requests,
            "health_check_period_s": self.health_check_period_s,
            "ray_actor_options": self.ray_actor_options.model_dump(exclude_none=True),
        }
        if self.autoscaling_config is not None:
            options["autoscaling_config"] = self.autoscaling_config
        else:
            options["num_replicas"] = self.num_replicas or 1
        return options


Placement = Literal["pool", "dedicated", "router"]


class ModelConfig(StrictModel):
    """One model (an arm or a shadow): which version, and where it runs.

    ``placement``:

    - ``pool``: the app's shared model pool (Ray Serve model multiplexing): its replicas load
      versions on demand and keep the most recently used ones (``pool`` section), so a version
      registered after startup is served without a redeploy;
    - ``dedicated``: a Serve deployment of its own (``deployment`` sizes it; the only
      placement with ``@serve.batch``), for large models that need their own replicas;
    - ``router``: loaded inside every router replica and called in-process, with no second
      hop (for small, fast models; the router's autoscaling scales them).

    Without ``placement``, an arm that sets ``deployment`` is ``dedicated`` and any other is
    ``pool``. ``version`` is filled by the app: the registry version an alias or ``latest``
    URI pointed to when this revision began (aliases are followed: a move starts a new
    revision).
    """

    name: str = Field(pattern=NAME_PATTERN)
    model_uri: str = Field(min_length=1, description="any MLflow model URI or a local path")
    placement: Placement | None = None
    deployment: DeploymentOptions = DeploymentOptions()
    version: str | None = Field(None, description="filled by the app (see above)")

    @model_validator(mode="before")
    @classmethod
    def _default_placement(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("placement") is None:
            return {**data, "placement": "dedicated" if "deployment" in data else "pool"}
        return data

    @model_validator(mode="after")
    def _placement_fits(self) -> ModelConfig:
        if self.deployment.batching is not None and self.placement != "dedicated":
            raise ValueError(
                f"{self.name}: deployment.batching needs placement 'dedicated', not "
                f"{self.placement!r} (only a model's own deployment batches requests)"
            )
        return self

    @property
    def follows_alias(self) -> bool:
        """Does the URI name its version indirectly (``@alias``, ``latest``)?"""
        return parse_model_uri(self.model_uri).follows_alias

    @property
    def serving_uri(self) -> str:
        """The URI the arm is served from: its pinned version when one is resolved."""
        if self.version is not None and self.follows_alias:
            return pinned(self.model_uri, self.version)
        return self.model_uri

    @property
    def model_version(self) -> str | None:
        """The registry version that answers (None for runs, paths and unresolved URIs)."""
        pinned_version = registry_version(self.model_uri)
        return pinned_version[1] if pinned_version else self.version


class ArmConfig(ModelConfig):
    """One model version under test."""

    weight: float | None = Field(None, ge=0.0, le=1.0, description="share for policy 'fixed'")


class ShadowConfig(ModelConfig):
    """A model that receives a mirrored copy of a share of the requests; its answers are
    dropped, its latency, errors and agreement with the served prediction are recorded."""

    percent: float = Field(100.0, ge=0.0, le=100.0, description="share of requests mirrored")


class RatioMetricConfig(StrictModel):
    """A ratio metric ``sum(numerator) / sum(denominator)`` over units (revenue per session
    when sessions per user vary), both feedback metrics the experiment declares. Each
    feedback carrying both adds one unit; the report compares the arms with the delta
    method's variance (frequentist, Bayesian and sequential)."""

    name: str = Field(pattern=NAME_PATTERN)
    numerator: str = Field(pattern=NAME_PATTERN, description="a declared feedback metric")
    denominator: str = Field(pattern=NAME_PATTERN, description="a declared feedback metric")


class MetricGuardrail(StrictModel):
    """A metric sent with feedback (``"metrics": {"<name>": value}``) that a challenger must
    not make worse than the control does.

    Judged continuously with the always-valid sequential test (safe to look at every second):
    the arm breaches when the whole confidence sequence of its relative change against the
    control lies beyond ``max_relative_change`` in the harmful ``direction``.
    """

    name: str = Field(pattern=NAME_PATTERN)
    direction: Literal["increase", "decrease"] = Field(
        "increase", description="which change is harmful (latency, refunds: increase)"
    )
    max_relative_change: float = Field(0.0, ge=0.0, description="tolerated harm, e.g. 0.05")
    alpha: float = Field(0.05, gt=0.0, lt=1.0)
    min_samples: int = Field(100, ge=2, description="per arm, before the arm is judged")


class GuardrailConfig(StrictModel):
    """Limits every challenger arm must stay within, judged against the control arm.

    A breach shows in the summary and the metrics and, with ``auto_rollback``, rolls that arm
    back: its weight becomes 0 (the others are renormalised) and the audit log says why.
    """

    max_error_rate: float | None = Field(None, ge=0.0, le=1.0, description="errors/requests")
    min_requests: int = Field(100, ge=1, description="judge an arm only after this many")
    max_p95_latency_ratio: float | None = Field(
        None, gt=0.0, description="arm p95 latency / control p95 latency"
    )
    latency_slack_ms: float = Field(
        5.0, ge=0.0, description="p95 differences below this never breach (timer noise)"
    )
    metrics: list[MetricGuardrail] = []
    auto_rollback: bool = True

    @property
    def any(self) -> bool:
        return bool(self.max_error_rate is not None or self.max_p95_latency_ratio or self.metrics)


class StoppingConfig(StrictModel):
    """When the experiment has an answer, and what to do with it.

    ``rule: bayesian`` stops when one arm's posterior probability of being best reaches
    ``prob_best`` and its expected loss ``E[max_j mu_j - mu_best]`` is at most
    ``expected_loss`` (in reward units). ``rule: sequential`` stops when the always-valid
    sequential test of a challenger against the control rejects at ``alpha`` (Bonferroni over
    the challengers): the best significantly better challenger wins, or the control when every
    challenger is significantly worse. Neither fires before every arm still in the experiment
    has ``min_samples_per_arm`` feedback. After ``max_duration_s`` without an answer the
    experiment stops and traffic returns to the control.
    """

    rule: Literal["bayesian", "sequential"] = "bayesian"
    min_samples_per_arm: int = Field(100, ge=1)
    prob_best: float = Field(0.95, gt=0.5, lt=1.0)
    expected_loss: float = Field(0.001, ge=0.0)
    alpha: float = Field(0.05, gt=0.0, lt=1.0)
    tuning: float = Field(5000.0, gt=0.0, description="sequential test: n where it is tightest")
    max_duration_s: float | None = Field(None, gt=0.0)
    action: Literal["promote", "recommend"] = Field(
        "promote", description="promote the winner (or roll back to the control) or only say so"
    )


class RampConfig(StrictModel):
    """A canary rollout of one arm of a fixed split: its share goes through ``steps`` (percent);
    each next step waits for ``min_samples`` requests to the canary and ``min_duration_s`` in
    the current step with no guardrail breached. Reaching 100 promotes the canary; a breach
    rolls it back."""

    arm: str
    steps: list[float] = Field([5.0, 25.0, 50.0, 100.0], min_length=1)
    min_samples: int = Field(200, ge=1)
    min_duration_s: float = Field(0.0, ge=0.0)

    @model_validator(mode="after")
    def _increasing(self) -> RampConfig:
        steps = self.steps
        if any(not 0 < step <= 100 for step in steps) or any(
            b <= a for a, b in itertools.pairwise(steps)
        ):
            raise ValueError(f"ramp steps must increase within (0, 100], got {steps}")
        return self


class DriftConfig(StrictModel):
    """Input and prediction drift of an experiment (see :mod:`bandits.drift`).

    Routers send a uniform sample of at most ``sample_per_sync`` rows (with each arm's
    predictions) with every state sync; the state keeps the last ``window`` of them and tests
    them every ``evaluate_interval_s`` against the reference: the profile stored with the
    default arm's model (and each arm's own for its predictions), or, for a model without one,
    a profile taken from the first ``warmup_rows`` live rows. A column drifts when its
    Holm-adjusted p-value (KS, or chi-square for a categorical column) is at most ``alpha``
    AND its PSI reaches ``psi``, with at least ``min_samples`` live values.
    """

    window: int = Field(1000, ge=50, le=100_000, description="live rows kept")
    sample_per_sync: int = Field(64, ge=1, le=10_000)
    alpha: float = Field(0.01, gt=0.0, lt=1.0, description="family-wise false alarm level")
    psi: float = Field(0.2, ge=0.0, description="effect-size gate (population stability)")
    min_samples: int = Field(200, ge=10)
    correction: Literal["holm", "bonferroni", "bh", "none"] = "holm"
    warmup_rows: int = Field(1000, ge=50, description="reference from live rows when no profile")
    evaluate_interval_s: float = Field(10.0, gt=0.0)

    @model_validator(mode="after")
    def _window_holds_the_sample(self) -> DriftConfig:
        if self.min_samples > self.window:
            raise ValueError(
                f"min_samples ({self.min_samples}) cannot exceed window ({self.window})"
            )
        return self


class PromotionConfig(StrictModel):
    """What a conclusion records: an MLflow run (config, per-arm results, the report) and,
    optionally, a registry alias moved to the winning model version."""

    log_to_mlflow: bool = True
    registry_alias: str | None = Field(None, pattern=NAME_PATTERN, examples=["champion"])


class PolicyConfig(StrictModel):
    """A policy from the registry and its parameters (validated by the policy itself)."""

    name: str
    params: dict[str, Any] = {}

    @model_validator(mode="after")
    def _known_policy(self) -> PolicyConfig:
        known = [*POLICIES, *CONTEXTUAL_POLICIES]
        if self.name not in known:
            close = difflib.get_close_matches(self.name, known, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ValueError(
                f"unknown policy {self.name!r}; {hint}(known: {', '.join(sorted(known))})"
            )
        return self

    @property
    def contextual(self) -> bool:
        """A contextual policy (:data:`bandits.contextual.CONTEXTUAL_POLICIES`)."""
        return self.name in CONTEXTUAL_POLICIES


class ConceptDriftConfig(StrictModel):
    """Concept drift of an experiment: per arm, a drop of ``drop`` in the mean reward against
    the arm's own reference (its first ``reference`` rewards, or ``baseline``), by Page's
    CUSUM (:mod:`bandits.drift.concept`), safe to evaluate after every reward; the threshold
    is set by ``arl``, the expected rewards between false alarms. With ``labels``, feedback
    labels are also compared with the label distribution of the arms' training profile."""

    reference: int = Field(500, ge=10)
    drop: float = Field(0.1, gt=0.0)
    arl: float = Field(100_000.0, gt=1.0)
    baseline: float | None = None
    labels: bool = True
    label_min_samples: int = Field(200, ge=10)


class DecisionLogConfig(StrictModel):
    """Keep a record of decisions in the store (opt-in): the request's feature rows (at most
    ``max_rows_per_request`` of them), predictions, arm, propensity and time, and once
    feedback arrives its reward, label and metrics. The records travel with the routers'
    batched syncs and feedback commits, never on the prediction path. At most ``max_rows``
    and ``max_age_s`` per experiment (the oldest go first). Retraining and off-policy
    evaluation read it; ``bandit-serve decisions`` exports it (CSV or Parquet)."""

    max_rows: int = Field(100_000, ge=10, le=10_000_000)
    max_age_s: float = Field(30 * 24 * 3600.0, gt=0.0)
    max_rows_per_request: int = Field(16, ge=1, le=4096)


RetrainTrigger = Literal["data_drift", "concept_drift", "schedule"]


class ChallengerRamp(StrictModel):
    """A canary ramp of the challenger (see :class:`RampConfig`; the arm is the challenger)."""

    steps: list[float] = Field([10.0, 50.0, 100.0], min_length=1)
    min_samples: int = Field(200, ge=1)
    min_duration_s: float = Field(0.0, ge=0.0)


class ChallengerConfig(StrictModel):
    """How a retrained version is tested: a new experiment ``<name>-r<n>`` (arms
    ``champion``, the default arm's current version, and ``challenger``, the new one) that
    takes the experiment's traffic until it concludes, with the experiment's guardrails,
    metrics and decision log.

    ``policy``: the experiment's own when it has two or more arms, else a fixed split giving
    the challenger ``share`` of the traffic (or a canary ``ramp``: the experiment's own ramp
    steps by default when it has one). ``stopping``: the experiment's rule, else the
    sequential test with 200 feedbacks per arm at least. A win moves the champion URI's
    registry alias to the new version (and the experiment follows it); a loss, a guardrail
    breach or no answer within the rule's ``max_duration_s`` leaves the champion in place.
    """

    policy: PolicyConfig | None = None
    share: float = Field(0.5, gt=0.0, lt=1.0)
    ramp: ChallengerRamp | None = None
    stopping: StoppingConfig | None = None
    follow_timeout_s: float = Field(
        300.0, gt=0.0, description="after a win: wait this long for serving to follow the alias"
    )


class RetrainConfig(StrictModel):
    """Retrain on logged feedback, and test what it produces (the closed loop).

    When one of ``on`` fires (the experiment's data drift alert, its concept drift alert, or
    every ``schedule_s``) and the decision log holds ``min_rows`` labelled rows, and no
    retraining or challenger is running, and ``cooldown_s`` passed since the last start,
    ``entrypoint`` (``package.module:function``) runs as a Ray task (``ray_actor_options``
    sizes it; ``timeout_s`` ends it) with the newest ``max_rows`` labelled rows and the
    champion's model URI (:class:`~serve_app.models.retraining.RetrainRequest`), and returns
    a newly registered MLflow model version, which is then tested as a challenger
    (:class:`ChallengerConfig`). ``params`` reach the function as they are. The experiment's
    default arm must follow a registry alias (``models:/<name>@<alias>``): a win moves it.
    """

    entrypoint: str = Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
    on: list[RetrainTrigger] = Field(["data_drift", "concept_drift"], min_length=1)
    schedule_s: float | None = Field(None, gt=0.0)
    min_rows: int = Field(200, ge=1)
    max_rows: int = Field(10_000, ge=1)
    cooldown_s: float = Field(3600.0, ge=0.0)
    timeout_s: float = Field(1800.0, gt=0.0)
    check_interval_s: float = Field(5.0, gt=0.0, description="how often the triggers are read")
    params: dict[str, Any] = {}
    ray_actor_options: ActorOptions = ActorOptions(num_cpus=1.0)
    challenger: ChallengerConfig = ChallengerConfig()

    @model_validator(mode="before")
    @classmethod
    def _yaml_on(cls, data: Any) -> Any:
        """YAML 1.1 (PyYAML, which ``serve run`` uses) reads a bare ``on:`` key as the
        boolean true: take it as ``on``."""
        if isinstance(data, dict) and True in data and "on" not in data:
            data = {("on" if key is True else key): value for key, value in data.items()}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> RetrainConfig:
        if ("schedule" in self.on) != (self.schedule_s is not None):
            raise ValueError("retrain: 'schedule' in 'on' and schedule_s go together")
        if self.max_rows < self.min_rows:
            raise ValueError(f"retrain: max_rows ({self.max_rows}) < min_rows ({self.min_rows})")
        return self


class ExperimentConfig(StrictModel):
    """Two or more arms, a policy and a reward model."""

    name: str = Field(pattern=NAME_PATTERN)
    description: str = ""
    reward: Literal["binary", "continuous"] = "binary"
    policy: PolicyConfig = PolicyConfig(name="thompson")
    arms: list[ArmConfig] = Field(
        min_length=1, description="two or more; one only with retrain (a monitored endpoint)"
    )
    default_arm: str | None = Field(None, description="answers when an arm fails; first arm")
    feedback_window_s: float = Field(7 * 24 * 3600.0, gt=0.0)
    n_features: int | None = Field(None, ge=1, description="inferred from the model signature")
    seed: int | None = None
    sticky_assignments: bool = Field(
        False,
        description="store each unit's first arm and keep it there (for bandits, whose "
        "weights move); costs one state call per new unit per router replica",
    )
    shadows: list[ShadowConfig] = []
    guardrails: GuardrailConfig = GuardrailConfig()
    draft: bool = Field(
        False, description="start as a draft: all traffic to the default arm until started"
    )
    stopping: StoppingConfig | None = None
    ramp: RampConfig | None = None
    promotion: PromotionConfig = PromotionConfig()
    drift: DriftConfig | None = Field(None, description="track input and prediction drift")
    metrics: list[str] = Field(
        [],
        description="feedback metrics this experiment accepts besides its guardrail metrics; "
        "any other name is refused (422)",
    )
    ratio_metrics: list[RatioMetricConfig] = Field(
        [], description="ratios of two declared metrics per unit, compared in the report"
    )
    concept_drift: ConceptDriftConfig | None = Field(None, description="watch reward drops")
    decision_log: DecisionLogConfig | None = Field(None, description="record decisions")
    context: dict[str, Any] | None = Field(
        None,
        description="the context vector of a contextual policy: {intercept, fields: [...]} "
        "(see bandits.contextual.ContextSpec): named fields of the request's 'context' and "
        "chosen feature columns of its row",
    )
    retrain: RetrainConfig | None = Field(None, description="the closed loop")
    parent: str | None = Field(
        None, pattern=NAME_PATTERN, description="set by the app on a retraining challenger"
    )
    feature_dtype: Literal[FEATURE_DTYPES] | None = Field(  # type: ignore[valid-type]
        None,
        description="the arms' input dtype (inferred from their MLflow signatures): values "
        "it cannot hold are refused before any arm is called",
    )

    @model_validator(mode="before")
    @classmethod
    def _ramp_weights(cls, data: Any) -> Any:
        """A ramp sets the weights: the canary gets the first step, the other arms share the
        rest in proportion to their own weights (equally when they have none)."""
        if not isinstance(data, dict) or not isinstance(data.get("ramp"), dict):
            return data
        policy = data.get("policy")
        if not isinstance(policy, dict) or policy.get("name") != "fixed":
            return data  # _check_lifecycle says a ramp needs a fixed split
        arms = data.get("arms")
        if not isinstance(arms, list) or not all(isinstance(arm, dict) for arm in arms):
            return data
        if any(arm.get("weight") is not None for arm in arms):
            return data
        steps = data["ramp"].get("steps", RampConfig.model_fields["steps"].default)
        try:
            weights = ramp_weights(
                [arm.get("name") for arm in arms], data["ramp"].get("arm"), float(steps[0]), {}
            )
        except (KeyError, TypeError, ValueError, IndexError):
            return data  # the field validators name the problem
        return {**data, "arms": [{**arm, "weight": weights[arm["name"]]} for arm in arms]}

    @model_validator(mode="after")
    def _consistent(self) -> ExperimentConfig:
        names = [arm.name for arm in self.arms]
        if len(names) < 2 and self.retrain is None:
            raise ValueError(
                "arms: an experiment needs two or more arms (one only with 'retrain': a "
                "monitored endpoint whose retrained versions are tested as challengers)"
            )
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"arm names must be unique; repeated: {', '.join(duplicates)}")
        clashes = sorted({shadow.name for shadow in self.shadows} & set(names))
        shadow_names = [shadow.name for shadow in self.shadows]
        if clashes or len(set(shadow_names)) != len(shadow_names):
            raise ValueError(f"shadow names must be unique and differ from arm names: {clashes}")
        if self.default_arm is not None and self.default_arm not in names:
            raise ValueError(f"default_arm {self.default_arm!r} is not one of the arms {names}")
        wanted = POLICY_REWARDS.get(self.policy.name)
        if wanted is not None and wanted != self.reward:
            raise ValueError(
                f"policy {self.policy.name!r} learns {wanted} rewards but reward is "
                f"{self.reward!r}; use "
                f"{'thompson' if self.reward == 'binary' else 'gaussian_thompson'}"
            )
        self._check_weights(names)
        self._check_lifecycle(names)
        self._check_metrics()
        if self.retrain is not None:
            self._check_retrain()
        self._check_context()
        try:
            self.build_policy(revision=1)
            self.build_contextual_policy(revision=1)
        except PolicyConfigError as error:
            raise ValueError(f"policy.params: {error}") from None
        return self

    def _check_context(self) -> None:
        """A contextual policy needs a ``context`` (and a ``decision_log``: the context and
        propensity of each decision are what its feedback teaches and OPE reads); a
        context-free one takes none."""
        if not self.policy.contextual:
            if self.context is not None:
                raise ValueError(
                    f"context: policy {self.policy.name!r} is not contextual; use one of "
                    f"{', '.join(sorted(CONTEXTUAL_POLICIES))} or remove 'context'"
                )
            return
        if self.context is None:
            raise ValueError(
                f"context: required by the contextual policy {self.policy.name!r} (e.g. "
                "{fields: [{name: device, type: categorical, vocabulary: [ios, android]}]})"
            )
        if self.decision_log is None:
            raise ValueError(
                f"decision_log: required by the contextual policy {self.policy.name!r}: it "
                "learns from each decision's logged context when its feedback arrives"
            )
        if self.sticky_assignments:
            raise ValueError(
                "sticky_assignments: a contextual policy chooses per context, not per unit"
            )
        try:
            spec = _context_spec(json.dumps(self.context, sort_keys=True))
        except PolicyConfigError as error:
            raise ValueError(f"context: {error}") from None
        columns = [f for f in spec.fields if isinstance(f, FeatureColumns)]
        if columns and self.n_features is not None:
            top = max(max(f.indices) for f in columns)
            if top >= self.n_features:
                raise ValueError(
                    f"context: feature column {top} is out of range: rows have "
                    f"{self.n_features} features"
                )

    def _check_retrain(self) -> None:
        if self.decision_log is None:
            raise ValueError("retrain needs decision_log: the retraining rows come from it")
        if self.parent is not None:
            raise ValueError("a retraining challenger does not retrain itself")
        champion = self.model(self.default)
        if parse_model_uri(champion.model_uri).alias is None:
            raise ValueError(
                f"retrain: the default arm {champion.name!r} must follow a registry alias "
                f"(models:/<name>@<alias>), not {champion.model_uri!r}: a retrained version "
                "that wins moves the alias, and serving follows it"
            )

    def _check_metrics(self) -> None:
        pattern = re.compile(NAME_PATTERN)
        for name in self.metrics:
            if not pattern.match(name):
                raise ValueError(f"metrics: {name!r} is not a valid metric name ({NAME_PATTERN})")
        if len(set(self.metrics)) != len(self.metrics):
            raise ValueError(f"metrics: a name is listed twice in {self.metrics}")
        names = [ratio.name for ratio in self.ratio_metrics]
        if len(set(names)) != len(names):
            raise ValueError(f"ratio_metrics: a name is listed twice in {names}")
        declared = self.declared_metrics
        for ratio in self.ratio_metrics:
            for part in ("numerator", "denominator"):
                if getattr(ratio, part) not in declared:
                    raise ValueError(
                        f"ratio_metrics {ratio.name!r}: {part} {getattr(ratio, part)!r} is not "
                        f"a declared metric (declared: {', '.join(declared) or 'none'})"
                    )
            if ratio.numerator == ratio.denominator:
                raise ValueError(f"ratio_metrics {ratio.name!r}: numerator is the denominator")

    def _check_weights(self, names: list[str]) -> None:
        weights = [arm.weight for arm in self.arms]
        if self.policy.name != "fixed":
            if any(weight is not None for weight in weights):
                raise ValueError(
                    f"arm weights are only used by policy 'fixed', not {self.policy.name!r}; "
                    "remove them (a minimum share per arm is policy.params.floor)"
                )
            return
        if "weights" in self.policy.params:
            raise ValueError("set each arm's weight on the arm, not in policy.params.weights")
        missing = [name for name, weight in zip(names, weights, strict=True) if weight is None]
        if missing:
            raise ValueError(f"policy 'fixed' needs a weight on every arm; missing: {missing}")
        total = sum(weight or 0.0 for weight in weights)
        if abs(total - 1.0) > 1e-9:
            shown = ", ".join(f"{n}={w}" for n, w in zip(names, weights, strict=True))
            raise ValueError(f"arm weights must add up to 1, they add up to {total:g} ({shown})")

    def _check_lifecycle(self, names: list[str]) -> None:
        if self.ramp is not None:
            if self.policy.name != "fixed":
                raise ValueError(f"ramp needs policy 'fixed', not {self.policy.name!r}")
            if self.ramp.arm not in names:
                raise ValueError(f"ramp.arm {self.ramp.arm!r} is not one of the arms {names}")
            if self.ramp.arm == self.default:
                raise ValueError(
                    f"ramp.arm {self.ramp.arm!r} is the default (control) arm; ramp a challenger"
                )
        for metric in self.guardrails.metrics:
            if [m.name for m in self.guardrails.metrics].count(metric.name) > 1:
                raise ValueError(f"guardrails.metrics: {metric.name!r} is listed twice")

    @property
    def arm_names(self) -> list[str]:
        return [arm.name for arm in self.arms]

    @property
    def default(self) -> str:
        """The arm that answers for a failing arm."""
        return self.default_arm or self.arms[0].name

    def model(self, name: str) -> ModelConfig:
        """The arm or shadow called ``name``.

        Raises:
            KeyError: no such arm or shadow.
        """
        for model in [*self.arms, *self.shadows]:
            if model.name == name:
                return model
        raise KeyError(name)

    @property
    def declared_metrics(self) -> list[str]:
        """The feedback metrics this experiment accepts: ``metrics`` and its guardrails'."""
        return sorted({*self.metrics, *(rule.name for rule in self.guardrails.metrics)})

    def build_policy(self, revision: int) -> Policy:
        """The experiment's policy for one revision: the one factory every process uses.

        For a contextual experiment this is the context-free view its per-arm statistics
        are kept in (counts, rewards, the verdict): an equal split that never routes; the
        router routes with :meth:`build_contextual_policy`.
        """
        if self.policy.contextual:
            share = 1.0 / len(self.arms)
            weights = {arm.name: share for arm in self.arms}
            weights[self.arms[-1].name] = 1.0 - share * (len(self.arms) - 1)
            salt = f"{self.name}:{revision}"
            return make_policy("fixed", self.arm_names, {"weights": weights, "salt": salt})
        return make_policy(
            self.policy.name, self.arm_names, self.policy_params(revision), seed=self.seed
        )

    def build_contextual_policy(self, revision: int) -> ContextualPolicy | None:
        """The contextual policy of one revision (None for a context-free experiment), over
        the dimension of :attr:`context_spec`; its learned statistics are set by the caller."""
        spec = self.context_spec
        if spec is None:
            return None
        return make_contextual_policy(
            self.policy.name, self.arm_names, spec.dim, self.policy_params(revision), seed=self.seed
        )

    @property
    def context_spec(self) -> ContextSpec | None:
        """The encoding of the request context (None without a contextual policy)."""
        if self.context is None or not self.policy.contextual:
            return None
        return _context_spec(json.dumps(self.context, sort_keys=True))

    @property
    def context_key(self) -> str | None:
        """Names the encoding: learned ridge statistics are kept per key, so a changed
        encoding (other fields, means, vocabularies) starts learning afresh."""
        spec = self.context_spec
        if spec is None:
            return None
        canonical = json.dumps(spec.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(canonical).hexdigest()[:16]

    def policy_params(self, revision: int) -> dict[str, Any]:
        """Policy parameters; a fixed split's weights come from the arms and its hashing salt
        from (experiment, revision), so units are reshuffled only when the config changes."""
        params = dict(self.policy.params)
        if self.policy.name == "fixed":
            params["weights"] = {arm.name: float(arm.weight or 0.0) for arm in self.arms}
            params.setdefault("salt", f"{self.name}:{revision}")
        return params


@functools.lru_cache(maxsize=256)
def _context_spec(canonical: str) -> ContextSpec:
    """A context spec from its canonical JSON (cached: configs are frozen and compared)."""
    return ContextSpec.from_dict(json.loads(canonical))


def ramp_weights(
    arms: list[str], canary: str, percent: float, base: dict[str, float]
) -> dict[str, float]:
    """Weights for one ramp step: ``w_canary = percent / 100`` and every other arm ``a`` gets
    ``(1 - w_canary) b_a / sum(b)`` with ``b`` its base weight (1 each when none is given).

    >>> ramp_weights(["control", "canary"], "canary", 25.0, {})
    {'control': 0.75, 'canary': 0.25}
    """
    if canary not in arms:
        raise KeyError(canary)
    share = percent / 100.0
    others = [arm for arm in arms if arm != canary]
    raw = {arm: base.get(arm, 1.0) for arm in others}
    total = sum(raw.values()) or float(len(others))
    weights = {arm: (1.0 - share) * (raw[arm] or 0.0) / total for arm in others}
    weights[canary] = share
    return {arm: weights[arm] for arm in arms}


class CircuitConfig(StrictModel):
    """Per-arm circuit breaker: open after consecutive failures, probe after a cool-down."""

    failure_threshold: int = Field(5, ge=1)
    cooldown_s: float = Field(10.0, gt=0.0)


class Tokens(NamedTuple):
    """The bearer tokens in force (None: that token is not configured)."""

    control: str | None
    data: str | None
    qa: str | None


class AuthConfig(StrictModel):
    """Bearer tokens, and where the keys that sign decision ids come from.

    - ``control_token``: the control plane (create, change, pause, promote, the audit log);
      always required there. ``data_token``: ``/predict``, ``/feedback`` and the read side,
      only with ``protect_data_plane``. ``qa_token``: forcing an arm (``X-Bandit-Arm`` or
      ``"arm"``), which the control token also allows; it grants the data plane too. Each
      comes from its environment variable (recommended) or, discouraged, the config, and
      must have at least 32 bytes.
    - ``protect_metrics`` / ``protect_docs``: ``/metrics`` and ``/docs`` (with
      ``/openapi.json``) need the data, QA or control token; ``null`` follows
      ``protect_data_plane``.
    - Signing keys, in order: ``signing_keys_dir`` (a Kubernetes Secret mounted as a
      directory: one file per key, the file name is the key id; ``active_signing_key`` names
      the key that signs new ids, by default the greatest name, so date-like ids rotate by
      adding a file); else the environment variable ``secret_env`` (key id ``env``); else,
      with the embedded SQLite store only, a key generated once into ``<data_dir>/keys``.
      Keys that do not sign verify the ids they signed until those expire.
    """

    control_token: str | None = Field(None, min_length=MIN_SECRET_BYTES, repr=False)
    control_token_env: str = CONTROL_TOKEN_ENV
    protect_data_plane: bool = False
    data_token: str | None = Field(None, min_length=MIN_SECRET_BYTES, repr=False)
    data_token_env: str = DATA_TOKEN_ENV
    qa_token: str | None = Field(None, min_length=MIN_SECRET_BYTES, repr=False)
    qa_token_env: str = QA_TOKEN_ENV
    protect_metrics: bool | None = None
    protect_docs: bool | None = None
    signing_keys_dir: str | None = Field(None, min_length=1)
    active_signing_key: str | None = Field(None, pattern=KEY_ID_PATTERN)
    secret_env: str = SECRET_ENV

    def tokens(self) -> Tokens:
        """The tokens from the config or else the environment.

        Raises:
            ConfigError: a token from the environment is shorter than 32 bytes (the message
                names the variable, never the value).
        """
        values = []
        for kind, configured, env in (
            ("control", self.control_token, self.control_token_env),
            ("data", self.data_token, self.data_token_env),
            ("qa", self.qa_token, self.qa_token_env),
        ):
            value = configured or os.environ.get(env) or None
            if value is not None and len(value.encode()) < MIN_SECRET_BYTES:
                raise ConfigError(
                    f"the {kind} token from ${env} has {len(value.encode())} bytes; tokens "
                    f"need at least {MIN_SECRET_BYTES} (e.g. `openssl rand -hex 32`)"
                )
            values.append(value)
        return Tokens(*values)

    @property
    def metrics_protected(self) -> bool:
        return self.protect_data_plane if self.protect_metrics is None else self.protect_metrics

    @property
    def docs_protected(self) -> bool:
        return self.protect_data_plane if self.protect_docs is None else self.protect_docs


class HttpConfig(StrictModel):
    """What every HTTP request must satisfy before an endpoint looks at it.

    ``allowed_hosts``: ``Host`` header values accepted besides ``localhost``, ``127.0.0.1``
    and ``[::1]`` (a web page that rebinds its own DNS name to 127.0.0.1 sends its own name,
    and is refused); ``*.example.com`` matches any subdomain, ``*`` any host (behind a proxy
    that checks Host itself). ``cors_origins``: origins whose pages may read responses
    (``https://app.example.com``); empty, the default, sends no CORS headers, so browsers
    refuse cross-origin reads.
    """

    allowed_hosts: list[str] = Field([], description="e.g. bandit-serve.example.com")
    cors_origins: list[str] = Field([], description="e.g. https://dashboard.example.com")

    @model_validator(mode="after")
    def _patterns(self) -> HttpConfig:
        for host in self.allowed_hosts:
            if not host or "/" in host or (host.count("*") and not host.startswith(("*.", "*"))):
                raise ValueError(f"allowed_hosts: {host!r} is not a host name or '*.domain'")
        for origin in self.cors_origins:
            if origin != "*" and not origin.startswith(("http://", "https://")):
                raise ValueError(f"cors_origins: {origin!r} must start with http:// or https://")
        return self


class RouterConfig(StrictModel):
    """The ingress: request limits, state sync cadence and feedback group commit."""

    sync_interval_s: float = Field(
        0.1, gt=0.0, le=10.0, description="how often a router with counts to send syncs"
    )
    idle_sync_interval_s: float = Field(
        1.0,
        gt=0.0,
        le=60.0,
        description="while a router has nothing to send, its sync interval doubles up to "
        "this; its next request or feedback brings it back to sync_interval_s at once",
    )
    sync_max_events: int = Field(256, ge=1)
    feedback_commit_window_s: float = Field(0.005, ge=0.0, le=1.0)
    max_batch_rows: int = Field(256, ge=1)
    max_features: int = Field(10_000, ge=1)
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024, description="every endpoint")
    max_abs_feature: float = Field(
        FLOAT32_MAX,
        gt=0.0,
        description="features beyond this magnitude are refused (422); the default is the "
        "float32 range, which many models compute in whatever their signature says",
    )
    access_log: bool = Field(False, description="Serve's per-request log line on the router")
    feedback_commit_timeout_s: float = Field(10.0, gt=0.0, description="503 after this")
    mirror_max_in_flight: int = Field(32, ge=1, description="shadow calls beyond are dropped")
    replica_check_interval_s: float = Field(
        5.0,
        gt=0.0,
        description="how often the state asks Serve which deployments have running replicas "
        "(every 0.5 s while one has none, for up to a minute after a change)",
    )
    circuit: CircuitConfig = CircuitConfig()
    deployment: DeploymentOptions = DeploymentOptions(
        num_replicas=1, max_ongoing_requests=256, ray_actor_options=ActorOptions(num_cpus=0.25)
    )

    @model_validator(mode="after")
    def _idle_not_faster(self) -> RouterConfig:
        if self.idle_sync_interval_s < self.sync_interval_s:
            raise ValueError(
                f"idle_sync_interval_s ({self.idle_sync_interval_s}) must be at least "
                f"sync_interval_s ({self.sync_interval_s})"
            )
        return self


class PoolConfig(StrictModel):
    """The shared model pool (placement ``pool``): one Serve deployment whose replicas load
    model versions on demand, keep at most ``max_models_per_replica`` (least recently used
    leave first) and autoscale on load; Serve routes a request to a replica that already
    holds its version.

    A request for a version that is still loading waits ``cold_start_timeout_s`` and is then
    answered by the experiment's default arm (a fallback, never a 5xx); an experiment
    created at runtime waits up to ``preload_timeout_s`` for its versions to load (and is
    refused with the loader's error when one cannot).
    """

    max_models_per_replica: int = Field(4, ge=1, le=1000)
    cold_start_timeout_s: float = Field(3.0, gt=0.0)
    preload_timeout_s: float = Field(120.0, gt=0.0)
    deployment: DeploymentOptions = DeploymentOptions(
        autoscaling_config={"min_replicas": 1, "max_replicas": 4, "target_ongoing_requests": 8},
        max_ongoing_requests=64,
        ray_actor_options=ActorOptions(num_cpus=0.25),
    )

    @model_validator(mode="after")
    def _no_batching(self) -> PoolConfig:
        if self.deployment.batching is not None:
            raise ValueError("pool.deployment.batching: the pool does not batch requests")
        return self


class ModelsConfig(StrictModel):
    """How the app keeps up with the model registry."""

    alias_poll_interval_s: float = Field(
        30.0, gt=0.0, description="how often arms on @alias or latest URIs look for a move"
    )


class StateConfig(StrictModel):
    """The experiment-state deployment (one replica): its size and placement."""

    ray_actor_options: ActorOptions = ActorOptions(num_cpus=0.1)


class LifecycleLoopConfig(StrictModel):
    """How often the state deployment judges experiments and records their history.

    The timeline (traffic share and reward over decisions and time, for the report and the
    live page) takes a sample of an experiment whenever it has routed
    ``timeline_every_decisions`` more decisions, and at least every
    ``timeline_interval_s`` while anything changes; beyond ``timeline_max_samples`` samples
    the older half is thinned, so history stays bounded while the recent part keeps its
    resolution.
    """

    evaluate_interval_s: float = Field(1.0, gt=0.0, le=3600.0)
    timeline_interval_s: float = Field(10.0, gt=0.0, description="traffic/reward history step")
    timeline_every_decisions: int = Field(25, ge=1)
    timeline_max_samples: int = Field(2000, ge=10)


class AppConfig(StrictModel):
    """Everything one bandit-serve application needs."""

    data_dir: str | None = Field(None, description=f"default ${HOME_ENV} or ./var")
    store_url: str | None = Field(None, description="SQLAlchemy URL; default SQLite in data_dir")
    mlflow_tracking_uri: str | None = Field(None, description="default SQLite in data_dir")
    check_models: bool = True
    auth: AuthConfig = AuthConfig()
    http: HttpConfig = HttpConfig()
    router: RouterConfig = RouterConfig()
    pool: PoolConfig = PoolConfig()
    models: ModelsConfig = ModelsConfig()
    state: StateConfig = StateConfig()
    lifecycle: LifecycleLoopConfig = LifecycleLoopConfig()
    experiments: list[ExperimentConfig] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_experiments(self) -> AppConfig:
        names = [experiment.name for experiment in self.experiments]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"experiment names must be unique; repeated: {duplicates}")
        return self

    def resolved(self) -> AppConfig:
        """A copy with data_dir, store_url and mlflow_tracking_uri made absolute and explicit,
        so every replica, wherever its working directory is, uses the same files."""
        data_dir = Path(self.data_dir or os.environ.get(HOME_ENV) or "var").expanduser()
        data_dir = data_dir.resolve()
        return self.model_copy(
            update={
                "data_dir": str(data_dir),
                "store_url": self.store_url or f"sqlite:///{data_dir / 'experiments.db'}",
                "mlflow_tracking_uri": self.mlflow_tracking_uri
                or f"sqlite:///{data_dir / 'mlflow.db'}",
            }
        )

    def experiment(self, name: str) -> ExperimentConfig:
        for experiment in self.experiments:
            if experiment.name == name:
                return experiment
        raise KeyError(name)


def format_location(loc: tuple[int | str, ...]) -> str:
    """``('experiments', 0, 'arms', 1, 'weight')`` -> ``experiments[0].arms[1].weight``."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part.startswith(("function-", "model-")):
            continue  # pydantic's validator frames, not user keys
        else:
            text += f".{part}" if text else str(part)
    return text or "(top level)"


def describe_validation_error(error: ValidationError) -> list[str]:
    """One ``path: message`` line per problem, in the user's vocabulary."""
    lines = []
    for problem in error.errors():
        location = format_location(tuple(problem["loc"]))
        message = problem["msg"].removeprefix("Value error, ")
        if message.startswith("policy.params: "):  # raised by the experiment's validator
            location += ".policy.params"
            message = message.removeprefix("policy.params: ")
        if problem["type"] == "missing":
            message = "required key is missing"
        elif str(problem["loc"][-1] if problem["loc"] else "") in SECRET_FIELDS:
            message += " (value not shown)"
        elif "input" in problem and problem["type"] not in ("value_error",):
            shown = repr(problem["input"])
            message += f" (got {shown[:80]})"
        lines.append(f"{location}: {message}")
    return lines


def parse_config(args: dict[str, Any] | AppConfig) -> AppConfig:
    """Validate the app's ``args`` into an :class:`AppConfig` with resolved paths.

    Raises:
        ConfigError: naming the path of every invalid value.
    """
    if isinstance(args, AppConfig):
        return args.resolved()
    if not isinstance(args, dict):
        raise ConfigError(f"invalid bandit-serve config: expected a mapping, got {type(args)}")
    try:
        config = AppConfig.model_validate(args)
    except ValidationError as error:
        lines = "\n  ".join(describe_validation_error(error))
        raise ConfigError(f"invalid bandit-serve config:\n  {lines}") from None
    config.auth.tokens()  # a short token from the environment stops the app here
    return config.resolved()
