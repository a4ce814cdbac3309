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
3. Validated with ``ServeDeploySchema`` (and every ``grpc_servicer_functions`` entry
   imported, as Serve's gRPC proxy will on each node) and dumped with ``serve build``'s YAML
   dumper, under a header comment naming the source config.

The deployments list repeats the options the builder sets in code (Serve would use them
anyway); it makes the manifest show what runs, and the drift test catches a change to the
config or to the app's defaults that the committed manifest does not have yet.

Which config a manifest renders is named in the manifest itself: the RayService's
``metadata.annotations["bandit-serve.io/serve-config"]``. Only the ``serveConfigV2: |`` block is
rewritten; everything else in the manifest (cluster spec, comments) is hand-written, and this
script refuses a manifest whose cluster cannot run what it renders (:func:`check_manifest`):

- :func:`check_resources`: the Ray resources of the groups' pods, read as KubeRay v1.7.0
  starts them (the group's ``resources`` field, else ``rayStartParams``, else the container's
  limits), cover every resource the replicas reserve (CPUs, memory, custom resources such as
  the pool's ``models``) at the minimum and at the maximum replicas, and every replica fits on
  some pod;
- :func:`check_ports`: the HTTP and gRPC ports are named ``serve`` and ``serve-grpc`` on every
  Ray container and ``spec.serveService`` lists no port KubeRay would drop;
- :func:`check_pool_memory`: with a ``bandit-serve.io/pool-model-memory`` annotation, the
  pool's replicas reserve ``max_models_per_replica`` models plus their own overhead, and the
  pods that host them have the memory for them (:func:`pool_sizing` has the formula).

Usage::

    python scripts/render_manifests.py            # rewrite cluster/rayservice*.yaml
    python scripts/render_manifests.py --check    # exit 1 if any manifest is stale
"""

from __future__ import annotations

import argparse
import json
import math
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
    for function in deploy_config["grpc_options"].get("grpc_servicer_functions") or []:
        try:  # Serve's gRPC proxy imports these on every node; a typo would only show there
            import_attr(function)
        except Exception as error:
            raise ValueError(
                f"{config_path.name}: grpc_options.grpc_servicer_functions: cannot import "
                f"{function}: {error}"
            ) from None
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
        ValueError: the manifest names no config, or its cluster cannot run the app (see
            :func:`check_manifest`).
    """
    text = path.read_text()
    source = source_config(text)
    deploy_config = render_serve_config(ROOT / source)
    rendered = splice(text, serve_config_text(deploy_config, source))
    problems = check_manifest(list(yaml.safe_load_all(rendered)))
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

_QUANTITY = re.compile(r"^(?P<value>[0-9]+(?:\.[0-9]+)?)(?P<suffix>m|k|M|G|T|Ki|Mi|Gi|Ti)?$")
_SUFFIXES = {
    None: 1.0,
    "m": 1e-3,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "Ki": 2.0**10,
    "Mi": 2.0**20,
    "Gi": 2.0**30,
    "Ti": 2.0**40,
}
GIB = 2**30
STANDARD_RESOURCES = frozenset({"CPU", "GPU", "TPU", "memory"})
RAY_RESOURCE_START_PARAMS = ("num-cpus", "num-gpus", "memory", "resources")
"""rayStartParams that KubeRay v1.7.0 refuses next to a group's ``resources`` field."""
RAY_NODE_OVERHEAD = GIB
"""Memory of Ray's own processes on a worker pod (raylet, dashboard and runtime-env agents,
log monitor, the node's Serve proxy), outside every replica's reservation."""
DEFAULT_OBJECT_STORE_FRACTION = 0.3
"""Ray's object store takes this share of the pod's memory unless ``object-store-memory``."""
POOL_DEPLOYMENT = "model-pool"
MODEL_MEMORY_ANNOTATION = "bandit-serve.io/pool-model-memory"
REPLICA_OVERHEAD_ANNOTATION = "bandit-serve.io/pool-replica-overhead"


def quantity(value: Any) -> float:
    """A Kubernetes quantity as a number: ``"500m"`` -> 0.5 (CPUs), ``"8Gi"`` -> bytes."""
    match = _QUANTITY.match(str(value).strip())
    if match is None:
        raise ValueError(f"unsupported quantity {value!r}")
    return float(match.group("value")) * _SUFFIXES[match.group("suffix")]


def cpu_quantity(value: Any) -> float:
    """A Kubernetes CPU quantity (``2``, ``"1.5"``, ``"500m"``) in CPUs."""
    return quantity(value)


def gib(amount: float) -> str:
    """Bytes as GiB for messages: ``3221225472`` -> ``3 GiB``."""
    return f"{amount / GIB:g} GiB"


def _start_params_custom(value: str) -> dict[str, float]:
    """``rayStartParams.resources`` as the Ray autoscaler reads it: one pair of quotes around
    JSON with integer values, ``'"{\"models\": 1}"'`` (a bare ``'{"models": 1}'`` loses its
    braces there, and the autoscaler fails)."""
    try:
        resources = json.loads(value[1:-1].replace("\\", ""))
        assert isinstance(resources, dict)
        assert all(isinstance(amount, int) for amount in resources.values())
    except Exception:
        raise ValueError(
            f"rayStartParams.resources {value!r} is not what the Ray autoscaler reads (JSON "
            "with integer amounts inside one more pair of quotes); use the group's `resources`"
        ) from None
    return {name: float(amount) for name, amount in resources.items()}


def group_resources(group: dict[str, Any]) -> dict[str, float]:
    """The Ray resources one pod of a head/worker group offers, as KubeRay v1.7.0 starts it.

    The group's ``resources`` field (``CPU``, ``memory``, custom names) wins; else
    ``rayStartParams`` (``num-cpus``, ``memory``, ``resources``); else the Ray container's
    limits (CPU rounded up, as KubeRay does; memory in bytes), else its CPU request.

    Raises:
        ValueError: both ``resources`` and Ray resource ``rayStartParams`` are set (KubeRay
            refuses the group), or a quantity cannot be read.
    """
    container = group["template"]["spec"]["containers"][0]
    k8s = container.get("resources") or {}
    limits, requests = k8s.get("limits") or {}, k8s.get("requests") or {}
    params = group.get("rayStartParams") or {}
    top = {
        ("CPU" if k.lower() == "cpu" else k): v for k, v in (group.get("resources") or {}).items()
    }
    both = [key for key in RAY_RESOURCE_START_PARAMS if key in params]
    if top and both:
        raise ValueError(
            f"group {group.get('groupName', 'head')}: `resources` and rayStartParams {both} "
            "together (KubeRay refuses the group; use one)"
        )
    offered: dict[str, float] = {}
    if "CPU" in top:
        offered["CPU"] = float(math.ceil(quantity(top["CPU"])))
    elif "num-cpus" in params:
        offered["CPU"] = float(params["num-cpus"])
    elif "cpu" in limits or "cpu" in requests:
        offered["CPU"] = float(math.ceil(quantity(limits.get("cpu", requests.get("cpu")))))
    if "memory" in top:
        offered["memory"] = quantity(top["memory"])
    elif "memory" in params:
        offered["memory"] = float(params["memory"])
    elif "memory" in limits:
        offered["memory"] = quantity(limits["memory"])
    if "GPU" in top:
        offered["GPU"] = quantity(top["GPU"])
    elif "num-gpus" in params:
        offered["GPU"] = float(params["num-gpus"])
    if top:
        offered.update({k: quantity(v) for k, v in top.items() if k not in STANDARD_RESOURCES})
    elif "resources" in params:
        offered.update(_start_params_custom(params["resources"]))
    return {name: amount for name, amount in offered.items() if amount}


def group_cpus(group: dict[str, Any]) -> float:
    """Logical CPUs Ray gets on one pod of a head/worker group, checked against the pod's
    requested CPUs: ``num-cpus`` (``rayStartParams``) or ``CPU`` (the group's ``resources``)
    if set (it must not exceed the container's request), else what KubeRay derives (the
    container's CPU limit, else its request)."""
    container = group["template"]["spec"]["containers"][0]
    resources = container.get("resources") or {}
    requested = cpu_quantity((resources.get("requests") or {}).get("cpu", 0))
    explicit = (group.get("rayStartParams") or {}).get("num-cpus")
    for key, value in (group.get("resources") or {}).items():
        if key.lower() == "cpu":
            explicit = value
    logical = group_resources(group).get("CPU", 0.0)
    if explicit is not None and logical > requested:
        raise ValueError(f"num-cpus {explicit} exceeds the requested {requested} CPUs")
    return logical


def replica_resources(deployment: dict[str, Any]) -> dict[str, float]:
    """What one replica of a serve-config deployment reserves (Serve's default: 1 CPU)."""
    options = deployment.get("ray_actor_options") or {}
    need = {
        "CPU": float(options.get("num_cpus", 1.0)),
        "GPU": float(options.get("num_gpus") or 0.0),
        "memory": float(options.get("memory") or 0.0),
    }
    need.update({name: float(amount) for name, amount in (options.get("resources") or {}).items()})
    return {name: amount for name, amount in need.items() if amount}


def replica_range(deployment: dict[str, Any]) -> tuple[int, int]:
    """(replicas at the minimum, at the maximum)."""
    autoscaling = deployment.get("autoscaling_config")
    if autoscaling:
        return int(autoscaling.get("min_replicas", 1)), int(autoscaling["max_replicas"])
    replicas = int(deployment.get("num_replicas", 1))
    return replicas, replicas


def deployments(deploy_config: dict[str, Any]) -> list[dict[str, Any]]:
    return [d for app in deploy_config["applications"] for d in app.get("deployments", [])]


def deployment_demand(deploy_config: dict[str, Any]) -> dict[str, tuple[float, float]]:
    """{resource: (total at every deployment's minimum replicas, ... at its maximum)}."""
    demand: dict[str, tuple[float, float]] = {}
    for deployment in deployments(deploy_config):
        low, high = replica_range(deployment)
        for name, amount in replica_resources(deployment).items():
            have_low, have_high = demand.get(name, (0.0, 0.0))
            demand[name] = (have_low + amount * low, have_high + amount * high)
    return demand


def worker_range(group: dict[str, Any]) -> tuple[int, int]:
    low = int(group.get("minReplicas", 0))
    return low, int(group.get("maxReplicas", low))


def cluster_supply(cluster: dict[str, Any]) -> dict[str, tuple[float, float]]:
    """{resource: (total with every worker group at minReplicas, ... at maxReplicas)}."""
    supply: dict[str, tuple[float, float]] = {}
    groups = [(cluster["headGroupSpec"], (1, 1))]
    groups += [(g, worker_range(g)) for g in cluster.get("workerGroupSpecs") or []]
    for group, (low, high) in groups:
        for name, amount in group_resources(group).items():
            have_low, have_high = supply.get(name, (0.0, 0.0))
            supply[name] = (have_low + amount * low, have_high + amount * high)
    return supply


def deployment_cpus(deploy_config: dict[str, Any]) -> tuple[float, float]:
    """(CPUs at every deployment's minimum replicas, CPUs at its maximum)."""
    return deployment_demand(deploy_config).get("CPU", (0.0, 0.0))


def cluster_cpus(cluster: dict[str, Any]) -> tuple[float, float]:
    """(logical CPUs with every worker group at minReplicas, ... at maxReplicas)."""
    for group in [cluster["headGroupSpec"], *(cluster.get("workerGroupSpecs") or [])]:
        group_cpus(group)  # num-cpus within the pod's request
    return cluster_supply(cluster).get("CPU", (0.0, 0.0))


def _amount(name: str, amount: float) -> str:
    """``1.2 CPUs``, ``6 GiB of memory``, ``4 models`` (a custom resource)."""
    if name == "memory":
        return f"{gib(amount)} of memory"
    return f"{amount:g} {'CPUs' if name == 'CPU' else name}"


def check_resources(documents: Any) -> list[str]:
    """Problems with a RayService whose cluster cannot hold its deployments: for every
    resource the replicas reserve (CPUs, memory, custom resources such as ``models``), at the
    minimum replicas without the autoscaler and at the maximum with every worker group full;
    and any replica that fits on no pod of any group."""
    problems = []
    for doc in documents:
        if not doc or doc.get("kind") != "RayService":
            continue
        cluster = doc["spec"]["rayClusterConfig"]
        deploy_config = yaml.safe_load(doc["spec"]["serveConfigV2"])
        try:
            cluster_cpus(cluster)
            supply = cluster_supply(cluster)
            groups = [cluster["headGroupSpec"]] + [
                g for g in cluster.get("workerGroupSpecs") or [] if worker_range(g)[1] > 0
            ]
            pods = [group_resources(group) for group in groups]
        except ValueError as error:
            problems.append(str(error))
            continue
        for name, (need_low, need_high) in deployment_demand(deploy_config).items():
            have_low, have_high = supply.get(name, (0.0, 0.0))
            if have_low + 1e-9 < need_low:
                problems.append(
                    f"minimum replicas need {_amount(name, need_low)}, the cluster at "
                    f"minReplicas has {_amount(name, have_low)}"
                )
            if have_high + 1e-9 < need_high:
                problems.append(
                    f"maximum replicas need {_amount(name, need_high)}, the cluster at "
                    f"maxReplicas has {_amount(name, have_high)}"
                )
        for deployment in deployments(deploy_config):
            need = replica_resources(deployment)
            if not any(all(pod.get(k, 0.0) + 1e-9 >= v for k, v in need.items()) for pod in pods):
                shown = ", ".join(_amount(k, v) for k, v in need.items())
                problems.append(f"a {deployment['name']} replica ({shown}) fits on no pod")
    return problems


def pool_sizing(doc: dict[str, Any]) -> dict[str, Any] | None:
    """The memory arithmetic of the model pool's worker group, or None for a manifest that
    declares no budget (no ``bandit-serve.io/pool-model-memory`` annotation).

    One pool replica holds ``max_models_per_replica`` models of at most ``model_memory``
    each, plus ``replica_overhead`` for its process::

        replica_needs = max_models_per_replica * model_memory + replica_overhead
        pod_needs     = replicas_per_pod * replica_reserves + object_store + RAY_NODE_OVERHEAD

    where ``replica_reserves`` is the pool's ``ray_actor_options.memory`` (what Ray schedules
    by), ``replicas_per_pod`` what one pod of the group that hosts the pool offers
    (``min`` over the reserved resources of offer // reservation) and ``object_store`` the
    group's ``object-store-memory`` (else Ray's 30 % of the pod's memory).

    Raises:
        ValueError: no group can host a pool replica, or the app has no pool deployment.
    """
    annotations = (doc.get("metadata") or {}).get("annotations") or {}
    if MODEL_MEMORY_ANNOTATION not in annotations:
        return None
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from serve_app.config import PoolConfig

    deploy_config = yaml.safe_load(doc["spec"]["serveConfigV2"])
    pool = next((d for d in deployments(deploy_config) if d["name"] == POOL_DEPLOYMENT), None)
    if pool is None:
        raise ValueError(f"no {POOL_DEPLOYMENT} deployment in serveConfigV2")
    args = deploy_config["applications"][0].get("args") or {}
    models = PoolConfig.model_validate(args.get("pool") or {}).max_models_per_replica
    need = replica_resources(pool)
    if not need:
        raise ValueError(f"{POOL_DEPLOYMENT} replicas reserve nothing; nothing places them")
    cluster = doc["spec"]["rayClusterConfig"]
    hosts = []
    for group in [cluster["headGroupSpec"], *(cluster.get("workerGroupSpecs") or [])]:
        offer = group_resources(group)
        per_pod = min(math.floor(offer.get(k, 0.0) / v + 1e-9) for k, v in need.items())
        if per_pod >= 1:
            hosts.append((group, offer, per_pod))
    if not hosts:
        raise ValueError(f"no group's pod can host a {POOL_DEPLOYMENT} replica")
    model_memory = quantity(annotations[MODEL_MEMORY_ANNOTATION])
    overhead = quantity(annotations.get(REPLICA_OVERHEAD_ANNOTATION, 0))
    groups = []
    for group, offer, per_pod in hosts:
        container = group["template"]["spec"]["containers"][0]
        k8s = container.get("resources") or {}
        limit = quantity((k8s.get("limits") or {}).get("memory", 0))
        request = quantity((k8s.get("requests") or {}).get("memory", 0))
        params = group.get("rayStartParams") or {}
        object_store = (
            float(params["object-store-memory"])
            if "object-store-memory" in params
            else DEFAULT_OBJECT_STORE_FRACTION * limit
        )
        groups.append(
            {
                "group": group.get("groupName", "head"),
                "replicas_per_pod": per_pod,
                "ray_memory": offer.get("memory", 0.0),
                "object_store": object_store,
                "pod_needs": per_pod * need.get("memory", 0.0) + object_store + RAY_NODE_OVERHEAD,
                "memory_limit": limit,
                "memory_request": request,
            }
        )
    return {
        "max_models_per_replica": models,
        "model_memory": model_memory,
        "replica_overhead": overhead,
        "replica_needs": models * model_memory + overhead,
        "replica_reserves": need.get("memory", 0.0),
        "groups": groups,
    }


def check_pool_memory(doc: dict[str, Any]) -> list[str]:
    """Problems with the model pool's memory (see :func:`pool_sizing`): a replica reserving
    less than its models need, or a pod whose memory limit or request does not cover its pool
    replicas, object store and Ray's own processes."""
    try:
        sizing = pool_sizing(doc)
    except ValueError as error:
        return [str(error)]
    if sizing is None:
        return []
    problems = []
    if sizing["replica_reserves"] + 1e-9 < sizing["replica_needs"]:
        problems.append(
            f"{POOL_DEPLOYMENT} replicas reserve {gib(sizing['replica_reserves'])} of memory; "
            f"max_models_per_replica {sizing['max_models_per_replica']} x "
            f"{gib(sizing['model_memory'])} + {gib(sizing['replica_overhead'])} need "
            f"{gib(sizing['replica_needs'])}"
        )
    for group in sizing["groups"]:
        for what in ("memory_limit", "memory_request"):
            if group[what] + 1e-9 < group["pod_needs"]:
                problems.append(
                    f"group {group['group']}: {what.replace('_', ' ')} {gib(group[what])} is "
                    f"below {group['replicas_per_pod']} pool replicas + object store + Ray "
                    f"= {gib(group['pod_needs'])}"
                )
    return problems


def _serving_ports(deploy_config: dict[str, Any]) -> dict[str, int]:
    """{container port name: port} the serve config listens on: ``serve`` for HTTP and
    ``serve-grpc`` for gRPC when the config registers gRPC servicers."""
    ports = {"serve": int(deploy_config["http_options"].get("port", 8000))}
    grpc = deploy_config.get("grpc_options") or {}
    if grpc.get("grpc_servicer_functions"):
        ports["serve-grpc"] = int(grpc.get("port", 9000))
    return ports


def check_ports(doc: dict[str, Any]) -> list[str]:
    """Problems with the ports of a RayService: every Ray container must name the serve
    config's HTTP and gRPC ports ``serve`` and ``serve-grpc`` (KubeRay v1.7.0 builds the
    serve Service from the head container's ``serve``/``serve-*`` ports), and a
    ``spec.serveService`` must list no port that KubeRay would drop (a name that is not one
    of those head ports) and give each its own number."""
    if doc.get("kind") != "RayService":
        return []
    problems = []
    wanted = _serving_ports(yaml.safe_load(doc["spec"]["serveConfigV2"]))
    cluster = doc["spec"]["rayClusterConfig"]
    groups = [cluster["headGroupSpec"], *(cluster.get("workerGroupSpecs") or [])]
    head_serving: dict[str, int] = {}
    for index, group in enumerate(groups):
        container = group["template"]["spec"]["containers"][0]
        ports = {p.get("name"): p["containerPort"] for p in container.get("ports") or []}
        label = "head" if index == 0 else f"group {group['groupName']}"
        for name, port in wanted.items():
            if ports.get(name) != port:
                problems.append(f"{label}: container port {port} must be named {name!r}")
        if index == 0:
            head_serving = {
                n: p for n, p in ports.items() if n and (n == "serve" or n.startswith("serve-"))
            }
    service = doc["spec"].get("serveService")
    if service:
        for port in (service.get("spec") or {}).get("ports") or []:
            name = port.get("name")
            if name not in head_serving:
                problems.append(
                    f"serveService port {name!r}: KubeRay drops it (not a serve/serve-* port "
                    "of the head container)"
                )
            elif port.get("targetPort", port["port"]) != head_serving[name]:
                problems.append(
                    f"serveService port {name!r} targets {port.get('targetPort')}, the head "
                    f"listens on {head_serving[name]}"
                )
    return problems


def check_manifest(documents: list[Any]) -> list[str]:
    """Every problem :func:`check_resources`, :func:`check_ports` and
    :func:`check_pool_memory` find in a manifest's documents."""
    problems = check_resources(documents)
    for doc in documents:
        if doc and doc.get("kind") == "RayService":
            problems += check_ports(doc) + check_pool_memory(doc)
    return list(dict.fromkeys(problems))  # one line per problem, however many checks saw it


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
