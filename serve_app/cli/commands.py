"""The ``bandit-serve`` command line: demo models, a traffic simulator and a status view.

Commands:
    demo-models  Train and register the digits demo models in a local MLflow store.
    simulate     Drive a running app over HTTP with the digits hold-out set and send
                 feedback, then compare our own tally with the server's view.
    status       Show the server's per-arm statistics for one or all experiments.
    report       Fetch an experiment's report, print its tables and write report.json,
                 PNG charts and a self-contained report.html into a folder.

The simulator lives in :func:`run_simulation`, a plain coroutine that end-to-end tests
call directly; the ``simulate`` command only parses options and renders tables.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import httpx
import numpy as np
import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

__all__ = [
    "ArmTally",
    "SimulationResult",
    "app",
    "data_dir_default",
    "drift_amount",
    "drifted_features",
    "experiment_table",
    "main",
    "parse_reward_rates",
    "run_simulation",
    "tally_table",
]

DEFAULT_URL = "http://127.0.0.1:8000"
HOME_ENV = "BANDIT_SERVE_HOME"
_HTTP_TIMEOUT_S = 30.0
_MAX_ERROR_SAMPLES = 5

console = Console()
app = typer.Typer(
    name="bandit-serve",
    help="A/B testing and multi-armed-bandit routing for ML models on Ray Serve.",
    no_args_is_help=True,
    add_completion=False,
)


# --------------------------------------------------------------------------- helpers


def data_dir_default() -> Path:
    """The data directory: ``$BANDIT_SERVE_HOME`` if set, else ``./var``."""
    return Path(os.environ.get(HOME_ENV) or "var")


def parse_reward_rates(text: str | None) -> dict[str, float] | None:
    """Parse ``--reward-rates`` such as ``"logreg=0.3,forest=0.6"``.

    Args:
        text: Comma-separated ``arm=rate`` pairs; rates are probabilities in ``[0, 1]``.
            None or blank means "no rates" (rewards come from prediction correctness).

    Returns:
        Arm name -> rate, or None.

    Raises:
        typer.BadParameter: On a malformed pair, a non-numeric or out-of-range rate,
            an empty arm name or a repeated arm.

    Example:
        >>> parse_reward_rates("logreg=0.3, forest=0.6")
        {'logreg': 0.3, 'forest': 0.6}
        >>> parse_reward_rates(None) is None
        True
    """
    if text is None or not text.strip():
        return None
    rates: dict[str, float] = {}
    for raw in text.split(","):
        pair = raw.strip()
        if not pair:
            continue
        arm, sep, value = pair.partition("=")
        arm, value = arm.strip(), value.strip()
        if not sep or not arm or not value:
            raise typer.BadParameter(f"expected ARM=RATE pairs like 'logreg=0.3', got {pair!r}")
        try:
            rate = float(value)
        except ValueError:
            raise typer.BadParameter(f"rate for arm {arm!r} is not a number: {value!r}") from None
        if not (math.isfinite(rate) and 0.0 <= rate <= 1.0):
            raise typer.BadParameter(f"rate for arm {arm!r} must be in [0, 1], got {value}")
        if arm in rates:
            raise typer.BadParameter(f"arm {arm!r} is given more than once")
        rates[arm] = rate
    if not rates:
        raise typer.BadParameter("no ARM=RATE pairs given")
    return rates


def _base_url(url: str) -> str:
    """Normalise a base URL (no trailing slash); ValueError unless http(s)."""
    base = url.strip().rstrip("/")
    if not base.startswith(("http://", "https://")):
        raise ValueError(f"URL must start with http:// or https://, got {url!r}")
    return base


def _url_option(value: str) -> str:
    try:
        return _base_url(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def _reward_rates_option(value: str | None) -> str | None:
    parse_reward_rates(value)  # fail at parse time, before any request is sent
    return value


def _client(url: str, concurrency: int = 4) -> httpx.AsyncClient:
    # trust_env=False: never route through a proxy from the environment; talk to `url` only.
    return httpx.AsyncClient(
        base_url=url,
        timeout=_HTTP_TIMEOUT_S,
        trust_env=False,
        limits=httpx.Limits(max_connections=max(2 * concurrency, 4)),
    )


def _describe_error(exc: Exception) -> str:
    if isinstance(exc, httpx.HTTPStatusError):
        body = exc.response.text.strip().replace("\n", " ")
        return f"HTTP {exc.response.status_code} from {exc.request.url.path}: {body[:200]}"
    if isinstance(exc, httpx.TransportError):
        return f"{type(exc).__name__}: {exc or 'connection failed'}"
    return f"{type(exc).__name__}: {exc}"


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value)


# --------------------------------------------------------------------------- simulation


@dataclass
class ArmTally:
    """Client-side counts for one arm."""

    requests: int = 0
    feedback: int = 0
    reward_sum: float = 0.0

    @property
    def mean_reward(self) -> float:
        """Mean reward over acknowledged feedback; NaN before any feedback."""
        return self.reward_sum / self.feedback if self.feedback else math.nan


@dataclass
class SimulationResult:
    """What :func:`run_simulation` saw.

    Attributes:
        url: Base URL of the app.
        experiment: Experiment name (as requested, else as reported by the server).
        requested: Number of requests asked for.
        arms: Per-arm client tally, keyed by the arm the server chose.
        predict_errors: Failed ``/predict`` calls (transport errors, non-2xx, bad JSON).
        feedback_errors: Failed ``/feedback`` calls.
        error_samples: The first few error messages, for display.
        elapsed_s: Wall-clock seconds for the traffic phase.
        server: JSON of ``GET /experiments/{experiment}`` after the run, or None.
        server_error: Why ``server`` is None, if it is.
        aborted: Why the run stopped early, or None if it ran to the end.
    """

    url: str
    experiment: str | None
    requested: int
    arms: dict[str, ArmTally] = field(default_factory=dict)
    predict_errors: int = 0
    feedback_errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0
    server: dict[str, Any] | None = None
    server_error: str | None = None
    aborted: str | None = None

    @property
    def errors(self) -> int:
        """All failed HTTP calls."""
        return self.predict_errors + self.feedback_errors

    @property
    def completed(self) -> int:
        """Successful ``/predict`` calls."""
        return sum(t.requests for t in self.arms.values())

    def _record_error(self, message: str, *, feedback: bool) -> None:
        if feedback:
            self.feedback_errors += 1
        else:
            self.predict_errors += 1
        if len(self.error_samples) < _MAX_ERROR_SAMPLES:
            self.error_samples.append(message)


DEFAULT_DRIFT_RAMP = 1000
"""Requests over which an injected drift grows from nothing to its full shift."""

DEFAULT_DRIFT_SHIFT = 0.25
"""Full injected shift, in feature units (digit pixels are in 0..1: a quarter of the range)."""


def drift_amount(step: int, drift_after: int | None, ramp: int, shift: float) -> float:
    """The shift added to every feature of request ``step`` (0-based) by gradual drift.

    Nothing before ``drift_after``; from there it grows linearly, reaching ``shift`` after
    ``ramp`` requests, and stays::

        amount(i) = shift * min(1, (i - drift_after + 1) / ramp)   for i >= drift_after

    ``ramp == 0`` is a sudden shift; ``drift_after=None`` turns drift off.

    Example:
        >>> [drift_amount(i, 2, 4, 1.0) for i in range(8)]
        [0.0, 0.0, 0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
        >>> drift_amount(5, 5, 0, 0.3), drift_amount(5, None, 0, 0.3)
        (0.3, 0.0)
    """
    if drift_after is None or step < drift_after:
        return 0.0
    if ramp <= 0:
        return shift
    return shift * min(1.0, (step - drift_after + 1) / ramp)


def drifted_features(
    rows: np.ndarray, step: int, drift_after: int | None, ramp: int, shift: float
) -> np.ndarray:
    """``rows`` (one request's features) plus :func:`drift_amount` for request ``step``.

    Returns a new float64 array; the input is never modified.

    Example:
        >>> drifted_features(np.zeros((1, 2)), 3, 2, 4, 1.0).tolist()
        [[0.5, 0.5]]
    """
    return np.asarray(rows, dtype=np.float64) + drift_amount(step, drift_after, ramp, shift)


async def run_simulation(
    url: str,
    *,
    experiment: str | None,
    requests: int,
    concurrency: int,
    reward_rates: Mapping[str, float] | None,
    seed: int,
    show_progress: bool = True,
    feedback_delay_ms: float = 0.0,
    drift_after: int | None = None,
    drift_ramp: int = DEFAULT_DRIFT_RAMP,
    drift_shift: float = DEFAULT_DRIFT_SHIFT,
) -> SimulationResult:
    """Send ``requests`` predictions to a running app and report a reward for each.

    Row ``i`` of the digits hold-out set (``digits_split()`` test part, cycling) goes to
    ``POST {url}/predict`` as unit ``u<i>``. The reward posted to ``/feedback`` is 1.0
    if the prediction equals the true label, else 0.0; for arms in ``reward_rates`` it
    is instead a Bernoulli(rate) draw. Draws are pre-sampled per request index from
    ``seed``, so a run is reproducible for a given routing regardless of concurrency.

    Gradual drift (``drift_after``): from request ``drift_after`` on, every feature of the
    row gets a shift that grows linearly from 0 to ``drift_shift`` over ``drift_ramp``
    requests and then stays (:func:`drift_amount`), so the app's drift detection has
    something to find. Rewards still use the row's true label.

    HTTP failures are counted, never raised. If the first ``min(requests, 20)``
    predictions all fail, the run stops early and ``aborted`` says why.

    Args:
        url: Base URL of the app, e.g. ``http://127.0.0.1:8000``.
        experiment: Experiment to route through; None lets the app pick its default.
        requests: Number of prediction requests.
        concurrency: Maximum predictions in flight.
        reward_rates: Arm -> Bernoulli reward rate, overriding correctness rewards.
        seed: Seed for the reward draws.
        show_progress: Draw a rich progress bar on the console.
        feedback_delay_ms: Wait this long after a prediction before sending feedback
            (the wait does not hold a concurrency slot, like real delayed outcomes).
        drift_after: Request index where injected drift starts; None for no drift.
        drift_ramp: Requests over which the drift grows to its full size (0: at once).
        drift_shift: Full shift added to every feature.

    Returns:
        The client tally, error counts, elapsed time and the server's final view.
    """
    from serve_app.demo_models import digits_split

    if requests < 1:
        raise ValueError(f"requests must be >= 1, got {requests}")
    if concurrency < 1:
        raise ValueError(f"concurrency must be >= 1, got {concurrency}")
    if drift_after is not None and drift_after < 0:
        raise ValueError(f"drift_after must be >= 0, got {drift_after}")
    if drift_ramp < 0:
        raise ValueError(f"drift_ramp must be >= 0, got {drift_ramp}")
    if not math.isfinite(drift_shift):
        raise ValueError(f"drift_shift must be finite, got {drift_shift}")
    base = _base_url(url)
    _, features, _, labels = digits_split()
    draws = np.random.default_rng(seed).random(requests)
    rates = dict(reward_rates or {})
    result = SimulationResult(url=base, experiment=experiment, requested=requests)
    semaphore = asyncio.Semaphore(concurrency)
    abort_after = min(requests, 20)
    attempted = 0
    stop = asyncio.Event()
    feedback_tasks: set[asyncio.Task[None]] = set()

    progress = Progress(
        TextColumn("[bold]simulate"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("errors {task.fields[errors]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=not show_progress,
        transient=False,
    )
    task_id = progress.add_task("requests", total=requests, errors=0)

    async def send_feedback(
        client: httpx.AsyncClient, decision_id: str, arm: str, reward: float
    ) -> None:
        if feedback_delay_ms > 0:
            await asyncio.sleep(feedback_delay_ms / 1000.0)
        try:
            response = await client.post(
                "/feedback", json={"decision_id": decision_id, "reward": reward}
            )
            response.raise_for_status()
        except (httpx.HTTPError, ValueError) as exc:
            result._record_error(_describe_error(exc), feedback=True)
            return
        tally = result.arms.setdefault(arm, ArmTally())
        tally.feedback += 1
        tally.reward_sum += reward

    async def predict(client: httpx.AsyncClient, i: int) -> tuple[str, str, Any] | None:
        """POST one row; returns (arm, decision_id, prediction) or None on failure."""
        payload: dict[str, Any] = {
            "features": drifted_features(
                features[i % len(features)][None, :], i, drift_after, drift_ramp, drift_shift
            ).tolist(),
            "unit_id": f"u{i}",
        }
        if experiment is not None:
            payload["experiment"] = experiment
        try:
            response = await client.post("/predict", json=payload)
            response.raise_for_status()
            body = response.json()
            decision = (str(body["arm"]), str(body["decision_id"]), body["predictions"][0])
        except (httpx.HTTPError, ValueError, KeyError, IndexError, TypeError) as exc:
            result._record_error(_describe_error(exc), feedback=False)
            return None
        result.arms.setdefault(decision[0], ArmTally()).requests += 1
        if result.experiment is None and isinstance(body.get("experiment"), str):
            result.experiment = body["experiment"]
        return decision

    async def one(client: httpx.AsyncClient, i: int) -> None:
        nonlocal attempted
        async with semaphore:
            if stop.is_set():
                return
            decision = await predict(client, i)
            attempted += 1
            progress.update(task_id, advance=1, errors=result.errors)
            if decision is None:
                if attempted >= abort_after and result.completed == 0 and not stop.is_set():
                    result.aborted = (
                        f"all of the first {attempted} requests to {base}/predict failed "
                        f"(last error: {result.error_samples[-1]}); is the app running?"
                    )
                    stop.set()
                return
        arm, decision_id, prediction = decision
        if arm in rates:
            reward = 1.0 if draws[i] < rates[arm] else 0.0
        else:
            label = int(labels[i % len(labels)])
            reward = 1.0 if _same_label(prediction, label) else 0.0
        if feedback_delay_ms > 0:
            task = asyncio.create_task(send_feedback(client, decision_id, arm, reward))
            feedback_tasks.add(task)
            task.add_done_callback(feedback_tasks.discard)
        else:
            await send_feedback(client, decision_id, arm, reward)

    started = time.perf_counter()
    async with _client(base, concurrency) as client:
        with progress:
            await asyncio.gather(*(one(client, i) for i in range(requests)))
            if feedback_tasks:
                await asyncio.gather(*list(feedback_tasks))
        result.elapsed_s = time.perf_counter() - started
        if result.aborted is None and result.experiment is not None:
            try:
                response = await client.get(f"/experiments/{result.experiment}")
                response.raise_for_status()
                result.server = response.json()
            except (httpx.HTTPError, ValueError) as exc:
                result.server_error = _describe_error(exc)
    return result


def _same_label(prediction: Any, label: int) -> bool:
    try:
        return int(prediction) == label
    except (TypeError, ValueError):
        return False


# --------------------------------------------------------------------------- tables


def tally_table(result: SimulationResult) -> Table:
    """Rich table of the client-side tally per arm."""
    table = Table(title=f"client tally - {result.experiment or '?'}", title_justify="left")
    table.add_column("arm")
    table.add_column("requests", justify="right")
    table.add_column("share", justify="right")
    table.add_column("feedback", justify="right")
    table.add_column("mean reward", justify="right")
    total = result.completed or 1
    for arm in sorted(result.arms):
        tally = result.arms[arm]
        table.add_row(
            arm,
            str(tally.requests),
            f"{tally.requests / total:.1%}",
            str(tally.feedback),
            _fmt(tally.mean_reward),
        )
    return table


def experiment_table(experiment: Mapping[str, Any]) -> Table:
    """Rich table of the server's view of one experiment (``GET /experiments/{name}``)."""
    title = (
        f"{experiment.get('name', '?')}  policy={experiment.get('policy', '?')}  "
        f"status={experiment.get('status', '?')}"
    )
    table = Table(title=title, title_justify="left")
    for column in ("arm", "requests", "feedback", "reward mean", "weight", "P(best)"):
        table.add_column(column, justify="left" if column == "arm" else "right")
    for arm in experiment.get("arms") or []:
        table.add_row(
            str(arm.get("name", "?")),
            _fmt(arm.get("requests")),
            _fmt(arm.get("feedback")),
            _fmt(arm.get("reward_mean")),
            _fmt(arm.get("weight")),
            _fmt(arm.get("prob_best")),
        )
    return table


# --------------------------------------------------------------------------- commands


@app.command("demo-models")
def demo_models_command(
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir",
            help=f"Directory for mlflow.db and mlartifacts [default: ${HOME_ENV} or ./var].",
            file_okay=False,
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Retrain and register new versions.")
    ] = False,
) -> None:
    """Train and register the digits demo models (skipped if they already exist)."""
    from serve_app.demo_models import train_demo_models

    directory = (data_dir or data_dir_default()).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    tracking_uri = f"sqlite:///{directory / 'mlflow.db'}"
    with console.status("training demo models..."):
        started = time.perf_counter()
        uris = train_demo_models(tracking_uri, directory / "mlartifacts", force=force)
        elapsed = time.perf_counter() - started
    table = Table(title=f"demo models ({elapsed:.1f}s)", title_justify="left")
    table.add_column("arm")
    table.add_column("model URI")
    for arm, uri in uris.items():
        table.add_row(arm, uri)
    console.print(table)
    console.print(f"tracking URI: {tracking_uri}")


@app.command()
def simulate(
    url: Annotated[
        str, typer.Option(help="Base URL of the running app.", callback=_url_option)
    ] = DEFAULT_URL,
    experiment: Annotated[
        str | None, typer.Option(help="Experiment name (default: the app's default).")
    ] = None,
    requests: Annotated[int, typer.Option(min=1, help="Number of predictions.")] = 2000,
    concurrency: Annotated[int, typer.Option(min=1, help="Requests in flight.")] = 8,
    reward_rates: Annotated[
        str | None,
        typer.Option(
            help="Bernoulli reward rate per arm, e.g. 'logreg=0.3,forest=0.6'; "
            "other arms are rewarded for a correct prediction.",
            callback=_reward_rates_option,
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed for the reward draws.")] = 0,
    feedback_delay_ms: Annotated[
        float, typer.Option(min=0.0, help="Delay between prediction and feedback.")
    ] = 0.0,
    drift_after: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Inject gradual drift from this request on: every feature is shifted, "
            "growing linearly to --drift-shift over --drift-ramp requests.",
        ),
    ] = None,
    drift_ramp: Annotated[
        int, typer.Option(min=0, help="Requests over which the drift grows (0: at once).")
    ] = DEFAULT_DRIFT_RAMP,
    drift_shift: Annotated[
        float, typer.Option(help="Full drift shift added to every feature (pixels are 0..1).")
    ] = DEFAULT_DRIFT_SHIFT,
) -> None:
    """Drive a running app with the digits hold-out set and post rewards."""
    result = asyncio.run(
        run_simulation(
            url,
            experiment=experiment,
            requests=requests,
            concurrency=concurrency,
            reward_rates=parse_reward_rates(reward_rates),
            seed=seed,
            feedback_delay_ms=feedback_delay_ms,
            drift_after=drift_after,
            drift_ramp=drift_ramp,
            drift_shift=drift_shift,
        )
    )
    if result.aborted is not None:
        console.print(f"[red]error:[/red] {result.aborted}")
        raise typer.Exit(1)
    rate = result.completed / result.elapsed_s if result.elapsed_s > 0 else math.nan
    console.print(
        f"{result.completed}/{result.requested} predictions in {result.elapsed_s:.1f}s "
        f"({rate:.0f} req/s), {result.predict_errors} predict errors, "
        f"{result.feedback_errors} feedback errors"
    )
    for sample in result.error_samples:
        console.print(f"  [yellow]{sample}[/yellow]")
    console.print(tally_table(result))
    if result.server is not None:
        console.print(experiment_table(result.server))
    elif result.server_error is not None:
        console.print(f"[yellow]server view unavailable:[/yellow] {result.server_error}")


async def _fetch_status(base: str, experiment: str | None) -> list[dict[str, Any]]:
    async with _client(base) as client:
        if experiment is None:
            response = await client.get("/experiments")
            response.raise_for_status()
            return list(response.json().get("experiments", []))
        response = await client.get(f"/experiments/{experiment}")
        response.raise_for_status()
        return [response.json()]


@app.command()
def status(
    url: Annotated[
        str, typer.Option(help="Base URL of the running app.", callback=_url_option)
    ] = DEFAULT_URL,
    experiment: Annotated[str | None, typer.Option(help="Show only this experiment.")] = None,
) -> None:
    """Show per-arm statistics of the running app's experiments."""
    base = url
    try:
        experiments = asyncio.run(_fetch_status(base, experiment))
    except httpx.HTTPStatusError as exc:
        console.print(f"[red]error:[/red] {_describe_error(exc)}")
        raise typer.Exit(1) from None
    except httpx.TransportError as exc:
        console.print(
            f"[red]error:[/red] cannot reach {base} ({_describe_error(exc)}); is the app running?"
        )
        raise typer.Exit(1) from None
    except ValueError as exc:
        console.print(f"[red]error:[/red] {base} did not return JSON ({exc})")
        raise typer.Exit(1) from None
    if not experiments:
        console.print("no experiments")
        return
    for item in experiments:
        console.print(experiment_table(item))


async def _fetch_report(base: str, experiment: str | None) -> tuple[str, dict[str, Any]]:
    """``(name, report)`` of ``experiment``, default the first experiment the app lists.

    Raises:
        LookupError: The app serves no experiments.
        ValueError: A response is not JSON, or the report is not a JSON object.
        httpx.HTTPError: Transport failures and non-2xx answers.
    """
    from urllib.parse import quote

    async with _client(base) as client:
        if experiment is None:
            response = await client.get("/experiments")
            response.raise_for_status()
            listed = response.json().get("experiments") or []
            if not listed:
                raise LookupError(f"{base} serves no experiments")
            experiment = str(listed[0].get("name"))
        response = await client.get(f"/experiments/{quote(experiment, safe='')}/report")
        response.raise_for_status()
        body = response.json()
    if not isinstance(body, dict):
        raise ValueError(f"expected a JSON object, got {type(body).__name__}")
    return experiment, body


def _report_error(base: str, experiment: str | None, exc: Exception) -> str:
    """A one-line reason why ``report`` could not get a report."""
    if isinstance(exc, httpx.HTTPStatusError) and exc.response.status_code == 404:
        which = f"experiment {experiment!r}" if experiment else "that experiment"
        return f"no report for {which} at {base} ({_describe_error(exc)})"
    if isinstance(exc, httpx.TransportError):
        return f"cannot reach {base} ({_describe_error(exc)}); is the app running?"
    if isinstance(exc, httpx.HTTPError):
        return _describe_error(exc)
    if isinstance(exc, LookupError):
        return str(exc)
    return f"{base} did not return a JSON report ({exc})"


@app.command()
def report(
    url: Annotated[
        str, typer.Option(help="Base URL of the running app.", callback=_url_option)
    ] = DEFAULT_URL,
    experiment: Annotated[
        str | None, typer.Option(help="Experiment name (default: the first the app lists).")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", help="Output folder [default: ./report-<experiment>].", file_okay=False
        ),
    ] = None,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print the report JSON on stdout instead of tables (files are still written).",
        ),
    ] = False,
) -> None:
    """Fetch an experiment's report; write report.json, PNG charts and report.html."""
    import json

    from serve_app.report_render import report_tables, write_report

    try:
        name, body = asyncio.run(_fetch_report(url, experiment))
    except (httpx.HTTPError, LookupError, ValueError) as exc:
        console.print(f"[red]error:[/red] {_report_error(url, experiment, exc)}")
        raise typer.Exit(1) from None
    paths = write_report(body, out or Path(f"report-{name}"))
    info = Console(stderr=True) if as_json else console
    if as_json:
        typer.echo(json.dumps(body, indent=2))
    else:
        for table in report_tables(body):
            console.print(table)
    for path in paths.values():
        info.print(f"wrote {path}", highlight=False, markup=False)


def main() -> None:
    """Entry point of the ``bandit-serve`` console script."""
    app()
