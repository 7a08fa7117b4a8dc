"""The chat's AsyncAPI 3.0 document, generated from the protocol's structs.

:func:`document` describes the client protocol (the WebSocket channel
``/ws/chat/{room}`` on a gateway: every message both ways, every close code,
every ``serverError`` code, the handshake's parameters and refusals) and the NATS
subjects between the services (room traffic, the history stream's subjects, the
directory's reports, questions and sync requests, direct messages, kicks, with
their headers). The chat's services are the application it describes: what they
send is a ``send`` operation, what they receive a ``receive``.

:func:`chat_launcher.asyncapi.render` turns it into YAML, byte for byte what
``docs/asyncapi.yaml`` holds; ``chat asyncapi`` writes it. The output depends
only on the code, so a test can compare the committed file with it exactly.
"""

from __future__ import annotations

from importlib.metadata import version
from typing import Any, Final

from . import services, websocket
from .schemas import component_schemas

__all__ = ["ASYNCAPI_VERSION", "document"]

#: The AsyncAPI specification version the document follows.
ASYNCAPI_VERSION: Final = "3.0.0"

_DESCRIPTION: Final = (
    "Real-time chat rooms over WebSockets, on a cluster of services that talk over NATS.\n\n"
    "The application described is the chat's services taken together: gateways (clients' "
    "sockets), the rooms service (membership and presence) and the announcer. An operation "
    "whose action is `send` is something they send; `receive`, something they receive. "
    "Clients talk to the `gateway` server only; the `nats` server is internal.\n\n"
    "Generated from the structs in `chat_protocol` by `chat asyncapi`: do not edit by hand."
)

_NATS_DESCRIPTION: Final = (
    "NATS with JetStream (`CHAT_NATS_URL`), between the services only. Beside the channels "
    f"below, the gateways use JetStream's API on the history stream `{services.STREAM}`: "
    "appends are acknowledged on the history's own inbox, and history is read by batch "
    f"direct gets (`$JS.API.DIRECT.GET.{services.STREAM}`). The announcer's replicas claim "
    "each period with a create-only write into the JetStream KV bucket "
    "`CHAT_ANNOUNCE_LEASE_BUCKET`; the rooms service's replicas hold the key `active` of "
    "the bucket `CHAT_ROOMS_LEASE_BUCKET` by compare-and-set writes (one active replica)."
)


def _servers() -> dict[str, Any]:
    return {
        "gateway": {
            "host": "127.0.0.1:8000",
            "protocol": "ws",
            "title": "A chat gateway",
            "description": (
                "Any gateway serves any room (`chat up`: 127.0.0.1:8000 and the ports after "
                "it). Behind TLS the protocol is `wss`."
            ),
        },
        "nats": {
            "host": "127.0.0.1:4222",
            "protocol": "nats",
            "title": "NATS",
            "description": _NATS_DESCRIPTION,
        },
    }


def document() -> dict[str, Any]:
    """The AsyncAPI document, as JSON-compatible values.

    Raises:
        ValueError: A message, close code or ``serverError`` code has no
            description (see :mod:`.websocket` and :mod:`.schemas`).
    """
    client, server = websocket.message_types()
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "Pachinko Chat",
            "version": version("chat-protocol"),
            "description": _DESCRIPTION,
        },
        "defaultContentType": "application/json",
        "servers": _servers(),
        "channels": websocket.channels() | services.channels(),
        "operations": websocket.operations() | services.operations(),
        "components": {
            "schemas": component_schemas([*client, *server, *services.NATS_STRUCTS]),
            "messages": websocket.messages() | services.messages(),
        },
    }
