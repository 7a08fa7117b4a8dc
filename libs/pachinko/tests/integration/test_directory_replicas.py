"""Directory replicas over a real nats-server with JetStream: one active, takeovers
that report every presence change exactly once, and the KV lease under them."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import pytest

from falcon_pachinko.backends.nats import KvLease
from falcon_pachinko.leadership import Lease
from falcon_pachinko.presence import PresenceChange
from falcon_pachinko.testing import scaled

pytestmark = pytest.mark.integration

Cluster = Any  # conftest.Cluster
TTL_S = 1.5


class Reports:
    """Every presence change any replica reported, with who reported it."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, PresenceChange]] = []
        self._changed = asyncio.Event()

    def handler(self, replica: str) -> Any:
        async def on_presence(change: PresenceChange) -> None:
            self.seen.append((replica, change))
            self._changed.set()

        return on_presence

    def count(self) -> Counter[tuple[str, bool]]:
        return Counter((c.identity, c.present) for _, c in self.seen)

    async def wait(self, identity: str, present: bool, timeout_s: float) -> str:
        """Who reported ``identity``'s change; fails if no one does in time."""
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    for replica, c in self.seen:
                        if (c.identity, c.present) == (identity, present):
                            return replica
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(
                f"{identity} {'arriving' if present else 'leaving'} not reported within "
                f"{timeout_s:.1f}s; reported: {self.seen}"
            ) from None


async def replica(cluster: Cluster, reports: Reports, name: str, **options: Any) -> Any:
    nc = await cluster.client()
    handle = await cluster.directory(
        nc,
        lease=KvLease(nc, bucket="dir_lease"),
        lease_ttl_s=TTL_S,
        startup_quiet_s=0.0,
        grace_s=0.0,
        name=name,
        **options,
    )
    handle.directory.on_presence = reports.handler(name)
    return handle


async def until(predicate: Any, what: str, timeout_s: float) -> float:
    started = time.monotonic()
    try:
        async with asyncio.timeout(timeout_s):
            while not predicate():
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"not within {timeout_s:.1f}s: {what}") from None
    return time.monotonic() - started


def actives(*handles: Any) -> list[Any]:
    return [h for h in handles if h.directory.active]


async def test_the_lease_is_a_compare_and_set_key(cluster: Cluster) -> None:
    nc = await cluster.client()
    lease = KvLease(nc, bucket="lease_kv", replicas=1)
    assert await lease.read() == Lease(0, None)
    first = await lease.write("a", after=0)
    assert first is not None
    assert await lease.read() == Lease(first, "a")
    assert await lease.write("b", after=0) is None  # a stale revision is refused
    second = await lease.write("a", after=first)
    assert second is not None and second > first
    await lease.release(after=first)  # not the latest: nothing happens
    assert await lease.read() == Lease(second, "a")
    await lease.release(after=second)
    vacant = await lease.read()
    assert vacant.holder is None and vacant.revision > second
    assert await lease.write("b", after=vacant.revision) is not None
    assert (await lease.read()).holder == "b"


async def test_one_replica_is_active_and_only_it_reports(cluster: Cluster) -> None:
    reports = Reports()
    one = await replica(cluster, reports, "one")
    two = await replica(cluster, reports, "two")
    await until(lambda: len(actives(one, two)) == 1, "one active replica", scaled(TTL_S * 2))
    node = await cluster.node()
    alice = await node.join("r", presence="alice")
    reporter = await reports.wait("alice", True, scaled(3))
    active = actives(one, two)[0]
    assert active.directory.replica.startswith(f"{reporter}-")
    for handle in (one, two):
        await until(
            lambda h=handle: h.directory.registry.rooms_by_prefix("") == ["r"],
            f"{handle.directory.replica} applied the join",
            scaled(3),
        )
    await node.manager.unregister(alice.conn)
    await reports.wait("alice", False, scaled(3))
    # The standby applies the same events (it answers queries with the same view)...
    standby = next(h for h in (one, two) if not h.directory.active)
    await until(
        lambda: standby.directory.registry.rooms_by_prefix("") == [],
        "the standby applied the leave",
        scaled(3),
    )
    assert active.directory.registry.rooms_by_prefix("") == []
    # ...decided both changes, and owes nothing: only the active reported them.
    await until(lambda: standby.directory.handover.owed == 0, "standby owes nothing", scaled(3))
    assert reports.count() == {("alice", True): 1, ("alice", False): 1}
    assert {r for r, _ in reports.seen} == {reporter}


async def test_a_dead_active_is_replaced_and_what_it_missed_is_reported_once(
    cluster: Cluster,
) -> None:
    reports = Reports()
    one = await replica(cluster, reports, "one")
    two = await replica(cluster, reports, "two")
    await until(lambda: len(actives(one, two)) == 1, "one active replica", scaled(TTL_S * 2))
    old = actives(one, two)[0]
    new = two if old is one else one
    node = await cluster.node()
    users = {name: await node.join("r", presence=name) for name in ("ann", "ben", "cid", "dot")}
    for name in users:
        await reports.wait(name, True, scaled(3))
    # Ann leaves while the active lives: reported by it, and never again.
    await node.manager.unregister(users["ann"].conn)
    await reports.wait("ann", False, scaled(3))
    await until(lambda: new.directory.handover.owed == 0, "ann's departure matched", scaled(3))

    # The active dies without a word (its lease is not released).
    election = old.directory.election
    assert election is not None and election._task is not None
    election._task.cancel()
    await old.directory._nc.close()
    died = time.monotonic()
    # Ben and Cid leave, and Dot leaves and comes back, while no one is active.
    await node.manager.unregister(users["ben"].conn)
    await node.manager.unregister(users["cid"].conn)
    await node.manager.unregister(users["dot"].conn)
    await node.join("r", presence="dot")
    await node.manager.get_rooms_by_prefix("")  # applied by the standby

    await reports.wait("ben", False, scaled(TTL_S * 3))
    took = time.monotonic() - died
    assert new.directory.active
    assert took < TTL_S + TTL_S / 6 + scaled(1.0), f"takeover took {took:.2f}s"
    await reports.wait("cid", False, scaled(1))
    eve = await node.join("r", presence="eve")  # after the takeover: reported as usual
    await reports.wait("eve", True, scaled(3))
    await node.manager.unregister(eve.conn)
    await reports.wait("eve", False, scaled(3))
    assert reports.count() == {
        ("ann", True): 1,
        ("ben", True): 1,
        ("cid", True): 1,
        ("dot", True): 1,
        ("ann", False): 1,
        ("ben", False): 1,
        ("cid", False): 1,
        ("eve", True): 1,
        ("eve", False): 1,
    }, "every change once; dot's departure and return, unheard, cancel out"
    assert new.directory.handed_over == 2  # ben's and cid's departures
    assert new.directory.election is not None
    assert new.directory.election.leadership.takeovers == 1


async def test_a_graceful_stop_hands_over_at_once(cluster: Cluster) -> None:
    reports = Reports()
    one = await replica(cluster, reports, "one", batch_s=0.2)
    two = await replica(cluster, reports, "two", batch_s=0.2)
    await until(lambda: len(actives(one, two)) == 1, "one active replica", scaled(TTL_S * 2))
    old = actives(one, two)[0]
    new = two if old is one else one
    node = await cluster.node()
    ann = await node.join("r", presence="ann")
    await reports.wait("ann", True, scaled(3))
    # Ann leaves and the active stops at once, her departure still in its batch:
    # it reports it and says so before letting the lease go.
    await node.manager.unregister(ann.conn)
    await until(lambda: old.directory._batcher.held == 1, "ann's departure batched", scaled(3))
    stopped = time.monotonic()
    await old.directory.stop()
    took = await until(lambda: new.directory.active, "the standby active", scaled(TTL_S))
    assert time.monotonic() - stopped < TTL_S, "a released lease is claimed within a read"
    assert took < TTL_S
    assert reports.count() == {("ann", True): 1, ("ann", False): 1}
    assert new.directory.handed_over == 0
