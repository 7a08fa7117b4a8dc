"""Durable rooms on JetStream: one stream stores every room, and republishes what it stores.

* **Storing.** A durable message of ``room`` is published through JetStream to
  ``<prefix>._h.<room-token>`` (:meth:`Subjects.stored
  <falcon_pachinko.subjects.Subjects.stored>`), which one stream captures
  (``<prefix>._h.*``). :meth:`NatsHistory.append` returns once JetStream has
  acknowledged it: stored on disk (or in memory, or on a quorum of replicas).
* **Delivering.** The stream *republishes* every message it stores to the room's
  own subject, ``<prefix>.<room-token>``, with the original headers plus
  ``Nats-Sequence`` (its ``seq``) and ``Nats-Last-Sequence`` (the room's previous
  ``seq``, 0 if none): the subscription that carries the room's live traffic
  (:class:`~falcon_pachinko.backends.nats.NatsBroker`) delivers it, with its
  position, exactly as stored. Storing and delivering are one step, so no
  process can see a durable message that is not stored, and no stored message
  goes undelivered because its publisher died in between. The republished copy
  travels as core NATS traffic does (at most once): a process cut off meanwhile
  misses it, and tells from the next message's ``prev`` that it did.
* **Positions.** ``seq`` is the stream sequence (shared by every room: a room's
  sequence has gaps), ``id`` is the message's ``Pachinko-Id`` header (or, for a
  message sent with an idempotency key, its ``Nats-Msg-Id``), and
  ``ts`` is the ``Pachinko-Time`` header: the publisher's wall clock, in integer
  milliseconds, when it appended. It travels with the message, so the live copy
  and every later read report the same time. (JetStream's own store time has
  nanoseconds and a different clock; it is not used.) :func:`parse_position` is
  the one reading of these headers, for reads and for live traffic alike.
* **Idempotent sends.** With an idempotency ``key``, the message id is a digest
  of (room, key): JetStream deduplicates by id across the whole stream within
  the dedup window, so the room is part of it. A duplicate is acknowledged with
  the first message's ``seq``, is not stored and is not republished; the first
  message's position is read back and returned. Without a key there is nothing
  to deduplicate: the message carries no ``Nats-Msg-Id`` (JetStream keeps no
  dedup entry for it), and its id, in ``Pachinko-Id``, is this history's random
  prefix and a counter.
* **Acknowledgements.** An append is a plain publish whose reply subject is on
  this history's own wildcard inbox (the one its reads use); the acknowledgement
  is routed back by token and decoded once. Concurrent appends each wait for
  their own, with no task and no subscription per append.
* **Retention.** Each room keeps its last ``max_messages_per_room`` messages; the
  stream drops any older than ``max_age_s`` and, beyond ``max_bytes``, the oldest
  of all rooms. All three discard the oldest first, which :meth:`History.has
  <falcon_pachinko.backends.base.History.has>` relies on.

Reads use JetStream's *direct get* (``allow_direct``): a request to
``$JS.API.DIRECT.GET.<stream>`` answered by the stream itself, no consumer
involved. A *batch* direct get (``{"seq": s, "next_by_subj": subject, "batch":
n}``, nats-server 2.11+) streams up to ``n`` messages of one room from ``s`` on,
then an end-of-batch status whose ``Nats-Num-Pending`` header counts the room's
messages left after them. nats-py does not wrap batches: replies come on one
wildcard inbox of this history's own, routed by token.

Measured with ``python -m benchmarks.history`` (loopback, nats-server 2.15.1,
nats-py 2.16, CPython 3.11 on uvloop, 2 CPUs; ten rooms of 1000 messages of 250
bytes interleaved at random in one file stream; medians of 30 runs, which varied
by up to half between runs on that machine, the ratios much less):

======================================================  ========
read                                                    median
======================================================  ========
50 after a cursor: one batch direct get (what is used)    3.0 ms
  50 single direct gets, one after the other              14.7 ms
  an ephemeral pull consumer                               4.9 ms
  an ordered push consumer                                15.8 ms
last 50: counted seek + one batch (what is used)          3.8 ms
  the whole room (1000) in one batch, keeping 50          45.5 ms
  50 ``multi_last`` direct gets stepping back             15.1 ms
last 50 before a seq: counted seek + one batch             5.2 ms
  the whole room in one batch, keeping those before       38.0 ms
one message by ``seq`` (``has``)                           0.2 ms
======================================================  ========

So every read is a batch direct get. A consumer costs its creation and deletion
on top of the read. Reading a message costs about 25 to 45 µs, mostly decoding it
in nats-py, against 0.2 to 0.5 ms per round trip: reading fewer messages matters
more than saving a round trip.

*The last N before X* has no backward API. Reading the room forward and keeping
the last N costs the whole room (up to ``max_messages_per_room`` messages, about
40 ms at 1000). Instead :meth:`NatsHistory.latest` counts: a one-message batch from
``s`` returns the first message of the room at or after ``s`` and, through
``Nats-Num-Pending``, how many of the room's messages lie at or after it. With
the counts at the room's first message and at the upper bound, it interpolates
a ``seq`` from which between N+1 and 2N+1 messages (N+33 for N under 32) lie
below the bound (bisecting where the room's traffic is uneven; a few probes of
0.5 ms each), and
reads from there: four direct gets in all for the last 50 above, two of them
concurrent. Counts only choose where to start: if they were stale (a
concurrent eviction), it reads the room from its first message, so the page is
always exact. When at most N+33 messages lie below the bound, it reads them at once.

Limits: with ``replicas > 1``, direct gets are answered by any replica, and a
replica may lag the leader by a few milliseconds: a read right after an append
may miss it, and :meth:`NatsHistory.has` may call a message just stored absent.
Appends always go to the leader.

Failures: nothing durable is ever buffered. While the client is disconnected,
:meth:`NatsHistory.append` and every read raise
:class:`~falcon_pachinko.BackendError` at once; an append whose acknowledgement
does not come within ``request_timeout_s`` raises too, though JetStream may have
stored it (a retry with the same ``key`` is then a duplicate).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import math
import re
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any, Final, Literal, NamedTuple

import msgspec
import nats.errors
import nats.js.errors
import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.api import DiscardPolicy, RePublish, RetentionPolicy, StorageType, StreamConfig

from ...errors import BackendError
from ...history import Appended, Page, Position, Stored
from ...subjects import Subjects
from ..base import History
from .plumbing import EXCLUDE_HEADER, ORIGIN_HEADER, UNAVAILABLE

__all__ = [
    "ID_HEADER",
    "MIN_SERVER_VERSION",
    "MSG_ID_HEADER",
    "TIME_HEADER",
    "NatsHistory",
    "NatsHistoryConfig",
    "check_server_version",
    "default_stream_name",
    "message_id",
    "parse_position",
    "parse_prev",
]

log = structlog.get_logger(__name__)

#: When the message was appended: the publisher's wall clock, integer ms since the epoch.
TIME_HEADER: Final = "Pachinko-Time"
#: The id of a message sent with an idempotency key; JetStream deduplicates on it
#: within the dedup window.
MSG_ID_HEADER: Final = "Nats-Msg-Id"
#: The id of a message sent without a key (nothing for JetStream to deduplicate).
ID_HEADER: Final = "Pachinko-Id"
#: Set by JetStream on republished and read messages: the stream sequence.
SEQUENCE_HEADER: Final = "Nats-Sequence"
#: Set by JetStream on republished messages: the previous sequence of the same subject.
LAST_SEQUENCE_HEADER: Final = "Nats-Last-Sequence"
_SUBJECT_HEADER: Final = "Nats-Subject"
_NUM_PENDING_HEADER: Final = "Nats-Num-Pending"
_STATUS_HEADER: Final = "Status"

_GiB: Final = 1 << 30
#: JetStream's bound on stream names.
_MAX_STREAM_NAME: Final = 255
_STREAM_NAME: Final = re.compile(r"[A-Za-z0-9_-]+")
#: "stream name already in use with a different configuration".
_STREAM_NAME_IN_USE: Final = 10058
#: Messages read beyond the N+1 a page needs that are not worth another probe.
_SEEK_SLACK: Final = 32
#: Probes a seek makes before it reads from the best start found so far.
_MAX_PROBES: Final = 8
#: Messages asked for per batch when nothing better is known.
_CHUNK: Final = 1024


#: The oldest nats-server whose JetStream answers batch direct gets (ADR-31).
MIN_SERVER_VERSION: Final = (2, 11)


def check_server_version(version: str) -> None:
    """Refuse a nats-server older than :data:`MIN_SERVER_VERSION`.

    ``version`` is what the server announced (``"2.11.4"``); one that cannot be
    read is let through (the first batched read would fail clearly instead).

    Raises:
        BackendError: The server is too old for durable rooms.
    """
    parts = version.split("-", 1)[0].split(".")
    try:
        found = (int(parts[0]), int(parts[1]))
    except (IndexError, ValueError):
        return
    if found < MIN_SERVER_VERSION and found != (0, 0):
        need = ".".join(map(str, MIN_SERVER_VERSION))
        raise BackendError(
            f"durable rooms need nats-server {need} or newer (batched direct reads); "
            f"the server is {version}"
        )


def _announced_version(nc: Client) -> str:
    version = nc.connected_server_version
    try:
        return f"{version.major}.{version.minor}.{version.patch}"
    except ValueError:  # not semantic versioning: let it through
        return ""


def default_stream_name(prefix: str) -> str:
    """The history stream's name for a subject prefix: ``chat`` -> ``CHAT_HISTORY``."""
    return prefix.upper().replace(".", "_") + "_HISTORY"


def _check_stream_name(name: str) -> str:
    if len(name) > _MAX_STREAM_NAME or _STREAM_NAME.fullmatch(name) is None:
        raise ValueError(
            f"a stream name is 1 to {_MAX_STREAM_NAME} letters, digits, '_' or '-': {name!r}"
        )
    return name


class NatsHistoryConfig(msgspec.Struct, frozen=True, kw_only=True):
    """The JetStream stream that stores durable rooms.

    Every gateway of a deployment must use the same configuration: each one
    updates the stream to its own at start.

    Attributes:
        stream: The stream's name; by default derived from the subject prefix
            (``chat`` -> ``CHAT_HISTORY``).
        max_messages_per_room: Messages kept per room (the oldest go first).
        max_age_s: Messages older than this are discarded.
        max_bytes: Bound on the whole store, all rooms together (the oldest go first).
        dedup_window_s: How long an idempotency key is remembered.
        replicas: Copies of the stream in a JetStream cluster (1 to 5).
        storage: ``"file"`` (survives restarts) or ``"memory"``.
        legacy_ids: Give every message its id in ``Nats-Msg-Id``, keyed or not, as
            processes that predate ``Pachinko-Id`` read it: for a rolling update
            from such a version (then unkeyed messages cost JetStream a dedup
            entry each, as they did). Processes of this version read both.
    """

    stream: str | None = None
    #: Enough for a client that was away a while to resume; small enough to read whole.
    max_messages_per_room: int = 1000
    #: A week: a client back after a weekend still resumes.
    max_age_s: float = 7 * 86400
    #: Bounds the disk a busy deployment can take; the oldest messages give way.
    max_bytes: int = _GiB
    #: Covers a client's retries across a reconnect, as JetStream's own default does.
    dedup_window_s: float = 120.0
    #: One copy suits a single server; a JetStream cluster wants 3.
    replicas: int = 1
    #: Durable rooms are meant to survive a restart of NATS.
    storage: Literal["file", "memory"] = "file"
    #: Only while processes that read ids from ``Nats-Msg-Id`` alone still run.
    legacy_ids: bool = False

    def __post_init__(self) -> None:
        if self.stream is not None:
            _check_stream_name(self.stream)
        if not _is_int(self.max_messages_per_room) or self.max_messages_per_room < 1:
            raise ValueError("max_messages_per_room must be a positive integer")
        if not _is_int(self.max_bytes) or self.max_bytes < 1:
            raise ValueError("max_bytes must be a positive integer")
        if not _is_int(self.replicas) or not 1 <= self.replicas <= 5:
            raise ValueError("replicas must be an integer from 1 to 5")
        if not _is_seconds(self.max_age_s) or self.max_age_s < 0.1:
            raise ValueError("max_age_s must be a finite number of seconds, at least 0.1")
        if not _is_seconds(self.dedup_window_s) or self.dedup_window_s < 0.1:
            raise ValueError("dedup_window_s must be a finite number of seconds, at least 0.1")
        if self.dedup_window_s > self.max_age_s:
            raise ValueError("dedup_window_s must not exceed max_age_s (JetStream requires it)")
        if self.storage not in ("file", "memory"):
            raise ValueError("storage must be 'file' or 'memory'")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_seconds(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def message_id(room: str, key: str) -> str:
    """The id of the message sent to ``room`` with idempotency key ``key``.

    JetStream deduplicates across the whole stream, so the room is part of it: the
    same key in two rooms names two messages. 32 hex digits (an unkeyed message's
    id is a random prefix, ``-`` and a counter: the two never meet).
    """
    digest = hashlib.blake2b(digest_size=16, person=b"pachinko.msg-id")
    room_bytes = room.encode("utf-8", "surrogatepass")
    digest.update(len(room_bytes).to_bytes(4, "big"))
    digest.update(room_bytes)
    digest.update(key.encode("utf-8", "surrogatepass"))
    return digest.hexdigest()


def _uint(text: str | None) -> int | None:
    if text is None or not text.isascii() or not text.isdigit():
        return None
    return int(text)


def parse_position(headers: Mapping[str, str] | None) -> Position | None:
    """The position a stored message's headers give it, or ``None`` if they do not.

    ``seq`` is ``Nats-Sequence`` (set by JetStream on republished and read
    messages), ``id`` is ``Pachinko-Id``, or ``Nats-Msg-Id`` for a keyed
    message, and ``ts`` is ``Pachinko-Time`` (set by :meth:`NatsHistory.append`).
    Never raises.
    """
    if not headers:
        return None
    seq = _uint(headers.get(SEQUENCE_HEADER))
    ts = _uint(headers.get(TIME_HEADER))
    message = headers.get(ID_HEADER) or headers.get(MSG_ID_HEADER)
    if seq is None or seq < 1 or ts is None or not message:
        return None
    return Position(seq, message, ts)


def parse_prev(headers: Mapping[str, str], seq: int) -> int | None:
    """The ``seq`` of the room's previous message, from a republished message's headers.

    ``None`` when it is missing or makes no sense (not below ``seq``). Never raises.
    """
    prev = _uint(headers.get(LAST_SEQUENCE_HEADER))
    if prev is None or prev >= seq:
        return None
    return prev


class _ApiError(msgspec.Struct):
    code: int = 0
    err_code: int = 0
    description: str = ""


class _PubAck(msgspec.Struct):
    """JetStream's answer to a publish into a stream (the fields this history reads)."""

    seq: int = 0
    duplicate: bool = False
    error: _ApiError | None = None


_PUB_ACK: Final = msgspec.json.Decoder(_PubAck)


class _Reply(NamedTuple):
    """What one direct-get request brought back."""

    messages: list[Msg]
    #: The room's messages after the last one returned (batches only).
    pending: int = 0


class NatsHistory(History):
    """Durable rooms on one JetStream stream (see the module docstring).

    Args:
        client: A NATS client, connected before use (the caller owns it).
        subjects: The subject naming shared by every process.
        node_id: This process's id (the ``Pachinko-Origin`` of what it appends).
        config: The stream; the defaults when ``None``.
        request_timeout_s: Bound on each operation: an append's acknowledgement,
            a read, the stream's creation.
    """

    def __init__(
        self,
        client: Client,
        subjects: Subjects,
        node_id: str,
        config: NatsHistoryConfig | None = None,
        *,
        request_timeout_s: float = 2.0,
    ) -> None:
        if request_timeout_s <= 0:
            raise ValueError("request_timeout_s must be positive")
        self.subjects: Final = subjects
        self.node_id: Final = node_id
        self.config: Final = config if config is not None else NatsHistoryConfig()
        #: The stream's name.
        self.stream: Final = _check_stream_name(
            self.config.stream or default_stream_name(subjects.prefix)
        )
        self._nc = client
        self._js = client.jetstream(timeout=request_timeout_s)
        self._request_timeout_s = request_timeout_s
        self._direct_get: Final = f"$JS.API.DIRECT.GET.{self.stream}"
        self._inbox: str | None = None
        self._inbox_sub: Subscription | None = None
        self._inbox_lock = asyncio.Lock()
        self._tokens = itertools.count()
        self._waiting: dict[str, asyncio.Queue[Msg | None]] = {}
        self._acks: dict[str, asyncio.Future[Msg | None]] = {}
        #: Unkeyed ids: unique to this history object, then a counter.
        self._id_prefix: Final = uuid.uuid4().hex[:16] + "-"
        self._ids = itertools.count(1)
        self._stopped = False

    # -- lifecycle ---------------------------------------------------------------

    def stream_config(self) -> StreamConfig:
        """The stream exactly as :meth:`start` creates or updates it."""
        config = self.config
        return StreamConfig(
            name=self.stream,
            subjects=[self.subjects.stored_all],
            retention=RetentionPolicy.LIMITS,
            discard=DiscardPolicy.OLD,
            max_msgs_per_subject=config.max_messages_per_room,
            max_age=config.max_age_s,
            max_bytes=config.max_bytes,
            duplicate_window=config.dedup_window_s,
            num_replicas=config.replicas,
            storage=StorageType(config.storage),
            allow_direct=True,
            republish=RePublish(
                src=self.subjects.stored_all, dest=f"{self.subjects.prefix}.{{{{wildcard(1)}}}}"
            ),
        )

    async def start(self) -> None:
        """Create the stream, or update it to this configuration. Idempotent.

        Several processes may start at once: creating a stream that exists with
        the same configuration succeeds, and one that exists with another is
        updated.

        Raises:
            BackendError: JetStream is not enabled or not reachable, or refused
                the configuration.
        """
        config = self.stream_config()
        self._stopped = False
        if not self._nc.is_connected:
            raise BackendError("NATS is not connected; cannot set up the history stream")
        check_server_version(_announced_version(self._nc))
        try:
            async with asyncio.timeout(self._request_timeout_s):
                try:
                    await self._js.add_stream(config)
                except nats.js.errors.BadRequestError as exc:
                    if exc.err_code != _STREAM_NAME_IN_USE:
                        raise
                    await self._js.update_stream(config)
                    log.info("pachinko.history_stream_updated", stream=self.stream)
        except (nats.js.errors.ServiceUnavailableError, nats.errors.NoRespondersError) as exc:
            raise BackendError(
                "JetStream is not enabled on the NATS server: durable rooms need it "
                "(start nats-server with -js)"
            ) from exc
        except nats.js.errors.APIError as exc:
            raise BackendError(
                f"JetStream refused the history stream {self.stream}: {exc.description}"
            ) from exc
        except (TimeoutError, *UNAVAILABLE, nats.errors.Error) as exc:
            raise BackendError(
                f"JetStream did not set up the history stream {self.stream} "
                f"within {self._request_timeout_s}s"
            ) from exc

    async def stop(self) -> None:
        self._stopped = True
        sub, self._inbox_sub = self._inbox_sub, None
        self._inbox = None
        for queue in self._waiting.values():
            queue.put_nowait(None)
        for future in self._acks.values():
            if not future.done():
                future.set_result(None)
        if sub is not None:
            with contextlib.suppress(*UNAVAILABLE, nats.errors.BadSubscriptionError):
                await sub.unsubscribe()

    # -- storing -----------------------------------------------------------------

    async def append(
        self, room: str, data: bytes, *, exclude: str | None = None, key: str | None = None
    ) -> Appended:
        subject = self.subjects.stored(room)
        if not self._nc.is_connected:
            # Never left in the client's reconnect buffer: the caller would be told
            # it failed, and then it would be stored.
            raise BackendError("NATS is not connected; the message was not stored")
        ts = time.time_ns() // 1_000_000
        headers = {ORIGIN_HEADER: self.node_id, TIME_HEADER: str(ts)}
        if key is not None:
            msg_id = headers[MSG_ID_HEADER] = message_id(room, key)
        elif self.config.legacy_ids:
            msg_id = headers[MSG_ID_HEADER] = f"{self._id_prefix}{next(self._ids):x}"
        else:
            msg_id = headers[ID_HEADER] = f"{self._id_prefix}{next(self._ids):x}"
        if exclude is not None:
            headers[EXCLUDE_HEADER] = exclude
        ack = await self._publish(subject, data, headers)
        if ack.duplicate:
            return Appended(await self._original(ack.seq, msg_id), duplicate=True)
        return Appended(Position(ack.seq, msg_id, ts))

    async def _publish(self, subject: str, data: bytes, headers: dict[str, str]) -> _PubAck:
        """Publish into the stream; JetStream's acknowledgement, or ``BackendError``."""
        not_acknowledged = (
            "JetStream did not acknowledge the message; it may have been stored "
            "(a retry with the same key is a duplicate)"
        )
        if self._stopped:
            raise BackendError("the history was stopped; the message was not stored")
        token = str(next(self._tokens))
        future: asyncio.Future[Msg | None] = asyncio.get_running_loop().create_future()
        self._acks[token] = future
        try:
            async with asyncio.timeout(self._request_timeout_s):
                inbox = await self._reply_inbox()
                await self._nc.publish(subject, data, reply=f"{inbox}.{token}", headers=headers)
                msg = await future
        except nats.errors.MaxPayloadError as exc:
            raise BackendError("the message is larger than NATS accepts; not stored") from exc
        except (TimeoutError, *UNAVAILABLE, nats.errors.Error) as exc:
            raise BackendError(not_acknowledged) from exc
        finally:
            del self._acks[token]
        if msg is None:
            raise BackendError(not_acknowledged)
        status = msg.headers.get(_STATUS_HEADER) if msg.headers else None
        if status == "503":  # no responders: nothing stores the subject
            raise BackendError(
                f"no JetStream stream stores {subject}: is JetStream enabled and the "
                "history started? The message was not stored"
            )
        if status is not None:
            description = (msg.headers or {}).get("Description", "")
            raise BackendError(f"JetStream refused the message: {status} {description}".strip())
        try:
            ack = _PUB_ACK.decode(msg.data)
        except msgspec.DecodeError as exc:
            raise BackendError(not_acknowledged) from exc
        if ack.error is not None:
            raise BackendError(f"JetStream refused the message: {ack.error.description}")
        if ack.seq < 1:
            raise BackendError(not_acknowledged)
        return ack

    async def _original(self, seq: int, msg_id: str) -> Position:
        async with self._bounded("read the original of a duplicate"):
            reply = await self._ask({"seq": seq})
        position = parse_position(reply.messages[0].headers) if reply.messages else None
        if position is None or position.id != msg_id:
            # Discarded since (or not ours): the id is the key's, the time unknown.
            log.warning("pachinko.history_original_unreadable", stream=self.stream, seq=seq)
            return Position(seq, msg_id, time.time_ns() // 1_000_000)
        return position

    # -- reading -----------------------------------------------------------------

    async def after(self, room: str, after: int, *, limit: int) -> Page:
        _check_limit(limit)
        subject = self.subjects.stored(room)
        async with self._bounded("read the history"):
            messages, more = await self._read(subject, max(after + 1, 1), limit=limit)
        return Page(messages, more)

    async def latest(self, room: str, *, limit: int, before: int | None = None) -> Page:
        _check_limit(limit)
        subject = self.subjects.stored(room)
        if before is not None and before <= 1:
            return Page([], False)
        async with self._bounded("read the history"):
            probes = (
                asyncio.ensure_future(self._probe(subject, 1)),
                asyncio.ensure_future(self._upper(subject, before)),
            )
            try:
                first, upper = await asyncio.gather(*probes)
            finally:
                for probe in probes:  # one failed: the other must not linger
                    probe.cancel()
            if first is None or upper is None:
                return Page([], False)
            first_seq, first_count = first
            upper_seq, upper_count = upper
            below = first_count - upper_count  # messages below the bound, as counted
            if below <= 0:
                return Page([], False)
            need = limit + 1  # one more than the page, to tell whether older ones exist
            start = first_seq
            if below > need + _SEEK_SLACK:
                start, below = await self._seek(
                    subject, first, upper, need=need, slack=max(limit, _SEEK_SLACK)
                )
            messages, _ = await self._read(subject, start, upper=upper_seq, batch=below + 1)
            if len(messages) < need and start > first_seq:
                # The counts were stale (older messages were discarded meanwhile):
                # read the room from its first message instead.
                start = first_seq
                messages, _ = await self._read(subject, start, upper=upper_seq)
        more = len(messages) > limit or start > first_seq
        return Page(messages[-limit:], more)

    async def has(self, room: str, seq: int) -> bool:
        subject = self.subjects.stored(room)
        if seq < 1:
            return False
        async with self._bounded("read the history"):
            reply = await self._ask({"seq": seq})
        if not reply.messages:
            return False
        headers = reply.messages[0].headers
        return headers is not None and headers.get(_SUBJECT_HEADER) == subject

    async def last_seq(self, room: str) -> int | None:
        async with self._bounded("read the history"):
            reply = await self._ask(None, last_of=self.subjects.stored(room))
        if not reply.messages:
            return None
        return _uint((reply.messages[0].headers or {}).get(SEQUENCE_HEADER))

    async def _upper(self, subject: str, before: int | None) -> tuple[int, int] | None:
        """The bound of a backward read (exclusive) and how many messages lie at or
        beyond it; ``None`` when the room is empty."""
        if before is not None:
            at_or_after = await self._probe(subject, before)
            return before, 0 if at_or_after is None else at_or_after[1]
        # The room's last message now: messages appended during the read stay out.
        reply = await self._ask(None, last_of=subject)
        if not reply.messages:
            return None
        last = _uint((reply.messages[0].headers or {}).get(SEQUENCE_HEADER))
        return None if last is None else (last + 1, 0)

    async def _probe(self, subject: str, seq: int) -> tuple[int, int] | None:
        """The room's first message at or after ``seq``: its ``seq``, and how many of
        the room's messages lie at or after it. ``None`` if there is none."""
        reply = await self._ask({"seq": seq, "next_by_subj": subject, "batch": 1})
        if not reply.messages:
            return None
        found = _uint((reply.messages[0].headers or {}).get(SEQUENCE_HEADER))
        if found is None:
            raise BackendError("JetStream sent a stored message without its sequence")
        return found, 1 + reply.pending

    async def _seek(
        self,
        subject: str,
        first: tuple[int, int],
        upper: tuple[int, int],
        *,
        need: int,
        slack: int,
    ) -> tuple[int, int]:
        """A ``seq`` from which between ``need`` and ``need + slack`` of the room's
        messages lie below the bound, and how many do (as counted).

        ``first`` is the room's first message and its count, ``upper`` the bound
        and the count at it (see :meth:`_probe`). Without such a ``seq`` after
        ``_MAX_PROBES`` probes, the closest start found with more than enough.
        """
        (lo, lo_count), (hi, hi_count) = first, upper
        base = hi_count  # counted from the bound on: not part of the page
        target = base + need + slack // 2
        for probe in range(_MAX_PROBES):
            if hi - lo <= 1:
                break
            if probe % 2 == 0:  # interpolate where the count should reach the target...
                share = (lo_count - target) / (lo_count - hi_count)
                guess = lo + max(1, min(hi - lo - 1, round((hi - lo) * share)))
            else:  # ...and bisect in between, should the traffic be uneven
                guess = (lo + hi) // 2
            found = await self._probe(subject, guess)
            if found is None:
                if base > 0:
                    break  # the counts were stale: start from what is known
                hi, hi_count = guess, 0  # beyond the room's last message
                continue
            seq, count = found
            if count - base > need + slack:
                lo, lo_count = seq, count
            elif count - base >= need:
                return seq, count - base
            else:
                hi, hi_count = guess, count
        return lo, lo_count - base

    async def _read(
        self,
        subject: str,
        start: int,
        *,
        upper: int | None = None,
        limit: int | None = None,
        batch: int = _CHUNK,
    ) -> tuple[list[Stored], bool]:
        """The room's messages from ``start`` on, below ``upper``, at most ``limit``;
        and whether more of the room's messages follow."""
        out: list[Stored] = []
        seq = start
        while True:
            want = batch if limit is None else min(batch, limit - len(out))
            reply = await self._ask({"seq": seq, "next_by_subj": subject, "batch": want})
            for msg in reply.messages:
                headers = msg.headers or {}
                seq = _uint(headers.get(SEQUENCE_HEADER)) or seq
                if upper is not None and seq >= upper:
                    return out, True
                position = parse_position(headers)
                if position is None:
                    log.warning("pachinko.history_bad_message", stream=self.stream, seq=seq)
                    continue
                out.append(Stored(position, msg.data, headers.get(EXCLUDE_HEADER)))
            if not reply.messages or reply.pending == 0:
                return out, False
            if limit is not None and len(out) >= limit:
                return out, True
            seq += 1

    # -- direct gets -------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _bounded(self, what: str) -> AsyncIterator[None]:
        """Fail at once while disconnected; bound the whole operation."""
        if not self._nc.is_connected:
            raise BackendError(f"NATS is not connected; cannot {what}")
        try:
            async with asyncio.timeout(self._request_timeout_s):
                yield
        except TimeoutError as exc:
            raise BackendError(
                f"JetStream did not answer within {self._request_timeout_s}s; cannot {what}"
            ) from exc
        except (*UNAVAILABLE, nats.errors.Error) as exc:
            raise BackendError(f"NATS is unavailable; cannot {what}") from exc

    async def _ask(self, request: dict[str, Any] | None, *, last_of: str = "") -> _Reply:
        """One direct get: a single message (``{"seq": s}``), a batch (``"batch"``
        set), or the last message of subject ``last_of``. Not found -> no messages."""
        if self._stopped:
            raise BackendError("the history was stopped")
        inbox = await self._reply_inbox()
        token = str(next(self._tokens))
        queue: asyncio.Queue[Msg | None] = asyncio.Queue()
        self._waiting[token] = queue
        try:
            if request is None:
                subject, payload = f"{self._direct_get}.{last_of}", b""
            else:
                subject, payload = self._direct_get, _ENCODER.encode(request)
            await self._nc.publish(subject, payload, reply=f"{inbox}.{token}")
            batch = request is not None and "batch" in request
            messages: list[Msg] = []
            while True:
                msg = await queue.get()
                if msg is None:
                    raise BackendError("the history was stopped")
                status = msg.headers.get(_STATUS_HEADER) if msg.headers else None
                if status is None:
                    messages.append(msg)
                    if not batch:
                        return _Reply(messages)
                elif status == "204":  # end of batch
                    assert msg.headers is not None
                    return _Reply(messages, _uint(msg.headers.get(_NUM_PENDING_HEADER)) or 0)
                elif status == "404":
                    return _Reply(messages)
                else:
                    self._refused(status, msg)
        finally:
            del self._waiting[token]

    def _refused(self, status: str, msg: Msg) -> None:
        if status == "503":
            raise BackendError(
                f"no JetStream stream {self.stream} answers reads: is JetStream enabled "
                "and the history started?"
            )
        description = (msg.headers or {}).get("Description", "")
        raise BackendError(f"JetStream refused a history read: {status} {description}".strip())

    async def _reply_inbox(self) -> str:
        """This history's reply inbox: one wildcard subscription, replies routed by token."""
        if self._inbox is not None:
            return self._inbox
        async with self._inbox_lock:
            if self._inbox is None:
                inbox = self._nc.new_inbox()
                self._inbox_sub = await self._nc.subscribe(f"{inbox}.*", cb=self._on_reply)
                self._inbox = inbox
        return self._inbox

    async def _on_reply(self, msg: Msg) -> None:
        token = msg.subject.rpartition(".")[2]
        queue = self._waiting.get(token)
        if queue is not None:
            queue.put_nowait(msg)
            return
        future = self._acks.get(token)
        if future is not None and not future.done():
            future.set_result(msg)


def _check_limit(limit: int) -> None:
    if not _is_int(limit) or limit < 1:
        raise ValueError("limit must be a positive integer")


_ENCODER: Final = msgspec.json.Encoder()
