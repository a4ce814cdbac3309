"""Contextual experiments in serving: the request's context, and what its feedback teaches.

A contextual experiment (``policy.name`` in :data:`bandits.contextual.CONTEXTUAL_POLICIES`)
routes each request on a vector encoded from its ``"context"`` object and feature row by the
experiment's :class:`~bandits.contextual.ContextSpec` (:func:`encode_request`). The router
logs the vector and the propensity with the decision in the decision log; the feedback
joins the same record later (or first: either may arrive first).

Learning happens where the two meet, in the store's transaction: a decision whose context
and *learned* reward are both in the log adds ``RidgeStats.from_observation(x, r)`` to its
arm (:func:`ridge_delta`), exactly once (the row completes once). The sums are persisted
per arm and per encoding (:attr:`ExperimentConfig.context_key`) in the same transaction, and
the state adds the same delta to memory, so a restart loads exactly what was learned, even
after the bounded decision log has pruned the rows it came from. (Rebuilding from the log
on restore would have been simpler but would forget every pruned decision, so a restarted
state would route differently from the one before it.) A changed encoding starts afresh:
old vectors mean something else.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from bandits.contextual import ContextError, ContextSpec, FeatureColumns, RidgeStats
from serve_app.config import ExperimentConfig
from serve_app.errors import InvalidRequest

MAX_CONTEXT_FIELDS = 64
"""The most keys a request's ``context`` object may have."""

_FIELD = re.compile(r"context field '([^']+)'")


@dataclass(frozen=True)
class ContextModel:
    """What the store needs to learn one contextual experiment: its encoding, arms and
    dimension (rows of another dimension, from an older encoding, are not learned)."""

    key: str
    arms: frozenset[str]
    dim: int

    @classmethod
    def of(cls, config: ExperimentConfig) -> ContextModel | None:
        spec, key = config.context_spec, config.context_key
        if spec is None or key is None:
            return None
        return cls(key=key, arms=frozenset(config.arm_names), dim=spec.dim)


def encode_request(
    spec: ContextSpec, context: Mapping[str, Any] | None, features: np.ndarray
) -> np.ndarray:
    """The context vector of one request.

    Feature columns read the request's row, so a request to an experiment whose context
    takes feature columns must send exactly one row.

    Raises:
        InvalidRequest: The context does not fit the spec (422 naming ``context.<field>``,
            or ``features`` for feature columns).
    """
    takes_row = any(isinstance(f, FeatureColumns) for f in spec.fields)
    if takes_row and len(features) != 1:
        raise InvalidRequest(
            f"features: this experiment's context reads feature columns of the request's row, "
            f"so a request sends exactly one row, got {len(features)}",
            field="features",
        )
    try:
        return spec.encode(context or {}, features[0] if takes_row else None)
    except ContextError as error:
        found = _FIELD.search(str(error))
        where = f"context.{found.group(1)}" if found else "features" if takes_row else "context"
        raise InvalidRequest(str(error), field=where) from None


def ridge_delta(
    rows: Iterable[tuple[str, str, str, Any, float]], models: Mapping[str, ContextModel]
) -> dict[tuple[str, str], RidgeStats]:
    """Per ``(experiment, arm)``, the ridge statistics of completed decisions.

    Args:
        rows: ``(decision_key, experiment, arm, context, reward)`` of logged decisions whose
            context and learned reward are both known now; ``context`` a list of floats.
        models: The contextual experiments (others' rows are skipped), by name.

    Rows are summed in decision-key order, so the same rows give the same sums however a
    batch delivered them; a row of an unknown arm or another dimension is skipped.

    Example:
        >>> model = ContextModel("k", frozenset({"a", "b"}), 2)
        >>> delta = ridge_delta([("2", "e", "a", [1.0, 2.0], 1.0),
        ...                      ("1", "e", "a", [1.0, 0.0], 0.0),
        ...                      ("3", "e", "c", [1.0, 1.0], 1.0)], {"e": model})
        >>> sorted(delta), delta[("e", "a")].n, delta[("e", "a")].xty.tolist()
        ([('e', 'a')], 2, [1.0, 2.0])
    """
    grouped: dict[tuple[str, str], list[tuple[str, list[float], float]]] = {}
    for key, experiment, arm, context, reward in rows:
        model = models.get(experiment)
        if model is None or arm not in model.arms or not isinstance(context, list):
            continue
        if len(context) != model.dim:
            continue
        grouped.setdefault((experiment, arm), []).append((key, context, float(reward)))
    delta = {}
    for group, items in sorted(grouped.items()):
        items.sort(key=lambda item: item[0])
        stats = RidgeStats.zeros(len(items[0][1]))
        for _, context, reward in items:
            stats = stats + RidgeStats.from_observation(context, reward)
        delta[group] = stats
    return delta
