"""The Kubernetes manifests (deploy/kubernetes), checked offline: every object against the API's
schemas, then what the schemas cannot see: that they agree with the image, with each other,
with offerd's own cluster file loader and balancer configuration, and with the server's drain."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import dockerfile
import jsonschema
import kubernetes_validate
import pytest
import yaml

from offerd.cluster import balancer
from offerd.cluster.topology import load

DEPLOY = Path(__file__).resolve().parent.parent / "deploy" / "kubernetes"
VERSIONS = ("1.28.0", kubernetes_validate.latest_version())  # pod-index labels since 1.28


def _seconds(text: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(s|m|h)", text)
    assert match, f"{text!r}: a duration the test does not read"
    return float(match[1]) * {"s": 1, "m": 60, "h": 3600}[match[2]]


@pytest.fixture(scope="module")
def objects():
    kustomization = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    files = sorted(p.name for p in DEPLOY.glob("*.yaml") if p.name != "kustomization.yaml")
    assert sorted(kustomization["resources"]) == files, "kustomization.yaml lists every manifest, once"
    found = {}
    for name in files:
        for doc in yaml.safe_load_all((DEPLOY / name).read_text()):
            found[(doc["kind"], doc["metadata"]["name"])] = doc
    return found


def _container(pod_spec: dict, name: str) -> dict:
    return next(c for c in pod_spec["containers"] if c["name"] == name)


def _env(container: dict) -> dict:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def _port(container: dict, name: str) -> int:
    return next(p["containerPort"] for p in container["ports"] if p["name"] == name)


def test_every_manifest_validates_against_the_api_schemas(objects):
    for doc in objects.values():
        for version in VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except jsonschema.ValidationError as e:
                raise AssertionError(f"{doc['kind']}/{doc['metadata']['name']} on Kubernetes {version}: "
                                     f"{e.message} at {'.'.join(map(str, e.path))}") from None
    kubectl = shutil.which("kubectl")
    if kubectl:  # kustomize builds offline; the objects it makes are the files' objects
        made = subprocess.run([kubectl, "kustomize", str(DEPLOY)], capture_output=True, text=True, timeout=60)
        assert made.returncode == 0, made.stderr
        rendered = {(d["kind"], d["metadata"]["name"]) for d in yaml.safe_load_all(made.stdout)}
        assert rendered == set(objects)


def test_the_shards_agree_with_the_image_the_cluster_file_and_the_drain(objects, tmp_path, monkeypatch):
    sts = objects[("StatefulSet", "offerd")]
    pod = sts["spec"]["template"]["spec"]
    shard = _container(pod, "offerd")
    env = _env(shard)
    image = dockerfile.environment(dockerfile.final_stage())

    # the ports the image listens on (OFFERD_LISTEN, OFFERD_METRICS), not overridden
    assert "OFFERD_LISTEN" not in env and "OFFERD_METRICS" not in env
    grpc_port = _port(shard, "grpc")
    assert grpc_port == int(image["OFFERD_LISTEN"].rsplit(":", 1)[1])
    assert _port(shard, "metrics") == int(image["OFFERD_METRICS"].rsplit(":", 1)[1])
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert shard[probe]["grpc"]["port"] == grpc_port, f"{probe} checks another port"

    # the volume: one claim per pod, mounted where the image keeps its data
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    mounts = {m["name"]: m["mountPath"] for m in shard["volumeMounts"]}
    assert mounts[claim["metadata"]["name"]] == image["OFFERD_DATA"]

    # the shard index is the pod's ordinal
    assert env["OFFERD_SHARD"] == {"fieldRef": {"fieldPath": "metadata.labels['apps.kubernetes.io/pod-index']"}}

    # a stop: preStop, then the drain and the grace, all within the termination grace period;
    # liveness never kills a draining shard
    pre_stop = shard["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    stopping = float(pre_stop[1]) + _seconds(env["OFFERD_DRAIN"]) + _seconds(env["OFFERD_GRACE"])
    assert pod["terminationGracePeriodSeconds"] > stopping
    live = shard["livenessProbe"]
    assert live["periodSeconds"] * live["failureThreshold"] > stopping - float(pre_stop[1])

    # the cluster file, as each shard loads it: pod N of the StatefulSet is shard N, at its DNS name
    cluster_map = objects[("ConfigMap", "offerd-cluster")]
    mount = next(m for m in shard["volumeMounts"] if m["name"] == "cluster")["mountPath"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == "cluster"]
    assert volume["configMap"]["name"] == "offerd-cluster"
    assert env["OFFERD_CLUSTER"] == f"{mount}/cluster.json"
    path = tmp_path / "cluster.json"
    path.write_text(cluster_map["data"]["cluster.json"])
    monkeypatch.setenv("OFFERD_CLUSTER_SECRET", "from the Secret object")
    namespace = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())["namespace"]
    replicas = sts["spec"]["replicas"]
    for i in range(replicas):
        topology = load(str(path), i)
        assert topology.secret == "from the Secret object"
        assert topology.shards == tuple(f"{sts['metadata']['name']}-{n}.{sts['spec']['serviceName']}.{namespace}"
                                        f".svc.cluster.local:{grpc_port}" for n in range(replicas))
    assert env["OFFERD_CLUSTER_SECRET"]["secretKeyRef"]["name"] == "offerd-cluster"

    # the headless Service names the pods, ready or not (a draining shard is still reached)
    headless = objects[("Service", sts["spec"]["serviceName"])]["spec"]
    assert headless["clusterIP"] == "None" and headless["publishNotReadyAddresses"] is True
    assert headless["selector"] == sts["spec"]["selector"]["matchLabels"]
    assert {p["port"] for p in headless["ports"]} == {grpc_port, _port(shard, "metrics")}

    # Redis where the cluster file says
    redis = objects[("Service", "offerd-redis")]["spec"]
    host, port = topology.redis.rsplit(":", 1)
    assert host == f"offerd-redis.{namespace}.svc.cluster.local" and int(port) == redis["ports"][0]["port"]
    redis_pod = objects[("Deployment", "offerd-redis")]["spec"]["template"]
    assert redis["selector"].items() <= redis_pod["metadata"]["labels"].items()


def test_the_balancer_is_offerds_haproxy_configuration_for_the_cluster_file(objects, tmp_path):
    shards = json.loads(objects[("ConfigMap", "offerd-cluster")]["data"]["cluster.json"])["shards"]
    config = objects[("ConfigMap", "offerd-balancer")]["data"]["haproxy.cfg"]
    assert config == balancer.haproxy(":50051", shards, check_every=0.5, dns=True), \
        "regenerate balancer.yaml's haproxy.cfg (the command is in its comment)"
    haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
    if Path(haproxy).exists():  # `make test` installs it
        (tmp_path / "haproxy.cfg").write_text(config)
        checked = subprocess.run([haproxy, "-c", "-f", str(tmp_path / "haproxy.cfg")], capture_output=True,
                                 text=True, timeout=60)
        assert checked.returncode == 0, checked.stdout + checked.stderr

    deployment = objects[("Deployment", "offerd-balancer")]["spec"]["template"]
    proxy = _container(deployment["spec"], "haproxy")
    assert _port(proxy, "grpc") == 50051
    (volume,) = deployment["spec"]["volumes"]
    assert volume["configMap"]["name"] == "offerd-balancer"
    assert proxy["volumeMounts"][0]["mountPath"] == "/usr/local/etc/haproxy"  # where the image reads haproxy.cfg
    service = objects[("Service", "offerd")]["spec"]
    assert service["selector"].items() <= deployment["metadata"]["labels"].items()
    assert service["ports"][0]["targetPort"] == "grpc"


def test_every_pod_runs_as_non_root_with_resources_requested(objects):
    pods = [(kind, name, doc["spec"]["template"]["spec"]) for (kind, name), doc in objects.items()
            if kind in ("StatefulSet", "Deployment")]
    assert len(pods) == 3
    for kind, name, pod in pods:
        assert pod["securityContext"]["runAsNonRoot"] is True, f"{kind}/{name}"
        assert pod["securityContext"]["runAsUser"] != 0, f"{kind}/{name}"
        for container in pod["containers"]:
            assert {"cpu", "memory"} <= set(container["resources"]["requests"]), f"{kind}/{name}"
            assert container["securityContext"]["allowPrivilegeEscalation"] is False, f"{kind}/{name}"
    # the shards run as the image's user, so its volume is theirs
    shard_pod = objects[("StatefulSet", "offerd")]["spec"]["template"]["spec"]
    uid, _, gid = dockerfile.final_stage()["USER"][-1].partition(":")
    assert shard_pod["securityContext"]["runAsUser"] == int(uid)
    assert shard_pod["securityContext"]["fsGroup"] == int(gid or uid)
