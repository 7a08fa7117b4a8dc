"""Load faults against one real gateway on 127.0.0.1: a reconnect storm, a client that
stops reading under real TCP backpressure, and many connect/join/leave cycles.

Every load loop is bounded in count and in (scaled) time, and only ever targets
loopback. Resource use is read from the gateway's ``/metrics`` (open connections,
rooms with local members = NATS room subscriptions) and from
``/proc/<pid>/status`` (``VmRSS``).
"""

from __future__ import annotations

import asyncio
import base64
import os
import resource
import socket
import statistics
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import msgspec
import pytest
import websockets
from websockets.exceptions import InvalidStatus

from falcon_pachinko.testing import WSClient, connect, scaled

from .cluster import Cluster, Service, nats_subscriptions
from .test_distributed import eventually, joined, send
from .test_presence import metric

HOST = "127.0.0.1"  # the only address any load here is sent to


@pytest.fixture(autouse=True)
def enough_file_descriptors() -> Iterator[None]:
    """Raise this process's open-file limit (services started from it inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else 65536
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(wanted, 65536)), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def open_fds(service: Service) -> int:
    return len(os.listdir(f"/proc/{service.pid}/fd"))


def rss_mib(service: Service) -> float:
    """The process's resident set size, from ``/proc/<pid>/status``."""
    with open(f"/proc/{service.pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


async def gauge(service: Service, name: str) -> float:
    return await asyncio.to_thread(metric, service, name)


async def gauges_are(service: Service, **expected: float) -> None:
    """Wait (bounded) until each ``chat_gateway_<name>`` gauge has its expected value."""

    async def check() -> bool:
        for name, value in expected.items():
            if await gauge(service, f"chat_gateway_{name}") != value:
                return False
        return True

    await eventually(check, f"gauges {expected}", timeout_s=15)


# -- a reconnect storm -------------------------------------------------------------

STORM_CLIENTS = 2000
STORM_ROOM_SIZE = 10  # 200 rooms: each join is announced to at most 9 others
STORM_HANDSHAKES_IN_FLIGHT = 200


class Storm:
    """``count`` clients connecting at once (bounded handshakes in flight), held open."""

    def __init__(self, chat: Cluster, gateway: Service, count: int) -> None:
        self.urls = [
            chat.ws_url(gateway, f"storm-{i // STORM_ROOM_SIZE}", user=f"u{i}")
            for i in range(count)
        ]
        self.served = 0
        self.refused: dict[int, int] = {}
        self.failed: list[str] = []
        self.release = asyncio.Event()
        self._gate = asyncio.Semaphore(STORM_HANDSHAKES_IN_FLIGHT)
        self._settled = 0
        self._all_settled = asyncio.Event()

    def _settle(self) -> None:
        self._settled += 1
        if self._settled == len(self.urls):
            self._all_settled.set()

    async def _client(self, url: str) -> None:
        try:
            async with self._gate:
                conn = await websockets.connect(
                    url, open_timeout=scaled(30), compression=None, max_queue=None
                )
                try:
                    welcome = msgspec.json.decode(await conn.recv())
                    roster = msgspec.json.decode(await conn.recv())
                except BaseException:
                    conn.transport.abort()
                    raise
        except InvalidStatus as exc:
            status = exc.response.status_code
            self.refused[status] = self.refused.get(status, 0) + 1
            self._settle()
            return
        except Exception as exc:
            self.failed.append(repr(exc)[:200])
            self._settle()
            return
        if welcome["type"] == "serverSystemMessage" and roster["type"] == "serverPresence":
            self.served += 1
        else:
            self.failed.append(f"got {welcome['type']}, {roster['type']}")
        self._settle()
        try:
            await self.release.wait()  # everyone stays connected until all have settled
        finally:
            conn.transport.abort()  # a storm's clients vanish; no closing handshakes

    async def run(
        self, bound_s: float, while_held: Callable[[], Awaitable[None]] | None = None
    ) -> float:
        """Run the storm; return its duration (until all settled), bounded by ``bound_s``.

        ``while_held`` runs once every client has settled, before any disconnects.
        """
        started = time.monotonic()
        tasks = [asyncio.create_task(self._client(url)) for url in self.urls]
        try:
            async with asyncio.timeout(scaled(bound_s)):
                await self._all_settled.wait()
            took = time.monotonic() - started
            if while_held is not None:
                await while_held()
            return took
        finally:
            self.release.set()
            await asyncio.gather(*tasks, return_exceptions=True)


async def restarted_gateway(chat: Cluster, **env: str) -> Service:
    """A gateway that served a client, was restarted (SIGTERM), and came back."""
    old = await chat.gateway(**env)
    async with connect(chat.ws_url(old, "storm-0", user="Before")) as before:
        await joined(before)
        assert await old.stop() == 0
        assert await before.expect_close() == 1012
    return await chat.gateway(**env)


async def test_a_reconnect_storm_of_2000_clients_is_served(chat: Cluster) -> None:
    """2,000 clients connect at once (200 handshakes in flight) to a just-restarted
    gateway; every one gets its welcome and roster within 60 s (scaled; about 4 s
    on two cores), and all of them are connected at the same time at the end."""
    await chat.rooms()
    gateway = await restarted_gateway(chat)
    storm = Storm(chat, gateway, STORM_CLIENTS)

    async def all_connected() -> None:
        await gauges_are(gateway, connections=STORM_CLIENTS, rooms=STORM_CLIENTS // STORM_ROOM_SIZE)

    took = await storm.run(bound_s=60, while_held=all_connected)
    assert storm.failed == [] and storm.refused == {}, (storm.failed[:5], storm.refused)
    assert storm.served == STORM_CLIENTS, took
    await gauges_are(gateway, connections=0, rooms=0)  # aborted sockets all cleaned up
    assert gateway.returncode is None


async def test_a_reconnect_storm_beyond_the_connection_cap_is_refused_with_503(
    chat: Cluster,
) -> None:
    """With ``CHAT_MAX_CONNECTIONS=1500``, exactly 1,500 of 2,000 simultaneous clients
    are served and the other 500 are refused with HTTP 503 (retry elsewhere)."""
    await chat.rooms()
    gateway = await restarted_gateway(chat, CHAT_MAX_CONNECTIONS="1500")
    storm = Storm(chat, gateway, STORM_CLIENTS)

    async def at_the_cap() -> None:
        await gauges_are(gateway, connections=1500)

    await storm.run(bound_s=60, while_held=at_the_cap)
    assert storm.failed == [], storm.failed[:5]
    assert storm.served == 1500
    assert storm.refused == {503: 500}
    await gauges_are(gateway, connections=0, rooms=0)


# -- a client that stops reading -------------------------------------------------

SLOW_ENV = {
    # 64 frames or 256 KiB may wait for one client. Members that read keep well
    # below it: the room's bursts here are 20 frames.
    "CHAT_OUTBOUND_QUEUE_MESSAGES": "64",
    "CHAT_OUTBOUND_QUEUE_BYTES": "262144",
    # The close frame waits behind what the client never read; 5 s to read it.
    "CHAT_CLOSE_TIMEOUT_S": "5",
}
BIG_TEXT = "x" * 2000  # the longest valid message
BURST = 20


class StalledClient:
    """A real TCP client that completes the WebSocket handshake, then never reads.

    Its receive buffer is made as small as the kernel allows, so the gateway's
    writes to it block almost at once (real backpressure, not a simulation).
    """

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    @classmethod
    async def open(cls, port: int, path: str) -> StalledClient:
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
        sock.setblocking(False)
        await loop.sock_connect(sock, (HOST, port))
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        )
        await loop.sock_sendall(sock, request.encode())
        head = b""
        async with asyncio.timeout(scaled(5)):
            while not head.endswith(b"\r\n\r\n"):  # byte by byte: not one frame more
                head += await loop.sock_recv(sock, 1)
        assert head.startswith(b"HTTP/1.1 101"), head
        return cls(sock)

    async def close_code(self) -> int | None:
        """Read now, up to the close frame or the end (bounded); its code, if any."""
        loop = asyncio.get_running_loop()
        data = b""
        code = None
        try:
            async with asyncio.timeout(scaled(10)):
                while code is None and (chunk := await loop.sock_recv(self.sock, 65536)):
                    data += chunk
                    code = _close_code(data)
        except (ConnectionResetError, TimeoutError):
            pass
        finally:
            self.sock.close()
        return code


def _close_code(data: bytes) -> int | None:
    """The code of the first close frame in ``data`` (server frames: unmasked), if whole."""
    offset = 0
    while offset + 2 <= len(data):
        opcode, length = data[offset] & 0x0F, data[offset + 1] & 0x7F
        offset += 2
        if length >= 126:
            size = 2 if length == 126 else 8
            if offset + size > len(data):
                return None
            length = int.from_bytes(data[offset : offset + size], "big")
            offset += size
        if opcode == 0x8:
            if length < 2:
                return 1005  # a close frame without a code
            if offset + 2 > len(data):
                return None
            return int.from_bytes(data[offset : offset + 2], "big")
        offset += length
    return None


class Latency:
    """Marker round trips: ``sender`` sends a marker, ``receiver`` reads it."""

    def __init__(self, sender: WSClient, receiver: WSClient) -> None:
        self.sender = sender
        self.receiver = receiver
        self.count = 0

    async def sample(self) -> float:
        self.count += 1
        marker = f"marker-{self.count}"
        started = time.monotonic()
        await self.sender.send_json(send(marker))
        while (await self.receiver.expect("serverNewMessage"))["payload"]["text"] != marker:
            pass
        return time.monotonic() - started


async def flood(sender: WSClient, count: int) -> None:
    for _ in range(count):
        await sender.send_json(send(BIG_TEXT))


async def test_a_client_that_stops_reading_is_closed_without_slowing_the_room(
    chat: Cluster,
) -> None:
    """A real socket that stops reading is closed with 4001 once its outbound queue
    (64 frames / 256 KiB here) overflows behind the full TCP buffers; meanwhile the
    room's other members' marker round trip stays within 10x its baseline (or
    under 0.25 s, scaled, whichever is larger), and the gateway's RSS once the
    stalled client is gone is within 10 MiB of what it was before it came."""
    await chat.rooms()
    gateway = await chat.gateway(**SLOW_ENV)
    assert gateway.port is not None
    async with (
        connect(chat.ws_url(gateway, "busy", user="Ann")) as ann,
        connect(chat.ws_url(gateway, "busy", user="Ben")) as ben,
    ):
        await joined(ann)
        await joined(ben)
        latency = Latency(ann, ben)  # Ben reads everything; Ann's socket is read too
        # Warm up (allocator pools, code paths) with the same traffic, then measure.
        for _ in range(15):
            await flood(ann, BURST)
            await latency.sample()
        baseline = statistics.median([await latency.sample() for _ in range(5)])
        rss_before = rss_mib(gateway)

        stalled = await StalledClient.open(gateway.port, "/ws/chat/busy?user=Stalled")
        await gauges_are(gateway, connections=3)
        during: list[float] = []
        slow_total = "chat_gateway_slow_consumer_disconnects_total"
        async with asyncio.timeout(scaled(30)):
            for _ in range(200):  # at most 4,000 frames of 2 KB: ~8 MB
                await flood(ann, BURST)
                during.append(await latency.sample())
                if await gauge(gateway, slow_total) == 1:
                    break
        assert await gauge(gateway, slow_total) == 1, "the stalled client was never closed"
        code = await stalled.close_code()
        await gauges_are(gateway, connections=2)
        # Reading again, the client finds the close frame behind the unread data.
        assert code == 4001, code
        after = [await latency.sample() for _ in range(3)]
        bound = max(10 * baseline, scaled(0.25))
        assert max(during) < bound, (baseline, sorted(during)[-5:], len(during))
        assert max(after) < bound, (baseline, after)
        rss_after = rss_mib(gateway)
        assert rss_after < rss_before + 10, (rss_before, rss_after)
        # Ann and Ben were never closed: they still chat.
        await ben.send_json(send("still here"))
        while (await ann.expect("serverNewMessage"))["payload"]["text"] != "still here":
            pass


# -- many connect/join/leave cycles --------------------------------------------------

CYCLES = 10_000
CYCLES_IN_FLIGHT = 50
CYCLE_ROOMS = 500


async def bounded(count: int, in_flight: int, work: Callable[[int], Awaitable[Any]]) -> None:
    """Run ``work(i)`` for ``i`` in ``range(count)``, at most ``in_flight`` at once."""
    counter = iter(range(count))

    async def lane() -> None:
        for i in counter:
            await work(i)

    await asyncio.gather(*(lane() for _ in range(in_flight)))


async def test_10000_join_leave_cycles_leave_the_gateway_as_it_was(chat: Cluster) -> None:
    """10,000 connect/join/leave cycles (50 at a time, over 500 rooms; about 15 s on
    two cores) leave the gateway as it was after a 500-cycle warm-up: the same open
    connections and rooms (its gauges), the same NATS subscriptions (as nats-server
    counts them), the same open file descriptors, and RSS within 8 MiB (it grew
    by under 1 MiB when measured). No metric counts asyncio tasks; connections,
    rooms, NATS subscriptions and file descriptors stand in for them."""
    await chat.rooms()
    gateway = await chat.gateway()
    async with connect(chat.ws_url(gateway, "lobby", user="Resident")) as resident:
        await joined(resident)
        failures: list[str] = []

        async def cycle(i: int) -> None:
            url = chat.ws_url(gateway, f"cycle-{i % CYCLE_ROOMS}", user=f"c{i}")
            try:
                async with websockets.connect(
                    url, open_timeout=scaled(10), close_timeout=scaled(5), compression=None
                ) as conn:
                    await conn.recv()  # welcome
                    await conn.recv()  # roster
            except Exception as exc:
                failures.append(repr(exc)[:200])

        async with asyncio.timeout(scaled(15)):
            await bounded(500, CYCLES_IN_FLIGHT, cycle)
        await gauges_are(gateway, connections=1, rooms=1)
        subs_before = await asyncio.to_thread(nats_subscriptions, chat, "chat-gateway")
        fds_before = open_fds(gateway)
        rss_before = rss_mib(gateway)

        started = time.monotonic()
        async with asyncio.timeout(scaled(90)):
            await bounded(CYCLES, CYCLES_IN_FLIGHT, cycle)
        took = time.monotonic() - started
        assert failures == [], (len(failures), failures[:5])

        # Back to the resident alone: one connection, one room subscription.
        await gauges_are(gateway, connections=1, rooms=1)
        subs_after = await asyncio.to_thread(nats_subscriptions, chat, "chat-gateway")
        assert subs_after == subs_before, (subs_before, subs_after)
        assert open_fds(gateway) <= fds_before, (fds_before, open_fds(gateway))
        rss_after = rss_mib(gateway)
        assert rss_after < rss_before + 8, (rss_before, rss_after, took)
        # And the gateway still serves its resident.
        await resident.send_json(send("still here"))
        assert (await resident.expect("serverNewMessage"))["payload"]["text"] == "still here"
