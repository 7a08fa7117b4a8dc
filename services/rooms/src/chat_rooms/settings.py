"""The rooms service's configuration, read once from ``CHAT_*`` environment variables."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated

from msgspec import Meta

from chat_runtime.settings import CommonSettings, PositiveFloat
from chat_runtime.settings import load_settings as _load

__all__ = ["Settings", "load_settings"]


class Settings(CommonSettings, frozen=True, kw_only=True):
    """Rooms service settings. Field ``x`` is read from ``CHAT_X``."""

    #: A gateway silent for this long is declared dead and its users announced as
    #: left. Must exceed a few gateway heartbeat intervals (1.5 s by default); 5 s
    #: keeps a dead gateway's users (and typists: the gateways' CHAT_TYPING_TTL_S is
    #: 6 s) announced within 5.5 s of the crash.
    presence_ttl_s: PositiveFloat = 5.0
    #: How often dead gateways are looked for; adds at most this much to the TTL
    #: and to the grace.
    presence_check_interval_s: PositiveFloat = 0.5
    #: When a gateway shuts down gracefully (SIGTERM; its clients get 1012 and
    #: reconnect), its users stay present this long: a user back on any gateway
    #: within it is neither announced as left nor as joined. 5 s covers a client's
    #: first reconnect attempts with back-off.
    presence_grace_s: Annotated[float, Meta(ge=0)] = 5.0
    #: Presence news that follows the last within this many seconds waits and goes
    #: out with it, in one batch: when many join a room at once, each member's
    #: arrivals then cost one socket write per batch instead of one each. News
    #: after a quiet moment goes out at once. 0 sends each change on its own.
    presence_batch_s: Annotated[float, Meta(ge=0, le=1)] = 0.05
    #: JetStream KV bucket holding the lease that picks the one active replica
    #: (the one that announces arrivals and departures; every replica answers
    #: queries). Shared by every replica of one deployment. Empty: no lease, this
    #: replica is active alone (run exactly one; NATS without JetStream).
    rooms_lease_bucket: Annotated[str, Meta(pattern=r"^([A-Za-z0-9_-]+)?\Z", max_length=64)] = (
        "chat_rooms"
    )
    #: The active replica renews its lease every third of this; one that stops (a
    #: crash, a lost node) is replaced by a standby within this plus a sixth of it.
    #: Above JetStream's leader election (about 2 s in a 3-node cluster) so one
    #: election does not move the lease.
    rooms_lease_ttl_s: Annotated[float, Meta(ge=0.5, le=60)] = 3.0
    #: Replicas of the lease bucket when this service creates it: 3 on a 3-node
    #: JetStream cluster, so the lease survives the loss of a node.
    rooms_lease_replicas: Annotated[int, Meta(ge=1, le=5)] = 1
    #: Health and metrics endpoint. Loopback unless deliberately exposed.
    metrics_host: str = "127.0.0.1"
    #: 0 picks a free port (it is logged with ``service.ready``).
    metrics_port: Annotated[int, Meta(ge=0, le=65535)] = 9101

    def __post_init__(self) -> None:
        if self.presence_check_interval_s > self.presence_ttl_s:
            raise ValueError("CHAT_PRESENCE_CHECK_INTERVAL_S must not exceed CHAT_PRESENCE_TTL_S")


def load_settings(environ: Mapping[str, str]) -> Settings:
    """Build :class:`Settings` from the environment.

    Raises:
        msgspec.ValidationError: A variable has a bad value (the message names it).
        ValueError: A cross-field rule is broken.
    """
    return _load(Settings, environ)
