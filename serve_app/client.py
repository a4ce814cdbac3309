"""A Python client for a running bandit-serve app, synchronous (:class:`Client`) and
asynchronous (:class:`AsyncClient`), on httpx.

Example (against ``make run``)::

    from serve_app.client import Client

    with Client("http://127.0.0.1:8000") as bandit:
        decision = bandit.predict([[0.0] * 64], experiment="digits")
        bandit.feedback(decision.decision_id, reward=1.0)
        print(bandit.experiment("digits")["arms"])

What a caller can rely on:

- **Typed results**: :class:`Prediction` and :class:`FeedbackReceipt` (dataclasses); the
  read side returns the server's JSON documents as dicts.
- **Errors carry the server's words**: any non-2xx answer raises :class:`BanditServeError`
  with ``status``, ``code``, ``message`` and ``field`` from the response body.
- **Retries that are safe**: feedback is retried on timeouts, connection errors and
  502/503/504, because the server recognises a repeated feedback (the answer then says
  ``replayed=True`` and nothing is counted twice); reads are retried the same way. A
  prediction is retried only when the request never reached the server (a connection that
  could not be made), since each prediction is a new decision.
- **Timeouts** on every call (``timeout``, seconds), and nothing taken from proxy
  environment variables (``trust_env=False``).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any
from urllib.parse import quote

import httpx

__all__ = ["AsyncClient", "BanditServeError", "Client", "FeedbackReceipt", "Prediction"]

DEFAULT_URL = "http://127.0.0.1:8000"
RETRY_STATUSES = frozenset({502, 503, 504})


class BanditServeError(Exception):
    """A non-2xx answer (or no answer at all: ``status`` 0) from the app."""

    def __init__(
        self, status: int, message: str, *, code: str = "", field: str | None = None, path: str = ""
    ) -> None:
        where = f" from {path}" if path else ""
        super().__init__(f"HTTP {status}{where}: {message}" if status else message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.path = path


@dataclass(frozen=True)
class Prediction:
    """The answer of ``POST /predict``."""

    predictions: list[Any]
    arm: str
    decision_id: str
    propensity: float
    experiment: str
    fallback: bool = False
    forced: bool = False
    model_version: str | None = None


@dataclass(frozen=True)
class FeedbackReceipt:
    """The answer of ``POST /feedback``: durable once received."""

    experiment: str
    arm: str
    reward: float
    learned: bool
    replayed: bool = False


@dataclass(frozen=True)
class _Call:
    """One request, and whether sending it twice is harmless."""

    method: str
    path: str
    body: Any = None
    params: Mapping[str, Any] | None = None
    idempotent: bool = True
    control: bool = False


def _typed(cls: Any, body: Mapping[str, Any]) -> Any:
    """A result dataclass from a response body (fields a newer server adds are ignored)."""
    names = {f.name for f in fields(cls)}
    return cls(**{key: value for key, value in body.items() if key in names})


def _error(response: httpx.Response) -> BanditServeError:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, Mapping):
        message = str(body.get("message") or body.get("error") or response.text)
        return BanditServeError(
            response.status_code,
            message,
            code=str(body.get("error", "")),
            field=body.get("field"),
            path=response.request.url.path,
        )
    text = response.text.strip().replace("\n", " ")[:300] or response.reason_phrase
    return BanditServeError(response.status_code, text, path=response.request.url.path)


class _Base:
    """Request building and answer parsing, shared by both clients."""

    def __init__(
        self,
        url: str,
        token: str | None,
        control_token: str | None,
        retries: int,
        backoff_s: float,
    ) -> None:
        base = url.strip().rstrip("/")
        if not base.startswith(("http://", "https://")):
            raise ValueError(f"URL must start with http:// or https://, got {url!r}")
        self.url = base
        self.token = token
        self.control_token = control_token
        self.retries = max(0, retries)
        self.backoff_s = backoff_s

    def _headers(self, call: _Call) -> dict[str, str]:
        token = self.control_token if call.control and self.control_token else self.token
        return {"authorization": f"Bearer {token}"} if token else {}

    def _retry_delay(self, error: Exception, call: _Call, attempt: int) -> float:
        """Seconds to wait before attempt ``attempt + 1``; raises when it must not be retried
        (a transport failure as a :class:`BanditServeError` with status 0)."""
        if isinstance(error, httpx.ConnectError):
            retryable = True  # never reached the server
        elif not call.idempotent:
            retryable = False
        elif isinstance(error, BanditServeError):
            retryable = error.status in RETRY_STATUSES
        else:
            retryable = isinstance(error, httpx.TransportError)
        if attempt < self.retries and retryable:
            return float(self.backoff_s * 2**attempt)
        if isinstance(error, httpx.HTTPError):
            raise BanditServeError(0, f"{type(error).__name__}: {error}", path=call.path) from error
        raise error

    def _request(self, call: _Call) -> dict[str, Any]:
        """The keyword arguments of the httpx request for ``call``."""
        return {
            "method": call.method,
            "url": call.path,
            "json": call.body,
            "params": call.params,
            "headers": self._headers(call),
        }

    @staticmethod
    def _parse(response: httpx.Response) -> Any:
        if response.status_code >= 400:
            raise _error(response)
        try:
            return response.json()
        except ValueError:
            return response.text

    # requests ---------------------------------------------------------------

    @staticmethod
    def _predict(
        features: Sequence[Sequence[float]],
        experiment: str | None,
        unit_id: str | None,
        arm: str | None,
    ) -> _Call:
        body: dict[str, Any] = {"features": [list(row) for row in features]}
        for key, value in (("experiment", experiment), ("unit_id", unit_id), ("arm", arm)):
            if value is not None:
                body[key] = value
        return _Call("POST", "/predict", body, idempotent=False, control=arm is not None)

    @staticmethod
    def _feedback(
        decision_id: str,
        reward: float,
        metrics: Mapping[str, float] | None,
        label: bool | int | float | str | None = None,
        covariate: float | None = None,
    ) -> _Call:
        body: dict[str, Any] = {"decision_id": decision_id, "reward": reward}
        if metrics:
            body["metrics"] = dict(metrics)
        if label is not None:
            body["label"] = label
        if covariate is not None:
            body["covariate"] = covariate
        return _Call("POST", "/feedback", body)

    def _plan(self, name: str, params: Mapping[str, Any]) -> _Call:
        query = {
            key: str(value).lower() if isinstance(value, bool) else value
            for key, value in params.items()
            if value is not None
        }
        return _Call("GET", f"/experiments/{self._name(name)}/plan", params=query)

    @staticmethod
    def _name(name: str) -> str:
        return quote(name, safe="")

    def _report(self, name: str, timeline_points: int) -> _Call:
        return _Call(
            "GET",
            f"/experiments/{self._name(name)}/report",
            params={"timeline_points": timeline_points},
            control=self.control_token is not None,  # the audit log comes with it
        )

    def _decisions(
        self, name: str, after: str | None, limit: int, labelled: bool, challengers: bool
    ) -> _Call:
        params: dict[str, Any] = {
            "limit": limit,
            "labelled": str(labelled).lower(),
            "challengers": str(challengers).lower(),
        }
        if after is not None:
            params["after"] = after
        path = f"/experiments/{self._name(name)}/decisions"
        return _Call("GET", path, params=params, control=True)

    def _ope(
        self,
        name: str,
        policies: Sequence[str],
        estimators: Sequence[str] | None,
        level: float,
        clip: float | None,
    ) -> _Call:
        params: dict[str, Any] = {"policy": list(policies), "level": level}
        if estimators:
            params["estimator"] = list(estimators)
        if clip is not None:
            params["clip"] = clip
        return _Call("GET", f"/experiments/{self._name(name)}/ope", params=params, control=True)

    def _control(self, name: str, action: str, body: Mapping[str, Any]) -> _Call:
        method = "PUT" if action == "weights" else "POST"
        return _Call(method, f"/experiments/{self._name(name)}/{action}", dict(body), control=True)


class Client(_Base):
    """A synchronous client (see the module docstring).

    Args:
        url: The app's base URL.
        token: Data-plane token (``Authorization: Bearer``), when the app protects it.
        control_token: Control token (control plane, forcing arms, the report's audit log).
        timeout: Seconds per request.
        retries: Extra attempts for retryable failures.
        backoff_s: First retry delay (doubled per attempt).
        transport: An httpx transport (tests).
    """

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        token: str | None = None,
        control_token: str | None = None,
        timeout: float = 10.0,
        retries: int = 3,
        backoff_s: float = 0.2,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(url, token, control_token, retries, backoff_s)
        self._http = httpx.Client(
            base_url=self.url, timeout=timeout, trust_env=False, transport=transport
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _send(self, call: _Call) -> Any:
        for attempt in itertools.count():
            try:
                return self._parse(self._http.request(**self._request(call)))
            except (httpx.HTTPError, BanditServeError) as error:
                time.sleep(self._retry_delay(error, call, attempt))

    def predict(
        self,
        features: Sequence[Sequence[float]],
        *,
        experiment: str | None = None,
        unit_id: str | None = None,
        arm: str | None = None,
    ) -> Prediction:
        """Route rows to an arm; ``arm`` forces one (needs the control or QA token)."""
        return _typed(Prediction, self._send(self._predict(features, experiment, unit_id, arm)))

    def feedback(
        self,
        decision_id: str,
        reward: float,
        *,
        metrics: Mapping[str, float] | None = None,
        label: bool | int | float | str | None = None,
        covariate: float | None = None,
    ) -> FeedbackReceipt:
        """Send a decision's reward, its metrics, the true label of its input (what the
        decision log keeps for retraining) and the unit's pre-experiment covariate (CUPED);
        retried safely until acknowledged."""
        call = self._feedback(decision_id, reward, metrics, label, covariate)
        return _typed(FeedbackReceipt, self._send(call))

    def plan(self, name: str, **params: Any) -> dict[str, Any]:
        """Users and days to detect ``mde`` (see ``GET /experiments/{name}/plan``)."""
        return dict(self._send(self._plan(name, params)))

    def experiments(self) -> list[dict[str, Any]]:
        return list(self._send(_Call("GET", "/experiments"))["experiments"])

    def experiment(self, name: str) -> dict[str, Any]:
        return dict(self._send(_Call("GET", f"/experiments/{self._name(name)}")))

    def report(self, name: str, *, timeline_points: int = 500) -> dict[str, Any]:
        return dict(self._send(self._report(name, timeline_points)))

    def control(self, name: str, action: str, **body: Any) -> dict[str, Any]:
        """``pause``, ``resume``, ``start``, ``stop``, ``rollback``, ``promote`` (``arm=``) or
        ``weights`` (``weights=``), with an optional ``reason``."""
        return dict(self._send(self._control(name, action, body)))

    def decisions(
        self,
        name: str,
        *,
        labelled: bool = False,
        challengers: bool = False,
        page: int = 1000,
    ) -> Iterator[dict[str, Any]]:
        """Every logged decision of an experiment with its feedback, oldest first, fetched a
        page at a time (control token)."""
        after = None
        while True:
            body = self._send(self._decisions(name, after, page, labelled, challengers))
            yield from body["rows"]
            after = body["next"]
            if after is None:
                return

    def retraining(self, name: str) -> list[dict[str, Any]]:
        """The experiment's retraining runs (control token)."""
        path = f"/experiments/{self._name(name)}/retraining"
        return list(self._send(_Call("GET", path, control=True))["runs"])

    def ope(
        self,
        name: str,
        policies: Sequence[str],
        *,
        estimators: Sequence[str] | None = None,
        level: float = 0.95,
        clip: float | None = None,
    ) -> dict[str, Any]:
        """Off-policy estimates of candidate policies on the experiment's decision log
        (control token); see ``GET /experiments/{name}/ope``."""
        return dict(self._send(self._ope(name, policies, estimators, level, clip)))


class AsyncClient(_Base):
    """The asynchronous twin of :class:`Client` (same arguments, ``await`` every call)."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        token: str | None = None,
        control_token: str | None = None,
        timeout: float = 10.0,
        retries: int = 3,
        backoff_s: float = 0.2,
        max_connections: int = 16,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(url, token, control_token, retries, backoff_s)
        self._http = httpx.AsyncClient(
            base_url=self.url,
            timeout=timeout,
            trust_env=False,
            transport=transport,
            limits=httpx.Limits(max_connections=max_connections),
        )

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _send(self, call: _Call) -> Any:
        for attempt in itertools.count():
            try:
                return self._parse(await self._http.request(**self._request(call)))
            except (httpx.HTTPError, BanditServeError) as error:
                await asyncio.sleep(self._retry_delay(error, call, attempt))

    async def predict(
        self,
        features: Sequence[Sequence[float]],
        *,
        experiment: str | None = None,
        unit_id: str | None = None,
        arm: str | None = None,
    ) -> Prediction:
        body = await self._send(self._predict(features, experiment, unit_id, arm))
        return _typed(Prediction, body)

    async def feedback(
        self,
        decision_id: str,
        reward: float,
        *,
        metrics: Mapping[str, float] | None = None,
        label: bool | int | float | str | None = None,
        covariate: float | None = None,
    ) -> FeedbackReceipt:
        body = await self._send(self._feedback(decision_id, reward, metrics, label, covariate))
        return _typed(FeedbackReceipt, body)

    async def plan(self, name: str, **params: Any) -> dict[str, Any]:
        return dict(await self._send(self._plan(name, params)))

    async def experiments(self) -> list[dict[str, Any]]:
        return list((await self._send(_Call("GET", "/experiments")))["experiments"])

    async def experiment(self, name: str) -> dict[str, Any]:
        return dict(await self._send(_Call("GET", f"/experiments/{self._name(name)}")))

    async def report(self, name: str, *, timeline_points: int = 500) -> dict[str, Any]:
        return dict(await self._send(self._report(name, timeline_points)))

    async def control(self, name: str, action: str, **body: Any) -> dict[str, Any]:
        return dict(await self._send(self._control(name, action, body)))

    async def ope(
        self,
        name: str,
        policies: Sequence[str],
        *,
        estimators: Sequence[str] | None = None,
        level: float = 0.95,
        clip: float | None = None,
    ) -> dict[str, Any]:
        return dict(await self._send(self._ope(name, policies, estimators, level, clip)))
