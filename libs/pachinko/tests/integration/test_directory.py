"""The membership directory over a real nats-server: queries, failures and recovery.

Nodes (connection managers on NATS backends) report joins and leaves; a
``Directory`` keeps the cluster-wide view and answers ``rooms_by_prefix`` and
``room_members``. The asking node's own changes are always in its answer
(read-your-writes); other nodes' changes converge, so those checks poll, bounded.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import msgspec
import pytest
import structlog

from falcon_pachinko import BackendError, Member
from falcon_pachinko.membership import Delta, Heartbeat
from falcon_pachinko.subjects import Subjects
from falcon_pachinko.testing import scaled

pytestmark = pytest.mark.integration

Cluster = Any  # conftest.Cluster
Node = Any  # conftest.Node

SUBJECTS = Subjects("chat")


def member(client: Any, presence: str | None = None) -> Member:
    return Member(connection_id=client.id, presence=presence)


def by_id(members: list[Member]) -> list[Member]:
    return sorted(members, key=lambda m: m.connection_id)


def registry_view(handle: Any) -> dict[str, list[Member]]:
    registry = handle.directory.registry
    return {room: by_id(registry.members(room)) for room in registry.rooms_by_prefix("")}


async def test_queries_answer_cluster_wide_and_read_your_writes(cluster: Cluster) -> None:
    await cluster.directory()
    a, b = await cluster.node(), await cluster.node()

    alice = await a.join("chat_general", presence="alice")
    # The asking node's own join is in the answer as soon as join_room returned.
    assert await a.manager.get_rooms_by_prefix("chat_") == ["chat_general"]
    assert await a.manager.room_members("chat_general") == [member(alice, "alice")]

    bob = await b.join("chat_random", presence="bob")
    odd = await b.join("chat_a.b *>", presence="bob")
    assert await b.manager.get_rooms_by_prefix("chat_") == [
        "chat_a.b *>",
        "chat_general",
        "chat_random",
    ]
    await b.manager.join_room(bob.conn, "chat_general")
    assert by_id(await b.manager.room_members("chat_general")) == by_id(
        [member(alice, "alice"), member(bob, "bob")]
    )
    assert await b.manager.get_rooms_by_prefix("other") == []
    assert await b.manager.room_members("nobody's room") == []

    # The other node converges to the same view.
    await cluster.converge(
        lambda: a.manager.get_rooms_by_prefix(""),
        ["chat_a.b *>", "chat_general", "chat_random"],
        what="a's view of the rooms",
    )
    await cluster.converge(
        lambda: a.manager.room_members("chat_general"),
        [member(alice, "alice"), member(bob, "bob")],
        normalize=by_id,
        what="a's view of chat_general",
    )

    # Emptied rooms disappear: by leaving, and by disconnecting.
    await a.manager.leave_room(alice.conn, "chat_general")
    assert await a.manager.room_members("chat_general") == [member(bob, "bob")]
    await b.manager.unregister(odd.conn)
    await b.manager.unregister(bob.conn)
    assert await b.manager.get_rooms_by_prefix("") == []
    await cluster.converge(
        lambda: a.manager.get_rooms_by_prefix(""), [], what="a's view after everyone left"
    )


async def test_connections_of_an_identity_span_nodes(cluster: Cluster) -> None:
    await cluster.directory()
    a, b = await cluster.node(), await cluster.node()
    await a.join("r", presence="alice")
    await b.join("s", presence="alice")
    await b.join("r", presence="bob")
    await a.manager.get_rooms_by_prefix("")
    await b.manager.get_rooms_by_prefix("")
    assert await a.manager.connections_of("alice") == 2
    assert await b.manager.connections_of("bob") == 1
    assert await a.manager.connections_of("nobody") == 0


async def test_a_node_that_only_queries_sees_the_cluster(cluster: Cluster) -> None:
    await cluster.directory()
    gateway = await cluster.node()
    announcer = await cluster.node(presence=False)
    carol = await gateway.join("news", presence="carol")
    await gateway.manager.get_rooms_by_prefix("")  # settled on the gateway's side
    assert await announcer.manager.get_rooms_by_prefix("") == ["news"]
    assert await announcer.manager.room_members("news") == [member(carol, "carol")]


async def test_queries_without_a_directory_raise_backend_error(cluster: Cluster) -> None:
    node = await cluster.node(request_timeout_s=0.5)
    await node.join("lobby")
    started = time.monotonic()
    async with asyncio.timeout(2.0):
        with pytest.raises(BackendError):
            await node.manager.get_rooms_by_prefix("")
        with pytest.raises(BackendError):
            await node.manager.room_members("lobby")
    assert time.monotonic() - started < 2 * 0.5


async def test_queries_to_a_silent_directory_time_out_as_backend_error(cluster: Cluster) -> None:
    silent = await cluster.client()
    await silent.subscribe(SUBJECTS.query_rooms, cb=_ignore)  # a responder that never answers
    await silent.flush()
    node = await cluster.node(request_timeout_s=0.3)
    started = time.monotonic()
    async with asyncio.timeout(2.0):
        with pytest.raises(BackendError):
            await node.manager.get_rooms_by_prefix("")
    assert 0.3 <= time.monotonic() - started < 0.3 + scaled(0.7)


async def _ignore(msg: Any) -> None:
    return None


async def test_a_restarted_directory_rebuilds_its_view_from_the_nodes(cluster: Cluster) -> None:
    first = await cluster.directory()
    a, b = await cluster.node(), await cluster.node()
    a1, a2 = await a.join("r1", presence="ann"), await a.join("r2")
    b1 = await b.join("r1", presence="ben")
    await a.manager.get_rooms_by_prefix("")
    await b.manager.get_rooms_by_prefix("")
    truth = {
        "r1": by_id([member(a1, "ann"), member(b1, "ben")]),
        "r2": [member(a2)],
    }
    assert registry_view(first) == truth

    await first.directory.stop()
    second = await cluster.directory()  # a fresh Registry: it knows nothing yet
    await second.wait_applied(
        lambda: registry_view(second) == truth, what=f"the nodes' membership {truth}"
    )
    assert await b.manager.get_rooms_by_prefix("") == ["r1", "r2"]
    assert by_id(await b.manager.room_members("r1")) == truth["r1"]

    # New joins and leaves go on working.
    a3 = await a.join("r3")
    await b.manager.leave_room(b1.conn, "r1")
    assert await a.manager.get_rooms_by_prefix("") == ["r1", "r2", "r3"]
    assert await a.manager.room_members("r3") == [member(a3)]
    assert await b.manager.room_members("r1") == [member(a1, "ann")]
    assert first.lost == [] and second.lost == []


async def test_lost_deltas_are_repaired_by_heartbeat_and_snapshot(cluster: Cluster) -> None:
    handle = await cluster.directory()
    directory = handle.directory
    node = await cluster.node(heartbeat_interval_s=0.1)
    first = await node.join("r1")
    await node.manager.get_rooms_by_prefix("")
    applied = directory.registry.applied_seq(node.backend.node_id)
    assert applied == node.backend.presence._reporter.seq

    # The directory stops hearing events for a moment: the next deltas are lost.
    await directory._sub.unsubscribe()
    await cluster.settle(directory._nc)
    second = await node.join("r2")
    await node.manager.leave_room(first.conn, "r1")
    await cluster.settle(node.nc)
    assert node.backend.presence._reporter.seq == applied + 2
    assert directory.registry.applied_seq(node.backend.node_id) == applied
    directory._sub = await directory._nc.subscribe(SUBJECTS.events, cb=directory._on_event)

    # The next heartbeat shows a sequence ahead of the directory's: it asks for a
    # snapshot, and the view is the node's truth again.
    truth = {"r2": [member(second)]}
    await handle.wait_applied(
        lambda: registry_view(handle) == truth, what=f"the node's membership {truth}"
    )
    assert (
        directory.registry.applied_seq(node.backend.node_id) == node.backend.presence._reporter.seq
    )
    assert handle.lost == []


async def test_a_directory_answers_as_soon_as_it_has_started(cluster: Cluster) -> None:
    node = await cluster.node()
    lonely = await node.join("r")
    nc = await cluster.client()
    await cluster.delay_writes(nc, 0.05)  # its subscriptions reach the server late
    await cluster.directory(nc)
    assert await node.manager.room_members("r") == [member(lonely)]


async def test_a_node_that_dies_silently_has_its_members_reported_lost(cluster: Cluster) -> None:
    ttl_s, expiry_s, heartbeat_s = 1.0, 0.2, 0.2
    handle = await cluster.directory(ttl_s=ttl_s, expiry_interval_s=expiry_s)
    doomed = await cluster.node(heartbeat_interval_s=heartbeat_s)
    survivor = await cluster.node(heartbeat_interval_s=heartbeat_s)
    d1, d2 = await doomed.join("r", presence="dee"), await doomed.join("s")
    s1 = await survivor.join("r", presence="sam")
    await doomed.manager.get_rooms_by_prefix("")
    assert await survivor.manager.get_rooms_by_prefix("") == ["r", "s"]

    await doomed.kill()
    killed = time.monotonic()
    await handle.wait_lost({("r", d1.id), ("s", d2.id)}, timeout=ttl_s + expiry_s + 1.0)
    elapsed = time.monotonic() - killed

    assert ttl_s - heartbeat_s - 0.1 <= elapsed <= ttl_s + expiry_s + scaled(0.3)
    assert {(x.room, x.member) for x in handle.lost} == {
        ("r", member(d1, "dee")),
        ("s", member(d2)),
    }
    assert {x.node for x in handle.lost} == {doomed.backend.node_id}
    assert await survivor.manager.get_rooms_by_prefix("") == ["r"]
    assert await survivor.manager.room_members("r") == [member(s1, "sam")]


async def test_a_stalled_directory_applies_queued_heartbeats_before_expiring(
    cluster: Cluster,
) -> None:
    offset = [0.0]
    handle = await cluster.directory(
        ttl_s=1.0, expiry_interval_s=0.1, clock=lambda: time.monotonic() + offset[0]
    )
    directory = handle.directory
    node = await cluster.node(heartbeat_interval_s=0.1)
    await node.join("r", presence="ann")
    await node.manager.get_rooms_by_prefix("")
    checks = directory.expiry_checks
    # Ten TTLs pass at once for the directory, as if its loop had been paused.
    offset[0] = 10.0
    with structlog.testing.capture_logs() as logs:
        await handle.wait_applied(
            lambda: directory.expiry_checks >= checks + 3, what="three more expiry checks"
        )
    assert any(e["event"] == "pachinko.directory_stalled" for e in logs)
    assert handle.lost == []  # the live node was never declared dead
    assert await node.manager.get_rooms_by_prefix("") == ["r"]


async def test_a_node_that_stops_cleanly_says_goodbye(cluster: Cluster) -> None:
    handle = await cluster.directory(ttl_s=30.0)  # expiry cannot explain anything here
    leaving = await cluster.node()
    tidy = await cluster.node()
    staying = await cluster.node()
    gone = await leaving.join("r", presence="gus")
    left = await tidy.join("r")
    kept = await staying.join("r")
    await tidy.manager.leave_room(left.conn, "r")
    assert await staying.manager.room_members("r") != []

    stopped = time.monotonic()
    await leaving.manager.stop()
    await handle.wait_lost({("r", gone.id)}, timeout=1.0)
    assert time.monotonic() - stopped < 1.0
    assert [(x.room, x.member) for x in handle.lost] == [("r", member(gone, "gus"))]

    # A node whose members all left first: its goodbye reports nobody.
    await tidy.manager.stop()
    await handle.wait_applied(
        lambda: handle.directory.registry.node_count == 1, what="only one node left"
    )
    assert len(handle.lost) == 1
    assert await staying.manager.room_members("r") == [member(kept)]


async def test_malformed_events_are_counted_and_ignored(cluster: Cluster) -> None:
    handle = await cluster.directory()
    directory = handle.directory
    rogue = await cluster.client()
    malformed = [
        b"not json",
        b"\xff\xfe\x00",
        b"",
        b"[1, 2, 3]",
        b'{"kind": "delta"}',
        b'{"kind": "nope", "node": "x", "seq": 1}',
        b'{"kind": "heartbeat", "node": "x", "seq": "one"}',
        b'{"kind": "delta", "node": "x", "seq": 1, "changes": [[true, "r"]]}',
    ]
    for data in malformed:
        await rogue.publish(SUBJECTS.events, data)
    # Well-formed events from nodes whose ids are not subject tokens: the sync
    # request the directory answers with cannot be sent, and must not hurt it.
    for node_id in ("bad node", "x.>", "*"):
        await rogue.publish(SUBJECTS.events, msgspec.json.encode(Heartbeat(node=node_id, seq=3)))
    probe = Delta(node="probe", seq=1, changes=[])
    await rogue.publish(SUBJECTS.events, msgspec.json.encode(probe))

    # Events are applied in arrival order: once the probe is in, all were handled.
    await handle.wait_applied(
        lambda: directory.registry.applied_seq("probe") == 1, what="the probe applied"
    )
    assert directory.events_rejected == len(malformed)
    assert directory._nc.is_connected

    node = await cluster.node()
    fine = await node.join("r")
    assert await node.manager.room_members("r") == [member(fine)]


async def test_a_directory_cut_off_longer_than_the_ttl_expires_no_one(cluster: Cluster) -> None:
    offset = [0.0]
    changes: list[Any] = []

    async def record(change: Any) -> None:
        changes.append(change)

    events = cluster.connection_events()
    handle = await cluster.directory(
        await cluster.client(events),
        ttl_s=1.0,
        expiry_interval_s=0.05,
        clock=lambda: time.monotonic() + offset[0],
        on_presence=record,
    )
    node = await cluster.node(heartbeat_interval_s=0.1)
    await node.join("r", presence="alice")
    await node.manager.get_rooms_by_prefix("")
    assert [c.present for c in changes] == [True]

    await cluster.server.stop()
    async with asyncio.timeout(3.0):
        await events.disconnected.wait()
    offset[0] = 10.0  # ten TTLs pass while the directory is cut off
    await cluster.server.start()
    async with asyncio.timeout(3.0):
        await events.reconnected.wait()
        await node.events.reconnected.wait()
    checks = handle.directory.expiry_checks
    await handle.wait_applied(
        lambda: handle.directory.expiry_checks >= checks + 3, what="three expiry checks"
    )
    assert [c.present for c in changes] == [True]  # nobody left, nobody came back
    assert handle.lost == []
    assert await node.manager.get_rooms_by_prefix("") == ["r"]


async def test_the_view_is_right_again_after_a_nats_restart(cluster: Cluster) -> None:
    events = cluster.connection_events()
    handle = await cluster.directory(await cluster.client(events), ttl_s=10.0)
    a, b = await cluster.node(), await cluster.node()
    a1, b1 = await a.join("r1"), await b.join("r1")
    await a.manager.get_rooms_by_prefix("")
    await b.manager.get_rooms_by_prefix("")

    await cluster.server.stop()
    async with asyncio.timeout(3.0):
        for flags in (events, a.events, b.events):
            await flags.disconnected.wait()
    # Changes while NATS is away: the deltas wait in the client's buffer, and are
    # lost if they reach the server before the directory is back.
    await a.manager.leave_room(a1.conn, "r1")
    a2 = await a.join("r2")
    await cluster.server.start()
    async with asyncio.timeout(3.0):
        for flags in (events, a.events, b.events):
            await flags.reconnected.wait()

    truth = {"r1": [member(b1)], "r2": [member(a2)]}
    await handle.wait_applied(
        lambda: registry_view(handle) == truth, what=f"the nodes' membership {truth}"
    )
    assert await b.manager.get_rooms_by_prefix("") == ["r1", "r2"]
    assert await a.manager.room_members("r2") == [member(a2)]
    # The room joined during the outage carries traffic.
    await b.manager.broadcast_to_room("r2", {"n": 1})
    await b.manager.broadcast_to_room("r2", {"n": 2})
    await a2.sock.wait_for(lambda: '{"n":2}' in a2.sock.texts)
    assert a2.sock.texts == ['{"n":1}', '{"n":2}']  # one subscription, nothing twice
    assert handle.lost == []


async def test_a_snapshot_larger_than_the_payload_limit_arrives_in_parts(server: Any) -> None:
    # 25,000 memberships encode to several MiB: more than NATS's 1 MiB payload
    # limit, so a restarted directory can only rebuild its view from parts.
    import nats

    from falcon_pachinko.backends.nats import NatsBackend
    from falcon_pachinko.directory import Directory

    class Sink:
        def deliver(self, room: str, data: bytes, exclude: str | None) -> None: ...

        def deliver_to_connection(self, connection_id: str, data: bytes) -> bool:
            return False

    node = NatsBackend(server.url)
    await node.start(Sink())
    nc = await nats.connect(server.url)
    try:
        for i in range(25_000):
            member = Member(connection_id=f"{i:032x}", presence=f"user-{i}")
            await node.presence.member_joined(f"room-{i % 50}", member)
        directory = Directory(nc, Subjects("chat"), ttl_s=30)
        await directory.start()  # asks every node for a snapshot
        try:
            async with asyncio.timeout(scaled(10)):
                while directory.registry.connection_count < 25_000:
                    await asyncio.sleep(0.02)
            assert len(await node.presence.rooms_by_prefix("room-")) == 50
        finally:
            await directory.stop()
    finally:
        await node.stop()
        await nc.close()
