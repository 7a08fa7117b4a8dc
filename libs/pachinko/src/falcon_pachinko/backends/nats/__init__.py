"""The NATS backend: room traffic, presence and durable rooms across processes and machines.

``NatsBackend`` pairs a :class:`NatsBroker` (room traffic, direct messages) and
a :class:`NatsPresence` (membership reports, questions to the directory) on one
NATS client, which it opens itself or is given; with a
:class:`NatsHistoryConfig`, a :class:`NatsHistory` on the same client keeps
durable rooms on JetStream (stored, then republished to the room's subject, where
the broker delivers them with their position).

Failures: the client reconnects forever by default and nats-py restores every
subscription on reconnect. Live-only publishes made while disconnected wait in
the client's bounded buffer (``pending_size``) and go out on reconnect; once the
buffer is full a publish raises :class:`~falcon_pachinko.BackendError`. Durable
publishes are never buffered: while disconnected, an append (and a history read)
raises :class:`~falcon_pachinko.BackendError` at once, so nothing a caller was
told failed is stored later. Membership deltas lost on the way are detected by
sequence and repaired with a snapshot; durable messages a process missed while
cut off are detected by their ``prev`` and read back from the history.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import nats
import nats.errors
import structlog
from nats.aio.client import Client

from ...errors import BackendError
from ...subjects import Subjects
from ..base import Backend, BackendSink
from .broker import NatsBroker, new_node_id
from .history import NatsHistory, NatsHistoryConfig
from .lease import KvLease
from .plumbing import (
    EXCLUDE_HEADER,
    ORIGIN_HEADER,
    close_client,
    flush_sent,
    log_error,
    log_event,
)
from .presence import NatsPresence
from .probe import NatsProbe

__all__ = [
    "EXCLUDE_HEADER",
    "ORIGIN_HEADER",
    "KvLease",
    "NatsBackend",
    "NatsBroker",
    "NatsHistory",
    "NatsHistoryConfig",
    "NatsPresence",
    "NatsProbe",
    "flush_sent",
    "new_node_id",
]

log = structlog.get_logger(__name__)


class NatsBackend(Backend):
    """Carries room traffic and presence over NATS, and durable rooms on JetStream.

    Args:
        servers: NATS server URL(s); used when this backend opens its own connection.
        subject_prefix: First token(s) of every subject (``chat`` -> ``chat.<room>``).
        client: An already connected ``nats.aio.client.Client`` to use instead;
            the caller then owns it (connect options, callbacks, closing).
        presence: Report membership and heartbeats to the directory. A process
            that only broadcasts and asks questions (an announcer) passes ``False``.
        heartbeat_interval_s: Seconds between heartbeats; the directory's TTL must
            be a few times longer.
        request_timeout_s: Bound on directory questions, direct messages, durable
            appends (JetStream's acknowledgement) and history reads.
        connect_options: Extra ``nats.connect`` options for an owned connection.
        history: Keep durable rooms in this JetStream stream (created or updated
            at start; the server must run JetStream). ``None``: no history, and
            durable-room operations raise
            :class:`~falcon_pachinko.errors.HistoryUnavailable`.
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
        history: NatsHistoryConfig | None = None,
    ) -> None:
        if heartbeat_interval_s <= 0 or request_timeout_s <= 0:
            raise ValueError("intervals and timeouts must be positive")
        self.subjects: Final = Subjects(subject_prefix)
        self.node_id: Final = new_node_id()
        self._servers = servers
        self._owns_client = client is None
        self._connect_options = dict(connect_options or {})
        self._request_timeout_s = request_timeout_s
        # An owned client is created now and connected at start, so the broker and
        # presence hold the one client object from the beginning.
        self._nc: Client = client if client is not None else Client()
        super().__init__(
            NatsBroker(self._nc, self.subjects, self.node_id, request_timeout_s=request_timeout_s),
            NatsPresence(
                self._nc,
                self.subjects,
                self.node_id,
                report=presence,
                heartbeat_interval_s=heartbeat_interval_s,
                request_timeout_s=request_timeout_s,
            ),
            None
            if history is None
            else NatsHistory(
                self._nc,
                self.subjects,
                self.node_id,
                history,
                request_timeout_s=request_timeout_s,
            ),
        )

    @property
    def client(self) -> Client:
        """The NATS client."""
        return self._nc

    async def start(self, sink: BackendSink) -> None:
        if self._owns_client and not self._nc.is_connected:
            await self._connect()
        await super().start(sink)
        await flush_sent(self._nc, self._request_timeout_s)
        log.info("pachinko.nats_started", node=self.node_id)

    async def stop(self) -> None:
        if self._nc.is_closed:
            return
        await super().stop()
        if self._owns_client:
            await close_client(self._nc, self._request_timeout_s)
        else:
            await flush_sent(self._nc, self._request_timeout_s)

    async def _connect(self) -> None:
        options: dict[str, Any] = {
            "servers": self._servers,
            "name": f"pachinko-{self.node_id[:8]}",
            "max_reconnect_attempts": -1,  # keep trying: NATS restarts are survivable
            "reconnect_time_wait": 0.5,
            "connect_timeout": 2,
            "error_cb": log_error,
            "disconnected_cb": log_event("pachinko.nats_disconnected"),
            "reconnected_cb": log_event("pachinko.nats_reconnected"),
        }
        options.update(self._connect_options)
        try:
            await self._nc.connect(**options)
        except (OSError, nats.errors.Error) as exc:
            raise BackendError(f"cannot connect to NATS at {self._servers}") from exc
