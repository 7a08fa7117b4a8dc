"""NATS presence: this node's membership reports, and questions to the directory.

* **Reports.** Joins and leaves go out at once as sequenced deltas (changes made
  while one is being sent are batched into the next) for the membership
  directory (:mod:`falcon_pachinko.directory`), with one heartbeat per interval
  per process, a snapshot whenever the directory asks, and a goodbye at stop.
  A delta lost on the way leaves a sequence gap that the next heartbeat reveals
  and a snapshot repairs; the local truth is never affected.
* **Shutdown.** After :meth:`NatsPresence.begin_shutdown` no departures are
  reported one by one; the goodbye asks the directory to hold this node's users
  present for its grace period (clients were told to reconnect elsewhere).
* **Questions.** ``rooms_by_prefix``, ``room_members`` and ``presence`` ask the
  directory; each question carries this node's latest delta, so the answer
  includes its own changes (read-your-writes).
* A process that only asks (an announcer) passes ``report=False``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Callable
from typing import Final, TypeVar

import msgspec
import nats.errors
import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from ...errors import BackendError
from ...membership import (
    ConnectionsQuery,
    CountReply,
    MembersQuery,
    MembersReply,
    NodeEvent,
    PresenceQuery,
    PresenceReply,
    Reporter,
    RoomsQuery,
    RoomsReply,
)
from ...subjects import Subjects
from ..base import Member, Presence, PresenceSink
from .plumbing import UNAVAILABLE, flush_sent, publish

__all__ = ["NatsPresence"]

log = structlog.get_logger(__name__)

R = TypeVar("R")

_encoder: Final = msgspec.json.Encoder()
_rooms_reply: Final = msgspec.json.Decoder(RoomsReply)
_members_reply: Final = msgspec.json.Decoder(MembersReply)
_presence_reply: Final = msgspec.json.Decoder(PresenceReply)
_count_reply: Final = msgspec.json.Decoder(CountReply)


class NatsPresence(Presence):
    """Reports this node's membership to the directory and asks it about the cluster.

    Args:
        client: A NATS client, connected before :meth:`start` (the caller owns it).
        subjects: The subject naming shared by every process.
        node_id: This process's id.
        report: Report membership and heartbeats (``False``: only ask questions).
        heartbeat_interval_s: Seconds between heartbeats; the directory's TTL must
            be a few times longer.
        request_timeout_s: Bound on directory questions.
    """

    def __init__(
        self,
        client: Client,
        subjects: Subjects,
        node_id: str,
        *,
        report: bool = True,
        heartbeat_interval_s: float = 3.0,
        request_timeout_s: float = 2.0,
    ) -> None:
        if heartbeat_interval_s <= 0 or request_timeout_s <= 0:
            raise ValueError("intervals and timeouts must be positive")
        self.subjects: Final = subjects
        self.node_id: Final = node_id
        self.report: Final = report
        self._nc = client
        self._heartbeat_interval_s = heartbeat_interval_s
        self._request_timeout_s = request_timeout_s
        self._reporter = Reporter(node_id)
        self._shutting_down = False
        self._subs: list[Subscription] = []
        self._heartbeat: asyncio.Task[None] | None = None
        self._publish_lock = asyncio.Lock()

    # -- lifecycle ---------------------------------------------------------------

    async def start(self, sink: PresenceSink) -> None:
        # The directory decides presence; nothing is reported back to this node.
        if not self.report:
            return
        for subject in (self.subjects.sync_all, self.subjects.sync_node(self.node_id)):
            self._subs.append(await self._nc.subscribe(subject, cb=self._on_sync_request))
        await self._publish_event(self._reporter.heartbeat())
        self._heartbeat = asyncio.create_task(self._heartbeats(), name="pachinko-heartbeat")

    def begin_shutdown(self) -> None:
        # Departures from now on are covered by the goodbye that holds them.
        self._shutting_down = True

    async def stop(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
            self._heartbeat = None
        if self.report and not self._nc.is_closed:
            with contextlib.suppress(BackendError):
                await self._send_pending_delta()
                await self._publish_event(self._reporter.goodbye(hold=self._shutting_down))
        for sub in self._subs:
            with contextlib.suppress(*UNAVAILABLE, nats.errors.BadSubscriptionError):
                await sub.unsubscribe()
        self._subs.clear()

    # -- reports -----------------------------------------------------------------

    async def member_joined(self, room: str, member: Member) -> None:
        await self._record(True, room, member)

    async def member_left(self, room: str, member: Member) -> None:
        await self._record(False, room, member)

    async def _record(self, joined: bool, room: str, member: Member) -> None:
        if not self.report or self._shutting_down:
            return
        self._reporter.record(joined, room, member)
        # Sent at once, so the report is queued on the connection before anything
        # the resource broadcasts next: a gateway that dies right after cannot
        # leave its newest members unknown. Changes made while a delta is being
        # sent go out together in the next one.
        try:
            await self._send_pending_delta()
        except BackendError:
            log.warning("pachinko.nats_delta_not_sent", node=self.node_id)

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self._heartbeat_interval_s)
            with contextlib.suppress(BackendError):
                await self._send_pending_delta()
                await self._publish_event(self._reporter.heartbeat())

    async def _on_sync_request(self, msg: Msg) -> None:
        if self._shutting_down:
            return  # the goodbye is on its way
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
            await self._publish_event_locked(delta)

    async def _publish_event(self, event: NodeEvent) -> None:
        async with self._publish_lock:
            await self._publish_event_locked(event)

    async def _publish_event_locked(self, event: NodeEvent) -> None:
        await publish(self._nc, self.subjects.events, _encoder.encode(event), {})

    # -- questions ---------------------------------------------------------------

    async def rooms_by_prefix(self, prefix: str) -> list[str]:
        ask = functools.partial(RoomsQuery, prefix=prefix)
        return (await self._ask(self.subjects.query_rooms, ask, _rooms_reply)).rooms

    async def room_members(self, room: str) -> list[Member]:
        ask = functools.partial(MembersQuery, room=room)
        return (await self._ask(self.subjects.query_members, ask, _members_reply)).members

    async def connections_of(self, identity: str) -> int:
        ask = functools.partial(ConnectionsQuery, identity=identity)
        return (await self._ask(self.subjects.query_connections, ask, _count_reply)).count

    async def presence(self, room: str) -> list[str]:
        ask = functools.partial(PresenceQuery, room=room)
        return (await self._ask(self.subjects.query_presence, ask, _presence_reply)).identities

    async def _ask(
        self,
        subject: str,
        query: Callable[..., msgspec.Struct],
        decoder: msgspec.json.Decoder[R],
    ) -> R:
        """Ask the directory ``query(node=..., seq=...)``: an answer with our own changes."""
        asked = query(node=self._asker, seq=await self._settled_seq())
        return decoder.decode(await self._request(subject, _encoder.encode(asked)))

    @property
    def _asker(self) -> str | None:
        return self.node_id if self.report else None

    async def _settled_seq(self) -> int:
        # Send our own pending changes first, so the answer includes them.
        if self.report:
            await self._send_pending_delta()
        return self._reporter.seq

    async def _request(self, subject: str, payload: bytes) -> bytes:
        try:
            msg = await self._nc.request(subject, payload, timeout=self._request_timeout_s)
        except (TimeoutError, nats.errors.NoRespondersError, *UNAVAILABLE) as exc:
            raise BackendError("the room directory did not answer") from exc
        if msg.headers and msg.headers.get("Nats-Service-Error-Code"):
            raise BackendError(
                f"the room directory failed: {msg.headers.get('Nats-Service-Error')}"
            )
        return msg.data

    async def flush(self) -> None:
        """Wait until the server has what was sent (bounded)."""
        await flush_sent(self._nc, self._request_timeout_s)
