"""The lease rules: who is active, on a clock the test moves, and simulated replicas."""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from falcon_pachinko.leadership import Leadership, Lease, Read, Write


def test_a_vacant_lease_is_claimed_at_once_and_renewed_each_third_of_the_ttl() -> None:
    a = Leadership("a", ttl_s=3, now=0)
    assert a.step(0) == Read()
    a.read(Lease(0, None), 0.01)
    assert a.step(0.01) == Write(after=0)
    a.wrote(7, 0.02)
    assert a.active and a.holder == "a" and a.takeovers == 1
    assert a.step(0.5) is None
    assert a.due_in(0.5) == pytest.approx(0.51)
    assert a.step(1.01) == Write(after=7)
    a.wrote(8, 1.02)
    assert a.active and a.takeovers == 1  # a renewal is not a takeover


def test_a_standby_takes_over_a_lease_not_renewed_for_the_ttl() -> None:
    b = Leadership("b", ttl_s=3, now=0)
    assert b.step(0) == Read()
    assert not b.read(Lease(5, "a"), 0)  # first sight proves nothing about "a"
    assert b.step(0.5) == Read()
    assert b.read(Lease(6, "a"), 0.5)  # "a" renewed: alive
    for t in (1.0, 1.5, 2.0, 2.5, 3.0):
        assert b.step(t) == Read()
        assert not b.read(Lease(6, "a"), t)
    assert b.step(3.5) == Write(after=6)  # unchanged since 0.5, for the whole TTL
    b.wrote(7, 3.6)
    assert b.active


def test_a_refused_write_means_someone_else_holds_it() -> None:
    a = Leadership("a", ttl_s=3, now=0)
    a.step(0)
    a.read(Lease(0, None), 0)
    assert a.step(0) == Write(after=0)
    a.refused(0.1)
    assert not a.active
    assert a.step(0.1) == Read()  # who holds it now?


def test_a_holder_whose_renewals_fail_stands_down_before_anyone_may_take_over() -> None:
    a = Leadership("a", ttl_s=3, now=0)
    a.step(0)
    a.read(Lease(0, None), 0)
    a.step(0)
    a.wrote(1, 0.1)  # sent at 0
    for t in (1.0, 1.7):  # each failure: try again a read interval later
        assert a.step(t) == Write(after=1)
        a.failed(t + 0.2)
        assert a.active
    assert a.step(2.4) == Write(after=1)
    assert a.active
    a.failed(2.6)  # past 3 - 0.5: stood down
    assert not a.active
    assert a.step(2.6) == Read()
    # A standby that saw revision 1 (at the earliest when it was written, 0)
    # may take over at 3: later than 2.5.


def test_a_holder_refused_on_renewal_stands_down_at_once() -> None:
    a = Leadership("a", ttl_s=3, now=0)
    a.step(0)
    a.read(Lease(0, None), 0)
    a.step(0)
    a.wrote(1, 0)
    assert a.step(1) == Write(after=1)
    a.refused(1.1)
    assert not a.active


def test_its_own_name_after_a_lost_reply_is_claimed_again() -> None:
    a = Leadership("a", ttl_s=3, now=0)
    a.step(0)
    a.read(Lease(0, None), 0)
    assert a.step(0) == Write(after=0)
    a.failed(2)  # the reply was lost, but the write went through
    assert a.step(2.5) == Read()
    a.read(Lease(1, "a"), 2.6)
    assert a.step(2.6) == Write(after=1)


def test_a_write_that_won_though_its_reply_was_lost_holds_from_its_sending() -> None:
    a = Leadership("a", ttl_s=3, now=0)
    a.step(0)
    a.read(Lease(0, None), 0)
    a.step(0)
    a.wrote(1, 0)
    assert a.step(1) == Write(after=1)  # sent at 1; applied as 2, the reply lost
    a.failed(1.5)
    assert a.active  # until its own deadline (0 + 2.5)
    assert a.step(2.0) == Write(after=1)
    a.refused(2.1)  # refused by its own earlier write
    assert not a.active
    assert a.step(2.1) == Read()
    a.read(Lease(2, "a"), 2.2)
    assert a.active  # the write sent at 1 won: held until 1 + 2.5
    assert a.takeovers == 1
    assert a.step(2.2) == Write(after=2)  # renewal due (1 + 1)
    a.wrote(3, 2.3)
    assert a.active and a.step(2.4) is None


def test_a_read_naming_another_after_lost_replies_means_they_lost() -> None:
    a = Leadership("a", ttl_s=3, now=0)
    a.step(0)
    a.read(Lease(4, "b"), 0)
    a.step(3.0)  # b stale: take over
    a.failed(3.2)
    a.step(3.7)
    a.read(Lease(6, "c"), 3.8)
    assert not a.active and a.holder == "c"


def test_release_gives_the_revision_to_delete_after() -> None:
    a = Leadership("a", ttl_s=3, now=0)
    assert a.release() is None
    a.step(0)
    a.read(Lease(0, None), 0)
    a.step(0)
    a.wrote(4, 0)
    assert a.release() == 4
    assert not a.active


def test_bad_durations_are_refused() -> None:
    with pytest.raises(ValueError):
        Leadership("a", ttl_s=0, now=0)
    with pytest.raises(ValueError):
        Leadership("a", ttl_s=3, now=0, renew_s=2.5, read_s=0.5)


# -- simulation ---------------------------------------------------------------


@dataclass
class Store:
    revision: int = 0
    holder: str | None = None

    def write(self, name: str, after: int) -> int | None:
        if after != self.revision:
            return None
        self.revision += 1
        self.holder = name
        return self.revision


@dataclass
class Replica:
    lead: Leadership
    dies_at: float
    paused: tuple[float, float] = (0.0, 0.0)
    #: While cut off, the replica runs but none of its requests reach the store.
    cut_off: tuple[float, float] = (0.0, 0.0)
    busy: bool = False
    active_spans: list[tuple[float, float]] = field(default_factory=list)

    def alive(self, t: float) -> bool:
        return t < self.dies_at and not (self.paused[0] <= t < self.paused[1])


TTL = 3.0
CUT_TIMEOUT_S = 0.5


class Simulation:
    """Replicas stepping their rules against one store, on simulated time."""

    def __init__(self, replicas: list[Replica], latencies: list[float], losses: list[bool]) -> None:
        self.replicas = replicas
        self.store = Store()
        self.latencies = latencies
        self.losses = losses
        self.events: list[tuple[float, int, int, str, object]] = []
        self.order = 0
        self.draws = 0

    def push(self, t: float, i: int, kind: str, data: object = None) -> None:
        self.order += 1
        heapq.heappush(self.events, (t, self.order, i, kind, data))

    def delay(self) -> float:
        self.draws += 1
        return self.latencies[self.draws % len(self.latencies)]

    def run(self, end: float) -> None:
        for i in range(len(self.replicas)):
            self.push(0.0, i, "wake")
        while self.events:
            t, _, i, kind, data = heapq.heappop(self.events)
            if t > end:
                return
            r = self.replicas[i]
            if not r.alive(t):
                if t < r.dies_at:  # paused: everything waits for the end of the pause
                    self.push(r.paused[1], i, kind, data)
                continue
            getattr(self, f"on_{kind}")(t, i, r, data)
            self.check(t)

    def on_wake(self, t: float, i: int, r: Replica, data: object) -> None:
        if r.busy:
            return
        step = r.lead.step(t)
        if step is None:
            self.push(t + max(r.lead.due_in(t), 0.01), i, "wake")
            return
        r.busy = True
        if r.cut_off[0] <= t < r.cut_off[1]:
            self.push(t + CUT_TIMEOUT_S, i, "lost")  # times out, never applied
        else:
            self.push(t + self.delay(), i, "apply", step)

    def on_apply(self, t: float, i: int, r: Replica, step: object) -> None:
        # The store applies the request now; the reply takes a while (or is lost).
        if isinstance(step, Read):
            self.push(t + self.delay(), i, "read", Lease(self.store.revision, self.store.holder))
            return
        assert isinstance(step, Write)
        result = self.store.write(r.lead.name, step.after)
        lost = self.losses[self.draws % len(self.losses)]
        self.push(t + self.delay(), i, "lost" if lost else "wrote", result)

    def on_read(self, t: float, i: int, r: Replica, lease: object) -> None:
        assert isinstance(lease, Lease)
        r.busy = False
        r.lead.read(lease, t)
        self.push(t, i, "wake")

    def on_lost(self, t: float, i: int, r: Replica, data: object) -> None:
        r.busy = False
        r.lead.failed(t)
        self.push(t, i, "wake")

    def on_wrote(self, t: float, i: int, r: Replica, revision: object) -> None:
        r.busy = False
        if revision is None:
            r.lead.refused(t)
        else:
            assert isinstance(revision, int)
            r.lead.wrote(revision, t)
        self.push(t, i, "wake")

    def check(self, t: float) -> None:
        """Safety: every live replica asks "am I active?" right now."""
        active = []
        for x in self.replicas:
            if x.alive(t):
                x.lead.tick(t)
                if x.lead.active:
                    active.append(x)
        assert len(active) <= 1, f"two active at {t}: {[x.lead.name for x in active]}"
        for x in active:
            if x.active_spans and x.active_spans[-1][1] >= t - 0.6:
                x.active_spans[-1] = (x.active_spans[-1][0], t)
            else:
                x.active_spans.append((t, t))


@settings(max_examples=150, deadline=None)
@given(
    latencies=st.lists(st.floats(0.0, 0.4), min_size=50, max_size=50),
    deaths=st.lists(st.floats(1.0, 40.0), min_size=3, max_size=3),
    pause=st.tuples(st.integers(0, 2), st.floats(0.0, 30.0), st.floats(0.0, 8.0)),
    cut=st.tuples(st.integers(0, 2), st.floats(0.0, 30.0), st.floats(0.0, 8.0)),
    losses=st.lists(st.booleans(), min_size=50, max_size=50),
)
def test_never_two_active_and_a_dead_holder_is_replaced_in_time(
    latencies: list[float],
    deaths: list[float],
    pause: tuple[int, float, float],
    cut: tuple[int, float, float],
    losses: list[bool],
) -> None:
    """Three replicas on one store, with message delays, lost replies, a pause, a
    replica cut off from the store, and deaths: at no instant do two live
    replicas consider themselves active, and after the holder dies a survivor is
    active within TTL + a read interval + a few round trips."""
    replicas = [
        Replica(Leadership(f"r{i}", ttl_s=TTL, now=0.0), dies_at=d) for i, d in enumerate(deaths)
    ]
    replicas[pause[0]].paused = (pause[1], pause[1] + pause[2])
    replicas[cut[0]].cut_off = (cut[1], cut[1] + cut[2])
    # The last survivor never dies, so there is always someone to take over.
    replicas[max(range(3), key=lambda i: deaths[i])].dies_at = float("inf")
    Simulation(replicas, latencies, losses).run(end=60.0)

    # Liveness: no gap in which none is active (after the first claim) lasts
    # longer than the bound.
    bound = TTL + TTL / 6 + 8 * 0.4 + 8.0  # + the longest pause or cut of the holder
    spans = sorted(s for x in replicas for s in x.active_spans)
    assert spans, "no one ever became active"
    for (_, end_a), (start_b, _) in zip(spans, spans[1:], strict=False):
        assert start_b - end_a <= bound, f"no one active from {end_a} to {start_b}"
