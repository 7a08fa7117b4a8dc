"""NatsBackend room traffic between connection managers, over a real nats-server.

Each "node" is a ``WebSocketConnectionManager`` on its own ``NatsBackend`` (its own
NATS connection), holding real ``Connection`` objects over in-memory sockets.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import msgspec
import pytest

from falcon_pachinko import BackendError
from falcon_pachinko.backends.nats import flush_sent
from falcon_pachinko.testing import scaled

pytestmark = pytest.mark.integration

BOUND_S = scaled(3.0)

Cluster = Any  # conftest.Cluster
Node = Any  # conftest.Node


async def broadcast(node: Node, room: str, message: object, **kwargs: Any) -> str:
    """Broadcast ``message`` through ``node``'s manager; return the text members get."""
    await node.manager.broadcast_to_room(room, message, **kwargs)
    return message if isinstance(message, str) else msgspec.json.encode(message).decode()


async def test_broadcast_reaches_every_member_on_every_node_exactly_once(
    cluster: Cluster,
) -> None:
    a, b = await cluster.node(), await cluster.node()
    members = [await a.join("lobby"), await a.join("lobby"), await b.join("lobby")]
    members.append(await b.join("lobby"))

    from_a = await broadcast(a, "lobby", {"type": "hello", "from": "a"})
    from_b = await broadcast(b, "lobby", {"type": "hello", "from": "b"})
    # A last message from each publisher: anything duplicated would arrive before it.
    end_a = await broadcast(a, "lobby", {"type": "end", "from": "a"})
    end_b = await broadcast(b, "lobby", {"type": "end", "from": "b"})

    for member in members:
        frames = await member.sock.wait_texts(4)
        assert Counter(frames) == Counter([from_a, from_b, end_a, end_b]), member.id
        assert frames.index(from_a) < frames.index(end_a)
        assert frames.index(from_b) < frames.index(end_b)


async def test_exclude_skips_only_that_connection_even_on_another_node(cluster: Cluster) -> None:
    a, b = await cluster.node(), await cluster.node()
    a1, a2 = await a.join("lobby"), await a.join("lobby")
    b1, b2 = await b.join("lobby"), await b.join("lobby")

    not_a1 = await broadcast(a, "lobby", {"n": 1}, exclude=a1.id)  # exclude_self
    not_b1 = await broadcast(a, "lobby", {"n": 2}, exclude=b1.id)  # a connection elsewhere
    not_a2 = await broadcast(b, "lobby", {"n": 3}, exclude=a2.id)
    end_a = await broadcast(a, "lobby", {"n": "end-a"})
    end_b = await broadcast(b, "lobby", {"n": "end-b"})

    expected = {
        a1: [not_b1, end_a, not_a2, end_b],
        a2: [not_a1, not_b1, end_a, end_b],
        b1: [not_a1, end_a, not_a2, end_b],
        b2: [not_a1, not_b1, end_a, not_a2, end_b],
    }
    for member, frames in expected.items():
        got = await member.sock.wait_texts(len(frames))
        assert Counter(got) == Counter(frames), member.id
        # Per publisher, in the order published.
        for publisher_frames in ([not_a1, not_b1, end_a], [not_a2, end_b]):
            assert [f for f in got if f in publisher_frames] == [
                f for f in publisher_frames if f in frames
            ]


async def test_every_receiver_sees_each_senders_messages_in_order(cluster: Cluster) -> None:
    nodes = [await cluster.node() for _ in range(3)]
    members = {node: [await node.join("room"), await node.join("room")] for node in nodes}
    per_sender = 100
    senders = [(node, member) for node in nodes for member in members[node]]

    async def send_all(node: Node, sender: Any) -> None:
        for seq in range(per_sender):
            await node.manager.broadcast_to_room(
                "room", {"from": sender.id, "seq": seq}, exclude=None
            )

    async with asyncio.timeout(BOUND_S):
        await asyncio.gather(*(send_all(node, sender) for node, sender in senders))

    total = per_sender * len(senders)
    for receivers in members.values():
        for receiver in receivers:
            frames = await receiver.sock.wait_texts(total)
            assert len(frames) == total  # nothing twice
            seen: dict[str, list[int]] = {}
            for frame in frames:
                message = msgspec.json.decode(frame)
                seen.setdefault(message["from"], []).append(message["seq"])
            assert seen == {sender.id: list(range(per_sender)) for _, sender in senders}


async def test_a_node_without_members_in_the_room_receives_nothing(cluster: Cluster) -> None:
    a, c = await cluster.node(), await cluster.node()
    lobby = await a.join("lobby")
    await a.join("other")
    bystander = await c.join("other")
    received_before = c.nc.stats["in_msgs"]

    for n in range(20):
        await broadcast(a, "lobby", {"n": n})
    # The server forwards one publisher's messages in order, so had c been subscribed
    # to the lobby, those 20 would have reached it before this one.
    marker = await broadcast(a, "other", {"marker": True})

    assert await bystander.sock.wait_texts(1) == [marker]
    assert c.nc.stats["in_msgs"] - received_before == 1
    assert sorted(c.backend.broker._rooms) == ["other"]
    assert len(await lobby.sock.wait_texts(20)) == 20


async def test_bytes_are_forwarded_untouched(cluster: Cluster) -> None:
    publisher, _ = await cluster.backend()
    receiver, sink = await cluster.backend()
    room = "ünïcode room.with *dots* > and spaces"
    await receiver.broker.subscribe(room)
    await receiver.broker.subscribe("ünïcode room")  # a neighbouring name gets nothing
    payloads = [
        b'{"type" :  "x",\n "payload": {"text": "caf\\u00e9 \xc3\xa9 \xf0\x9f\x98\x80"}}',
        b'"just a string"',
        b"[1,2.50,  3e10, null, true]",
        b'{"big": "' + b"x" * 200_000 + b'"}',
        b"{}",
    ]
    for data in payloads:
        await publisher.broker.publish(room, data)
    await publisher.broker.publish(room, b'{"excluded": 1}', exclude="conn-1")

    await sink.wait_count(len(payloads) + 1)
    assert sink.delivered == [(room, data, None) for data in payloads] + [
        (room, b'{"excluded": 1}', "conn-1")
    ]


async def test_members_get_the_published_text_byte_for_byte(cluster: Cluster) -> None:
    a, b = await cluster.node(), await cluster.node()
    receivers = [await a.join("r"), await b.join("r")]
    encoded = '{"payload":{"text":"\\u00e9\\n tab\\t é 😀"},  "type":"serverNewMessage"}'
    await a.manager.broadcast_to_room("r", encoded.encode())
    await a.manager.broadcast_to_room("r", encoded)
    for receiver in receivers:
        frames = await receiver.sock.wait_texts(2)
        assert [f.encode() for f in frames] == [encoded.encode()] * 2


async def test_traffic_published_right_after_a_join_reaches_the_new_member(
    cluster: Cluster,
) -> None:
    a, b = await cluster.node(), await cluster.node()
    for n in range(20):
        member = await b.join(f"room-{n}")
        sent = await broadcast(a, f"room-{n}", {"n": n})
        assert await member.sock.wait_texts(1) == [sent]


async def test_a_join_is_in_effect_on_return_even_when_writes_run_late(cluster: Cluster) -> None:
    # nats-py writes flush()'s PING to the socket at once but leaves the SUB queued
    # for its flusher task: with that task running late, the PONG came back (and
    # join_room returned) before the server had the subscription.
    a, b = await cluster.node(), await cluster.node()
    await b.delay_writes(0.05)
    member = await b.join("lobby")
    sent = await broadcast(a, "lobby", {"first": True})
    assert await member.sock.wait_texts(1) == [sent]


async def test_a_message_larger_than_nats_allows_raises_backend_error(cluster: Cluster) -> None:
    node = await cluster.node()
    member = await node.join("lobby")
    too_big = b'"' + b"x" * (node.nc.max_payload + 1) + b'"'
    with pytest.raises(BackendError):
        await node.manager.broadcast_to_room("lobby", too_big)
    with pytest.raises(BackendError):
        await node.manager.send_to_connection("0123456789abcdef-elsewhere", too_big)
    sent = await broadcast(node, "lobby", {"small": True})
    assert await member.sock.wait_texts(1) == [sent]


async def test_undecodable_room_traffic_does_not_stop_the_room(cluster: Cluster) -> None:
    node = await cluster.node()
    member = await node.join("lobby")
    rogue = await cluster.client()
    await rogue.publish("chat.lobby", b"\xff\xfe not utf-8")
    await rogue.publish("chat.lobby", b'{"after": "rogue"}')
    assert await member.sock.wait_texts(1) == ['{"after": "rogue"}']
    assert not member.conn.closed


async def test_send_to_connection_reaches_a_connection_on_another_node(cluster: Cluster) -> None:
    a, b = await cluster.node(), await cluster.node()
    here, there = await a.connect(), await b.connect()
    assert await a.manager.send_to_connection(there.id, {"to": "there"})
    assert await a.manager.send_to_connection(here.id, {"to": "here"})
    assert await b.manager.send_to_connection(here.id, {"to": "here", "from": "b"})
    assert await there.sock.wait_texts(1) == ['{"to":"there"}']
    # The local one is delivered directly, and not a second time through NATS.
    assert await here.sock.wait_texts(2) == ['{"to":"here"}', '{"to":"here","from":"b"}']


async def test_send_to_connection_is_addressed_and_says_whether_it_was_delivered(
    cluster: Cluster,
) -> None:
    a, b, c = await cluster.node(), await cluster.node(), await cluster.node()
    there, on_c = await b.connect(), await c.connect()
    # A spy on c's own subject: what is addressed to c, and only that, reaches it.
    addressed_to_c: asyncio.Queue[bytes] = asyncio.Queue()

    async def spy_on_c(msg: Any) -> None:
        addressed_to_c.put_nowait(msg.data)

    spy = await cluster.client()
    await spy.subscribe(c.backend.subjects.direct_node(c.backend.node_id), cb=spy_on_c)
    await flush_sent(spy, BOUND_S)  # the SUB is in effect
    assert await a.manager.send_to_connection(there.id, {"n": 1})
    assert not await a.manager.send_to_connection(f"{b.backend.node_id}-gone", {"n": 2})
    await there.conn.close()
    assert not await a.manager.send_to_connection(there.id, {"n": 3})
    assert not await a.manager.send_to_connection("not-a-connection-id", {"n": 4})
    assert await there.sock.wait_texts(1) == ['{"n":1}']
    # The first message c's subject carries is the one for c's connection: none of
    # the messages above was sent to every node.
    assert await a.manager.send_to_connection(on_c.id, {"n": 5})
    async with asyncio.timeout(BOUND_S):
        assert await addressed_to_c.get() == b'{"n":5}'
    await b.kill()
    assert not await a.manager.send_to_connection(there.id, {"n": 6})  # no such node any more


async def test_one_subscription_per_room_however_many_members(cluster: Cluster) -> None:
    a, b = await cluster.node(), await cluster.node()
    watcher = await a.join("marker")
    talker = await b.join("r")
    baseline = len(a.nc._subs)

    clients = [await a.connect() for _ in range(5)]
    async with asyncio.timeout(BOUND_S):
        await asyncio.gather(*(a.manager.join_room(c.conn, "r") for c in clients))
    assert sorted(a.backend.broker._rooms) == ["marker", "r"]
    assert len(a.nc._subs) == baseline + 1

    first = await broadcast(b, "r", {"n": 1})
    for client in clients:
        assert await client.sock.wait_texts(1) == [first]

    for client in clients[:-1]:
        await a.manager.leave_room(client.conn, "r")
    assert "r" in a.backend.broker._rooms
    assert len(a.nc._subs) == baseline + 1

    await a.manager.unregister(clients[-1].conn)  # the last member leaves by disconnecting
    assert sorted(a.backend.broker._rooms) == ["marker"]
    assert len(a.nc._subs) == baseline
    # The UNSUB has reached the server (nc.flush() alone can overtake it).
    await flush_sent(a.nc, BOUND_S)

    received_before = a.nc.stats["in_msgs"]
    await broadcast(b, "r", {"n": 2})
    marker = await broadcast(b, "marker", {"marker": True})
    assert await watcher.sock.wait_texts(1) == [marker]
    assert a.nc.stats["in_msgs"] - received_before == 1
    assert len(await talker.sock.wait_texts(2)) == 2

    # Joining again subscribes again.
    again = await a.join("r")
    third = await broadcast(b, "r", {"n": 3})
    assert await again.sock.wait_texts(1) == [third]
    assert len(a.nc._subs) == baseline + 1


async def test_nats_restart_reconnects_and_restores_room_traffic(cluster: Cluster) -> None:
    a, b = await cluster.node(), await cluster.node()
    a1, b1 = await a.join("lobby"), await b.join("lobby")
    subscriptions = (a.backend.broker._rooms["lobby"], b.backend.broker._rooms["lobby"])

    await cluster.server.stop()
    async with asyncio.timeout(BOUND_S):
        await a.events.disconnected.wait()
        await b.events.disconnected.wait()

    # Observed: while NATS is down a publish does not raise. nats-py buffers it (up
    # to ``pending_size``) and sends it on reconnect, after replaying the node's
    # subscriptions: the publishing node's own members get it. Another node gets it
    # only if it reconnected first (about half the runs here); NATS core keeps
    # nothing for a subscriber that is not connected.
    during = await broadcast(a, "lobby", {"sent": "during the outage"})

    await cluster.server.start()
    async with asyncio.timeout(BOUND_S):
        await a.events.reconnected.wait()
        await b.events.reconnected.wait()

    assert await a1.sock.wait_texts(1) == [during]
    after_a = await broadcast(a, "lobby", {"sent": "after, from a"})
    after_b = await broadcast(b, "lobby", {"sent": "after, from b"})
    for receiver in (a1, b1):
        await receiver.sock.wait_for(lambda r=receiver: {after_a, after_b} <= set(r.sock.texts))
    assert Counter(a1.sock.texts) == Counter([during, after_a, after_b])
    assert Counter(b1.sock.texts) - Counter([during]) == Counter([after_a, after_b])
    assert b1.sock.texts.count(during) <= 1

    # The same subscriptions carried the traffic; nothing died in the background.
    assert (a.backend.broker._rooms["lobby"], b.backend.broker._rooms["lobby"]) == subscriptions
    for node in (a, b):
        assert node.nc.is_connected
        heartbeat = node.backend.presence._heartbeat
        assert heartbeat is not None and not heartbeat.done()


async def test_nats_restart_with_restart_helper(cluster: Cluster) -> None:
    a, b = await cluster.node(), await cluster.node()
    a1, b1 = await a.join("lobby"), await b.join("lobby")

    await cluster.server.restart()
    async with asyncio.timeout(BOUND_S):
        await a.events.reconnected.wait()
        await b.events.reconnected.wait()

    sent = await broadcast(b, "lobby", {"after": "restart"})
    assert await a1.sock.wait_texts(1) == [sent]
    assert await b1.sock.wait_texts(1) == [sent]


async def test_outage_outlasting_the_buffer_raises_and_stop_still_succeeds(
    cluster: Cluster,
) -> None:
    a = await cluster.node()
    await a.join("lobby")
    await cluster.server.stop()
    async with asyncio.timeout(BOUND_S):
        await a.events.disconnected.wait()

    # nats-py's reconnect buffer (``pending_size``, 2 MiB by default) fills up, then
    # publishes are refused with a BackendError rather than queued without bound.
    big = b'"' + b"x" * 100_000 + b'"'
    with pytest.raises(BackendError):
        for _ in range(100):
            await a.manager.broadcast_to_room("lobby", big)
    await a.join("lobby")  # membership changes are only recorded: no error

    # Shutting down while NATS is still away completes without raising.
    async with asyncio.timeout(BOUND_S):
        await a.manager.stop()
    assert a.backend.client.is_closed
