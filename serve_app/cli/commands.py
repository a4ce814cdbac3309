"""The ``bandit-serve`` command line: demo models, a traffic simulator and a status view.

Commands:
    demo-models  Train and register the digits demo models in a local MLflow store.
    simulate     Drive a running app over HTTP with the digits hold-out set and send
                 feedback, then compare our own tally with the server's view.
    status       Show the server's per-arm statistics for one or all experiments.
    report       Fetch an experiment's report, print its tables and write report.json,
                 PNG charts and a self-contained report.html into a folder.
    ope          Off-policy estimates of candidate policies on an experiment's decision log.
    plan         Users and days to detect an effect with a given power, from a running
                 experiment's own traffic or from explicit numbers offline.

Every command talks to the app through :mod:`serve_app.client`; the simulator is
:func:`serve_app.cli.simulate.run_simulation`.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from serve_app.cli.simulate import (
    DEFAULT_DRIFT_RAMP,
    DEFAULT_DRIFT_SHIFT,
    SimulationResult,
    run_simulation,
)
from serve_app.client import DEFAULT_URL, BanditServeError, Client
from serve_app.config import HOME_ENV

__all__ = [
    "app",
    "data_dir_default",
    "experiment_table",
    "main",
    "ope_table",
    "parse_reward_rates",
    "tally_table",
]

console = Console()
app = typer.Typer(
    name="bandit-serve",
    help="A/B testing and multi-armed-bandit routing for ML models on Ray Serve.",
    no_args_is_help=True,
    add_completion=False,
)
TOKEN_OPTION = typer.Option(
    envvar="BANDIT_SERVE_DATA_TOKEN", help="Data-plane token, when the app protects it."
)
CONTROL_OPTION = typer.Option(
    envvar="BANDIT_SERVE_CONTROL_TOKEN",
    help="Control token (the report then carries the audit log).",
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


def _url_option(value: str) -> str:
    base = value.strip().rstrip("/")
    if not base.startswith(("http://", "https://")):
        raise typer.BadParameter(f"URL must start with http:// or https://, got {value!r}")
    return base


def _reward_rates_option(value: str | None) -> str | None:
    parse_reward_rates(value)  # fail at parse time, before any request is sent
    return value


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value)


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
    from serve_app.files import private_dir
    from serve_app.models.demo import train_demo_models

    directory = private_dir((data_dir or data_dir_default()).resolve())
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
    token: Annotated[str | None, TOKEN_OPTION] = None,
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
            token=token,
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


@app.command()
def status(
    url: Annotated[
        str, typer.Option(help="Base URL of the running app.", callback=_url_option)
    ] = DEFAULT_URL,
    experiment: Annotated[str | None, typer.Option(help="Show only this experiment.")] = None,
    token: Annotated[str | None, TOKEN_OPTION] = None,
) -> None:
    """Show per-arm statistics of the running app's experiments."""
    try:
        with Client(url, token=token) as client:
            experiments = (
                client.experiments() if experiment is None else [client.experiment(experiment)]
            )
    except BanditServeError as exc:
        console.print(f"[red]error:[/red] {_reason(url, exc)}")
        raise typer.Exit(1) from None
    if not experiments:
        console.print("no experiments")
        return
    for item in experiments:
        console.print(experiment_table(item))


def _reason(base: str, exc: BanditServeError) -> str:
    """A one-line reason why a command got no answer."""
    if exc.status == 0:
        return f"cannot reach {base} ({exc}); is the app running?"
    return str(exc)


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
    token: Annotated[str | None, TOKEN_OPTION] = None,
    control_token: Annotated[str | None, CONTROL_OPTION] = None,
) -> None:
    """Fetch an experiment's report; write report.json, PNG charts and report.html."""
    import json

    from serve_app.report import report_tables, write_report

    try:
        with Client(url, token=token, control_token=control_token) as client:
            name = experiment
            if name is None:
                listed = client.experiments()
                if not listed:
                    console.print(f"[red]error:[/red] {url} serves no experiments")
                    raise typer.Exit(1)
                name = str(listed[0]["name"])
            body = client.report(name)
    except BanditServeError as exc:
        reason = _reason(url, exc)
        if exc.status == 404:
            reason = f"no report for experiment {experiment!r} at {url} ({exc})"
        console.print(f"[red]error:[/red] {reason}")
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


@app.command()
def decisions(
    experiment: Annotated[str, typer.Argument(help="The experiment whose log to export.")],
    out: Annotated[
        Path, typer.Option("--out", help="Output file: .parquet or .csv.", dir_okay=False)
    ],
    url: Annotated[
        str, typer.Option(help="Base URL of the running app.", callback=_url_option)
    ] = DEFAULT_URL,
    labelled: Annotated[
        bool, typer.Option(help="Only decisions whose feedback carried a label.")
    ] = False,
    challengers: Annotated[
        bool, typer.Option(help="Add the rows of its retraining challengers.")
    ] = False,
    control_token: Annotated[str | None, CONTROL_OPTION] = None,
) -> None:
    """Export an experiment's decision log (decisions with their feedback) as Parquet or CSV."""
    from serve_app.cli.export import file_format, write_decisions

    try:
        file_format(out)
    except ValueError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    try:
        with Client(url, control_token=control_token) as client:
            rows = list(client.decisions(experiment, labelled=labelled, challengers=challengers))
    except BanditServeError as exc:
        console.print(f"[red]error:[/red] {_reason(url, exc)}")
        raise typer.Exit(1) from None
    written = write_decisions(rows, out)
    console.print(f"wrote {written} decisions to {out}", highlight=False, markup=False)


def ope_table(result: Mapping[str, Any]) -> Table:
    """The estimates of ``GET /experiments/{name}/ope`` as a table, one row per candidate
    and estimator."""
    level = float(result.get("level", 0.95))
    table = Table(
        title=f"{result['experiment']}: off-policy estimates on {result['records']} logged "
        f"decisions (logged mean reward {_fmt(result.get('logged_reward'))})"
    )
    for column in ("candidate", "estimator", "value", f"{100 * level:g}% interval", "ESS"):
        table.add_column(
            column, justify="left" if column in ("candidate", "estimator") else "right"
        )
    table.add_column("warning")
    for row in result["results"]:
        interval = f"[{_fmt(row.get('ci_low'))}, {_fmt(row.get('ci_high'))}]"
        table.add_row(
            str(row["candidate"]),
            str(row["estimator"]),
            _fmt(row.get("value")),
            interval,
            _fmt(row.get("ess"), 1),
            str(row.get("reason") or "") if row.get("warning") else "",
        )
    return table


@app.command()
def ope(
    experiment: Annotated[str, typer.Argument(help="The experiment whose decision log to use.")],
    policy: Annotated[
        list[str],
        typer.Option(
            "--policy",
            help="A candidate (repeatable): uniform, always:<arm>, fixed:a=0.3,b=0.7, "
            "policy:<name>, contextual:<name>, experiment, optionally followed by JSON "
            "parameters, or a JSON candidate.",
        ),
    ],
    estimator: Annotated[
        list[str] | None,
        typer.Option("--estimator", help="ips, snips, dm or dr (repeatable; default all)."),
    ] = None,
    level: Annotated[float, typer.Option(help="Confidence level of the intervals.")] = 0.95,
    clip: Annotated[
        float | None, typer.Option(help="Cap the importance weights at this (biased).")
    ] = None,
    url: Annotated[
        str, typer.Option(help="Base URL of the running app.", callback=_url_option)
    ] = DEFAULT_URL,
    as_json: Annotated[bool, typer.Option("--json", help="Print the JSON answer.")] = False,
    control_token: Annotated[str | None, CONTROL_OPTION] = None,
) -> None:
    """What would other policies have earned on the traffic an experiment already served?"""
    import json

    try:
        with Client(url, control_token=control_token) as client:
            result = client.ope(
                experiment, policy, estimators=estimator or None, level=level, clip=clip
            )
    except BanditServeError as exc:
        console.print(f"[red]error:[/red] {_reason(url, exc)}")
        raise typer.Exit(1) from None
    if as_json:
        typer.echo(json.dumps(result, indent=2))
    else:
        console.print(ope_table(result))


@app.command()
def plan(
    experiment: Annotated[
        str | None,
        typer.Argument(help="The experiment whose traffic to plan from (omit offline)."),
    ] = None,
    mde: Annotated[
        float, typer.Option(help="Effect to detect: a fraction (0.05 = 5%) unless --absolute.")
    ] = 0.05,
    absolute: Annotated[
        bool, typer.Option("--absolute", help="--mde is an absolute difference.")
    ] = False,
    power: Annotated[float, typer.Option(help="Chance to detect it, in [0.5, 0.99].")] = 0.8,
    alpha: Annotated[float, typer.Option(help="False-positive level (family-wise).")] = 0.05,
    alternative: Annotated[
        str, typer.Option(help="two-sided, greater or less (sequential and fixed).")
    ] = "two-sided",
    rule: Annotated[str, typer.Option(help="all, fixed, sequential or bayesian.")] = "all",
    baseline: Annotated[
        float | None, typer.Option(help="Control mean (offline: required; online: override).")
    ] = None,
    sd: Annotated[
        float | None,
        typer.Option(help="Standard deviation of a continuous metric (offline: none = a rate)."),
    ] = None,
    daily_traffic: Annotated[
        float | None, typer.Option(help="Decisions per day over all arms (override).")
    ] = None,
    arms: Annotated[int, typer.Option(help="Offline: arms, control included.")] = 2,
    url: Annotated[
        str, typer.Option(help="Base URL of the running app.", callback=_url_option)
    ] = DEFAULT_URL,
    as_json: Annotated[bool, typer.Option("--json", help="Print the plan JSON.")] = False,
    token: Annotated[str | None, TOKEN_OPTION] = None,
) -> None:
    """How many users and days at today's traffic to detect an effect with a given power."""
    import json

    from serve_app.cli.plan import inputs_line, offline_plan, plan_table
    from serve_app.experiment.planning import RULES, PlanError

    if alternative not in ("two-sided", "greater", "less"):
        console.print(
            f"[red]error:[/red] --alternative: two-sided, greater or less, not {alternative!r}"
        )
        raise typer.Exit(2)
    if rule not in ("all", *RULES):
        console.print(f"[red]error:[/red] --rule: all, fixed, sequential or bayesian, not {rule!r}")
        raise typer.Exit(2)
    options: dict[str, Any] = {
        "mde": mde,
        "relative": not absolute,
        "power": power,
        "alpha": alpha,
        "alternative": alternative,
        "rule": rule,
    }
    if experiment is None:
        if baseline is None:
            console.print(
                "[red]error:[/red] name an experiment of a running app, or plan offline with "
                "--baseline (and --sd for a continuous metric, --daily-traffic for days)"
            )
            raise typer.Exit(2)
        problem = None
        if not (mde > 0 and 0.5 <= power <= 0.99 and 0 < alpha <= 0.5 and arms >= 2):
            problem = "--mde > 0, --power in [0.5, 0.99], --alpha in (0, 0.5], --arms >= 2"
        elif (sd is not None and not sd > 0) or (
            daily_traffic is not None and not daily_traffic > 0
        ):
            problem = "--sd and --daily-traffic must be > 0"
        if problem:
            console.print(f"[red]error:[/red] {problem}")
            raise typer.Exit(2)
        try:
            body = offline_plan(
                baseline=baseline, sd=sd, daily_traffic=daily_traffic, arms=arms, **options
            )
        except (PlanError, ValueError) as exc:
            console.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(2) from None
    else:
        overrides = {"baseline": baseline, "sd": sd, "daily_traffic": daily_traffic}
        try:
            with Client(url, token=token) as client:
                body = client.plan(experiment, **options, **overrides)
        except BanditServeError as exc:
            console.print(f"[red]error:[/red] {_reason(url, exc)}")
            raise typer.Exit(1) from None
    if as_json:
        typer.echo(json.dumps(body, indent=2))
        return
    console.print(plan_table(body))
    console.print(inputs_line(body), highlight=False, markup=False)
    console.print(body["summary"], highlight=False, markup=False)


def main() -> None:
    """Entry point of the ``bandit-serve`` console script."""
    app()
