"""The self-probe's rules, on a clock the test moves."""

from __future__ import annotations

import pytest

from falcon_pachinko.probe import ProbeSchedule


def test_a_probe_goes_out_each_interval_and_its_round_trip_counts() -> None:
    s = ProbeSchedule(interval_s=5, timeout_s=2, now=0)
    assert s.send(0) == 1
    assert s.send(1) is None  # one in flight
    assert s.returned_probe(1, 0.25) == pytest.approx(0.25)
    assert s.send(4.9) is None  # not due yet
    assert s.due_in(4.0) == pytest.approx(1.0)
    assert s.send(5.0) == 2
    assert (s.sent, s.returned, s.lost) == (2, 1, 0)


def test_a_probe_not_back_in_time_is_lost_and_a_late_return_changes_nothing() -> None:
    s = ProbeSchedule(interval_s=5, timeout_s=2, now=0)
    assert s.send(0) == 1
    assert s.due_in(0.5) == pytest.approx(1.5)
    assert s.expire(2.5)
    assert s.returned_probe(1, 2.6) is None
    assert (s.returned, s.lost) == (0, 1)
    assert s.send(5) == 2
    assert s.returned_probe(99, 5.1) is None  # never sent
    assert s.returned_probe(2, 7.5) is None  # too late: lost
    assert s.lost == 2


def test_hearing_lasts_two_lost_probes_past_the_last_return() -> None:
    s = ProbeSchedule(interval_s=5, timeout_s=2, now=0)
    assert s.hearing(0) and s.hearing(12)  # before any return: a start-up grace
    assert not s.hearing(12.5)
    s.send(13)
    s.returned_probe(s.sent, 13.1)
    assert s.hearing(13.1) and s.hearing(25.0)
    assert not s.hearing(25.2)  # 2 x 5 + 2 s after the last return


@pytest.mark.parametrize(("interval", "timeout"), [(5, 5), (5, 0), (1, 2), (0, 0)])
def test_bounds_are_checked(interval: float, timeout: float) -> None:
    with pytest.raises(ValueError):
        ProbeSchedule(interval, timeout, 0)
