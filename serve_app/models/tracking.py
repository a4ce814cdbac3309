"""Record a concluded experiment in MLflow and move a registry alias to the winner.

:func:`log_conclusion` writes one MLflow run per concluded experiment, in the MLflow
experiment ``bandit-serve/<experiment name>``:

- run name ``<experiment>-<outcome>`` (``<experiment>-<status>`` without an outcome);
  start and end times are the experiment's own (``started_at``, ``started_at +
  duration_s``), so the MLflow UI shows how long the experiment ran;
- params: ``policy``, ``reward``, ``control``, ``arm.<arm>.model_uri`` and every scalar
  leaf of the config as ``config.<dotted.path>`` (list items by index), values truncated
  to MLflow's length limit;
- metrics: per arm ``<arm>.<field>`` for the numeric arm fields (``requests``,
  ``reward_mean``, ``prob_best``, ...), per comparison ``<arm>.lift``, ``<arm>.p_value``,
  ``<arm>.chance_to_win``, ..., ``srm.p_value``, ``duration_s``, ``drift.alert`` (0/1) and
  ``drift.drifted_features``; and the timeline as
  stepped metrics ``<arm>.timeline.pulls`` / ``.feedback`` / ``.reward_sum`` / ``.weight``
  (step = snapshot index, timestamp = snapshot time);
- tags: ``bandit_serve.experiment``, ``.status``, ``.outcome``, ``.winner``, ``.policy``
  (``"none"`` for a null value), a run description, and what happened to the alias;
- artifacts: ``report.json`` (with ``mlflow_run_id`` filled in), ``config.json``,
  ``report.html`` and ``plots/*.png``.

With ``alias``, the registered model alias moves to the winner's model version when the
winner's ``model_uri`` is ``models:/<registered name>/<version>``. Anything else (no
winner, an outcome that does not move aliases, a URI that is not a registry version, a
registry error) is logged and recorded as a run tag, never raised: the run itself is the
record of the conclusion and must not be lost to a registry problem.

This runs inside the long-lived server, so it never touches MLflow's process-wide
tracking URI or fluent run stack: everything goes through an :class:`MlflowClient` built
for ``tracking_uri``, and calls are serialised by a module lock, so it is safe to call from
a worker thread (``asyncio.to_thread``) while other threads use MLflow.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from mlflow.entities import Metric, Param, RunStatus, RunTag
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, ErrorCode
from mlflow.tracking import MlflowClient
from mlflow.utils.validation import (
    MAX_ENTITY_KEY_LENGTH,
    MAX_METRICS_PER_BATCH,
    MAX_PARAM_VAL_LENGTH,
    MAX_PARAMS_TAGS_PER_BATCH,
    MAX_TAG_VAL_LENGTH,
)

from serve_app.models.uris import registry_version
from serve_app.report.format import finite_or_none
from serve_app.report.html import render_html
from serve_app.report.plots import render_plots

__all__ = [
    "ALIAS_OUTCOMES",
    "TAG_PREFIX",
    "experiment_name_for",
    "load_alias_version",
    "log_conclusion",
]

logger = logging.getLogger(__name__)

TAG_PREFIX = "bandit_serve."
ALIAS_OUTCOMES = frozenset({"promoted", "rolled_back"})
"""Outcomes whose winner the registry alias follows; ``stopped`` leaves the alias alone."""

_ARM_METRICS = (
    "requests",
    "feedback",
    "reward_mean",
    "reward_sum",
    "weight",
    "prob_best",
    "expected_loss",
    "errors",
    "error_rate",
    "p95_latency_ms",
)
_TIMELINE_METRICS = ("pulls", "feedback", "reward_sum", "weight")
_BAD_KEY_CHARS = re.compile(r"[^\w.\- ]")
_LOCK = threading.Lock()
_NONE = "none"
_ALREADY_EXISTS = ErrorCode.Name(RESOURCE_ALREADY_EXISTS)


# --------------------------------------------------------------------------- helpers


def experiment_name_for(report: Mapping[str, Any]) -> str:
    """The MLflow experiment that holds a report's runs.

    Example:
        >>> experiment_name_for({"experiment": "digits"})
        'bandit-serve/digits'
    """
    return f"bandit-serve/{report.get('experiment') or 'unnamed'}"


def _key(text: str) -> str | None:
    """A valid MLflow param/metric key: odd characters become ``_``; None if too long.

    Example:
        >>> _key("config.arms.0.model_uri"), _key("a/b:c")
        ('config.arms.0.model_uri', 'a_b_c')
    """
    key = _BAD_KEY_CHARS.sub("_", text)
    return key if 0 < len(key) <= MAX_ENTITY_KEY_LENGTH else None


def _ms(seconds: Any) -> int | None:
    number = finite_or_none(seconds)
    return None if number is None else int(number * 1000)


def _tag_value(value: Any) -> str:
    return _NONE if value is None else str(value)[:MAX_TAG_VAL_LENGTH]


def _flatten(value: Any, prefix: str) -> Iterator[tuple[str, Any]]:
    """Scalar leaves of nested dicts/lists as ``(dotted.path, value)``; None is skipped.

    Example:
        >>> dict(_flatten({"a": {"b": 1, "c": [True, {"d": "x"}]}, "e": None}, "config"))
        {'config.a.b': 1, 'config.a.c.0': True, 'config.a.c.1.d': 'x'}
    """
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield from _flatten(item, f"{prefix}.{key}")
    elif isinstance(value, Sequence) and not isinstance(value, str | bytes):
        for index, item in enumerate(value):
            yield from _flatten(item, f"{prefix}.{index}")
    elif isinstance(value, str | int | float | bool):
        yield prefix, value


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _default_artifact_location(tracking_uri: str, experiment: str) -> str | None:
    """Artifacts beside a SQLite store (``<db dir>/mlartifacts/...``), like the demo layout.

    Other stores (tracking servers, databases) keep their own default, so None.

    Example:
        >>> _default_artifact_location("sqlite:////data/var/mlflow.db", "bandit-serve/digits")
        'file:///data/var/mlartifacts/bandit-serve/digits'
        >>> _default_artifact_location("http://mlflow:5000", "x") is None
        True
    """
    parsed = urlparse(tracking_uri)
    if parsed.scheme != "sqlite" or parsed.path in ("", "/", "/:memory:"):
        return None
    database = Path(unquote(parsed.path[1:] if parsed.path.startswith("//") else parsed.path))
    return (database.resolve().parent / "mlartifacts" / experiment).as_uri()


# --------------------------------------------------------------------------- run content


def _params(report: Mapping[str, Any], config: Mapping[str, Any]) -> list[Param]:
    """Run params: report basics, arm model URIs and the config's scalar leaves."""
    raw: list[tuple[str, Any]] = [
        ("policy", report.get("policy")),
        ("reward", report.get("reward")),
        ("control", report.get("control")),
    ]
    raw += [(f"arm.{a.get('name')}.model_uri", a.get("model_uri")) for a in _arms(report)]
    raw += list(_flatten(config, "config"))
    params: dict[str, str] = {}
    for name, value in raw:
        key = _key(name)
        if key is None or value is None or key in params:
            continue
        params[key] = str(value)[:MAX_PARAM_VAL_LENGTH]
    return [Param(k, v) for k, v in params.items()]


def _arms(report: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [a for a in report.get("arms") or [] if isinstance(a, Mapping)]


def _summary_values(report: Mapping[str, Any]) -> dict[str, float]:
    """Metric name -> value for the report's end state (arms, comparisons, SRM)."""
    values: dict[str, Any] = {
        "duration_s": report.get("duration_s"),
        "srm.p_value": (report.get("srm") or {}).get("p_value"),
    }
    drift = report.get("drift")
    if isinstance(drift, Mapping):
        values["drift.alert"] = 1.0 if drift.get("alert") else 0.0
        features = [f for f in drift.get("features") or [] if isinstance(f, Mapping)]
        values["drift.drifted_features"] = sum(1 for f in features if f.get("drifted"))
    for arm in _arms(report):
        for field in _ARM_METRICS:
            values[f"{arm.get('name')}.{field}"] = arm.get(field)
    for comparison in report.get("comparisons") or []:
        arm = comparison.get("arm")
        freq = comparison.get("frequentist") or {}
        ci = freq.get("ci")
        low, high = ci if isinstance(ci, Sequence) and len(ci) == 2 else (None, None)
        values[f"{arm}.lift"] = freq.get("estimate")
        values[f"{arm}.lift_ci_low"], values[f"{arm}.lift_ci_high"] = low, high
        values[f"{arm}.p_value"] = freq.get("p_value")
        values[f"{arm}.p_value_adjusted"] = freq.get("p_value_adjusted")
        values[f"{arm}.chance_to_win"] = (comparison.get("bayesian") or {}).get("chance_to_win")
        values[f"{arm}.seq_p_value"] = (comparison.get("sequential") or {}).get("p_value")
    return {k: v for k, v in ((k, finite_or_none(v)) for k, v in values.items()) if v is not None}


def _metrics(report: Mapping[str, Any]) -> list[Metric]:
    """Summary metrics (step 0, at ``generated_at``) and the timeline as stepped metrics."""
    now = _ms(report.get("generated_at")) or int(time.time() * 1000)
    metrics = [
        Metric(key, value, now, 0)
        for name, value in _summary_values(report).items()
        if (key := _key(name)) is not None
    ]
    points = sorted(
        (p for p in report.get("timeline") or [] if finite_or_none(p.get("at")) is not None),
        key=lambda p: float(p["at"]),
    )
    steps = {at: i for i, at in enumerate(sorted({float(p["at"]) for p in points}))}
    for point in points:
        at = float(point["at"])
        for field in _TIMELINE_METRICS:
            value = finite_or_none(point.get(field))
            key = _key(f"{point.get('arm')}.timeline.{field}")
            if value is not None and key is not None:
                metrics.append(Metric(key, value, int(at * 1000), steps[at]))
    return metrics


def _description(report: Mapping[str, Any]) -> str:
    """Markdown shown as the run's description in the MLflow UI."""
    lines = [
        f"**{report.get('experiment')}**: {report.get('status')}, outcome "
        f"{report.get('outcome') or _NONE}, winner {report.get('winner') or _NONE}.",
        "",
        "| arm | requests | reward mean | P(best) |",
        "| --- | --- | --- | --- |",
    ]
    for arm in _arms(report):
        lines.append(
            f"| {arm.get('name')} | {arm.get('requests')} | {arm.get('reward_mean')} "
            f"| {arm.get('prob_best')} |"
        )
    reason = (report.get("stopping") or {}).get("reason")
    if reason:
        lines += ["", f"Stopping: {reason}"]
    return "\n".join(lines)


def _tags(report: Mapping[str, Any]) -> dict[str, str]:
    tags = {
        f"{TAG_PREFIX}{field}": _tag_value(report.get(field))
        for field in ("experiment", "status", "outcome", "winner", "policy", "reward")
    }
    tags["mlflow.note.content"] = _tag_value(_description(report))
    return tags


def _write_artifacts(
    directory: Path,
    report: Mapping[str, Any],
    config: Mapping[str, Any],
    html: str | None,
    plots: Mapping[str, Path] | None,
) -> None:
    """Write report.json, config.json, report.html and plots/ into ``directory``.

    Without ``html``, the page (and, without ``plots``, the charts) are rendered here.
    """
    (directory / "report.json").write_text(json.dumps(report, indent=2, default=str))
    (directory / "config.json").write_text(json.dumps(config, indent=2, default=str))
    plot_dir = directory / "plots"
    if plots is None and html is None:
        plots = render_plots(report, plot_dir)
    else:
        plot_dir.mkdir()
        for path in (plots or {}).values():
            shutil.copyfile(path, plot_dir / Path(path).name)
    if html is None:
        html = render_html(report, plots or {})
    (directory / "report.html").write_text(html, encoding="utf-8")


# --------------------------------------------------------------------------- registry


def _alias_tags(
    client: MlflowClient, report: Mapping[str, Any], alias: str, run_id: str
) -> dict[str, str]:
    """Move ``alias`` to the winner's model version if possible; tags saying what happened."""
    tags = {f"{TAG_PREFIX}alias": alias}
    winner = report.get("winner")
    uri = next((a.get("model_uri") for a in _arms(report) if a.get("name") == winner), None)
    target = registry_version(uri)
    if winner is None or report.get("outcome") not in ALIAS_OUTCOMES:
        skipped = f"outcome {report.get('outcome')!r}, winner {winner!r}: alias not moved"
    elif target is None:
        skipped = (
            f"winner {winner!r} has model_uri {uri!r}, not models:/<name>/<version>: "
            f"alias {alias!r} not moved"
        )
    else:
        return tags | _move_alias(client, *target, alias, run_id)
    logger.warning("experiment %s: %s", report.get("experiment"), skipped)
    return tags | {f"{TAG_PREFIX}alias_skipped": skipped}


def _move_alias(
    client: MlflowClient, name: str, version: str, alias: str, run_id: str
) -> dict[str, str]:
    """Point ``name@alias`` at ``version``; tags with the move or the registry error."""
    previous = _alias_version(client, name, alias)
    try:
        client.set_registered_model_alias(name, alias, version)
        client.set_model_version_tag(name, version, f"{TAG_PREFIX}promoted_by_run", run_id)
    except MlflowException as error:
        logger.error("could not move alias %s of %s to version %s: %s", alias, name, version, error)
        return {f"{TAG_PREFIX}alias_error": _tag_value(f"{name}@{alias} -> {version}: {error}")}
    logger.info("moved %s@%s from version %s to %s", name, alias, previous, version)
    return {
        f"{TAG_PREFIX}alias_model": name,
        f"{TAG_PREFIX}alias_version": version,
        f"{TAG_PREFIX}alias_previous_version": _tag_value(previous),
    }


def _alias_version(client: MlflowClient, name: str, alias: str) -> str | None:
    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def load_alias_version(tracking_uri: str, registered_name: str, alias: str) -> str | None:
    """The version that ``registered_name@alias`` points to, or None (no model, no alias).

    Args:
        tracking_uri: MLflow tracking and registry URI.
        registered_name: Registered model name.
        alias: Alias such as ``"champion"``.
    """
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    return _alias_version(client, registered_name, alias)


# --------------------------------------------------------------------------- entry point


def _experiment_id(client: MlflowClient, name: str, artifact_location: str | None) -> str:
    """Get or create the MLflow experiment ``name`` (restoring it if deleted)."""
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        try:
            return str(client.create_experiment(name, artifact_location=artifact_location))
        except MlflowException as error:  # created concurrently by another process
            experiment = client.get_experiment_by_name(name)
            if error.error_code != _ALREADY_EXISTS or experiment is None:
                raise
    if experiment.lifecycle_stage == "deleted":
        client.restore_experiment(experiment.experiment_id)
    return str(experiment.experiment_id)


def _log_batches(
    client: MlflowClient,
    run_id: str,
    params: list[Param],
    metrics: list[Metric],
    tags: list[RunTag],
) -> None:
    for chunk in _chunks(params, MAX_PARAMS_TAGS_PER_BATCH):
        client.log_batch(run_id, params=chunk, synchronous=True)
    for chunk in _chunks(metrics, MAX_METRICS_PER_BATCH):
        client.log_batch(run_id, metrics=chunk, synchronous=True)
    for chunk in _chunks(tags, MAX_PARAMS_TAGS_PER_BATCH):
        client.log_batch(run_id, tags=chunk, synchronous=True)


def log_conclusion(
    tracking_uri: str,
    report: Mapping[str, Any],
    config: Mapping[str, Any],
    *,
    html: str | None = None,
    plots: Mapping[str, Path] | None = None,
    alias: str | None = None,
    artifact_location: str | None = None,
) -> str:
    """Log a concluded experiment as one MLflow run; optionally move a registry alias.

    See the module docstring for the run's params, metrics, tags and artifacts.

    Args:
        tracking_uri: MLflow tracking and registry URI (e.g. ``sqlite:////abs/mlflow.db``).
        report: The report dict of ``GET /experiments/{name}/report``.
        config: The experiment's config as plain JSON-able data.
        html: The rendered report page; None renders it here (with the run id filled in).
        plots: Plot key -> PNG path to attach; None (with ``html`` None) renders them here.
        alias: Registry alias to move to the winner's model version, e.g. ``"champion"``.
            Moved only for outcomes in :data:`ALIAS_OUTCOMES`; other cases become a tag.
        artifact_location: Artifact root for a newly created MLflow experiment; default
            ``<db dir>/mlartifacts/bandit-serve/<name>`` for SQLite, the server's otherwise.

    Returns:
        The MLflow run id.

    Raises:
        MlflowException: If the tracking store cannot be written (the run, if it was
            created, is marked FAILED). Registry problems with the alias are not raised.
    """
    name = experiment_name_for(report)
    label = report.get("outcome") or report.get("status") or "run"
    with _LOCK:
        client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        location = artifact_location or _default_artifact_location(tracking_uri, name)
        experiment_id = _experiment_id(client, name, location)
        run = client.create_run(
            experiment_id,
            start_time=_ms(report.get("started_at")),
            run_name=f"{report.get('experiment')}-{label}",
        )
        run_id = str(run.info.run_id)
        try:
            _fill_run(client, run_id, {**report, "mlflow_run_id": run_id}, config, html, plots)
            if alias:
                tags = _alias_tags(client, report, alias, run_id)
                _log_batches(client, run_id, [], [], [RunTag(k, v) for k, v in tags.items()])
        except BaseException:
            client.set_terminated(run_id, status=RunStatus.to_string(RunStatus.FAILED))
            raise
        client.set_terminated(run_id, end_time=_end_ms(report))
    return run_id


def _end_ms(report: Mapping[str, Any]) -> int | None:
    start, duration = (
        finite_or_none(report.get("started_at")),
        finite_or_none(report.get("duration_s")),
    )
    if start is not None and duration is not None:
        return int((start + duration) * 1000)
    return _ms(report.get("generated_at"))


def _fill_run(
    client: MlflowClient,
    run_id: str,
    report: Mapping[str, Any],
    config: Mapping[str, Any],
    html: str | None,
    plots: Mapping[str, Path] | None,
) -> None:
    """Params, metrics, tags and artifacts of the run."""
    tags = [RunTag(k, v) for k, v in _tags(report).items()]
    _log_batches(client, run_id, _params(report, config), _metrics(report), tags)
    with tempfile.TemporaryDirectory(prefix="bandit-serve-report-") as tmp:
        _write_artifacts(Path(tmp), report, config, html, plots)
        client.log_artifacts(run_id, tmp)
