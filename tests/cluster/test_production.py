"""cluster/rayservice-production.yaml and configs/production.yaml: signing keys from a mounted
Secret, tokens from the Secret's env, the model pool on a worker group sized for it, and the
Host names clients use in http.allowed_hosts.

Fast: no Ray cluster is started.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from .renderer import load_renderer

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = ROOT / "cluster" / "rayservice-production.yaml"
NAMESPACE = "bandit-serve"  # docs/kubernetes.md: kubectl -n bandit-serve ...
GIB = 2**30
MIB = 2**20

render = load_renderer()


@pytest.fixture
def doc() -> dict[str, Any]:
    return yaml.safe_load(MANIFEST.read_text())


def app_args(doc: dict[str, Any]) -> dict[str, Any]:
    return yaml.safe_load(doc["spec"]["serveConfigV2"])["applications"][0]["args"]


def groups(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    cluster = doc["spec"]["rayClusterConfig"]
    return {
        "head": cluster["headGroupSpec"],
        **{g["groupName"]: g for g in cluster["workerGroupSpecs"]},
    }


def serve_deployments(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    serve_config = yaml.safe_load(doc["spec"]["serveConfigV2"])
    return {d["name"]: d for d in serve_config["applications"][0]["deployments"]}


# --------------------------------------------------------------------------- secrets


def test_signing_keys_are_a_secret_mounted_read_only_everywhere(doc: dict[str, Any]) -> None:
    """auth.signing_keys_dir is the mount of the Secret bandit-serve-signing-keys on every Ray
    container (the state replica, which reads the keys, may run on any worker)."""
    keys_dir = app_args(doc)["auth"]["signing_keys_dir"]
    assert keys_dir == "/etc/bandit-serve/signing-keys"
    for name, group in groups(doc).items():
        pod = group["template"]["spec"]
        mounts = {m["mountPath"]: m for m in pod["containers"][0]["volumeMounts"]}
        assert mounts[keys_dir]["readOnly"] is True, name
        volumes = {v["name"]: v for v in pod["volumes"]}
        secret = volumes[mounts[keys_dir]["name"]]["secret"]
        assert secret["secretName"] == "bandit-serve-signing-keys", name
        assert not secret.get("optional", False), name  # no keys, no pod (the app would stop)
        assert "items" not in secret, name  # every key of the Secret is a key file
        assert secret["defaultMode"] == 0o440, name
        assert pod["securityContext"]["fsGroup"] == 100, name  # the image's `users` group


def test_the_keys_secret_holds_nothing_else(doc: dict[str, Any]) -> None:
    """Every entry of a mounted Secret becomes a key file, so the tokens and the database
    password live in the other Secret."""
    for name, group in groups(doc).items():
        env = group["template"]["spec"]["containers"][0]["env"]
        secrets = {
            e["valueFrom"]["secretKeyRef"]["name"]
            for e in env
            if "secretKeyRef" in e.get("valueFrom", {})
        }
        assert secrets == {"bandit-serve"}, name


def test_tokens_come_from_the_secret_env(doc: dict[str, Any]) -> None:
    """The control token is required; the data and QA tokens are used only when present."""
    for name, group in groups(doc).items():
        env = {e["name"]: e for e in group["template"]["spec"]["containers"][0]["env"]}
        refs = {k: v["valueFrom"]["secretKeyRef"] for k, v in env.items() if "valueFrom" in v}
        control, password = refs["BANDIT_SERVE_CONTROL_TOKEN"], refs["PGPASSWORD"]
        assert control == {"name": "bandit-serve", "key": "control-token"}, name  # required
        assert password == {"name": "bandit-serve", "key": "postgres-password"}, name
        assert refs["BANDIT_SERVE_DATA_TOKEN"]["optional"] is True, name
        assert refs["BANDIT_SERVE_QA_TOKEN"]["optional"] is True, name
        assert "BANDIT_SERVE_SECRET" not in env, name  # keys come from the directory only


def test_no_secret_in_the_config() -> None:
    """No token, key or password in configs/production.yaml: they come from the Secrets."""
    text = (ROOT / "configs" / "production.yaml").read_text()
    config = yaml.safe_load(text)
    args = config["applications"][0]["args"]
    assert not {"control_token", "data_token", "qa_token"} & set(args.get("auth", {}))
    assert "@" in args["store_url"]
    assert ":" not in args["store_url"].split("//", 1)[1].split("@", 1)[0]  # user, no password
    assert not re.search(r"[0-9a-f]{32,}", text)


def test_key_rotation_rolls_a_new_cluster(doc: dict[str, Any]) -> None:
    """One annotation on every pod template: bumping it starts a new cluster (NewCluster),
    whose state replica reads the changed key directory."""
    revisions = {
        name: group["template"]["metadata"]["annotations"]["bandit-serve.io/signing-keys-revision"]
        for name, group in groups(doc).items()
    }
    assert len(set(revisions.values())) == 1, revisions
    assert doc["spec"]["upgradeStrategy"]["type"] == "NewCluster"


# --------------------------------------------------------------------------- HTTP hosts


def service_names(doc: dict[str, Any], namespace: str) -> list[str]:
    name = doc["spec"]["serveService"]["metadata"]["name"]
    return [
        name,
        f"{name}.{namespace}",
        f"{name}.{namespace}.svc",
        f"{name}.{namespace}.svc.cluster.local",
    ]


def test_allowed_hosts_name_the_serve_service(doc: dict[str, Any]) -> None:
    """Clients in the cluster reach the app by the serve Service's DNS names; any Host not
    listed is answered 400, so every form of the name is there (in the namespace
    docs/kubernetes.md deploys to), and an ingress host next to them."""
    from serve_app.ingress.http import LOCAL_HOSTS, host_allowed

    http = app_args(doc)["http"]
    allowed = (*LOCAL_HOSTS, *http["allowed_hosts"])
    assert doc["spec"]["serveService"]["metadata"]["name"] == "bandit-serve-serve-svc"
    for host in service_names(doc, NAMESPACE):
        assert host_allowed(f"{host}:8000", allowed), host
    assert host_allowed("bandit-serve.example.com", allowed)  # the ingress host (placeholder)
    assert not host_allowed("10.0.3.7:8000", allowed)  # a pod IP is not a name clients use
    assert "*" not in http["allowed_hosts"]
    assert http["cors_origins"] == []  # CORS off


def relabel(labels: dict[str, str], rules: list[dict[str, Any]]) -> dict[str, str]:
    """Prometheus' `replace` relabeling (the only action the PodMonitors use)."""
    labels = dict(labels)
    for rule in rules:
        assert rule.get("action", "replace") == "replace"
        value = rule.get("separator", ";").join(labels.get(s, "") for s in rule["sourceLabels"])
        match = re.fullmatch(rule.get("regex", "(.*)"), value)
        if match:
            groups = [match.group(0), *match.groups()]
            replacement = rule.get("replacement", "$1")
            labels[rule["targetLabel"]] = re.sub(
                r"\$(\d+)", lambda m, g=groups: g[int(m.group(1))] or "", replacement
            )
    return labels


def test_the_metrics_scrape_sends_an_allowed_host(doc: dict[str, Any]) -> None:
    """Prometheus sends the target address as the Host: the app's PodMonitor rewrites the
    pod IP to the serve Service's name, which allowed_hosts lists."""
    from serve_app.ingress.http import LOCAL_HOSTS, host_allowed

    podmonitors = yaml.safe_load_all((ROOT / "cluster" / "podmonitor.yaml").read_text())
    app = next(d for d in podmonitors if d["metadata"]["name"] == "bandit-serve-app")
    (endpoint,) = app["spec"]["podMetricsEndpoints"]
    target = {
        "__address__": "10.0.3.7:8000",
        "__meta_kubernetes_namespace": NAMESPACE,
        "__meta_kubernetes_pod_name": "bandit-serve-abcde-head-xyz12",
        "__meta_kubernetes_pod_label_ray_io_cluster": "bandit-serve-abcde",
    }
    labels = relabel(target, endpoint["relabelings"])
    assert labels["__address__"] == "bandit-serve-serve-svc.bandit-serve.svc:8000"
    assert labels["instance"] == "bandit-serve-abcde-head-xyz12"
    allowed = (*LOCAL_HOSTS, *app_args(doc)["http"]["allowed_hosts"])
    assert host_allowed(labels["__address__"], allowed)


# --------------------------------------------------------------------------- model pool


def test_most_arms_are_on_the_pool() -> None:
    from serve_app.config import parse_config

    config = yaml.safe_load((ROOT / "configs" / "production.yaml").read_text())
    app = parse_config({**config["applications"][0]["args"], "check_models": False})
    placements = [arm.placement for e in app.experiments for arm in e.arms]
    assert placements.count("pool") > len(placements) / 2, placements
    for experiment in app.experiments:
        for arm in experiment.arms:
            if arm.deployment.batching is not None:
                assert arm.placement == "dedicated", arm.name  # @serve.batch needs its own
    assert app.models.alias_poll_interval_s > 0


def test_pool_lands_only_on_the_models_group(doc: dict[str, Any]) -> None:
    """The pool's replicas ask for a `models` slot, which only the models group offers; that
    group offers Ray no CPUs, so no other deployment (all of which reserve CPUs) lands there."""
    deployments = serve_deployments(doc)
    pool = render.replica_resources(deployments["model-pool"])
    assert pool["models"] == 1
    offers = {name: render.group_resources(group) for name, group in groups(doc).items()}
    hosts = {
        name
        for name, offer in offers.items()
        if all(offer.get(k, 0.0) >= v for k, v in pool.items())
    }
    assert hosts == {"models"}
    assert "CPU" not in offers["models"]
    for name, deployment in deployments.items():
        if name != "model-pool":
            assert render.replica_resources(deployment).get("CPU", 0.0) > 0, name


def test_pool_group_memory_covers_max_models_per_replica(doc: dict[str, Any]) -> None:
    """A pool replica reserves max_models_per_replica x the model budget + its own overhead
    (4 x 512 MiB + 1 GiB = 3 GiB); a models pod holds two, its object store and Ray's own
    processes (2 x 3 + 1 + 1 = 8 GiB), requested and limited alike."""
    sizing = render.pool_sizing(doc)
    assert sizing is not None
    pool_config = app_args(doc)["pool"]
    assert sizing["max_models_per_replica"] == pool_config["max_models_per_replica"] == 4
    assert sizing["model_memory"] == 512 * MIB
    assert sizing["replica_overhead"] == GIB
    assert sizing["replica_needs"] == 3 * GIB
    assert sizing["replica_reserves"] == pool_config["deployment"]["ray_actor_options"]["memory"]
    assert sizing["replica_reserves"] >= sizing["replica_needs"]
    (group,) = sizing["groups"]
    assert group["group"] == "models"
    assert group["replicas_per_pod"] == 2
    assert group["ray_memory"] == 2 * sizing["replica_reserves"]
    assert group["pod_needs"] == 2 * 3 * GIB + GIB + render.RAY_NODE_OVERHEAD == 8 * GIB
    assert group["memory_limit"] == group["memory_request"] == group["pod_needs"]
    assert render.check_pool_memory(doc) == []


def test_pool_group_scales_with_the_pool(doc: dict[str, Any]) -> None:
    """Two to six pool replicas, two per pod: two to three models pods, one CPU per replica."""
    low, high = render.replica_range(serve_deployments(doc)["model-pool"])
    models = groups(doc)["models"]
    slots = render.group_resources(models)["models"]
    assert (low, high) == (2, 6)
    assert models["minReplicas"] * slots >= low
    assert models["maxReplicas"] * slots >= high
    container = models["template"]["spec"]["containers"][0]
    assert render.cpu_quantity(container["resources"]["limits"]["cpu"]) == slots


def test_pool_memory_check_rejects_too_little(doc: dict[str, Any]) -> None:
    bigger_models = copy.deepcopy(doc)
    bigger_models["metadata"]["annotations"]["bandit-serve.io/pool-model-memory"] = "1Gi"
    problems = render.check_pool_memory(bigger_models)
    assert problems == [
        "model-pool replicas reserve 3 GiB of memory; max_models_per_replica 4 x 1 GiB + "
        "1 GiB need 5 GiB"
    ]
    small_pods = copy.deepcopy(doc)
    container = groups(small_pods)["models"]["template"]["spec"]["containers"][0]
    container["resources"] = {"requests": {"memory": "6Gi"}, "limits": {"memory": "6Gi"}}
    problems = render.check_pool_memory(small_pods)
    assert len(problems) == 2, problems
    assert problems[0].startswith("group models: memory limit 6 GiB is below 2 pool replicas")


def test_state_runs_on_the_cpu_group(doc: dict[str, Any]) -> None:
    """state.ray_actor_options places the experiment state: CPUs, so on the cpu group."""
    state = serve_deployments(doc)["experiment-state"]
    configured = app_args(doc)["state"]["ray_actor_options"]
    assert state["ray_actor_options"]["num_cpus"] == configured["num_cpus"]
    need = render.replica_resources(state)
    hosts = {
        name
        for name, group in groups(doc).items()
        if all(render.group_resources(group).get(k, 0.0) >= v for k, v in need.items())
    }
    assert hosts == {"cpu"}
