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
    """configs/local.yaml: router 0.25 + state 0.1 + logreg, forest, mlp 0.2 (forest up to 2)."""
    doc = yaml.safe_load((CLUSTER / "rayservice.yaml").read_text())
    low, high = render.deployment_cpus(yaml.safe_load(doc["spec"]["serveConfigV2"]))
    assert low == pytest.approx(0.95)
    assert high == pytest.approx(1.15)


def test_cpu_check_rejects_a_cluster_too_small() -> None:
    doc = yaml.safe_load((CLUSTER / "rayservice.yaml").read_text())
    doc["spec"]["rayClusterConfig"]["headGroupSpec"]["rayStartParams"]["num-cpus"] = "0.5"
    doc["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["maxReplicas"] = 0
    problems = render.check_resources([doc])
    assert len(problems) == 2, problems
    assert render.cpu_quantity("500m") == 0.5
    assert render.cpu_quantity(2) == 2.0


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
            for name in ("PGPASSWORD", "BANDIT_SERVE_CONTROL_TOKEN", "BANDIT_SERVE_SECRET"):
                assert "secretKeyRef" in env[name]["valueFrom"], name
        else:
            home = env["BANDIT_SERVE_HOME"]["value"]
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            volumes = {v["name"]: v for v in pod["volumes"]}
            assert home in mounts
            assert mounts[home] in volumes
