"""The chat's periodic announcement, for whichever process runs it.

Two processes announce: the announcer service (any number of replicas, which
share a JetStream KV lease so that one of them announces each period) and the
gateway in single-process mode (``CHAT_BACKEND=memory``, no NATS, no lease). Both
import the worker from here, so neither imports the other.

Why a library of its own:

* not ``chat_announcer``: a service is a composition root, and a gateway that
  imports another service's package couples two deployables (the gateway image
  would need the announcer's code, or an optional extra to pull it in);
* not ``chat_runtime``: that library is infrastructure every service shares
  (settings, logging, NATS, health); the announcement is chat behaviour (it sends
  a ``serverSystemAnnouncement``), and the rooms service has no use for it;
* not ``chat_protocol``: that is the message contract, with no behaviour and no
  dependency on the library's workers.

What stays in the announcer: the lease on JetStream KV (:mod:`chat_announcer.lease`),
its Prometheus metrics and its composition root. What is here is pure or takes
its collaborators as Protocols (:class:`~chat_announcements.worker.PeriodLease`,
:class:`~chat_announcements.worker.RoomDirectory`,
:class:`~chat_announcements.worker.AnnouncerMetrics`): no NATS, no Prometheus.
"""
