"""The deployment files: docker-compose.yml, k8s/ and Prometheus.

Nothing here needs a Docker engine or a cluster. The manifests are rendered with
``kubectl kustomize`` (skipped when kubectl is absent) and validated against the
Kubernetes schemas of a fixed version; docker-compose.yml against the Compose
specification. Then they are checked against the code they deploy: every
``CHAT_*`` variable must be a field of the Settings of the service it is given to
(and its value must pass that service's validation), ports must be the services'
defaults, probes must hit /healthz and /readyz, grace periods must cover the
shutdown. deploy/Dockerfile, which builds the images, is checked in test_dockerfile.py
with the helpers defined here.
"""

from __future__ import annotations

import inspect
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate
import msgspec
import pytest
import yaml

import chat_announcer.settings
import chat_gateway.settings
import chat_rooms.settings
from chat_runtime.natsconn import NatsConnection
from chat_runtime.settings import CommonSettings

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
#: The Kubernetes release the manifests must be valid for (strict: no unknown fields).
K8S_VERSION = "1.30.0"
KUSTOMIZATIONS = ["k8s/base", "k8s/overlays/dev", "k8s/overlays/prod"]
#: A stand-in for the JWT secret wherever a value is needed to validate settings.
DUMMY_SECRET = "x" * 48

Doc = dict[str, Any]


@dataclass(frozen=True)
class Service:
    """A deployable service and what its deployment must agree with."""

    name: str  # the directory under services/
    image: str  # the image name, also the console script
    settings: Any  # the service's settings module
    port_field: str  # the setting that holds the HTTP port (health, metrics)
    host_field: str  # the setting that holds the listening interface

    @property
    def directory(self) -> Path:
        return ROOT / "services" / self.name

    @property
    def fields(self) -> dict[str, msgspec.structs.FieldInfo]:
        return {f.name: f for f in msgspec.structs.fields(self.settings.Settings)}

    @property
    def env_names(self) -> set[str]:
        return {"CHAT_" + name.upper() for name in self.fields}

    @property
    def default_port(self) -> int:
        return int(self.fields[self.port_field].default)

    @property
    def port_env(self) -> str:
        return "CHAT_" + self.port_field.upper()

    @property
    def host_env(self) -> str:
        return "CHAT_" + self.host_field.upper()

    def check_env(self, env: Mapping[str, str]) -> None:
        """Fail unless every CHAT_* name is a setting and the values load."""
        unknown = {k for k in env if k.startswith("CHAT_")} - self.env_names
        assert not unknown, f"{self.image}: not settings of {self.name}: {sorted(unknown)}"
        values = dict(env)
        if self.name == "gateway" and values.get("CHAT_AUTH", "jwt") == "jwt":
            values.setdefault("CHAT_JWT_SECRET", DUMMY_SECRET)
        try:
            self.settings.load_settings(values)
        except (msgspec.ValidationError, ValueError) as exc:
            pytest.fail(f"{self.image}: its settings do not load: {exc}")


SERVICES = {
    s.image: s
    for s in (
        Service("gateway", "chat-gateway", chat_gateway.settings, "port", "host"),
        Service("rooms", "chat-rooms", chat_rooms.settings, "metrics_port", "metrics_host"),
        Service(
            "announcer", "chat-announcer", chat_announcer.settings, "metrics_port", "metrics_host"
        ),
    )
}
GATEWAY = SERVICES["chat-gateway"]


def _drain_timeout_s() -> float:
    """How long a service's NATS drain may take at shutdown (its bound)."""
    default = inspect.signature(NatsConnection.drain).parameters["timeout_s"].default
    return float(default)


def shutdown_s(service: Service, env: Mapping[str, str], pre_stop: Doc) -> float:
    """How long a container of ``service`` given ``env`` may take to stop after the
    kubelet begins: its ``preStop`` sleep, then (the gateway) its clients closed with
    1012 over CHAT_DRAIN_S and the sockets closing for CHAT_SHUTDOWN_TIMEOUT_S, then
    the NATS drain (CHAT_NATS_DRAIN_TIMEOUT_S), each read from the settings the
    service loads from ``env``."""
    values = dict(env)
    values.setdefault("CHAT_JWT_SECRET", DUMMY_SECRET)
    settings = service.settings.load_settings(values)
    needed = float(settings.nats_drain_timeout_s)
    if pre_stop:
        assert pre_stop["command"][0] == "sleep"
        needed += float(pre_stop["command"][1])
    if service is GATEWAY:
        needed += float(settings.drain_s) + float(settings.shutdown_timeout_s)
    return needed


def _image_name(image: str) -> str:
    """``registry.example.com/chat-gateway:0.1.0`` -> ``chat-gateway``."""
    return image.rsplit("/", 1)[-1].split("@")[0].split(":")[0]


# --------------------------------------------------------------------- Kubernetes --


@cache
def _render(kustomization: str) -> tuple[Doc, ...]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed (needed for `kubectl kustomize`)")
    result = subprocess.run(
        [kubectl, "kustomize", str(ROOT / kustomization)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"kubectl kustomize {kustomization}:\n{result.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


@pytest.fixture(params=KUSTOMIZATIONS)
def docs(request: pytest.FixtureRequest) -> tuple[Doc, ...]:
    return _render(request.param)


def _of_kind(docs: tuple[Doc, ...], kind: str) -> dict[str, Doc]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def _workloads(docs: tuple[Doc, ...]) -> Iterator[Doc]:
    return (d for d in docs if d["kind"] in ("Deployment", "StatefulSet"))


def _chat_containers(docs: tuple[Doc, ...]) -> Iterator[tuple[Doc, Doc, Service]]:
    """(workload, container, service) for every container running a chat image."""
    for workload in _workloads(docs):
        for container in workload["spec"]["template"]["spec"]["containers"]:
            service = SERVICES.get(_image_name(container["image"]))
            if service is not None:
                yield workload, container, service


def _container_env(docs: tuple[Doc, ...], container: Doc) -> dict[str, str]:
    """The variables a container gets from its ConfigMaps and its own ``env``."""
    config_maps = _of_kind(docs, "ConfigMap")
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        name = source["configMapRef"]["name"]
        assert name in config_maps, f"envFrom names a missing ConfigMap {name}"
        env.update(config_maps[name].get("data", {}))
    for var in container.get("env", []):
        env[var["name"]] = var.get("value", DUMMY_SECRET if "valueFrom" in var else "")
    return env


def _port_number(container: Doc, port: int | str) -> int:
    if isinstance(port, int):
        return port
    by_name = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
    assert port in by_name, f"{container['name']}: no container port named {port}"
    return int(by_name[port])


def test_kustomizations_render_documents_valid_for_kubernetes(docs: tuple[Doc, ...]) -> None:
    kinds = {d["kind"] for d in docs}
    expected = {"Namespace", "ConfigMap", "Service", "Deployment", "StatefulSet"}
    expected |= {"HorizontalPodAutoscaler", "PodDisruptionBudget", "NetworkPolicy"}
    assert expected <= kinds
    for doc in docs:
        where = f"{doc['kind']}/{doc['metadata']['name']}"
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == "chat", where
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = "/".join(str(p) for p in exc.absolute_path)
            pytest.fail(f"{where} is not valid Kubernetes {K8S_VERSION}: {exc.message} at /{path}")


def test_jwt_secret_is_a_valid_template_that_is_never_rendered(docs: tuple[Doc, ...]) -> None:
    template = yaml.safe_load((ROOT / "k8s/base/jwt-secret.template.yaml").read_text())
    kubernetes_validate.validate(template, K8S_VERSION, strict=True)
    # Never applied by kustomize: an apply would overwrite the real key with the placeholder.
    assert not _of_kind(docs, "Secret")
    # The placeholder must not be usable: the gateway refuses it.
    placeholder = template["stringData"]["CHAT_JWT_SECRET"]
    with pytest.raises(ValueError, match="at least 32 bytes"):
        GATEWAY.settings.load_settings({"CHAT_JWT_SECRET": placeholder})
    gateway = _of_kind(docs, "Deployment")["chat-gateway"]
    refs = [
        v["valueFrom"]["secretKeyRef"]
        for c in gateway["spec"]["template"]["spec"]["containers"]
        for v in c.get("env", [])
        if v["name"] == "CHAT_JWT_SECRET"
    ]
    assert refs == [{"name": template["metadata"]["name"], "key": "CHAT_JWT_SECRET"}]


def test_every_setting_given_to_a_container_is_a_setting_of_its_service(
    docs: tuple[Doc, ...],
) -> None:
    seen = set()
    for _, container, service in _chat_containers(docs):
        seen.add(service.image)
        env = _container_env(docs, container)
        assert all(k.startswith("CHAT_") for k in env), sorted(env)
        service.check_env(env)
        # In a pod the service must listen beyond loopback.
        assert env.get(service.host_env) == "0.0.0.0", service.image
    assert seen == set(SERVICES)
    # ConfigMaps mounted as files (nats.conf in the prod overlay) are not settings.
    mounted = {
        volume["configMap"]["name"]
        for workload in _workloads(docs)
        for volume in workload["spec"]["template"]["spec"].get("volumes", [])
        if "configMap" in volume
    }
    for name, config_map in _of_kind(docs, "ConfigMap").items():
        if name not in mounted:
            assert all(k.startswith("CHAT_") for k in config_map.get("data", {})), name


def test_ports_probes_and_scrape_annotations_match_the_services(docs: tuple[Doc, ...]) -> None:
    for workload, container, service in _chat_containers(docs):
        env = _container_env(docs, container)
        ports = [p["containerPort"] for p in container["ports"]]
        assert ports == [service.default_port], service.image
        assert int(env.get(service.port_env, service.default_port)) == service.default_port
        ready = container["readinessProbe"]["httpGet"]
        live = container["livenessProbe"]["httpGet"]
        assert (ready["path"], live["path"]) == ("/readyz", "/healthz"), service.image
        assert _port_number(container, ready["port"]) == service.default_port
        assert _port_number(container, live["port"]) == service.default_port
        annotations = workload["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/port"] == str(service.default_port)
        assert annotations["prometheus.io/path"] == "/metrics"


def test_every_workload_has_resources_probes_and_a_locked_down_security_context(
    docs: tuple[Doc, ...],
) -> None:
    for workload in _workloads(docs):
        pod = workload["spec"]["template"]["spec"]
        where = f"{workload['kind']}/{workload['metadata']['name']}"
        pod_security = pod.get("securityContext", {})
        assert pod_security.get("seccompProfile") == {"type": "RuntimeDefault"}, where
        assert pod.get("automountServiceAccountToken") is False, where
        for container in pod["containers"]:
            security = {**pod_security, **container.get("securityContext", {})}
            assert security.get("runAsNonRoot") is True, where
            assert security.get("runAsUser", 0) != 0, where
            assert security.get("readOnlyRootFilesystem") is True, where
            assert security.get("allowPrivilegeEscalation") is False, where
            assert security.get("capabilities", {}).get("drop") == ["ALL"], where
            resources = container.get("resources", {})
            assert {"cpu", "memory"} <= set(resources.get("requests", {})), where
            assert "memory" in resources.get("limits", {}), where
            assert "readinessProbe" in container and "livenessProbe" in container, where


def test_grace_periods_cover_the_shutdown(docs: tuple[Doc, ...]) -> None:
    # The drain bound the services' settings default to is NatsConnection.drain's own.
    defaults = {f.name: f.default for f in msgspec.structs.fields(CommonSettings)}
    assert defaults["nats_drain_timeout_s"] == _drain_timeout_s()
    for workload, container, service in _chat_containers(docs):
        grace = workload["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        pre_stop = container.get("lifecycle", {}).get("preStop", {}).get("exec", {})
        needed = shutdown_s(service, _container_env(docs, container), pre_stop)
        assert grace > needed, f"{service.image}: {grace} s <= {needed} s of shutdown"


def test_gateway_scales_on_its_own_and_rooms_has_a_standby(docs: tuple[Doc, ...]) -> None:
    deployments = _of_kind(docs, "Deployment")
    hpas = list(_of_kind(docs, "HorizontalPodAutoscaler").values())
    assert len(hpas) == 1
    hpa = hpas[0]["spec"]
    assert hpa["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "chat-gateway",
    }
    assert 1 <= hpa["minReplicas"] < hpa["maxReplicas"]
    assert [m["resource"]["name"] for m in hpa["metrics"]] == ["cpu"]
    rooms = deployments["chat-rooms"]["spec"]
    # One active through the lease, so replicas may overlap: the new pod is up
    # before the old one stops and hands over.
    assert rooms["replicas"] >= 1
    assert rooms["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }
    (container,) = rooms["template"]["spec"]["containers"]
    assert _container_env(docs, container)["CHAT_ROOMS_LEASE_BUCKET"] == "chat_rooms"
    assert deployments["chat-announcer"]["spec"]["replicas"] >= 2


def test_disruption_budgets_and_selectors_match_their_pods(docs: tuple[Doc, ...]) -> None:
    workloads = {w["metadata"]["name"]: w for w in _workloads(docs)}
    for workload in workloads.values():
        selector = workload["spec"]["selector"]["matchLabels"]
        labels = workload["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items()
    budgets = _of_kind(docs, "PodDisruptionBudget")
    assert (
        {"chat-gateway", "chat-announcer", "chat-rooms"}
        <= set(budgets)
        <= {
            "chat-gateway",
            "chat-announcer",
            "chat-rooms",
            "nats",
        }
    )
    for name, budget in budgets.items():
        assert budget["spec"]["selector"] == workloads[name]["spec"]["selector"]
    services = _of_kind(docs, "Service")
    gateway_pods = workloads["chat-gateway"]["spec"]["template"]["metadata"]["labels"]
    assert services["chat-gateway"]["spec"]["selector"].items() <= gateway_pods.items()


def test_only_the_chat_services_may_reach_nats(docs: tuple[Doc, ...]) -> None:
    policies = _of_kind(docs, "NetworkPolicy")
    policy = policies.pop("nats-clients")
    # Any other policy (the prod overlay's routes) admits NATS pods only.
    for other in policies.values():
        for rule in other["spec"]["ingress"]:
            for peer in rule["from"]:
                assert peer == {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "nats"}}}
    nats = _of_kind(docs, "StatefulSet")["nats"]
    nats_labels = nats["spec"]["template"]["metadata"]["labels"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= nats_labels.items()
    (rule,) = policy["spec"]["ingress"]
    (peer,) = rule["from"]
    (expression,) = peer["podSelector"]["matchExpressions"]
    assert expression["operator"] == "In"
    allowed = set(expression["values"])
    assert allowed == set(SERVICES)
    for workload, _, service in _chat_containers(docs):
        labels = workload["spec"]["template"]["metadata"]["labels"]
        assert labels[expression["key"]] == service.image
    (container,) = nats["spec"]["template"]["spec"]["containers"]
    client_port = _port_number(container, "client")
    assert [p["port"] for p in rule["ports"]] == [client_port]
    services = _of_kind(docs, "Service")
    for _, chat_container, _ in _chat_containers(docs):
        url = _container_env(docs, chat_container)["CHAT_NATS_URL"]
        match = re.fullmatch(r"nats://([a-z0-9-]+):(\d+)", url)
        assert match is not None, url
        # A Service of this namespace in front of the NATS pods, on their client port.
        host, port = match.group(1), int(match.group(2))
        assert services[host]["spec"]["selector"].items() <= nats_labels.items(), url
        targets = {p["port"]: p["targetPort"] for p in services[host]["spec"]["ports"]}
        assert _port_number(container, targets[port]) == client_port == port, url


def test_nats_runs_jetstream_on_a_volume_with_monitoring_probes() -> None:
    docs = _render("k8s/base")
    nats = _of_kind(docs, "StatefulSet")["nats"]
    (container,) = nats["spec"]["template"]["spec"]["containers"]
    args = container["args"]
    assert "-js" in args and args[args.index("-sd") + 1] == "/data"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"client": 4222, "monitor": int(args[args.index("-m") + 1])}
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        get = container[probe]["httpGet"]
        assert get["path"].startswith("/healthz")
        assert _port_number(container, get["port"]) == ports["monitor"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    claims = [c["metadata"]["name"] for c in nats["spec"]["volumeClaimTemplates"]]
    assert mounts == {"data": "/data"} and claims == ["data"]
    service = _of_kind(docs, "Service")["nats"]
    assert service["spec"]["clusterIP"] == "None"
    assert nats["spec"]["serviceName"] == "nats"


def test_images_are_the_services_tagged_for_kustomize_to_retag() -> None:
    base = yaml.safe_load((ROOT / "k8s/base/kustomization.yaml").read_text())
    retaggable = {image["name"] for image in base["images"]}
    assert set(SERVICES) <= retaggable
    for kustomization in KUSTOMIZATIONS:
        docs = _render(kustomization)
        images = {c["image"] for _, c, _ in _chat_containers(docs)}
        assert images == {f"{name}:0.1.0" for name in SERVICES}
        # The history reads use batch direct get: nats-server 2.11 or newer.
        (nats,) = _of_kind(docs, "StatefulSet")["nats"]["spec"]["template"]["spec"]["containers"]
        match = re.fullmatch(r"nats:(\d+)\.(\d+)(?:\.\d+)?-alpine", nats["image"])
        assert match is not None, nats["image"]
        assert (int(match.group(1)), int(match.group(2))) >= (2, 11), nats["image"]


def test_dev_overlay_is_one_small_gateway_with_console_logs() -> None:
    base, dev = _render("k8s/base"), _render("k8s/overlays/dev")
    assert _of_kind(base, "Deployment")["chat-gateway"]["spec"]["replicas"] == 3
    dev_gateway = _of_kind(dev, "Deployment")["chat-gateway"]
    assert dev_gateway["spec"]["replicas"] == 1
    assert _of_kind(dev, "HorizontalPodAutoscaler")["chat-gateway"]["spec"]["minReplicas"] == 1
    for _, container, _ in _chat_containers(dev):
        assert _container_env(dev, container)["CHAT_LOG_FORMAT"] == "console"
    for _, container, _ in _chat_containers(base):
        assert _container_env(base, container)["CHAT_LOG_FORMAT"] == "json"

    def memory_limits(docs: tuple[Doc, ...]) -> dict[str, str]:
        return {
            w["metadata"]["name"]: w["spec"]["template"]["spec"]["containers"][0]["resources"][
                "limits"
            ]["memory"]
            for w in _workloads(docs)
        }

    def mebibytes(quantity: str) -> int:
        number, unit = re.fullmatch(r"(\d+)(Mi|Gi)", quantity).groups()  # type: ignore[union-attr]
        return int(number) * (1024 if unit == "Gi" else 1)

    for name, limit in memory_limits(dev).items():
        assert mebibytes(limit) < mebibytes(memory_limits(base)[name]), name


# ------------------------------------------------------------------------ Compose --


@cache
def _compose() -> Doc:
    doc: Doc = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return doc


def _interpolate(value: str) -> str:
    """Compose's ``${VAR:-default}`` -> default, ``${VAR:?error}`` -> a stand-in."""

    def replace(match: re.Match[str]) -> str:
        name, op, arg = match.group(1), match.group(2), match.group(3)
        if op == ":?":
            return DUMMY_SECRET if name == "CHAT_JWT_SECRET" else "required"
        return arg if op == ":-" else ""

    return re.sub(r"\$\{(\w+)(?:(:-|:\?)([^}]*))?\}", replace, value)


def _compose_chat_services() -> Iterator[tuple[str, Doc, Service]]:
    for name, spec in _compose()["services"].items():
        service = SERVICES.get(_image_name(spec.get("image", "")))
        if service is not None:
            yield name, spec, service


def test_compose_file_follows_the_compose_specification() -> None:
    tool = BIN / "check-jsonschema"
    assert tool.exists(), "check-jsonschema is missing: install requirements.lock"
    result = subprocess.run(
        [str(tool), "--builtin-schema", "vendor.compose-spec", str(ROOT / "docker-compose.yml")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_gives_each_service_only_its_own_settings() -> None:
    seen = []
    for name, spec, service in _compose_chat_services():
        seen.append(service.image)
        env = {k: _interpolate(str(v)) for k, v in spec["environment"].items()}
        service.check_env(env)
        assert env[service.host_env] == "0.0.0.0", name
        # One Dockerfile for every image; PORT only feeds EXPOSE (the build checks it).
        assert spec["build"] == {
            "context": ".",
            "dockerfile": "deploy/Dockerfile",
            "args": {"SERVICE": service.name, "PORT": str(service.default_port)},
        }
        assert spec["restart"] == "unless-stopped", name
    assert sorted(seen) == sorted(["chat-gateway"] * 2 + ["chat-rooms", "chat-announcer"])


def test_compose_wiring_ports_replicas_and_health() -> None:
    services = _compose()["services"]
    nats = services["nats"]
    command = nats["command"]
    assert nats["image"] == "nats:2.11-alpine"  # batch direct get: the history reads
    assert "-js" in command and command[command.index("-sd") + 1] == "/data"
    monitor = command[command.index("-m") + 1]
    assert nats["healthcheck"]["test"] == [
        "CMD",
        "wget",
        "-qO-",
        f"http://localhost:{monitor}/healthz",
    ]
    assert nats["volumes"][0].split(":")[0] in _compose()["volumes"]
    host_ports = []
    for name, spec, service in _compose_chat_services():
        assert spec["depends_on"]["nats"] == {"condition": "service_healthy"}, name
        port = int(spec["environment"][service.port_env])
        assert port == service.default_port, name
        published = [p.split(":") for p in spec.get("ports", [])]
        assert all(int(container) == port for _, container in published), name
        host_ports += [int(host) for host, _ in published]
        if service is GATEWAY:
            assert spec["environment"]["CHAT_JWT_SECRET"].startswith("${CHAT_JWT_SECRET:?")
            grace = float(spec["stop_grace_period"].removesuffix("s"))
            assert (
                grace > float(spec["environment"]["CHAT_SHUTDOWN_TIMEOUT_S"]) + _drain_timeout_s()
            )
    assert sorted(host_ports) == [8000, 8001]
    assert services["announcer"]["deploy"]["replicas"] == 2
    assert services["rooms"]["deploy"]["replicas"] == 2
    assert services["rooms"]["environment"]["CHAT_ROOMS_LEASE_BUCKET"] == "chat_rooms"
    # Prometheus and Grafana only with `--profile monitoring` (test_monitoring.py checks them).
    assert services["prometheus"]["profiles"] == ["monitoring"]
    assert services["grafana"]["profiles"] == ["monitoring"]
    assert "x-gateway" in _compose()


def test_prometheus_scrapes_every_compose_service_on_its_port() -> None:
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    targets: set[tuple[str, int]] = set()
    for job in config["scrape_configs"]:
        assert job.get("metrics_path", "/metrics") == "/metrics"
        for static in job.get("static_configs", []):
            for target in static["targets"]:
                host, port = target.split(":")
                targets.add((host, int(port)))
        for dns in job.get("dns_sd_configs", []):
            targets |= {(host, int(dns["port"])) for host in dns["names"]}
    expected = {
        (name, int(spec["environment"][service.port_env]))
        for name, spec, service in _compose_chat_services()
    }
    assert targets == expected
    mount = _compose()["services"]["prometheus"]["volumes"][0]
    assert mount.split(":")[0] == "./deploy/prometheus/prometheus.yml"
