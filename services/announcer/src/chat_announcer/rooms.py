"""The announcer's view of the cluster: which rooms exist, and how to reach them.

The announcer holds no sockets, so it needs no connection manager: it asks the
membership directory which rooms exist (a presence backend that reports
nothing) and publishes through the broker, exactly as a gateway's
``broadcast_to_room`` would. Neither needs starting: both only use the client.
"""

from __future__ import annotations

import msgspec
from nats.aio.client import Client

from falcon_pachinko.backends.nats import NatsBroker, NatsPresence, new_node_id
from falcon_pachinko.subjects import Subjects

__all__ = ["ClusterRooms"]


class ClusterRooms:
    """Lists rooms cluster-wide and broadcasts into them (the worker's ``RoomDirectory``).

    Args:
        client: The service's NATS client.
        subject_prefix: First token of every chat subject.
    """

    def __init__(self, client: Client, subject_prefix: str) -> None:
        subjects = Subjects(subject_prefix)
        node_id = new_node_id()
        self._broker = NatsBroker(client, subjects, node_id)
        self._directory = NatsPresence(client, subjects, node_id, report=False)
        self._encoder = msgspec.json.Encoder()

    async def get_rooms_by_prefix(self, prefix: str) -> list[str]:
        """Every non-empty room whose name starts with ``prefix``.

        Raises:
            falcon_pachinko.BackendError: The directory did not answer.
        """
        return await self._directory.rooms_by_prefix(prefix)

    async def broadcast_to_room(self, room: str, message: object) -> None:
        """Encode ``message`` once and publish it to every member of ``room``.

        Raises:
            falcon_pachinko.BackendError: NATS could not take it.
        """
        await self._broker.publish(room, self._encoder.encode(message))
