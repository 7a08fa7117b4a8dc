"""The JetStream KV period lease against a real nats-server."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import nats
import pytest
import structlog.testing
from nats.aio.client import Client
from nats.js.api import KeyValueConfig

from chat_announcements.errors import LeaseUnavailable
from chat_announcer.lease import KvPeriodLease, bucket_ttl, period_key
from falcon_pachinko.testing import scaled
from falcon_pachinko.testing.nats import nats_server

pytestmark = pytest.mark.integration

BUCKET = "chat_announcer"


@contextlib.asynccontextmanager
async def clients(url: str, count: int) -> AsyncIterator[list[Client]]:
    """``count`` separate NATS connections (one per replica), closed at the end."""
    connections = [await nats.connect(url, connect_timeout=2) for _ in range(count)]
    try:
        yield connections
    finally:
        for nc in connections:
            await nc.close()


def lease(nc: Client, interval_s: float = 1.0, owner: str = "test") -> KvPeriodLease:
    return KvPeriodLease(nc, bucket=BUCKET, interval_s=interval_s, owner=owner)


def test_period_keys_are_valid_and_distinct_per_interval() -> None:
    assert period_key(3600.0, 472_222) == "p-3600.0-472222"
    assert period_key(0.5, 7) == "p-0.5-7"
    assert period_key(1e16, 1) == "p-1e16-1"
    keys = {period_key(interval, 1) for interval in (0.5, 1.0, 10.0, 1e-05, 3600.0, 1e16)}
    assert len(keys) == 6


def test_new_buckets_keep_keys_for_a_few_intervals_and_at_least_a_minute() -> None:
    assert bucket_ttl(3600.0) == 3 * 3600.0
    assert bucket_ttl(1.0) == 60.0


async def test_two_replicas_racing_claim_each_period_exactly_once() -> None:
    periods = range(1000, 1020)
    async with nats_server() as server, clients(server.url, 2) as (nc_a, nc_b):
        a, b = lease(nc_a, owner="a"), lease(nc_b, owner="b")
        async with asyncio.timeout(scaled(10)):
            # Neither has bound the bucket yet: they also race to create it.
            results = await asyncio.gather(*(x.claim(p) for p in periods for x in (a, b)))
        pairs = list(zip(results[0::2], results[1::2], strict=True))
        assert all(won_a != won_b for won_a, won_b in pairs), pairs
        # Claiming again, from either side, never succeeds.
        assert not any(await asyncio.gather(*(x.claim(p) for p in periods for x in (a, b))))

        kv = await nc_a.jetstream().key_value(BUCKET)
        winners = {(await kv.get(period_key(1.0, p))).value for p in periods}
        assert winners <= {b"a", b"b"}
        assert (await kv.status()).ttl == bucket_ttl(1.0)


async def test_an_existing_bucket_with_another_ttl_is_reused() -> None:
    async with nats_server() as server, clients(server.url, 1) as (nc,):
        js = nc.jetstream()
        await js.create_key_value(config=KeyValueConfig(bucket=BUCKET, ttl=600.0))
        replica = lease(nc)
        await replica.prepare()
        assert await replica.claim(5)
        assert not await replica.claim(5)
        assert (await (await js.key_value(BUCKET)).status()).ttl == 600.0


async def test_a_bucket_created_by_a_racing_replica_with_another_ttl_is_used() -> None:
    async with nats_server() as server, clients(server.url, 2) as (nc_a, nc_b):
        # Replica b (another interval) created the bucket after a looked it up and
        # found nothing: a's create then fails, and a must use b's bucket.
        first = lease(nc_b, interval_s=100.0)
        await first.prepare()
        second = lease(nc_a, interval_s=1.0)
        kv = await second._create()
        assert (await kv.status()).ttl == bucket_ttl(100.0)
        assert await second.claim(1)


async def test_a_bucket_whose_ttl_is_shorter_than_two_periods_is_reported() -> None:
    async with nats_server() as server, clients(server.url, 1) as (nc,):
        await nc.jetstream().create_key_value(config=KeyValueConfig(bucket=BUCKET, ttl=60.0))
        with structlog.testing.capture_logs() as logs:
            await lease(nc, interval_s=3600.0).prepare()
        [event] = [e for e in logs if e["event"] == "announcer.lease_bucket_ttl_short"]
        assert event["ttl_s"] == 60.0


async def test_without_jetstream_a_claim_raises_lease_unavailable_quickly() -> None:
    async with nats_server(jetstream=False) as server, clients(server.url, 1) as (nc,):
        replica = lease(nc)
        async with asyncio.timeout(scaled(5)):
            with pytest.raises(LeaseUnavailable, match=BUCKET):
                await replica.prepare()
            with pytest.raises(LeaseUnavailable):
                await replica.claim(1)


async def test_a_lease_on_a_closed_connection_raises_lease_unavailable() -> None:
    async with nats_server() as server, clients(server.url, 1) as (nc,):
        replica = lease(nc)
        await replica.prepare()
        await nc.close()
        with pytest.raises(LeaseUnavailable, match="p-1.0-1"):
            await replica.claim(1)


async def test_a_deleted_bucket_is_created_again_after_one_lost_period() -> None:
    async with nats_server() as server, clients(server.url, 1) as (nc,):
        replica = lease(nc)
        assert await replica.claim(1)
        await nc.jetstream().delete_key_value(BUCKET)
        with pytest.raises(LeaseUnavailable):
            await replica.claim(2)
        assert await replica.claim(3)


async def test_an_existing_bucket_with_fewer_replicas_is_used_and_named_in_a_warning() -> None:
    async with nats_server() as server, clients(server.url, 1) as (nc,):
        await nc.jetstream().create_key_value(KeyValueConfig(bucket=BUCKET, history=1, ttl=60))
        wanted = KvPeriodLease(nc, bucket=BUCKET, interval_s=1.0, owner="a", replicas=3)
        with structlog.testing.capture_logs() as logs:
            assert await wanted.claim(1)
        (warning,) = [e for e in logs if e["event"] == "announcer.lease_bucket_replicas"]
        assert (warning["replicas"], warning["wanted"]) == (1, 3)


def test_replicas_must_be_at_least_one() -> None:
    with pytest.raises(ValueError):
        KvPeriodLease(Client(), bucket=BUCKET, interval_s=1.0, owner="a", replicas=0)
