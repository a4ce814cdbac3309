"""``GET /experiments/{name}/plan`` over HTTP, mixed into the router deployment.

"How many users and how many days at today's traffic to detect X with power P": the
fixed-horizon test, the sequential rule and the Bayesian rule, from the experiment's own
baseline, variance and decisions per day (each can be overridden), computed by the state
(:func:`serve_app.experiment.planning.plan_for`). Every query parameter is typed and bounded;
a bad one is a 422 naming it.
"""

# No `from __future__ import annotations` here: FastAPI reads the endpoint annotations.
from typing import Any, Literal

from fastapi import Query, Request

from serve_app.errors import InvalidRequest
from serve_app.ingress.http import ERRORS, app


class PlanEndpoints:
    """The planning route (see the module docstring)."""

    @app.get("/experiments/{name}/plan", responses=ERRORS)
    async def plan(
        self,
        name: str,
        request: Request,
        mde: float = Query(
            ..., gt=0.0, le=1e6, description="effect to detect (a fraction when relative)"
        ),
        relative: bool = Query(True, description="mde is relative to the control's mean"),
        power: float = Query(0.8, ge=0.5, le=0.99),
        alpha: float = Query(0.05, ge=1e-6, le=0.5, description="family-wise level"),
        alternative: Literal["two-sided", "greater", "less"] = "two-sided",
        rule: Literal["all", "fixed", "sequential", "bayesian"] = "all",
        baseline: float | None = Query(
            None, ge=-1e15, le=1e15, description="override the control's observed mean"
        ),
        sd: float | None = Query(
            None, gt=0.0, le=1e15, description="override the observed standard deviation"
        ),
        daily_traffic: float | None = Query(
            None, gt=0.0, le=1e12, description="override the observed decisions per day"
        ),
    ) -> Any:
        """Users per arm and days to detect ``mde`` with ``power``, per stopping rule, with
        one sentence that says it (``summary``)."""
        self.auth.data(request.headers.get("authorization"))  # type: ignore[attr-defined]
        if name not in self.experiments:  # type: ignore[attr-defined]
            raise self._unknown(name)  # type: ignore[attr-defined]
        options = {
            "mde": mde,
            "relative": relative,
            "power": power,
            "alpha": alpha,
            "alternative": alternative,
            "rule": rule,
            "baseline": baseline,
            "sd": sd,
            "daily_traffic": daily_traffic,
        }
        plan = await self.link.state.plan.remote(name, options)  # type: ignore[attr-defined]
        if plan is None:
            raise self._unknown(name)  # type: ignore[attr-defined]
        if "error" in plan:
            raise InvalidRequest(plan["error"]["message"], field=plan["error"]["field"])
        return plan
