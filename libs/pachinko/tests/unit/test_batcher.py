"""``PresenceBatcher``: changes passed on in order, exactly once, together while they come fast."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from falcon_pachinko.batcher import PresenceBatcher
from falcon_pachinko.presence import PresenceChange
from falcon_pachinko.testing import scaled


def change(i: int, present: bool = True) -> PresenceChange:
    return PresenceChange(room="r", identity=f"u{i}", present=present, connection_id=f"c{i}")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Recorder:
    """A handler that notes each change and the batch (event-loop turn) it came in."""

    def __init__(self) -> None:
        self.changes: list[PresenceChange] = []
        self.turns: list[int] = []
        self._turn = 0
        self._marked = False
        self.arrived = asyncio.Event()

    async def __call__(self, change: PresenceChange) -> None:
        if not self._marked:
            # A new turn begins a new batch: mark the end of this one soon.
            self._marked = True
            self._turn += 1
            asyncio.get_running_loop().call_soon(self._unmark)
        self.changes.append(change)
        self.turns.append(self._turn)
        self.arrived.set()

    def _unmark(self) -> None:
        self._marked = False


async def until(predicate: object, timeout_s: float = 1.0) -> None:
    async with asyncio.timeout(scaled(timeout_s)):
        while not predicate():  # type: ignore[operator]
            await asyncio.sleep(0)


async def test_a_change_after_a_quiet_moment_is_passed_on_at_once() -> None:
    clock, recorder = Clock(), Recorder()
    batcher = PresenceBatcher(recorder, window_s=10.0, clock=clock)
    await batcher(change(1))
    assert recorder.changes == []  # never inside the call
    await until(lambda: recorder.changes)
    assert recorder.changes == [change(1)]
    clock.now += 10.0  # quiet for a window: the next one goes at once too
    await batcher(change(2))
    await until(lambda: len(recorder.changes) == 2)
    assert recorder.changes == [change(1), change(2)]


async def test_changes_within_the_window_wait_and_go_out_together_in_order() -> None:
    recorder = Recorder()
    batcher = PresenceBatcher(recorder, window_s=scaled(0.05))
    await batcher(change(0))
    await until(lambda: recorder.changes)  # the first goes at once
    for i in range(1, 30):
        await batcher(change(i, present=i % 2 == 0))
        await asyncio.sleep(0)  # separate turns, as separate joins are
    assert len(recorder.changes) == 1  # held: they follow the first within the window
    assert batcher.held == 29
    await until(lambda: len(recorder.changes) == 30)
    assert recorder.changes == [change(i, present=i == 0 or i % 2 == 0) for i in range(30)]
    # Two batches: the first change alone, then the 29 held, all in one turn.
    assert recorder.turns == [1] + [2] * 29
    assert batcher.held == 0


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 2)), max_size=40))
def test_every_change_is_passed_on_once_in_order(steps: list[tuple[bool, int]]) -> None:
    async def run() -> list[PresenceChange]:
        recorder = Recorder()
        batcher = PresenceBatcher(recorder, window_s=0.002)
        given_changes = []
        for i, (present, pause) in enumerate(steps):
            given_changes.append(change(i, present))
            await batcher(given_changes[-1])
            for _ in range(pause):
                await asyncio.sleep(0.001)
        await batcher.close()
        assert recorder.changes == given_changes
        return recorder.changes

    asyncio.run(run())


async def test_a_failing_handler_does_not_stop_the_changes_after_it() -> None:
    seen: list[PresenceChange] = []

    async def flaky(c: PresenceChange) -> None:
        seen.append(c)
        if c.identity == "u1":
            raise RuntimeError("boom")

    batcher = PresenceBatcher(flaky, window_s=scaled(0.02))
    for i in range(3):
        await batcher(change(i))
    await batcher.close()
    assert seen == [change(0), change(1), change(2)]


async def test_close_passes_on_what_is_held_and_later_changes_one_by_one() -> None:
    recorder = Recorder()
    batcher = PresenceBatcher(recorder, window_s=scaled(10.0))
    await batcher(change(0))
    await until(lambda: recorder.changes)
    await batcher(change(1))  # held for a long window
    async with asyncio.timeout(scaled(1.0)):
        await batcher.close()  # does not wait out the window
    assert recorder.changes == [change(0), change(1)]
    await batcher(change(2))  # closed: passed on inside the call
    assert recorder.changes == [change(0), change(1), change(2)]
    await batcher.close()  # idempotent


async def test_a_zero_window_passes_each_change_on_inside_the_call() -> None:
    recorder = Recorder()
    batcher = PresenceBatcher(recorder, window_s=0)
    await batcher(change(0))
    assert recorder.changes == [change(0)]


def test_a_negative_window_is_refused() -> None:
    async def handler(c: PresenceChange) -> None:
        pass

    with pytest.raises(ValueError, match="window_s"):
        PresenceBatcher(handler, window_s=-1)


async def test_after_batch_hears_each_batch_once_it_was_passed_on() -> None:
    clock, recorder = Clock(), Recorder()
    batches: list[tuple[list[PresenceChange], int]] = []

    async def after(batch: list[PresenceChange]) -> None:
        batches.append((batch, len(recorder.changes)))

    batcher = PresenceBatcher(recorder, window_s=10.0, clock=clock, after_batch=after)
    await batcher(change(1))
    await until(lambda: len(batches) == 1)
    await batcher(change(2))  # within the window: held
    await batcher(change(3))
    assert len(batches) == 1
    await batcher.close()
    assert batches == [([change(1)], 1), ([change(2), change(3)], 3)]
