"""Render the ``serveConfigV2`` of ``cluster/rayservice*.yaml`` from ``configs/*.yaml`` (and
``cluster/grafana-dashboard-configmap.yaml`` from ``cluster/grafana-dashboard.json``).

``make manifests`` runs this; the manifests are committed and ``tests/cluster`` fails when a
committed manifest differs from what this script renders (drift).

What "what ``serve build`` produces for a config" means here
-------------------------------------------------------------
``serve build`` takes import paths of ready-made ``Application`` objects, not a config file, and
``serve_app.app:build_app`` is an application *builder* that needs the config's ``args``.
So this script does what ``serve build`` does (``ray.serve.scripts.build``), with the
application built from the config instead of imported:

1. Top level: ``serve build``'s own keys and values -- ``proxy_location: EveryNode``,
   ``http_options`` (host ``0.0.0.0``, i.e. ``get_all_interfaces_ip()``, so the Kubernetes
   Service can reach the proxies), ``grpc_options`` and ``logging_config`` (Ray's defaults) --
   except that a key the config sets (``proxy_location``, ``http_options.port``,
   ``grpc_options``, ``logging_config``) wins. ``http_options.host`` is always ``0.0.0.0``: the
   configs bind 127.0.0.1 for a laptop, which no pod could be reached on.
2. One entry per config application, as ``serve build`` writes it (``ServeApplicationSchema``,
   ``model_dump(exclude_unset=True)``): the config's ``name``, ``route_prefix``,
   ``import_path`` and ``args`` verbatim, ``runtime_env: {}`` (the code is in the image), and
   ``deployments``: ``deployment_to_schema`` of every deployment of the application graph,
   which the config's ``import_path`` builder returns for the config's ``args`` (built with
   ``check_models`` off: the models need not exist here, and the check changes nothing but
   init arguments, which the serve config does not carry).
3. Validated with ``ServeDeploySchema`` and dumped with ``serve build``'s YAML dumper, under a
   header comment naming the source config.

The deployments list repeats the options the builder sets in code (Serve would use them
anyway); it makes the manifest show what runs, and the drift test catches a change to the
config or to the app's defaults that the committed manifest does not have yet.

Which config a manifest renders is named in the manifest itself: the RayService's
``metadata.annotations["bandit-serve.io/serve-config"]``. Only the ``serveConfigV2: |`` block is
rewritten; everything else in the manifest (cluster spec, comments) is hand-written, and this
script checks that the cluster's CPUs cover the deployments' (see :func:`check_resources`).

Usage::

    python scripts/render_manifests.py            # rewrite cluster/rayservice*.yaml
    python scripts/render_manifests.py --check    # exit 1 if any manifest is stale
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
CLUSTER_DIR = ROOT / "cluster"
METRICS_FILE = CLUSTER_DIR / "metrics.txt"
SOURCE_ANNOTATION = "bandit-serve.io/serve-config"
_BLOCK_KEY = re.compile(r"^(?P<indent> *)serveConfigV2: \|\n", re.MULTILINE)


def manifest_paths() -> list[Path]:
    """The RayService manifests this script renders."""
    return sorted(CLUSTER_DIR.glob("rayservice*.yaml"))


def exported_metrics() -> dict[str, tuple[str, tuple[str, ...]]]:
    """``cluster/metrics.txt`` as {series name: (type, labels)}, the one list of the series
    ``GET /metrics`` exports."""
    series: dict[str, tuple[str, tuple[str, ...]]] = {}
    for line in METRICS_FILE.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, kind, labels = line.split()  # labels "-": none
            series[name] = (kind, () if labels == "-" else tuple(labels.split(",")))
    return series


def exported_metric_names() -> set[str]:
    """Every sample name a scrape shows (a histogram's ``_bucket``, ``_sum``, ``_count``)."""
    names: set[str] = set()
    for name, (kind, _labels) in exported_metrics().items():
        if kind == "histogram":
            names.update(f"{name}{suffix}" for suffix in ("_bucket", "_sum", "_count"))
        else:
            names.add(name)
    return names


def render_serve_config(config_path: Path) -> dict[str, Any]:
    """What ``serve build`` produces for the config at ``config_path`` (see module docstring)."""
    from ray._common.network_utils import get_all_interfaces_ip
    from ray._common.utils import import_attr
    from ray.serve._private.build_app import build_app
    from ray.serve._private.constants import DEFAULT_GRPC_PORT
    from ray.serve.deployment import deployment_to_schema
    from ray.serve.schema import LoggingConfig, ServeApplicationSchema, ServeDeploySchema

    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    config = yaml.safe_load(config_path.read_text())
    applications = []
    for app in config["applications"]:
        builder = import_attr(app["import_path"])
        graph = builder({**app.get("args", {}), "check_models": False})
        built = build_app(graph, name=app["name"])
        schema = ServeApplicationSchema(
            name=app["name"],
            route_prefix=app.get("route_prefix", "/"),
            import_path=app["import_path"],
            args=app.get("args", {}),
            runtime_env={},
            deployments=[deployment_to_schema(d) for d in built.deployments],
        )
        applications.append(schema.model_dump(exclude_unset=True))
    http_options = {"host": get_all_interfaces_ip(), "port": 8000}
    http_options.update(config.get("http_options") or {})
    http_options["host"] = get_all_interfaces_ip()
    deploy_config = {
        "proxy_location": config.get("proxy_location", "EveryNode"),
        "http_options": http_options,
        "grpc_options": config.get(
            "grpc_options",
            {"port": DEFAULT_GRPC_PORT, "grpc_servicer_functions": [], "enable_reflection": True},
        ),
        "logging_config": config.get("logging_config", LoggingConfig().model_dump()),
        "applications": applications,
    }
    ServeDeploySchema.model_validate(deploy_config)
    return deploy_config


def serve_config_text(deploy_config: dict[str, Any], source: str) -> str:
    """The YAML ``serve build`` would write, with a header naming the source config."""
    from ray import __version__ as ray_version
    from ray.serve.scripts import ServeDeploySchemaDumper

    header = (
        f"# Generated from {source} by scripts/render_manifests.py (`make manifests`): what\n"
        f"# `serve build` produces for that config on Ray v{ray_version}. Do not edit here.\n\n"
    )
    body = yaml.dump(
        deploy_config,
        Dumper=ServeDeploySchemaDumper,
        default_flow_style=False,
        sort_keys=False,
        width=80,
        indent=2,
    )
    return header + body.rstrip("\n") + "\n"


def source_config(manifest_text: str) -> str:
    """The config path (relative to the repo) the manifest's RayService names."""
    for doc in yaml.safe_load_all(manifest_text):
        if doc and doc.get("kind") == "RayService":
            annotations = (doc.get("metadata") or {}).get("annotations") or {}
            if SOURCE_ANNOTATION in annotations:
                return str(annotations[SOURCE_ANNOTATION])
    raise ValueError(f"no RayService with a {SOURCE_ANNOTATION!r} annotation")


def splice(manifest_text: str, serve_config: str) -> str:
    """Replace the body of the ``serveConfigV2: |`` block with ``serve_config``."""
    match = _BLOCK_KEY.search(manifest_text)
    if match is None:
        raise ValueError("no 'serveConfigV2: |' block in the manifest")
    indent = match.group("indent") + "  "
    lines = manifest_text[match.end() :].splitlines(keepends=True)
    end = len(lines)
    for index, line in enumerate(lines):
        if line.strip() and not line.startswith(indent):
            end = index
            break
    # Blank lines at the end of the block belong to what follows it.
    while end and not lines[end - 1].strip():
        end -= 1
    body = "".join(
        f"{indent}{line}" if line.strip() else "\n"
        for line in serve_config.splitlines(keepends=True)
    )
    return manifest_text[: match.end()] + body + "".join(lines[end:])


def render_manifest(path: Path) -> str:
    """The manifest at ``path`` with a freshly rendered ``serveConfigV2``.

    Raises:
        ValueError: the manifest names no config, or its cluster cannot fit the deployments.
    """
    text = path.read_text()
    source = source_config(text)
    deploy_config = render_serve_config(ROOT / source)
    rendered = splice(text, serve_config_text(deploy_config, source))
    problems = check_resources(yaml.safe_load_all(rendered))
    if problems:
        raise ValueError(f"{path.name}: " + "; ".join(problems))
    return rendered


# --------------------------------------------------------------------------- dashboard

DASHBOARD = CLUSTER_DIR / "grafana-dashboard.json"
DASHBOARD_CONFIGMAP = CLUSTER_DIR / "grafana-dashboard-configmap.yaml"


class _BlockDumper(yaml.SafeDumper):
    """Multi-line strings as ``|`` blocks, so the dashboard stays readable in the ConfigMap."""


_BlockDumper.add_representer(
    str,
    lambda dumper, value: dumper.represent_scalar(
        "tag:yaml.org,2002:str", value, style="|" if "\n" in value else None
    ),
)


def render_dashboard_configmap() -> str:
    """``cluster/grafana-dashboard.json`` wrapped in a ConfigMap that Grafana's dashboard
    sidecar (kube-prometheus-stack: label ``grafana_dashboard: "1"``) imports."""
    import json

    dashboard = json.loads(DASHBOARD.read_text())
    configmap = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "bandit-serve-grafana-dashboard",
            "labels": {"app.kubernetes.io/name": "bandit-serve", "grafana_dashboard": "1"},
        },
        "data": {"bandit-serve.json": json.dumps(dashboard, indent=2) + "\n"},
    }
    header = (
        "# Generated from cluster/grafana-dashboard.json by scripts/render_manifests.py\n"
        "# (`make manifests`). Edit the JSON, not this file.\n"
    )
    return header + yaml.dump(configmap, Dumper=_BlockDumper, sort_keys=False, width=1000)


def rendered_files() -> dict[Path, str]:
    """Every generated file and its content as this script renders it now."""
    files = {path: render_manifest(path) for path in manifest_paths()}
    files[DASHBOARD_CONFIGMAP] = render_dashboard_configmap()
    return files


# --------------------------------------------------------------------------- resources

_CPU = re.compile(r"^(?P<value>[0-9.]+)(?P<milli>m?)$")


def cpu_quantity(value: Any) -> float:
    """A Kubernetes CPU quantity (``2``, ``"1.5"``, ``"500m"``) in CPUs."""
    match = _CPU.match(str(value))
    if match is None:
        raise ValueError(f"unsupported CPU quantity {value!r}")
    number = float(match.group("value"))
    return number / 1000 if match.group("milli") else number


def group_cpus(group: dict[str, Any]) -> float:
    """Logical CPUs Ray gets on one pod of a head/worker group, checked against the pod's
    requested CPUs: ``rayStartParams.num-cpus`` if set (it must not exceed the container's
    request), else what KubeRay derives (the container's CPU limit, else its request)."""
    container = group["template"]["spec"]["containers"][0]
    resources = container.get("resources") or {}
    requested = cpu_quantity((resources.get("requests") or {}).get("cpu", 0))
    limit = (resources.get("limits") or {}).get("cpu")
    explicit = (group.get("rayStartParams") or {}).get("num-cpus")
    if explicit is not None:
        logical = float(explicit)
        if logical > requested:
            raise ValueError(f"num-cpus {explicit} exceeds the requested {requested} CPUs")
        return logical
    return cpu_quantity(limit) if limit is not None else requested


def deployment_cpus(deploy_config: dict[str, Any]) -> tuple[float, float]:
    """(CPUs at every deployment's minimum replicas, CPUs at its maximum)."""
    low = high = 0.0
    for app in deploy_config["applications"]:
        for deployment in app.get("deployments", []):
            cpus = float((deployment.get("ray_actor_options") or {}).get("num_cpus", 1.0))
            autoscaling = deployment.get("autoscaling_config")
            if autoscaling:
                low += cpus * autoscaling.get("min_replicas", 1)
                high += cpus * autoscaling["max_replicas"]
            else:
                replicas = deployment.get("num_replicas", 1)
                low += cpus * replicas
                high += cpus * replicas
    return low, high


def cluster_cpus(cluster: dict[str, Any]) -> tuple[float, float]:
    """(logical CPUs with every worker group at minReplicas, ... at maxReplicas)."""
    head = group_cpus(cluster["headGroupSpec"])
    low = high = head
    for group in cluster.get("workerGroupSpecs") or []:
        cpus = group_cpus(group)
        low += cpus * group.get("minReplicas", 0)
        high += cpus * group.get("maxReplicas", group.get("minReplicas", 0))
    return low, high


def check_resources(documents: Any) -> list[str]:
    """Problems with a RayService whose cluster cannot hold its deployments: at the minimum
    replicas without the autoscaler, and at the maximum with every worker group full."""
    problems = []
    for doc in documents:
        if not doc or doc.get("kind") != "RayService":
            continue
        deploy_config = yaml.safe_load(doc["spec"]["serveConfigV2"])
        need_low, need_high = deployment_cpus(deploy_config)
        have_low, have_high = cluster_cpus(doc["spec"]["rayClusterConfig"])
        if have_low + 1e-9 < need_low:
            problems.append(
                f"minimum replicas need {need_low:g} CPUs, the cluster at minReplicas has "
                f"{have_low:g}"
            )
        if have_high + 1e-9 < need_high:
            problems.append(
                f"maximum replicas need {need_high:g} CPUs, the cluster at maxReplicas has "
                f"{have_high:g}"
            )
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a manifest is stale")
    args = parser.parse_args(argv)
    stale = []
    for path, rendered in rendered_files().items():
        if not path.exists() or rendered != path.read_text():
            stale.append(path)
            if not args.check:
                path.write_text(rendered)
        state = "up to date" if path not in stale else "stale" if args.check else "rewritten"
        print(f"{state}: {path.relative_to(ROOT)}")
    if args.check and stale:
        print("run `make manifests`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
