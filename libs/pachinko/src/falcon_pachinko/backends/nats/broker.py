"""The NATS broker: room traffic and direct messages between processes.

* **Room traffic.** One subscription per room per process, on
  ``<prefix>.<room-token>`` (see :mod:`falcon_pachinko.subjects`). A broadcast is
  encoded once by its producer; the broker publishes those bytes with headers
  naming the origin node and the excluded connection, and hands the received
  bytes untouched to the local sink. One NATS connection per process publishes
  in call order and NATS keeps per-publisher order, so messages from one
  connection reach every member in the order they were sent.
* **Durable room traffic** arrives on the same subscription: the history stream
  republishes each message it stores to the room's subject
  (:mod:`~falcon_pachinko.backends.nats.history`), and the broker hands it to the
  sink with its position and the room's previous ``seq``. A message whose
  position headers are unreadable is delivered as live-only traffic, with a
  warning.
* **Direct messages.** A connection id starts with the id of the node holding it
  (``<node>-<random>``), so a message for one connection is a request to that
  node alone (``<prefix>._dir.direct.<node>``); the node answers whether the
  connection took it.
* **Kicks.** Every node subscribes to ``<prefix>._dir.kick``; a kick (identity,
  optional room, reason) published there makes each node close its matching
  connections with 4501. The sender closed its own already and skips its echo.
* **Producers without sockets** (a rooms service, an announcer) use a broker
  without starting it: :meth:`NatsBroker.publish` needs only the client.
"""

from __future__ import annotations

import functools
import uuid
from typing import Annotated, Final

import msgspec
import nats.errors
import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from ...errors import BackendError
from ...subjects import MAX_ROOM_NAME_CHARS, Subjects
from ..base import Broker, BrokerSink
from .history import SEQUENCE_HEADER, parse_position, parse_prev
from .plumbing import EXCLUDE_HEADER, ORIGIN_HEADER, UNAVAILABLE, flush_sent, publish

__all__ = ["Kick", "NatsBroker", "new_node_id"]

log = structlog.get_logger(__name__)

_DELIVERED: Final = b"1"
_NOT_DELIVERED: Final = b"0"


def new_node_id() -> str:
    """A fresh node id: 16 hex digits, a single subject token."""
    return uuid.uuid4().hex[:16]


class NatsBroker(Broker):
    """Carries room traffic over one NATS client (owned by the caller).

    Args:
        client: A NATS client; it must be connected before :meth:`start` or
            :meth:`publish` is used.
        subjects: The subject naming shared by every process.
        node_id: This process's id (see :func:`new_node_id`).
        request_timeout_s: Bound on direct-message requests and flushes.
    """

    def __init__(
        self,
        client: Client,
        subjects: Subjects,
        node_id: str,
        *,
        request_timeout_s: float = 2.0,
    ) -> None:
        self.subjects: Final = subjects
        self.node_id: Final = node_id
        self._nc = client
        self._request_timeout_s = request_timeout_s
        self._sink: BrokerSink | None = None
        self._rooms: dict[str, Subscription] = {}
        self._direct: Subscription | None = None
        self._kicks: Subscription | None = None

    async def start(self, sink: BrokerSink) -> None:
        self._sink = sink
        subject = self.subjects.direct_node(self.node_id)
        self._direct = await self._nc.subscribe(subject, cb=self._on_direct)
        self._kicks = await self._nc.subscribe(self.subjects.kick, cb=self._on_kick)

    async def stop(self) -> None:
        control = [sub for sub in (self._direct, self._kicks) if sub is not None]
        for sub in [*self._rooms.values(), *control]:
            await _unsubscribe(sub)
        self._rooms.clear()
        self._direct = None
        self._kicks = None
        self._sink = None

    def new_connection_id(self) -> str:
        return f"{self.node_id}-{uuid.uuid4().hex[:16]}"

    @property
    def subscribed_rooms(self) -> frozenset[str]:
        """Rooms this process holds a subscription for."""
        return frozenset(self._rooms)

    # -- room traffic ------------------------------------------------------------

    async def subscribe(self, room: str) -> None:
        if room in self._rooms:
            return
        callback = functools.partial(self._on_room_message, room)
        try:
            sub = await self._nc.subscribe(self.subjects.room(room), cb=callback)
        except UNAVAILABLE as exc:
            raise BackendError("NATS is unavailable; cannot join the room") from exc
        self._rooms[room] = sub
        # Round trip, so traffic published after this returns is delivered here.
        await flush_sent(self._nc, self._request_timeout_s)

    async def unsubscribe(self, room: str) -> None:
        sub = self._rooms.pop(room, None)
        if sub is not None:
            await _unsubscribe(sub)

    async def publish(self, room: str, data: bytes, *, exclude: str | None = None) -> None:
        headers = {ORIGIN_HEADER: self.node_id}
        if exclude is not None:
            headers[EXCLUDE_HEADER] = exclude
        await publish(self._nc, self.subjects.room(room), data, headers)

    async def _on_room_message(self, room: str, msg: Msg) -> None:
        sink = self._sink
        if sink is None:
            return
        headers = msg.headers
        if not headers:
            sink.deliver(room, msg.data, None)
            return
        exclude = headers.get(EXCLUDE_HEADER)
        if SEQUENCE_HEADER not in headers:  # live-only traffic: the hot path
            sink.deliver(room, msg.data, exclude)
            return
        # Republished by the history stream once stored (see .history).
        position = parse_position(headers)
        if position is None:
            log.warning("pachinko.nats_bad_position", room_subject=msg.subject)
            sink.deliver(room, msg.data, exclude)
            return
        sink.deliver(room, msg.data, exclude, position, parse_prev(headers, position.seq))

    # -- direct messages ---------------------------------------------------------

    async def send_to_connection(self, connection_id: str, data: bytes) -> bool:
        node, sep, _ = connection_id.partition("-")
        if not sep or node == self.node_id or not _is_token(node):
            return False  # not a connection of any other node
        subject = self.subjects.direct_node(node)
        headers = {ORIGIN_HEADER: self.node_id, _TARGET_HEADER: connection_id}
        try:
            reply = await self._nc.request(
                subject, data, timeout=self._request_timeout_s, headers=headers
            )
        except (TimeoutError, nats.errors.NoRespondersError):
            return False  # that node is gone
        except UNAVAILABLE as exc:
            raise BackendError("NATS is unavailable; the message was not sent") from exc
        except nats.errors.MaxPayloadError as exc:
            raise BackendError("the message is larger than NATS accepts; not sent") from exc
        return reply.data == _DELIVERED

    async def _on_direct(self, msg: Msg) -> None:
        target = msg.headers.get(_TARGET_HEADER) if msg.headers else None
        delivered = (
            self._sink is not None
            and target is not None
            and self._sink.deliver_to_connection(target, msg.data)
        )
        if msg.reply:
            try:
                await msg.respond(_DELIVERED if delivered else _NOT_DELIVERED)
            except UNAVAILABLE:
                log.warning("pachinko.nats_direct_reply_not_sent")

    # -- kicks -------------------------------------------------------------------

    async def kick(self, identity: str, room: str | None, reason: str) -> None:
        """Publish a kick to every node (a started broker is not needed).

        Raises:
            BackendError: NATS cannot take the publish now.
        """
        data = _KICK_ENCODER.encode(Kick(identity=identity, room=room, reason=reason))
        await publish(self._nc, self.subjects.kick, data, {ORIGIN_HEADER: self.node_id})
        # Flushed, so a kick from a short-lived process (`chat kick`) is sent.
        await flush_sent(self._nc, self._request_timeout_s)

    async def _on_kick(self, msg: Msg) -> None:
        origin = msg.headers.get(ORIGIN_HEADER) if msg.headers else None
        if self._sink is None or origin == self.node_id:
            return  # the kicking node closed its own connections already
        try:
            kick = _KICK_DECODER.decode(msg.data)
        except msgspec.DecodeError:
            kick = None
        if kick is None or len(kick.reason.encode()) > _MAX_REASON_BYTES:
            log.warning("pachinko.nats_bad_kick", size=len(msg.data))
            return
        closed = self._sink.kick_local(kick.identity, kick.room, kick.reason)
        log.info("pachinko.kick_received", closed=closed, room_only=kick.room is not None)


_MAX_REASON_CHARS: Final = 123


class Kick(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A kick on the wire: close the connections of ``identity`` (in ``room``)."""

    identity: Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]
    room: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ROOM_NAME_CHARS)] | None = None
    reason: Annotated[str, msgspec.Meta(max_length=_MAX_REASON_CHARS)] = "kicked"


#: A close frame's reason is at most 123 bytes (RFC 6455 section 5.5).
_MAX_REASON_BYTES: Final = 123
_KICK_ENCODER: Final = msgspec.json.Encoder()
_KICK_DECODER: Final = msgspec.json.Decoder(Kick)

#: The connection a direct message is for.
_TARGET_HEADER: Final = "Pachinko-Target"


def _is_token(text: str) -> bool:
    return bool(text) and all(c.isalnum() or c in "_-" for c in text) and text.isascii()


async def _unsubscribe(sub: Subscription) -> None:
    try:
        await sub.unsubscribe()
    except (*UNAVAILABLE, nats.errors.BadSubscriptionError):
        pass
