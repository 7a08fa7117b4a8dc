"""Which replica of a singleton acts: the lease's schedule and rules (pure).

Some work must be done by one process of a cluster at a time: the membership
directory announcing who arrived and who left is one. It runs as several
replicas; one is *active*, the others stand by, and :class:`Leadership` decides
which from a lease: one key in a store with compare-and-set writes (JetStream
KV). The key's value names the holder; its revision changes on every write.
:class:`Leadership` decides; an adapter (:class:`falcon_pachinko.election.Election`)
reads and writes the key and sleeps.

Rules:

* every write names the revision it follows (:class:`Write`), and the store
  applies it only if that is still the key's latest revision: of replicas racing
  for the lease, one wins;
* the holder renews every ``renew_s`` (a write after its own revision). A renewal
  refused means another replica wrote: the holder stands down at once;
* the holder also stands down by itself once ``ttl_s - read_s`` has passed since
  it *sent* its last write that succeeded (self-fencing): a holder cut off from
  the store, or paused, has stopped acting before anyone may take over;
* a standby reads the key every ``read_s``. A vacant key (never written, or
  released by a holder that stopped), or one still naming this replica, is
  claimed at once; a key whose revision has
  not changed for ``ttl_s`` since this replica first saw it is taken over (the
  holder stopped renewing, and by then has stood down);
* a store that does not answer changes nothing but the clock: the holder acts
  until its own deadline, a standby waits and reads again. A write whose reply
  was lost may have gone through: a later read that names this replica holds
  the lease as from that write's sending (the earliest such write, to be safe);
* when the holder dies, a standby takes over within ``ttl_s + read_s`` of the
  holder's last renewal, plus one write.

Time is the caller's (a monotonic clock); the replicas' clocks need only run at
the same rate, never agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = ["Lease", "Leadership", "Read", "Step", "Write"]

#: The holder renews this many times per TTL.
_RENEWALS_PER_TTL: Final = 3
#: A standby reads the key this many times per TTL.
_READS_PER_TTL: Final = 6


@dataclass(frozen=True, slots=True)
class Lease:
    """The lease key as the store has it.

    Attributes:
        revision: Its latest revision (0 if it was never written).
        holder: Who holds it; ``None`` if it is vacant (never written or released).
    """

    revision: int
    holder: str | None


@dataclass(frozen=True, slots=True)
class Read:
    """Read the lease key; report with :meth:`Leadership.read` or :meth:`Leadership.failed`."""


@dataclass(frozen=True, slots=True)
class Write:
    """Write this replica's name, if the key's latest revision is still ``after``.

    Report with :meth:`Leadership.wrote`, :meth:`Leadership.refused` or
    :meth:`Leadership.failed`.
    """

    after: int


Step = Read | Write


class Leadership:
    """The lease rules of one replica (see the module's rules).

    Args:
        name: This replica's name, written as the holder (unique per process).
        ttl_s: How long a lease not renewed stays its holder's.
        now: The clock's reading at start.
        renew_s: Between the holder's renewals; ``ttl_s / 3`` by default.
        read_s: Between a standby's reads; ``ttl_s / 6`` by default.

    Raises:
        ValueError: A duration is not positive, or renewing or reading is not
            frequent enough for the TTL (``renew_s + read_s < ttl_s`` is needed, so
            a holder renews before it stands down by itself).
    """

    def __init__(
        self,
        name: str,
        *,
        ttl_s: float,
        now: float,
        renew_s: float | None = None,
        read_s: float | None = None,
    ) -> None:
        self.name: Final = name
        self.ttl_s: Final = ttl_s
        self.renew_s: Final = renew_s if renew_s is not None else ttl_s / _RENEWALS_PER_TTL
        self.read_s: Final = read_s if read_s is not None else ttl_s / _READS_PER_TTL
        if not (ttl_s > 0 and self.renew_s > 0 and self.read_s > 0):
            raise ValueError("ttl_s, renew_s and read_s must be positive")
        if self.renew_s + self.read_s >= ttl_s:
            raise ValueError("need renew_s + read_s < ttl_s")
        self.active = False
        #: The key as last read or written (``None``: unknown, read it first).
        self._lease: Lease | None = None
        #: When this replica first saw ``_lease``'s revision.
        self._seen_at = now
        #: Holder: when its last successful write was sent.
        self._held_since_sent = now
        #: When the step in flight was asked for (a write's send time).
        self._asked_at = now
        self._next_at = now
        self._writing = False
        #: When the earliest write whose reply was lost was sent (since the last
        #: answer that settled who holds the lease): one of them may have won.
        self._unsure_since: float | None = None
        self.takeovers = 0

    @property
    def holder(self) -> str | None:
        """Who holds the lease, as far as this replica knows."""
        return None if self._lease is None else self._lease.holder

    def due_in(self, now: float) -> float:
        """Seconds until :meth:`step` has something to do (0: now)."""
        if self.active:
            return max(0.0, min(self._next_at, self._deadline()) - now)
        return max(0.0, self._next_at - now)

    def step(self, now: float) -> Step | None:
        """What to do now (one step at a time: report its outcome before asking again).

        A holder past its own deadline stands down here first (check
        :attr:`active` after).
        """
        self.tick(now)
        if now < self._next_at:
            return None
        self._asked_at = now
        if self.active or self._takeover_due(now):
            assert self._lease is not None
            self._writing = True
            return Write(after=self._lease.revision)
        self._writing = False
        return Read()

    def tick(self, now: float) -> bool:
        """Stand down if the lease may have passed to another (self-fencing); whether it did."""
        if self.active and now >= self._deadline():
            self.active = False
            self._lease = None  # read it before anything else
            self._next_at = now
            return True
        return False

    def read(self, lease: Lease, now: float) -> bool:
        """The key was read: ``lease``. Whether it shows another replica writing
        since the last read (proof that the holder was alive a moment ago)."""
        known = self._lease
        renewed = (
            known is not None
            and lease.revision != known.revision
            and lease.holder not in (None, self.name)
        )
        if self._lease is None or self._lease != lease:
            self._seen_at = now
        self._lease = lease
        unsure, self._unsure_since = self._unsure_since, None
        if (
            lease.holder == self.name
            and unsure is not None
            and unsure + self.ttl_s - self.read_s > now
        ):
            # One of this replica's writes whose reply was lost went through,
            # sent no earlier than ``unsure``: it holds the lease since then.
            self._hold(lease.revision, unsure)
            return renewed
        self.active = False
        self._next_at = now if self._takeover_due(now) else now + self.read_s
        return renewed

    def wrote(self, revision: int, now: float) -> None:
        """The write asked for went through, as ``revision``."""
        if not self.active:
            self.takeovers += 1
        self._unsure_since = None
        self._hold(revision, self._asked_at)
        self._seen_at = now

    def refused(self, now: float) -> None:
        """The write asked for was refused: another replica wrote first."""
        self.active = False
        self._lease = None
        self._next_at = now  # read who holds it now

    def failed(self, now: float) -> None:
        """The store did not answer (or not in time)."""
        self._next_at = now + self.read_s
        if self._writing:
            if self._unsure_since is None:
                self._unsure_since = self._asked_at
            if not self.active:
                self._lease = None  # the claim may have gone through: read it first
        self.tick(now)

    def release(self) -> int | None:
        """Stop holding (a graceful stop): the revision to release the key after, if held."""
        held = self._lease.revision if self.active and self._lease is not None else None
        self.active = False
        self._lease = None
        return held

    def _hold(self, revision: int, sent_at: float) -> None:
        self.active = True
        self._lease = Lease(revision, self.name)
        self._held_since_sent = sent_at
        self._next_at = sent_at + self.renew_s

    def _takeover_due(self, now: float) -> bool:
        lease = self._lease
        if lease is None:
            return False
        # Vacant; or this replica's own, from before it stood down (no one else
        # wrote since); or not renewed for a whole TTL.
        return lease.holder in (None, self.name) or now - self._seen_at >= self.ttl_s

    def _deadline(self) -> float:
        return self._held_since_sent + self.ttl_s - self.read_s
