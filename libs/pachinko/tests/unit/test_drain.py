"""The drain's schedule: every connection once, spread evenly, jittered."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from falcon_pachinko.drain import spread


@given(st.integers(0, 500), st.floats(0, 60), st.integers(0, 2**32))
def test_one_offset_each_ascending_within_the_window_one_per_slot(
    count: int, window_s: float, seed: int
) -> None:
    offsets = spread(count, window_s, random.Random(seed))
    assert len(offsets) == count
    assert offsets == sorted(offsets)
    for i, offset in enumerate(offsets):
        slot = window_s / count
        assert i * slot <= offset <= (i + 1) * slot


def test_two_drains_do_not_line_up() -> None:
    assert spread(10, 5.0, random.Random(1)) != spread(10, 5.0, random.Random(2))


def test_no_window_closes_everyone_at_once() -> None:
    assert spread(3, 0.0, random.Random(1)) == [0.0, 0.0, 0.0]


@pytest.mark.parametrize(("count", "window"), [(-1, 1.0), (1, -1.0)])
def test_bounds_are_checked(count: int, window: float) -> None:
    with pytest.raises(ValueError):
        spread(count, window, random.Random(0))
