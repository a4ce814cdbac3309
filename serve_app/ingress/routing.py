"""How one router replica routes one experiment: policy, circuit breakers and overrides.

A decision is one of:

- the policy's choice on the local snapshot (``learned``), re-drawn among healthy arms when
  the chosen arm's circuit is open or a guardrail rolled it back. With weights ``w`` and that
  set ``O`` an arm ``a`` is then routed with probability
  ``w_a + (sum_O w) w_a / H = w_a / H``, ``H = sum_{b not in O} w_b``, which is the
  propensity logged for every decision while ``O`` is not empty, so learning and
  inverse-propensity estimates stay unbiased;
- for a contextual experiment, the same on the contextual policy's probabilities for the
  request's context vector (:mod:`serve_app.experiment.contextual`);
- a forced arm (a QA override, token-protected) or the one arm of a paused or concluded
  experiment, with propensity 1 and kept out of learning. A forced arm whose circuit is open
  is not called: the request gets 503 (retry later), the arm is left alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bandits import Decision, Policy
from bandits.contextual import ContextSpec, ContextualPolicy
from serve_app.config import CircuitConfig, ExperimentConfig, ModelConfig
from serve_app.errors import InvalidRequest, Unavailable
from serve_app.experiment.live import ExperimentSnapshot
from serve_app.ingress.circuit import CircuitBreaker


@dataclass(frozen=True, slots=True)
class Route:
    """Where one request goes, and whether its feedback may teach the policy."""

    arm: str
    propensity: float
    learned: bool
    forced: bool = False
    weights: dict[str, float] | None = None  # every arm's routing probability (learned only)


@dataclass
class RoutedExperiment:
    """The router-local view of one experiment, refreshed by every state sync.

    ``backends`` (and ``shadow_backends``) are whatever answers for an arm: see
    :mod:`serve_app.ingress.dispatch`.
    """

    config: ExperimentConfig
    revision: int
    policy: Policy
    backends: dict[str, Any]
    shadow_backends: dict[str, Any]
    breakers: dict[str, CircuitBreaker]
    status: str = "running"
    route_to: str | None = None
    excluded: frozenset[str] = frozenset()  # rolled back by a guardrail: weight 0
    delegate: str | None = None  # a retraining challenger serves this traffic while it runs
    rng: np.random.Generator = field(default_factory=np.random.default_rng)
    contextual: ContextualPolicy | None = None  # routes a contextual experiment
    context_spec: ContextSpec | None = None  # encodes its requests' context

    def __post_init__(self) -> None:
        self.contextual = self.config.build_contextual_policy(self.revision)
        self.context_spec = self.config.context_spec

    @classmethod
    def create(
        cls,
        config: ExperimentConfig,
        snapshot: ExperimentSnapshot,
        backends: dict[str, Any],
        shadow_backends: dict[str, Any],
        circuit: CircuitConfig,
    ) -> RoutedExperiment:
        routed = cls(
            config=config,
            revision=snapshot.revision,
            policy=config.build_policy(snapshot.revision),
            backends=backends,
            shadow_backends=shadow_backends,
            breakers={
                arm: CircuitBreaker(circuit.failure_threshold, circuit.cooldown_s)
                for arm in config.arm_names
            },
        )
        routed.apply(snapshot)
        return routed

    @property
    def name(self) -> str:
        return self.config.name

    def apply(self, snapshot: ExperimentSnapshot) -> None:
        """Take a snapshot from the state: merged stats, status, and a new config if any
        (validated once, by the state; it arrives typed)."""
        if snapshot.config is not None:
            self.config = snapshot.config
        if snapshot.revision != self.revision:
            self.policy = self.config.build_policy(snapshot.revision)
            self.contextual = self.config.build_contextual_policy(snapshot.revision)
            self.context_spec = self.config.context_spec
            self.revision = snapshot.revision
        self.status = snapshot.status
        self.route_to = snapshot.route_to
        self.excluded = snapshot.excluded
        self.delegate = snapshot.delegate
        self.policy.set_stats(snapshot.stats)
        if self.contextual is not None and snapshot.context_stats is not None:
            arms = set(self.contextual.arms)
            learned = {a: s for a, s in snapshot.context_stats.items() if a in arms}
            if all(s.dim == self.contextual.dim for s in learned.values()):
                self.contextual.set_stats(learned)

    def route(
        self, unit_id: str | None, forced_arm: str | None, context: np.ndarray | None = None
    ) -> Route:
        """Decide the arm for one request (``context``: its encoded vector, for a
        contextual experiment).

        Raises:
            InvalidRequest: a forced arm that is not an arm of the experiment (422).
            Unavailable: a forced arm whose circuit is open (503).
        """
        if forced_arm is not None:
            if forced_arm not in self.backends:
                raise InvalidRequest(
                    f"arm {forced_arm!r} is not an arm of experiment {self.config.name!r}; "
                    f"arms: {', '.join(self.config.arm_names)}",
                    field="arm",
                )
            breaker = self.breakers[forced_arm]
            if breaker.refuses():
                raise Unavailable(
                    f"arm {forced_arm!r} of experiment {self.config.name!r} is "
                    f"{breaker.state()} (its circuit breaker refuses calls); retry later"
                )
            return Route(forced_arm, 1.0, learned=False, forced=True)
        if self.route_to is not None:
            return Route(self.route_to, 1.0, learned=False)
        decision, weights = self._select_healthy(unit_id, context)
        return Route(decision.arm, decision.propensity, learned=True, weights=weights)

    def _select_healthy(
        self, unit_id: str | None, context: np.ndarray | None = None
    ) -> tuple[Decision, dict[str, float]]:
        """The decision, and the probabilities every arm had of it (for SRM checks)."""
        refusing = {arm for arm, breaker in self.breakers.items() if breaker.refuses()}
        refusing |= self.excluded
        if self.contextual is not None:
            if context is None:  # the router encodes every request of a contextual experiment
                raise InvalidRequest("context: required by this experiment", field="context")
            decision = self.contextual.select(context)
            weights = self.contextual.probabilities(context)
        else:
            decision = self.policy.select(unit_id)
            weights = self.policy.weights()
        if not refusing:
            self.breakers[decision.arm].allows()
            return decision, weights
        healthy = {arm: w for arm, w in weights.items() if w > 0 and arm not in refusing}
        if not healthy:  # every arm still in refuses: let one try, the fallback answers
            healthy = {arm: w for arm, w in weights.items() if w > 0 and arm not in self.excluded}
        if not healthy:
            return decision, weights
        arm = decision.arm
        if arm not in healthy:  # re-draw among healthy arms in proportion to their weights
            names = list(healthy)
            shares = np.array([healthy[name] for name in names]) / sum(healthy.values())
            arm = names[int(self.rng.choice(len(names), p=shares))]
        self.breakers[arm].allows()  # claims the probe of a half-open arm
        total = sum(healthy.values())
        effective = {name: healthy.get(name, 0.0) / total for name in weights}
        return Decision(arm, effective[arm]), effective

    def model(self, arm: str) -> ModelConfig:
        """The config of an arm or shadow (placement, serving URI, timeout)."""
        return self.config.model(arm)

    def model_version(self, arm: str) -> str | None:
        return self.model(arm).model_version
