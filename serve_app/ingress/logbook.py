"""The decision log and the retraining runs over HTTP, mixed into the router deployment.

- ``GET /experiments/{name}/decisions``: the logged decisions that received feedback,
  oldest first, a page at a time (``after``: the ``next`` cursor of the previous page);
  ``challengers=true`` adds the rows of its retraining challengers, which served its
  traffic. The CLI's ``bandit-serve decisions`` writes them as CSV or Parquet.
- ``GET /experiments/{name}/retraining``: every retraining run of the experiment.
- ``GET /experiments/{name}/ope?policy=...``: off-policy estimates of candidate policies on
  the log (:mod:`serve_app.experiment.offpolicy`); ``bandit-serve ope`` prints them.

All need the control token: the log holds the requests' inputs.
"""

# No `from __future__ import annotations` here: FastAPI reads the endpoint annotations.
import re
from typing import Any

from fastapi import Query, Request

from serve_app.errors import Conflict, InvalidRequest, NotFound
from serve_app.experiment.offpolicy import MAX_CANDIDATES, check_estimators, parse_candidate
from serve_app.ingress.http import ERRORS, app

MAX_PAGE = 5000
POLICY_QUERY = Query(..., max_length=MAX_CANDIDATES, description="a candidate; repeatable")
ESTIMATOR_QUERY = Query(None, max_length=8, description="ips, snips, dm or dr; repeatable")
CURSOR = re.compile(r"^\d+(\.\d+)?(e[+-]?\d+)?/[0-9A-Za-z_-]{1,64}$")


class DecisionLogEndpoints:
    """Routes of the decision log (see the module docstring)."""

    @app.get("/experiments/{name}/decisions", responses=ERRORS)
    async def decisions(
        self,
        name: str,
        request: Request,
        after: str | None = Query(None, max_length=100),
        limit: int = Query(1000, ge=1, le=MAX_PAGE),
        labelled: bool = False,
        challengers: bool = False,
    ) -> Any:
        """Logged decisions with their feedback (features, predictions, arm, propensity,
        reward, label, metrics, times), oldest first; ``next`` is the cursor of the next
        page (null on the last)."""
        self.auth.control(request.headers.get("authorization"))  # type: ignore[attr-defined]
        self._logging_experiment(name)
        if after is not None and not CURSOR.match(after):
            raise InvalidRequest(
                "after: the 'next' cursor of the previous page, as it was returned",
                field="after",
            )
        state = self.link.state  # type: ignore[attr-defined]
        rows = await state.decisions.remote(name, after, limit, labelled, challengers)
        return {"rows": rows, "next": rows[-1]["cursor"] if len(rows) == limit else None}

    @app.get("/experiments/{name}/ope", responses=ERRORS)
    async def ope(
        self,
        name: str,
        request: Request,
        policy: list[str] = POLICY_QUERY,
        estimator: list[str] | None = ESTIMATOR_QUERY,
        level: float = Query(0.95, gt=0.5, lt=1.0),
        clip: float | None = Query(None, ge=1.0, le=1e6),
    ) -> Any:
        """What each candidate ``policy`` (repeatable: ``uniform``, ``always:<arm>``,
        ``fixed:a=0.3,b=0.7``, ``policy:<name>``, ``contextual:<name>``, ``experiment``, with
        optional JSON parameters, or a JSON candidate) would have earned per decision on the
        logged traffic, by each ``estimator`` (ips, snips, dm, dr; default all) with a
        ``level`` interval, the effective sample size and a warning when unreliable;
        ``clip`` caps the importance weights (biased; see bandits.ope)."""
        self.auth.control(request.headers.get("authorization"))  # type: ignore[attr-defined]
        self._logging_experiment(name)
        config = self.experiments[name].config  # type: ignore[attr-defined]
        candidates = [parse_candidate(spec, config).to_dict() for spec in policy]
        estimators = check_estimators(estimator)
        state = self.link.state  # type: ignore[attr-defined]
        result = await state.ope.remote(name, candidates, estimators, level, clip)
        if "error" in result:
            error_type = InvalidRequest if result["status"] == 422 else Conflict
            raise error_type(result["error"])
        return result["ok"]

    @app.get("/experiments/{name}/retraining", responses=ERRORS)
    async def retraining(self, name: str, request: Request) -> Any:
        """The experiment's retraining runs, oldest first: trigger, rows used (count, time
        range, SHA-256), the version registered, the challenger testing it and its
        outcome, or the error."""
        self.auth.control(request.headers.get("authorization"))  # type: ignore[attr-defined]
        routed = self.experiments.get(name)  # type: ignore[attr-defined]
        if routed is None:
            raise self._unknown(name)  # type: ignore[attr-defined]
        if routed.config.retrain is None:
            raise NotFound(
                f"experiment {name!r} does not retrain; add a 'retrain' section to its config",
                field="name",
            )
        return {"runs": await self.link.state.retrain_runs.remote(name)}  # type: ignore[attr-defined]

    def _logging_experiment(self, name: str) -> None:
        routed = self.experiments.get(name)  # type: ignore[attr-defined]
        if routed is None:
            raise self._unknown(name)  # type: ignore[attr-defined]
        if routed.config.decision_log is None:
            raise NotFound(
                f"experiment {name!r} keeps no decision log; add a 'decision_log' section "
                "to its config",
                field="name",
            )
