"""The test kit's NATS cluster: three routed nats-servers, one killed and restarted."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import nats
import pytest
from nats.aio.client import Client

from falcon_pachinko.testing import scaled
from falcon_pachinko.testing.nats import NatsCluster

pytestmark = pytest.mark.integration


async def client_of(url: str | list[str], **options: Any) -> Client:
    return await nats.connect(url, connect_timeout=2, reconnect_time_wait=0.1, **options)


async def crosses(publisher: Client, subscriber: Client, subject: str) -> None:
    """A message published on one member reaches a subscriber on another (bounded)."""
    got: asyncio.Queue[bytes] = asyncio.Queue()

    async def on_msg(msg: Any) -> None:
        await got.put(msg.data)

    sub = await subscriber.subscribe(subject, cb=on_msg)
    await subscriber.flush()
    try:
        async with asyncio.timeout(scaled(5)):
            # Interest crosses the route asynchronously: resend until one arrives.
            while got.empty():
                await publisher.publish(subject, b"ping")
                await publisher.flush()
                try:
                    async with asyncio.timeout(0.1):
                        await got.get()
                        return
                except TimeoutError:
                    continue
    finally:
        await sub.unsubscribe()


async def test_the_members_are_routed_and_a_killed_one_comes_back(
    pachinko_nats_cluster: Callable[..., Any],
) -> None:
    cluster: NatsCluster = await pachinko_nats_cluster()
    assert len(cluster.urls) == 3 and len(set(cluster.urls)) == 3
    names = {node.server_name for node in cluster.nodes}
    for node in cluster.nodes:
        assert await node.route_peers() == names - {node.server_name}

    first = await client_of(cluster.urls[0])
    third = await client_of(cluster.urls[2])
    reconnected = asyncio.Event()

    async def on_reconnected() -> None:
        reconnected.set()

    mover = await client_of(cluster.urls, dont_randomize=True, reconnected_cb=on_reconnected)
    try:
        await crosses(first, third, "across")
        assert cluster.index_of(f"{mover.connected_url.hostname}:{mover.connected_url.port}") == 0

        await cluster.kill(0)
        assert not cluster.nodes[0].running
        async with asyncio.timeout(scaled(5)):
            await reconnected.wait()
        assert mover.connected_url is not None
        assert cluster.index_of(str(mover.connected_url.port)) != 0
        await crosses(mover, third, "after-kill")

        await cluster.restart(0)
        assert await cluster.nodes[0].route_peers() == names - {cluster.nodes[0].server_name}
        back = await client_of(cluster.urls[0])
        try:
            await crosses(back, third, "after-restart")
        finally:
            await back.close()
    finally:
        for client in (first, third, mover):
            await client.close()


async def test_a_jetstream_cluster_starts_with_distinct_stores(
    pachinko_nats_cluster: Callable[..., Any],
) -> None:
    cluster: NatsCluster = await pachinko_nats_cluster(jetstream=True)
    stores = {node.store_dir for node in cluster.nodes}
    assert len(stores) == 3
    client = await client_of(cluster.url.split(","))
    try:
        js = client.jetstream()
        async with asyncio.timeout(scaled(20)):
            while True:
                # The meta leader, then the bucket's stream leader, are elected after
                # the routes are up; until then JetStream answers with errors.
                try:
                    kv = await js.create_key_value(bucket="probe", replicas=3)
                    await kv.put("k", b"v")
                    value = (await kv.get("k")).value
                    break
                except (nats.errors.Error, TimeoutError):
                    await asyncio.sleep(0.1)  # an election: nothing to await but time
        assert value == b"v"
    finally:
        await client.close()


def test_a_cluster_member_needs_a_name_and_a_route_port(tmp_path: Any) -> None:
    from falcon_pachinko.testing.nats import NatsServer

    with pytest.raises(ValueError, match="cluster_name and cluster_port"):
        NatsServer(tmp_path, cluster_name="x")
