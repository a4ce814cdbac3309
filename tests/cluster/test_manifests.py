"""The Kubernetes manifests in cluster/: valid for their CRDs, not stale, big enough.

Fast: no Ray cluster is started (rendering builds the application graph in memory only).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from .renderer import load_renderer

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = ROOT / "cluster"
VALIDATOR = ROOT.parent / "shared" / "kuberay" / "validate_manifest.py"
MANIFESTS = sorted(CLUSTER.glob("*.yaml"))
RAYSERVICES = sorted(CLUSTER.glob("rayservice*.yaml"))
GIB = 2**30


render = load_renderer()


def test_every_kind_of_manifest_is_there() -> None:
    kinds = {
        doc["kind"] for path in MANIFESTS for doc in yaml.safe_load_all(path.read_text()) if doc
    }
    assert {"RayService", "PodMonitor", "PrometheusRule", "ConfigMap"} <= kinds
    assert [p.name for p in RAYSERVICES] == ["rayservice-production.yaml", "rayservice.yaml"]


@pytest.mark.skipif(not VALIDATOR.exists(), reason=f"KubeRay schema validator not at {VALIDATOR}")
def test_manifests_pass_the_kuberay_validator() -> None:
    result = subprocess.run(
        [sys.executable, str(VALIDATOR), *map(str, MANIFESTS)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SKIP" not in result.stdout, result.stdout  # every document had a schema


@pytest.mark.parametrize("path", RAYSERVICES, ids=lambda p: p.name)
def test_serve_config_is_what_the_renderer_produces(path: Path) -> None:
    doc = yaml.safe_load(path.read_text())
    source = doc["metadata"]["annotations"][render.SOURCE_ANNOTATION]
    expected = render.render_serve_config(ROOT / source)
    assert yaml.safe_load(doc["spec"]["serveConfigV2"]) == expected, "run `make manifests`"


def test_committed_files_are_not_stale() -> None:
    """Byte for byte what `make manifests` writes (serveConfigV2 and the dashboard ConfigMap)."""
    stale = [
        str(path.relative_to(ROOT))
        for path, text in render.rendered_files().items()
        if not path.exists() or path.read_text() != text
    ]
    assert not stale, f"stale, run `make manifests`: {stale}"


@pytest.mark.parametrize("path", RAYSERVICES, ids=lambda p: p.name)
def test_serve_config_follows_the_config(path: Path) -> None:
    """Same applications and args as the config; bound to all interfaces for the Service."""
    doc = yaml.safe_load(path.read_text())
    serve_config = yaml.safe_load(doc["spec"]["serveConfigV2"])
    config = yaml.safe_load(
        (ROOT / doc["metadata"]["annotations"][render.SOURCE_ANNOTATION]).read_text()
    )
    assert serve_config["http_options"]["host"] == "0.0.0.0"
    for rendered, source in zip(serve_config["applications"], config["applications"], strict=True):
        for key in ("name", "route_prefix", "import_path", "args"):
            assert rendered[key] == source[key]
        names = {d["name"] for d in rendered["deployments"]}
        assert {"router", "experiment-state"} <= names


@pytest.mark.parametrize("path", RAYSERVICES, ids=lambda p: p.name)
def test_cluster_cpus_cover_the_deployments(path: Path) -> None:
    doc = yaml.safe_load(path.read_text())
    need_low, need_high = render.deployment_cpus(yaml.safe_load(doc["spec"]["serveConfigV2"]))
    have_low, have_high = render.cluster_cpus(doc["spec"]["rayClusterConfig"])
    assert need_low > 0
    assert have_low >= need_low, "the minimum replicas must fit without the autoscaler"
    assert have_high >= need_high, "the autoscaler must be able to fit the maximum replicas"
    assert doc["spec"]["rayClusterConfig"]["enableInTreeAutoscaling"] is True


def test_local_cpu_arithmetic() -> None:
    """configs/local.yaml: router 0.25 + state 0.1 + the pool 0.25 (1 to 4 replicas) +
    logreg, forest, mlp 0.2 (forest up to 2)."""
    doc = yaml.safe_load((CLUSTER / "rayservice.yaml").read_text())
    low, high = render.deployment_cpus(yaml.safe_load(doc["spec"]["serveConfigV2"]))
    assert low == pytest.approx(1.2)
    assert high == pytest.approx(2.15)
    assert render.cluster_cpus(doc["spec"]["rayClusterConfig"]) == (2.0, 4.0)


def test_production_resource_arithmetic() -> None:
    """configs/production.yaml: router 2-4 x 0.5 + state 0.5 + mlp 1-4 x 0.5 CPUs on the cpu
    group; the pool's 2-6 replicas take a `models` slot and 3 GiB each, no CPU."""
    doc = yaml.safe_load((CLUSTER / "rayservice-production.yaml").read_text())
    demand = render.deployment_demand(yaml.safe_load(doc["spec"]["serveConfigV2"]))
    assert demand["CPU"] == pytest.approx((2.0, 4.5))
    assert demand["models"] == (2.0, 6.0)
    assert demand["memory"] == (2 * 3 * GIB, 6 * 3 * GIB)
    supply = render.cluster_supply(doc["spec"]["rayClusterConfig"])
    assert supply["CPU"] == (4.0, 6.0)  # head 0, cpu 2-3 pods x 2, models 0
    assert supply["models"] == (4.0, 6.0)


def test_cpu_check_rejects_a_cluster_too_small() -> None:
    doc = yaml.safe_load((CLUSTER / "rayservice.yaml").read_text())
    doc["spec"]["rayClusterConfig"]["headGroupSpec"]["rayStartParams"]["num-cpus"] = "0.5"
    doc["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["maxReplicas"] = 0
    problems = render.check_resources([doc])
    assert len(problems) == 2, problems
    assert render.cpu_quantity("500m") == 0.5
    assert render.cpu_quantity(2) == 2.0
    assert render.quantity("8Gi") == 8 * GIB
    assert render.quantity("512Mi") == GIB / 2


def test_resource_check_counts_custom_resources() -> None:
    """Without the models group the pool has nowhere to go, and the check says so."""
    doc = yaml.safe_load((CLUSTER / "rayservice-production.yaml").read_text())
    groups = doc["spec"]["rayClusterConfig"]["workerGroupSpecs"]
    groups[:] = [g for g in groups if g["groupName"] != "models"]
    problems = render.check_resources([doc])
    assert "minimum replicas need 2 models, the cluster at minReplicas has 0 models" in problems
    assert any(p.startswith("a model-pool replica") and "fits on no pod" in p for p in problems)


def test_resources_as_kuberay_reads_them() -> None:
    """KubeRay v1.7.0 refuses `resources` next to Ray resource rayStartParams; the Ray
    autoscaler reads rayStartParams.resources only inside one more pair of quotes."""
    doc = yaml.safe_load((CLUSTER / "rayservice-production.yaml").read_text())
    models = next(
        g for g in doc["spec"]["rayClusterConfig"]["workerGroupSpecs"] if g["groupName"] == "models"
    )
    # CPU "0": Ray gets no CPUs there (zero amounts are left out)
    assert render.group_resources(models) == {"memory": 6 * GIB, "models": 2.0}
    both = {**models, "rayStartParams": {"num-cpus": "0"}}
    with pytest.raises(ValueError, match="together"):
        render.group_resources(both)
    bare = {**models, "resources": {}, "rayStartParams": {"resources": '{"models": 2}'}}
    with pytest.raises(ValueError, match="autoscaler"):
        render.group_resources(bare)
    quoted = {**bare, "rayStartParams": {"resources": '"{\\"models\\": 2}"'}}
    assert render.group_resources(quoted)["models"] == 2.0


def test_splice_replaces_only_the_block() -> None:
    text = "a: 1\nspec:\n  serveConfigV2: |\n    old: 1\n\n    more: 2\n  next: 3\n"
    assert render.splice(text, "new: 1\n\nx: 2\n") == (
        "a: 1\nspec:\n  serveConfigV2: |\n    new: 1\n\n    x: 2\n  next: 3\n"
    )


@pytest.mark.parametrize("path", RAYSERVICES, ids=lambda p: p.name)
def test_pods_are_ready_for_the_app(path: Path) -> None:
    """Serve port on the head, same image everywhere, data dir a volume or the store remote."""
    doc = yaml.safe_load(path.read_text())
    cluster = doc["spec"]["rayClusterConfig"]
    groups = [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
    head = groups[0]["template"]["spec"]["containers"][0]
    assert {"name": "serve", "containerPort": 8000} in head["ports"]
    images = {g["template"]["spec"]["containers"][0]["image"] for g in groups}
    assert len(images) == 1
    args = yaml.safe_load(doc["spec"]["serveConfigV2"])["applications"][0]["args"]
    for group in groups:
        pod = group["template"]["spec"]
        container = pod["containers"][0]
        env = {e["name"]: e for e in container.get("env", [])}
        if (args.get("store_url") or "").startswith("postgresql"):
            for name in ("PGPASSWORD", "BANDIT_SERVE_CONTROL_TOKEN"):
                assert "secretKeyRef" in env[name]["valueFrom"], name
            # signing keys come from the mounted directory (test_production.py), not the env
            assert "BANDIT_SERVE_SECRET" not in env
        else:
            home = env["BANDIT_SERVE_HOME"]["value"]
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            volumes = {v["name"]: v for v in pod["volumes"]}
            assert home in mounts
            assert mounts[home] in volumes


@pytest.mark.parametrize("path", RAYSERVICES, ids=lambda p: p.name)
def test_grpc_is_exposed(path: Path) -> None:
    """The serve config's gRPC servicer (the Open Inference Protocol) is reachable: port 9000
    named serve-grpc on every Ray container (KubeRay v1.7.0 puts only the head's serve and
    serve-* ports in the serve Service) and in spec.serveService next to HTTP."""
    doc = yaml.safe_load(path.read_text())
    serve_config = yaml.safe_load(doc["spec"]["serveConfigV2"])
    assert serve_config["grpc_options"]["port"] == 9000
    assert serve_config["grpc_options"]["grpc_servicer_functions"] == [
        "serve_app.ingress.oip_pb.inference_pb2_grpc.add_GRPCInferenceServiceServicer_to_server"
    ]
    cluster = doc["spec"]["rayClusterConfig"]
    for group in [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]:
        ports = group["template"]["spec"]["containers"][0]["ports"]
        assert {"name": "serve", "containerPort": 8000} in ports
        assert {"name": "serve-grpc", "containerPort": 9000} in ports
    service_ports = {
        p["name"]: (p["port"], p.get("targetPort"), p.get("appProtocol"))
        for p in doc["spec"]["serveService"]["spec"]["ports"]
    }
    assert service_ports == {
        "serve": (8000, 8000, "http"),
        "serve-grpc": (9000, 9000, "kubernetes.io/h2c"),
    }
    assert render.check_ports(doc) == []


def test_production_grpc_options_are_local_ones() -> None:
    configs = {
        name: yaml.safe_load((ROOT / "configs" / name).read_text())
        for name in ("local.yaml", "production.yaml")
    }
    assert configs["production.yaml"]["grpc_options"] == configs["local.yaml"]["grpc_options"]


def test_port_check_rejects_what_kuberay_would_drop() -> None:
    doc = yaml.safe_load((CLUSTER / "rayservice-production.yaml").read_text())
    head = doc["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    for port in head["ports"]:
        if port["name"] == "serve-grpc":
            port["name"] = "grpc"  # not a serve-* name: KubeRay leaves it out of the Service
    problems = render.check_ports(doc)
    assert "head: container port 9000 must be named 'serve-grpc'" in problems
    assert any(p.startswith("serveService port 'serve-grpc': KubeRay drops it") for p in problems)


def test_renderer_imports_the_grpc_servicers(tmp_path: Path) -> None:
    config = yaml.safe_load((ROOT / "configs" / "local.yaml").read_text())
    config["grpc_options"]["grpc_servicer_functions"] = ["serve_app.ingress.no_such.add_servicer"]
    path = tmp_path / "typo.yaml"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(ValueError, match=r"cannot import serve_app\.ingress\.no_such"):
        render.render_serve_config(path)
