"""Kicks across nodes over a real nats-server: 4501 everywhere within a second."""

from __future__ import annotations

import asyncio
from typing import Any

import nats
import pytest

from falcon_pachinko.backends.nats import NatsBroker, new_node_id
from falcon_pachinko.subjects import Subjects
from falcon_pachinko.testing import scaled

pytestmark = pytest.mark.integration

#: The promise: every node has closed the connections within one second.
KICK_S = scaled(1.0)

Cluster = Any  # conftest.Cluster


def kicked(client: Any) -> bool:
    return any(entry[:2] == ("close", 4501) for entry in client.sock.log)


async def wait_kicked(*clients: Any) -> None:
    async with asyncio.timeout(KICK_S):
        for client in clients:
            await client.sock.wait_for(lambda c=client: kicked(c), KICK_S)


async def test_a_kick_closes_the_identity_on_every_node_and_no_one_else(cluster: Cluster) -> None:
    a, b = await cluster.node(), await cluster.node()
    alice = [await a.join("lobby", "alice"), await b.join("lobby", "alice")]
    alice.append(await b.join("other", "alice"))
    others = [await a.join("lobby", "bob"), await b.join("lobby", "bob")]

    assert await a.manager.kick("alice", reason="banned") == 1  # a's own connection

    await wait_kicked(*alice)
    assert ("close", 4501, "banned") in alice[1].sock.log
    await a.manager.broadcast_to_room("lobby", "still here")
    for bob in others:
        await bob.sock.wait_texts(1)
        assert not bob.conn.closed


async def test_a_kick_in_one_room_spares_the_identity_elsewhere(cluster: Cluster) -> None:
    a, b = await cluster.node(), await cluster.node()
    in_lobby = [await a.join("lobby", "alice"), await b.join("lobby", "alice")]
    elsewhere = await b.join("other", "alice")

    await a.manager.kick("alice", room="lobby")

    await wait_kicked(*in_lobby)
    await b.manager.broadcast_to_room("other", "still here")
    await elsewhere.sock.wait_texts(1)
    assert not elsewhere.conn.closed


async def test_a_process_without_connections_kicks_with_an_unstarted_broker(
    cluster: Cluster,
) -> None:
    a = await cluster.node()
    alice = await a.join("lobby", "alice")
    nc = await nats.connect(cluster.server.url)
    try:
        await NatsBroker(nc, Subjects("chat"), new_node_id()).kick("alice", None, "revoked")
    finally:
        await nc.close()
    await wait_kicked(alice)


async def test_a_malformed_kick_is_dropped(cluster: Cluster) -> None:
    a = await cluster.node()
    alice = await a.join("lobby", "alice")
    nc = await cluster.client()
    for junk in (b"", b"{", b'{"identity": ""}', b'{"identity": "alice", "x": 1}'):
        await nc.publish("chat._dir.kick", junk)
    await a.manager.kick("bob")  # a well-formed kick after them, for someone else
    await nc.publish("chat._dir.kick", b'{"identity": "alice"}')
    await wait_kicked(alice)
