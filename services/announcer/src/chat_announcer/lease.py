"""The period lease on JetStream KV: a create-only write per period, so one replica wins.

Each period has one key, ``p-<interval>-<period>`` (:func:`period_key`). Claiming
is ``kv.create(key, owner)``, which JetStream applies only if the key has no value
yet: exactly one replica's write succeeds, every other one gets
``KeyWrongLastSequenceError``. The interval is part of the key, so deployments
with different intervals sharing a bucket never take each other's periods.

The bucket is looked up first and created only if missing, with a TTL of
:data:`LEASE_PERIODS` intervals (at least :data:`MIN_BUCKET_TTL_S`), so old keys
expire instead of piling up, and ``replicas`` replicas (``CHAT_ANNOUNCE_LEASE_REPLICAS``).
An existing bucket is used as it is, whatever its TTL (a deployment that changed
its interval keeps working) and its replicas; a TTL shorter than two intervals is
logged, since a key must outlive its period for the lease to hold, and so are
fewer replicas than asked (an operator changes those: docs/deploy.md).
The bucket is bound lazily, and bound again after a failed claim, so an announcer
that starts while JetStream is down, or whose bucket was deleted, begins claiming
again once JetStream answers.

Failures: anything but a clear "taken" raises :class:`LeaseUnavailable`, and the
caller skips the period (at most once). A create whose reply is lost (timeout) may
have been applied; then no replica announces that period, which is the safe side.
"""

from __future__ import annotations

import asyncio
from typing import Final

import nats.errors
import nats.js.errors
import structlog
from nats.aio.client import Client
from nats.js.api import KeyValueConfig
from nats.js.kv import KeyValue

from chat_announcements.errors import LeaseUnavailable

__all__ = ["LEASE_PERIODS", "MIN_BUCKET_TTL_S", "KvPeriodLease", "bucket_ttl", "period_key"]

log = structlog.get_logger(__name__)

#: Keys live this many intervals: their own period, plus two for replicas whose
#: clocks lag or whose loops woke late, which must still find the key taken.
LEASE_PERIODS: Final = 3
#: Floor on the bucket TTL, so short (test) intervals do not churn the stream.
MIN_BUCKET_TTL_S: Final = 60.0
#: Bound on each JetStream call. JetStream answers in milliseconds; two seconds
#: rides out a clustered stream's leader election, and anything slower loses the
#: period rather than hold the worker (nats-py's own default is 5 s).
DEFAULT_TIMEOUT_S: Final = 2.0


def period_key(interval_s: float, period: int) -> str:
    """The KV key of ``period`` for periods of ``interval_s`` seconds.

    ``repr`` of a float is its shortest round-trip form (``3600.0``, ``0.5``,
    ``1e-05``), so different intervals give different keys; ``+`` (in ``1e+16``) is
    not allowed in a key and is dropped, which keeps the form unambiguous.
    """
    return f"p-{repr(float(interval_s)).replace('+', '')}-{period}"


def bucket_ttl(interval_s: float) -> float:
    """The TTL of a newly created lease bucket, in seconds."""
    return max(MIN_BUCKET_TTL_S, LEASE_PERIODS * interval_s)


class KvPeriodLease:
    """A :class:`chat_announcements.worker.PeriodLease` on a JetStream KV bucket.

    Args:
        nc: A connected NATS client (the caller owns it).
        bucket: The bucket name, shared by every replica.
        interval_s: The period length (part of each key; sets a new bucket's TTL).
        owner: Stored as the value of claimed keys, to tell who announced.
        timeout_s: Bound on each JetStream call.
        replicas: Replicas of a bucket this creates.
    """

    def __init__(
        self,
        nc: Client,
        *,
        bucket: str,
        interval_s: float,
        owner: str,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        replicas: int = 1,
    ) -> None:
        if not interval_s > 0:
            raise ValueError("interval_s must be positive")
        if replicas < 1:
            raise ValueError("replicas must be at least 1")
        self.replicas: Final = replicas
        self.bucket: Final = bucket
        self.interval_s: Final = interval_s
        self._js = nc.jetstream(timeout=timeout_s)
        self._owner = owner.encode()
        self._timeout_s = timeout_s
        self._kv: KeyValue | None = None

    async def prepare(self) -> None:
        """Bind (and if needed create) the bucket now rather than at the first claim.

        Raises:
            LeaseUnavailable: JetStream did not answer or refused.
        """
        await self._bucket()

    async def claim(self, period: int) -> bool:
        """Claim ``period``: ``True`` if this replica's create-only write won.

        Raises:
            LeaseUnavailable: JetStream did not answer (timeout, disabled, down).
        """
        kv = await self._bucket()
        key = period_key(self.interval_s, period)
        try:
            async with asyncio.timeout(self._timeout_s):
                await kv.create(key, self._owner)
        except nats.js.errors.KeyWrongLastSequenceError:
            return False
        except (nats.errors.Error, TimeoutError, OSError) as exc:
            # Look the bucket up again next time: it may have been deleted (and is
            # then re-created) or JetStream may have moved.
            self._kv = None
            raise LeaseUnavailable(f"cannot claim {key}: {_describe(exc)}") from exc
        return True

    async def _bucket(self) -> KeyValue:
        if self._kv is None:
            try:
                async with asyncio.timeout(self._timeout_s * 3):
                    self._kv = await self._bind()
            except (nats.errors.Error, TimeoutError, OSError) as exc:
                raise LeaseUnavailable(
                    f"cannot open bucket {self.bucket}: {_describe(exc)}"
                ) from exc
        return self._kv

    async def _bind(self) -> KeyValue:
        try:
            kv = await self._js.key_value(self.bucket)
        except nats.js.errors.BucketNotFoundError:
            return await self._create()
        await self._check_existing(kv)
        return kv

    async def _create(self) -> KeyValue:
        ttl = bucket_ttl(self.interval_s)
        config = KeyValueConfig(
            bucket=self.bucket,
            ttl=ttl,
            history=1,
            replicas=self.replicas,
            description="chat-announcer period leases",
        )
        try:
            kv = await self._js.create_key_value(config=config)
        except nats.js.errors.BadRequestError:
            # Another replica created it first, with another TTL: use theirs.
            kv = await self._js.key_value(self.bucket)
            await self._check_existing(kv)
            return kv
        log.info(
            "announcer.lease_bucket_created", bucket=self.bucket, ttl_s=ttl, replicas=self.replicas
        )
        return kv

    async def _check_existing(self, kv: KeyValue) -> None:
        """Log what of a bucket found in place falls short of what this would create."""
        status = await kv.status()
        replicas = status.stream_info.config.num_replicas or 1
        if replicas < self.replicas:
            log.warning(
                "announcer.lease_bucket_replicas",
                bucket=self.bucket,
                replicas=replicas,
                wanted=self.replicas,
            )
        ttl = status.ttl
        if ttl and ttl < 2 * self.interval_s:
            log.warning(
                "announcer.lease_bucket_ttl_short",
                bucket=self.bucket,
                ttl_s=ttl,
                interval_s=self.interval_s,
            )


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__
