"""``KvLease``: a singleton's lease as one key of a JetStream KV bucket.

The store behind :class:`falcon_pachinko.election.Election` (the rules live in
:mod:`falcon_pachinko.leadership`). A write is a KV update that names the
revision it follows (``Nats-Expected-Last-Subject-Sequence``), so JetStream
applies it only if no one wrote in between; a release is a delete after the
holder's own revision, which leaves the key vacant for a standby to claim.

The bucket is looked up first and created only if missing (history 1, the
given replicas); it is bound again after a failure, so a replica that started
while JetStream was away, or whose bucket was deleted, recovers once JetStream
answers. An existing bucket with fewer replicas than asked is used as it is and
logged: changing it is an operator's step (``docs/deploy.md``).

Failures: anything but a clear answer raises :class:`~falcon_pachinko.BackendError`
(the caller treats it as "the store did not answer"). A write whose reply is lost
may have been applied: the next read shows this replica's name, and the
leadership rules claim it again.
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

from ...errors import BackendError
from ...leadership import Lease

__all__ = ["KvLease"]

log = structlog.get_logger(__name__)

_FAILURES: Final = (nats.errors.Error, TimeoutError, OSError)
#: JetStream's "wrong last sequence" error codes (a compare-and-set refused).
_WRONG_LAST_SEQUENCE: Final = (10071, 10164)


class KvLease:
    """A lease key in a JetStream KV bucket.

    Args:
        client: A connected NATS client (the caller owns it).
        bucket: The bucket, shared by every replica of the singleton.
        key: The lease's key in it.
        replicas: Replicas of a bucket this creates (up to the cluster's size).
        timeout_s: Bound on each JetStream call.
    """

    def __init__(
        self,
        client: Client,
        *,
        bucket: str,
        key: str = "active",
        replicas: int = 1,
        timeout_s: float = 2.0,
    ) -> None:
        if replicas < 1 or timeout_s <= 0:
            raise ValueError("replicas must be at least 1 and timeout_s positive")
        self.bucket: Final = bucket
        self.key: Final = key
        self.replicas: Final = replicas
        self._js = client.jetstream(timeout=timeout_s)
        self._timeout_s = timeout_s
        self._kv: KeyValue | None = None

    async def read(self) -> Lease:
        """The key as JetStream has it now.

        Raises:
            BackendError: JetStream did not answer.
        """
        kv = await self._bucket()
        try:
            async with asyncio.timeout(self._timeout_s):
                entry = await kv.get(self.key)
        except nats.js.errors.KeyNotFoundError as exc:
            # Never written (no entry), or released (the delete marker's revision).
            revision = exc.entry.revision if exc.entry is not None else 0
            return Lease(revision or 0, None)
        except _FAILURES as exc:
            self._kv = None
            raise BackendError(f"cannot read lease {self.bucket}/{self.key}") from exc
        holder = (entry.value or b"").decode(errors="replace") or None
        return Lease(entry.revision or 0, holder)

    async def write(self, holder: str, after: int) -> int | None:
        """Write ``holder`` if ``after`` is still the key's revision: the new revision,
        or ``None`` if another write came first.

        Raises:
            BackendError: JetStream did not answer (the write may have been applied).
        """
        kv = await self._bucket()
        try:
            async with asyncio.timeout(self._timeout_s):
                return await kv.update(self.key, holder.encode(), last=after)
        except nats.js.errors.KeyWrongLastSequenceError:
            return None
        except _FAILURES as exc:
            self._kv = None
            raise BackendError(f"cannot write lease {self.bucket}/{self.key}") from exc

    async def release(self, after: int) -> None:
        """Leave the key vacant if ``after`` is still its revision (a graceful stop).

        Raises:
            BackendError: JetStream did not answer; a standby then takes over once
                the lease is not renewed for its TTL.
        """
        kv = await self._bucket()
        try:
            async with asyncio.timeout(self._timeout_s):
                await kv.delete(self.key, last=after)
        except nats.js.errors.APIError as exc:
            if exc.err_code not in _WRONG_LAST_SEQUENCE:
                self._kv = None
                raise BackendError(f"cannot release lease {self.bucket}/{self.key}") from exc
            # Someone else wrote since: it is theirs already.
        except _FAILURES as exc:
            self._kv = None
            raise BackendError(f"cannot release lease {self.bucket}/{self.key}") from exc

    async def _bucket(self) -> KeyValue:
        if self._kv is None:
            try:
                async with asyncio.timeout(self._timeout_s * 3):
                    self._kv = await self._bind()
            except _FAILURES as exc:
                raise BackendError(f"cannot open lease bucket {self.bucket}") from exc
        return self._kv

    async def _bind(self) -> KeyValue:
        try:
            kv = await self._js.key_value(self.bucket)
        except nats.js.errors.BucketNotFoundError:
            config = KeyValueConfig(
                bucket=self.bucket,
                history=1,
                replicas=self.replicas,
                description="falcon_pachinko singleton lease",
            )
            try:
                kv = await self._js.create_key_value(config=config)
            except nats.js.errors.BadRequestError:
                return await self._js.key_value(self.bucket)  # another replica was first
            log.info("pachinko.lease_bucket_created", bucket=self.bucket, replicas=self.replicas)
            return kv
        status = await kv.status()
        replicas = status.stream_info.config.num_replicas or 1
        if replicas < self.replicas:
            log.warning(
                "pachinko.lease_bucket_replicas",
                bucket=self.bucket,
                replicas=replicas,
                wanted=self.replicas,
            )
        return kv
