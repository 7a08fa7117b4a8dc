"""A restarted directory rebuilds its view quietly, whatever a node says first.

After a start, snapshots of nodes the registry does not know report no arrivals
(``quiet_until``): those users were already there. A node's first message to a
fresh directory may as well be a heartbeat or a delta; the snapshot that follows
must stay quiet too (the system test ``tests/system/test_faults.py``, rooms
service killed and restarted, once saw every member announced again).
"""

from __future__ import annotations

import pytest

from falcon_pachinko.membership import Change, Delta, Heartbeat, Snapshot
from falcon_pachinko.presence import PresenceChange
from falcon_pachinko.registry import Registry

MEMBERS = [Change(True, "general", "c1", "Ann"), Change(True, "general", "c2", "Cat")]


def arrivals(actions: list[object]) -> list[str]:
    return [a.identity for a in actions if isinstance(a, PresenceChange) and a.present]


def test_a_snapshot_first_reports_no_arrivals_while_quiet() -> None:
    registry = Registry(ttl_s=5, quiet_until=100.0)
    assert arrivals(registry.apply(Snapshot(node="a", seq=3, members=MEMBERS), now=1.0)) == []


@pytest.mark.parametrize(
    "first",
    [
        pytest.param(Heartbeat(node="a", seq=3), id="heartbeat"),
        pytest.param(Delta(node="a", seq=4, changes=[]), id="delta"),
    ],
)
def test_a_snapshot_after_another_first_message_reports_no_arrivals_while_quiet(
    first: Heartbeat | Delta,
) -> None:
    registry = Registry(ttl_s=5, quiet_until=100.0)
    actions = registry.apply(first, now=1.0)
    actions += registry.apply(Snapshot(node="a", seq=3, members=MEMBERS), now=1.1)
    assert arrivals(actions) == []
