"""The production overlay, k8s/overlays/prod: what it must add to the base, and its
nats.conf run as a real three-member cluster.

The rendering, the schema validation and the checks every kustomization gets
(settings, ports, probes, grace periods, security) are in test_manifests.py, which
renders this overlay too. Here: three NATS members on volumes, one per node, with a
disruption budget; the history at 3 replicas; gateways scaled from 2 with a grace
period that covers their drain; and the ConfigMap's exact nats.conf, its addresses
and data directory substituted and nothing else, as a local cluster that keeps the
history stream through the loss of a member.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import re
import socket
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import nats.errors
import pytest
from nats.aio.client import Client
from nats.js.api import KeyValueConfig

import chat_gateway.app
from chat_announcements.errors import LeaseUnavailable
from chat_announcer.lease import KvPeriodLease
from falcon_pachinko.backends.nats import KvLease
from falcon_pachinko.backends.nats.history import NatsHistory, NatsHistoryConfig
from falcon_pachinko.errors import BackendError
from falcon_pachinko.leadership import Lease
from falcon_pachinko.subjects import Subjects
from falcon_pachinko.testing import scaled
from falcon_pachinko.testing.nats import find_nats_server

from .test_manifests import (
    GATEWAY,
    Doc,
    _chat_containers,
    _container_env,
    _of_kind,
    _render,
    shutdown_s,
)

PROD = "k8s/overlays/prod"
NATS_LABELS = {"app.kubernetes.io/name": "nats"}


def _docs() -> tuple[Doc, ...]:
    return _render(PROD)


def _nats_conf() -> str:
    (config_map,) = (
        c for name, c in _of_kind(_docs(), "ConfigMap").items() if name.startswith("nats-config")
    )
    text: str = config_map["data"]["nats.conf"]
    return text


def _gateway_env() -> dict[str, str]:
    (env,) = (_container_env(_docs(), c) for _, c, s in _chat_containers(_docs()) if s is GATEWAY)
    return env


# -------------------------------------------------------------------- structure --


def test_nats_is_three_members_on_volumes_one_per_node_with_a_budget() -> None:
    docs = _docs()
    nats_set = _of_kind(docs, "StatefulSet")["nats"]
    spec = nats_set["spec"]
    assert spec["replicas"] == 3
    # Every member must be up to elect a leader: they start together.
    assert spec["podManagementPolicy"] == "Parallel"
    (claim,) = spec["volumeClaimTemplates"]
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    assert {m["name"]: m["mountPath"] for m in container["volumeMounts"]}[
        claim["metadata"]["name"]
    ] == "/data"
    (rule,) = pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert rule == {
        "topologyKey": "kubernetes.io/hostname",
        "labelSelector": {"matchLabels": NATS_LABELS},
    }
    budget = _of_kind(docs, "PodDisruptionBudget")["nats"]["spec"]
    assert budget == {"maxUnavailable": 1, "selector": {"matchLabels": NATS_LABELS}}
    # Liveness and readiness on the monitoring port's /healthz; the configuration is
    # the ConfigMap's nats.conf.
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"client": 4222, "cluster": 6222, "monitor": 8222}
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        get = container[probe]["httpGet"]
        assert get["port"] == "monitor" and get["path"].split("?")[0] == "/healthz", probe
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["args"] == ["--config", "/etc/nats/nats.conf"]
    (volume,) = (v for v in pod["volumes"] if v["name"] == "config")
    assert volume["configMap"]["name"].startswith("nats-config-")  # hashed: rolls on change
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts["config"] == "/etc/nats"


def test_routes_name_every_member_through_the_headless_service() -> None:
    docs = _docs()
    services = _of_kind(docs, "Service")
    headless = services["nats"]["spec"]
    assert headless["clusterIP"] == "None" and headless["publishNotReadyAddresses"] is True
    assert {p["name"]: p["port"] for p in headless["ports"]}["cluster"] == 6222
    routes = re.findall(r"nats://([a-z0-9.-]+):(\d+)", _nats_conf())
    assert routes == [(f"nats-{i}.nats", "6222") for i in range(3)]
    # The client Service sends clients to ready members; the chat connects there.
    client = services["nats-client"]["spec"]
    assert client["selector"] == NATS_LABELS and "clusterIP" not in client
    for _, container, _ in _chat_containers(docs):
        assert _container_env(docs, container)["CHAT_NATS_URL"] == "nats://nats-client:4222"
    # The members may reach one another on the route port.
    routes_policy = _of_kind(docs, "NetworkPolicy")["nats-routes"]["spec"]
    assert routes_policy["podSelector"]["matchLabels"] == NATS_LABELS
    (rule,) = routes_policy["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": 6222}]


def test_history_is_stored_on_three_replicas() -> None:
    env = _gateway_env()
    assert env["CHAT_HISTORY_REPLICAS"] == "3"
    config = chat_gateway.app.history_config(GATEWAY.settings.load_settings(env))
    assert config is not None and config.replicas == 3


def test_gateways_scale_from_two_spread_over_zones_and_nodes() -> None:
    docs = _docs()
    hpa = _of_kind(docs, "HorizontalPodAutoscaler")["chat-gateway"]["spec"]
    assert hpa["minReplicas"] >= 2
    assert [m["resource"]["name"] for m in hpa["metrics"]] == ["cpu"]
    for name in ("chat-gateway", "chat-announcer", "chat-rooms"):
        pod = _of_kind(docs, "Deployment")[name]["spec"]["template"]["spec"]
        keys = {c["topologyKey"] for c in pod["topologySpreadConstraints"]}
        assert keys == {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}, name
    assert _of_kind(docs, "PodDisruptionBudget")["chat-gateway"]["spec"]["maxUnavailable"] == 1


def test_rooms_runs_an_active_and_a_standby_on_a_replicated_lease() -> None:
    docs = _docs()
    rooms = _of_kind(docs, "Deployment")["chat-rooms"]["spec"]
    assert rooms["replicas"] == 2
    (container,) = rooms["template"]["spec"]["containers"]
    env = _container_env(docs, container)
    assert env["CHAT_ROOMS_LEASE_REPLICAS"] == "3"
    assert env["CHAT_ROOMS_LEASE_BUCKET"] == "chat_rooms"
    assert _of_kind(docs, "PodDisruptionBudget")["chat-rooms"]["spec"]["maxUnavailable"] == 1


def test_the_announcer_lease_is_kept_on_three_replicas() -> None:
    docs = _docs()
    (container,) = _of_kind(docs, "Deployment")["chat-announcer"]["spec"]["template"]["spec"][
        "containers"
    ]
    env = _container_env(docs, container)
    assert env["CHAT_ANNOUNCE_LEASE_REPLICAS"] == "3"
    assert env["CHAT_ANNOUNCE_LEASE_BUCKET"] == "chat_announcer"


def test_the_gateway_grace_period_covers_its_drain() -> None:
    docs = _docs()
    gateway = _of_kind(docs, "Deployment")["chat-gateway"]["spec"]["template"]["spec"]
    (container,) = gateway["containers"]
    pre_stop = container["lifecycle"]["preStop"]["exec"]
    drain = shutdown_s(GATEWAY, _container_env(docs, container), pre_stop)
    # preStop 10 + CHAT_DRAIN_S 5 + CHAT_SHUTDOWN_TIMEOUT_S 15 + CHAT_NATS_DRAIN_TIMEOUT_S 5.
    assert drain == 35
    assert gateway["terminationGracePeriodSeconds"] >= drain + 10


def test_the_gateway_is_sized_for_its_connection_cap() -> None:
    """The memory limit holds the capacity model's cost of CHAT_MAX_CONNECTIONS."""
    docs = _docs()
    (container,) = _of_kind(docs, "Deployment")["chat-gateway"]["spec"]["template"]["spec"][
        "containers"
    ]
    cap = int(_gateway_env()["CHAT_MAX_CONNECTIONS"])
    # docs/performance.md: 29 MB per 1,000 connections plus 55 MB per process.
    needed_mib = (55 + 29 * cap / 1000) * 1e6 / 2**20
    limit = container["resources"]["limits"]["memory"]
    assert limit.endswith("Mi") and int(limit[:-2]) >= needed_mib
    assert container["resources"]["requests"]["cpu"] == "1"


# ------------------------------------------------------- nats.conf as a cluster --


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _local_conf(text: str, i: int, ports: list[dict[str, int]], store: Path) -> str:
    """The member ``i``'s nats.conf: the Kubernetes addresses and /data replaced by
    127.0.0.1 ports and a directory of its own, every occurrence counted."""
    own = ports[i]
    replacements = [
        ("listen: 0.0.0.0:4222", f"listen: 127.0.0.1:{own['client']}"),
        ("http: 0.0.0.0:8222", f"http: 127.0.0.1:{own['monitor']}"),
        ("listen: 0.0.0.0:6222", f"listen: 127.0.0.1:{own['cluster']}"),
        ("store_dir: /data", f'store_dir: "{store}"'),
    ]
    replacements += [
        (f"nats://nats-{j}.nats:6222", f"nats://127.0.0.1:{p['cluster']}")
        for j, p in enumerate(ports)
    ]
    for old, new in replacements:
        assert text.count(old) == 1, f"nats.conf no longer has {old!r} exactly once"
        text = text.replace(old, new)
    settings = "\n".join(line.split("#")[0] for line in text.splitlines())
    assert not re.search(r"0\.0\.0\.0|nats-\d\.nats|store_dir: /data", settings), settings
    return text


class _Member:
    def __init__(self, name: str, conf: Path, monitor: int, client: int) -> None:
        self.name, self.conf, self.monitor, self.client = name, conf, monitor, client
        self.proc: asyncio.subprocess.Process | None = None
        self.log: list[bytes] = []
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            find_nats_server(),
            "--config",
            str(self.conf),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            # The pod's POD_NAME, from the downward API in the StatefulSet.
            env={**os.environ, "POD_NAME": self.name},
        )
        ready = asyncio.get_running_loop().create_future()
        self._reader = asyncio.create_task(self._read(ready))
        try:
            async with asyncio.timeout(scaled(15)):
                await ready
        except TimeoutError:
            raise RuntimeError(b"".join(self.log[-20:]).decode(errors="replace")) from None

    async def _read(self, ready: asyncio.Future[None]) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        while line := await self.proc.stderr.readline():
            self.log.append(line)
            if b"Server is ready" in line and not ready.done():
                ready.set_result(None)
        if not ready.done():
            ready.set_exception(RuntimeError("nats-server exited: " + repr(self.log[-5:])))

    def healthy(self) -> bool:
        try:
            url = f"http://127.0.0.1:{self.monitor}/healthz"
            with urllib.request.urlopen(url, timeout=scaled(2)) as resp:  # loopback only
                return bool(resp.status == 200)
        except OSError:
            return False

    async def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader


@contextlib.asynccontextmanager
async def _prod_cluster(tmp_path: Path) -> AsyncIterator[list[_Member]]:
    text = _nats_conf()
    ports = [{k: _free_port() for k in ("client", "cluster", "monitor")} for _ in range(3)]
    members = []
    for i in range(3):
        conf = tmp_path / f"nats-{i}.conf"
        conf.write_text(_local_conf(text, i, ports, tmp_path / f"store-{i}"))
        members.append(_Member(f"nats-{i}", conf, ports[i]["monitor"], ports[i]["client"]))
    try:
        await asyncio.gather(*(m.start() for m in members))
        # Routes up and a JetStream meta leader elected: /healthz says OK everywhere.
        async with asyncio.timeout(scaled(30)):
            while not all(await asyncio.gather(*(asyncio.to_thread(m.healthy) for m in members))):
                await asyncio.sleep(0.1)  # polling /healthz: there is no event to await
        yield members
    finally:
        await asyncio.gather(*(m.kill() for m in members))


async def _retry(what: str, attempt: object) -> object:
    """Run ``attempt()`` until it succeeds, within a bound: a leader election after a
    member's loss has nothing to await but time."""
    last: BaseException | None = None
    try:
        async with asyncio.timeout(scaled(30)):
            while True:
                try:
                    return await attempt()  # type: ignore[operator]
                except (BackendError, LeaseUnavailable, nats.errors.Error, TimeoutError) as exc:
                    last = exc
                    await asyncio.sleep(0.2)
    except TimeoutError:
        raise AssertionError(f"{what} did not succeed in time: {last!r}") from None


@pytest.mark.integration
@pytest.mark.slow
async def test_the_prod_nats_conf_keeps_the_history_through_the_loss_of_a_member(
    tmp_path: Path,
) -> None:
    async with _prod_cluster(tmp_path) as members:
        nc: Client = await nats.connect(
            servers=[f"nats://127.0.0.1:{m.client}" for m in members],
            name="prod-overlay-test",
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.1,
            connect_timeout=2,
        )
        try:
            history = NatsHistory(
                nc,
                Subjects("chat"),
                "node-test",
                NatsHistoryConfig(replicas=3),
                request_timeout_s=2.0,
            )
            await _retry("creating the history stream", history.start)
            info = await nc.jetstream().stream_info(history.stream)
            assert info.config.num_replicas == 3
            before = [
                await _retry("an append", functools.partial(history.append, "general", body))
                for body in (b'{"n":%d}' % n for n in range(5))
            ]
            # The two leases, their buckets created at 3 replicas as the prod settings say.
            js = nc.jetstream(timeout=2)
            lease = KvPeriodLease(
                nc, bucket="chat_announcer", interval_s=3600, owner="a", replicas=3
            )
            assert await _retry("the announcer's first claim", lambda: lease.claim(1))
            rooms = KvLease(nc, bucket="chat_rooms", replicas=3)
            held = await _retry("the rooms lease", lambda: rooms.write("rooms-a", after=0))
            for bucket in ("chat_announcer", "chat_rooms"):
                assert (await js.stream_info(f"KV_{bucket}")).config.num_replicas == 3
            # A bucket made at one replica, raised to 3 in place as docs/deploy.md does.
            await js.create_key_value(KeyValueConfig(bucket="raised", history=1))
            raised = await js.key_value("raised")
            await raised.put("k", b"kept")
            config = (await js.stream_info("KV_raised")).config
            config.num_replicas = 3
            await js.update_stream(config)
            assert (await js.stream_info("KV_raised")).config.num_replicas == 3

            async def raised_everywhere() -> None:
                cluster = (await js.stream_info("KV_raised")).cluster
                peers = (cluster.replicas or []) if cluster else []
                if len(peers) != 2 or not all(p.current for p in peers):
                    raise TimeoutError("the new replicas have not caught up yet")

            await _retry("the raised bucket's replicas catching up", raised_everywhere)

            # Kill the member that leads the history stream: the worst one to lose.
            leader = (await nc.jetstream().stream_info(history.stream)).cluster.leader
            (victim,) = (m for m in members if m.name == leader)
            await victim.kill()

            page = await _retry("a read", lambda: history.latest("general", limit=10))
            assert [m.position.seq for m in page.messages] == [a.position.seq for a in before]
            after = await _retry("an append", lambda: history.append("general", b'{"n":5}'))
            assert after.position.seq > before[-1].position.seq

            async def read_all() -> list[int]:
                page = await history.latest("general", limit=10)
                seqs = [m.position.seq for m in page.messages]
                # A direct get may be answered by a replica a moment behind the leader.
                if seqs[-1] != after.position.seq:
                    raise TimeoutError("the append is not readable yet")
                return seqs

            seqs = await _retry("reading the append", read_all)
            assert seqs == [a.position.seq for a in before] + [after.position.seq]
            assert not await _retry("a claim", lambda: lease.claim(1))  # taken: one winner
            assert await _retry("a claim", lambda: lease.claim(2))
            assert await _retry("reading the rooms lease", rooms.read) == Lease(held, "rooms-a")
            renewed = await _retry("renewing", lambda: rooms.write("rooms-a", after=held))
            assert renewed is not None and renewed > held
            assert await rooms.write("rooms-b", after=held) is None  # stale: refused

            async def raised_value() -> bytes:
                entry = await js.key_value("raised")
                return (await entry.get("k")).value or b""

            assert await _retry("reading the raised bucket", raised_value) == b"kept"
            await history.stop()
        finally:
            await nc.close()
