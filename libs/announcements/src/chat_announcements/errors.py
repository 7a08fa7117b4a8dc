"""Errors of the announcement worker and the leases it claims periods from.

::

    ChatError(Exception)                        (chat_protocol.errors)
    └── LeaseUnavailable(ChatError, ConnectionError)
"""

from __future__ import annotations

from chat_protocol.errors import ChatError

__all__ = ["LeaseUnavailable"]


class LeaseUnavailable(ChatError, ConnectionError):
    """A period could not be claimed: the lease store did not answer, or failed.

    Raised by a :class:`chat_announcements.worker.PeriodLease` (the announcer's KV
    lease). The period is skipped. Whether another replica claimed it is unknown,
    so announcing anyway could send a duplicate.
    """
