"""The NATS backend: room traffic and membership across processes and machines.

* **Room traffic.** One subscription per room per process, on
  ``<prefix>.<room-token>`` (see :mod:`falcon_pachinko.subjects`). A broadcast is
  encoded once by the manager; this backend publishes those bytes with headers
  naming the origin node and the excluded connection, and hands the received bytes
  untouched to the local manager. One NATS connection per process publishes in
  call order and NATS keeps per-publisher order, so messages from one connection
  reach every member in the order they were sent.
* **Membership.** Joins and leaves go out at once as sequenced deltas (changes made
  while one is being sent are batched into the next) for the
  directory (:mod:`falcon_pachinko.directory`), with one heartbeat per interval
  per process. ``rooms_by_prefix`` and ``room_members`` ask the directory, so they
  answer for the whole cluster.
* **Failures.** The client reconnects forever by default and nats-py restores
  every subscription on reconnect. Publishes made while disconnected wait in the
  client's bounded buffer (``pending_size``) and go out on reconnect; once the
  buffer is full a publish raises :class:`~falcon_pachinko.BackendError`. Deltas
  lost on the way are detected by sequence and repaired with a snapshot.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import uuid
from collections.abc import Mapping
from typing import Any, Final

import msgspec
import nats
import nats.errors
import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from ..errors import BackendError
from ..membership import (
    MembersQuery,
    MembersReply,
    NodeEvent,
    PresenceQuery,
    PresenceReply,
    Reporter,
    RoomsQuery,
    RoomsReply,
)
from ..subjects import Subjects
from .base import Backend, BackendSink, Member

__all__ = [
    "EXCLUDE_HEADER",
    "ORIGIN_HEADER",
    "TARGET_HEADER",
    "NatsBackend",
    "RoomPublisher",
    "flush_sent",
]

log = structlog.get_logger(__name__)

#: The node that published a room message.
ORIGIN_HEADER: Final = "Pachinko-Origin"
#: The one connection that must not receive a room message.
EXCLUDE_HEADER: Final = "Pachinko-Exclude"
#: The connection a direct message is for.
TARGET_HEADER: Final = "Pachinko-Target"

_encoder: Final = msgspec.json.Encoder()
_rooms_reply: Final = msgspec.json.Decoder(RoomsReply)
_members_reply: Final = msgspec.json.Decoder(MembersReply)
_presence_reply: Final = msgspec.json.Decoder(PresenceReply)

# Errors nats-py raises when it cannot take a publish or a request now.
_UNAVAILABLE: Final = (
    nats.errors.ConnectionClosedError,
    nats.errors.ConnectionDrainingError,
    nats.errors.ConnectionReconnectingError,
    nats.errors.OutboundBufferLimitError,
    nats.errors.StaleConnectionError,
)


class RoomPublisher:
    """Publishes room traffic for a process that holds no sockets (a service).

    What it publishes reaches every member of the room on every gateway, exactly
    as a resource's ``broadcast_to_room`` does.

    Args:
        client: A connected NATS client (the caller owns it).
        subject_prefix: First token(s) of every subject (``chat``).
        origin: Names this publisher in the origin header.
    """

    def __init__(self, client: Client, subject_prefix: str = "chat", *, origin: str) -> None:
        self.subjects: Final = Subjects(subject_prefix)
        self._nc = client
        self._origin = origin

    async def publish(self, room: str, data: bytes, *, exclude: str | None = None) -> None:
        """Publish an encoded message to ``room``.

        Args:
            room: The room name.
            data: The UTF-8 JSON text of the message.
            exclude: The id of one connection that must not receive it.

        Raises:
            BackendError: NATS cannot take the message now.
        """
        headers = {ORIGIN_HEADER: self._origin}
        if exclude is not None:
            headers[EXCLUDE_HEADER] = exclude
        await _publish(self._nc, self.subjects.room(room), data, headers)


class NatsBackend(Backend):
    """Carries room traffic and membership over NATS.

    Args:
        servers: NATS server URL(s); used when this backend opens its own connection.
        subject_prefix: First token(s) of every subject (``chat`` -> ``chat.<room>``).
        client: An already connected ``nats.aio.client.Client`` to use instead;
            the caller then owns it (connect options, callbacks, closing).
        presence: Report membership and heartbeats to the directory. A process
            that only broadcasts and queries (an announcer) passes ``False``.
        heartbeat_interval_s: Seconds between heartbeats; the directory's TTL must
            be a few times longer.
        request_timeout_s: Bound on directory queries.
        connect_options: Extra ``nats.connect`` options for an owned connection.
    """

    def __init__(
        self,
        servers: str | list[str] = "nats://127.0.0.1:4222",
        subject_prefix: str = "chat",
        *,
        client: Client | None = None,
        presence: bool = True,
        heartbeat_interval_s: float = 3.0,
        request_timeout_s: float = 2.0,
        connect_options: Mapping[str, Any] | None = None,
    ) -> None:
        if heartbeat_interval_s <= 0 or request_timeout_s <= 0:
            raise ValueError("intervals and timeouts must be positive")
        self.subjects: Final = Subjects(subject_prefix)
        self.node_id: Final = uuid.uuid4().hex
        self._servers = servers
        self._nc = client
        self._owns_client = client is None
        self._connect_options = dict(connect_options or {})
        self._presence = presence
        self._heartbeat_interval_s = heartbeat_interval_s
        self._request_timeout_s = request_timeout_s
        self._reporter = Reporter(self.node_id)
        self._shutting_down = False
        self._sink: BackendSink | None = None
        self._rooms: dict[str, Subscription] = {}
        self._control: list[Subscription] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._publish_lock = asyncio.Lock()

    @property
    def client(self) -> Client:
        """The NATS client (available once started)."""
        if self._nc is None:
            raise BackendError("the NATS backend is not started")
        return self._nc

    # -- lifecycle -------------------------------------------------------------

    async def start(self, sink: BackendSink) -> None:
        self._sink = sink
        if self._nc is None:
            self._nc = await self._connect()
        nc = self._nc
        self._control.append(await nc.subscribe(self.subjects.direct, cb=self._on_direct))
        if self._presence:
            for subject in (self.subjects.sync_all, self.subjects.sync_node(self.node_id)):
                self._control.append(await nc.subscribe(subject, cb=self._on_sync_request))
            await self._publish_event(self._reporter.heartbeat())
            self._tasks.append(
                asyncio.create_task(self._heartbeats(), name="pachinko-nats-heartbeat")
            )
        await self._flush_quietly()
        log.info("pachinko.nats_started", node=self.node_id, presence=self._presence)

    async def _connect(self) -> Client:
        options: dict[str, Any] = {
            "servers": self._servers,
            "name": f"pachinko-{self.node_id[:8]}",
            "max_reconnect_attempts": -1,  # keep trying: NATS restarts are survivable
            "reconnect_time_wait": 0.5,
            "connect_timeout": 2,
            "error_cb": _log_error,
            "disconnected_cb": _log_event("pachinko.nats_disconnected"),
            "reconnected_cb": _log_event("pachinko.nats_reconnected"),
        }
        options.update(self._connect_options)
        try:
            return await nats.connect(**options)
        except (OSError, nats.errors.Error) as exc:
            raise BackendError(f"cannot connect to NATS at {self._servers}") from exc

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        nc = self._nc
        if nc is None:
            return
        if self._presence and not nc.is_closed:
            with contextlib.suppress(BackendError):
                await self._send_pending_delta()
                await self._publish_event(self._reporter.goodbye(hold=self._shutting_down))
        for sub in [*self._rooms.values(), *self._control]:
            with contextlib.suppress(*_UNAVAILABLE, nats.errors.BadSubscriptionError):
                await sub.unsubscribe()
        self._rooms.clear()
        self._control.clear()
        if self._owns_client:
            await _close(nc, self._request_timeout_s)
            self._nc = None
        else:
            await self._flush_quietly()

    def begin_shutdown(self) -> None:
        # Departures from now on are covered by the goodbye that holds them.
        self._shutting_down = True

    # -- room traffic ----------------------------------------------------------

    async def subscribe(self, room: str) -> None:
        if room in self._rooms:
            return
        callback = functools.partial(self._on_room_message, room)
        self._rooms[room] = await self.client.subscribe(self.subjects.room(room), cb=callback)
        # Round trip, so traffic published after this returns is delivered here.
        await self._flush_quietly()

    async def unsubscribe(self, room: str) -> None:
        sub = self._rooms.pop(room, None)
        if sub is not None:
            with contextlib.suppress(*_UNAVAILABLE, nats.errors.BadSubscriptionError):
                await sub.unsubscribe()

    async def publish(self, room: str, data: bytes, *, exclude: str | None = None) -> None:
        headers = {ORIGIN_HEADER: self.node_id}
        if exclude is not None:
            headers[EXCLUDE_HEADER] = exclude
        await self._publish(self.subjects.room(room), data, headers)

    async def send_to_connection(self, connection_id: str, data: bytes) -> bool:
        headers = {ORIGIN_HEADER: self.node_id, TARGET_HEADER: connection_id}
        await self._publish(self.subjects.direct, data, headers)
        return True

    async def _on_room_message(self, room: str, msg: Msg) -> None:
        if self._sink is None:
            return
        exclude = msg.headers.get(EXCLUDE_HEADER) if msg.headers else None
        self._sink.deliver(room, msg.data, exclude)

    async def _on_direct(self, msg: Msg) -> None:
        target = msg.headers.get(TARGET_HEADER) if msg.headers else None
        origin = msg.headers.get(ORIGIN_HEADER) if msg.headers else None
        if self._sink is not None and target is not None and origin != self.node_id:
            self._sink.deliver_to_connection(target, msg.data)

    async def _publish(self, subject: str, data: bytes, headers: dict[str, str]) -> None:
        await _publish(self.client, subject, data, headers)

    # -- membership ------------------------------------------------------------

    async def member_joined(self, room: str, member: Member) -> None:
        await self._record(True, room, member)

    async def member_left(self, room: str, member: Member) -> None:
        await self._record(False, room, member)

    async def _record(self, joined: bool, room: str, member: Member) -> None:
        if not self._presence or self._shutting_down:
            return
        self._reporter.record(joined, room, member)
        # Sent at once, so the report is queued on the connection before anything
        # the resource broadcasts next (a "joined" message, say): a gateway that
        # dies right after cannot leave its newest members unknown. Changes made
        # while a delta is being sent go out together in the next one.
        try:
            await self._send_pending_delta()
        except BackendError:
            log.warning("pachinko.nats_delta_not_sent", node=self.node_id)

    async def rooms_by_prefix(self, prefix: str) -> list[str]:
        query = RoomsQuery(prefix=prefix, node=self._asker, seq=await self._settled_seq())
        reply = await self._request(self.subjects.query_rooms, _encoder.encode(query))
        return _rooms_reply.decode(reply).rooms

    async def room_members(self, room: str) -> list[Member]:
        query = MembersQuery(room=room, node=self._asker, seq=await self._settled_seq())
        reply = await self._request(self.subjects.query_members, _encoder.encode(query))
        return _members_reply.decode(reply).members

    async def presence(self, room: str) -> list[str]:
        query = PresenceQuery(room=room, node=self._asker, seq=await self._settled_seq())
        reply = await self._request(self.subjects.query_presence, _encoder.encode(query))
        return _presence_reply.decode(reply).identities

    @property
    def _asker(self) -> str | None:
        return self.node_id if self._presence else None

    async def _settled_seq(self) -> int:
        # Send our own pending changes first, so the answer includes them.
        if self._presence:
            await self._send_pending_delta()
        return self._reporter.seq

    async def _request(self, subject: str, payload: bytes) -> bytes:
        try:
            msg = await self.client.request(subject, payload, timeout=self._request_timeout_s)
        except (TimeoutError, nats.errors.NoRespondersError, *_UNAVAILABLE) as exc:
            raise BackendError("the room directory did not answer") from exc
        if msg.headers and msg.headers.get("Nats-Service-Error-Code"):
            raise BackendError(
                f"the room directory failed: {msg.headers.get('Nats-Service-Error')}"
            )
        return msg.data

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self._heartbeat_interval_s)
            with contextlib.suppress(BackendError):
                await self._send_pending_delta()
                await self._publish_event(self._reporter.heartbeat())

    async def _on_sync_request(self, msg: Msg) -> None:
        try:
            async with self._publish_lock:
                await self._send_delta_locked()
                for part in self._reporter.snapshot_parts():
                    await self._publish_event_locked(part)
        except BackendError:
            log.warning("pachinko.nats_snapshot_not_sent", node=self.node_id)

    async def _send_pending_delta(self) -> None:
        async with self._publish_lock:
            await self._send_delta_locked()

    async def _send_delta_locked(self) -> None:
        delta = self._reporter.take_delta()
        if delta is not None:
            # A delta that fails to go out leaves a gap the directory detects and
            # repairs with a snapshot; the local truth is unaffected.
            await self._publish_event_locked(delta)

    async def _publish_event(self, event: NodeEvent) -> None:
        async with self._publish_lock:
            await self._publish_event_locked(event)

    async def _publish_event_locked(self, event: NodeEvent) -> None:
        await self._publish(self.subjects.events, _encoder.encode(event), {})

    async def _flush_quietly(self) -> None:
        if self._nc is not None:
            await flush_sent(self._nc, self._request_timeout_s)


async def _publish(nc: Client, subject: str, data: bytes, headers: dict[str, str]) -> None:
    try:
        await nc.publish(subject, data, headers=headers)
    except _UNAVAILABLE as exc:
        raise BackendError("NATS is unavailable; the message was not sent") from exc
    except nats.errors.MaxPayloadError as exc:
        raise BackendError("the message is larger than NATS accepts; not sent") from exc


async def flush_sent(nc: Client, timeout_s: float) -> None:
    """Return once the server has processed every command sent so far (bounded).

    A subscription made before this returns is in effect. Offline, nothing is
    awaited: nats-py re-sends subscriptions when it reconnects.
    """
    if not nc.is_connected:
        return
    with contextlib.suppress(*_UNAVAILABLE, nats.errors.TimeoutError, TimeoutError):
        async with asyncio.timeout(timeout_s):
            # NOTE: nats-py writes flush()'s PING to the socket at once, ahead of
            # commands still queued for its flusher task (a SUB just made), so the
            # PONG could return before the server has them. Hand the queued
            # commands to the socket first (private API: recheck on upgrades).
            await nc._flush_pending(force_flush=True)
            await nc.flush()


async def _close(nc: Client, timeout_s: float) -> None:
    try:
        async with asyncio.timeout(timeout_s):
            await nc.drain()
    except (TimeoutError, *_UNAVAILABLE):
        pass
    if not nc.is_closed:
        # While reconnecting, nats-py's close writes the reconnect buffer to the
        # dead socket and raises; what was buffered is lost either way.
        with contextlib.suppress(OSError):
            await nc.close()


async def _log_error(exc: Exception) -> None:
    log.warning("pachinko.nats_error", error=type(exc).__name__, detail=str(exc)[:200])


def _log_event(event: str) -> Any:
    async def callback() -> None:
        log.info(event)

    return callback
