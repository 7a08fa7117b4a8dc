"""The NATS subjects between the services in the document: channels, messages, headers.

Every address is built by falcon_pachinko's :class:`~falcon_pachinko.subjects.Subjects`
under the chat's one prefix (:data:`chat_protocol.subjects.PREFIX`), with
``{roomToken}`` or ``{node}`` where a subject token varies. Payloads are the
structs that travel: the chat's server messages on room subjects, the library's
membership messages (:mod:`falcon_pachinko.membership`) and kicks
(:class:`falcon_pachinko.backends.nats.broker.Kick`) on control subjects. Header
names are the library's constants.

Operations are the chat's: ``send`` where one of its services publishes,
``receive`` where one subscribes; each says which. JetStream's own API (the
history stream's acknowledgements and direct gets, the announcer's and the rooms
service's KV leases) is
described in the ``nats`` server, not as channels: its subjects are NATS's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, get_args

from falcon_pachinko.backends.nats import broker as nats_broker
from falcon_pachinko.backends.nats.broker import Kick
from falcon_pachinko.backends.nats.history import (
    ID_HEADER,
    LAST_SEQUENCE_HEADER,
    MSG_ID_HEADER,
    SEQUENCE_HEADER,
    TIME_HEADER,
    default_stream_name,
)
from falcon_pachinko.backends.nats.plumbing import EXCLUDE_HEADER, ORIGIN_HEADER
from falcon_pachinko.handover import Announced
from falcon_pachinko.membership import (
    Change,
    ConnectionsQuery,
    CountReply,
    MembersQuery,
    MembersReply,
    NodeEvent,
    PresenceQuery,
    PresenceReply,
    RoomsQuery,
    RoomsReply,
)
from falcon_pachinko.presence import PresenceChange
from falcon_pachinko.subjects import Subjects

from ..messages import (
    ServerMessage,
    ServerNewMessage,
    ServerSystemAnnouncement,
    ServerUserJoined,
    ServerUserLeft,
    ServerUserTyping,
)
from ..subjects import PREFIX
from .schemas import ref

__all__ = ["NATS_STRUCTS", "STREAM", "SUBJECTS", "channels", "messages", "operations"]

#: The chat's subjects.
SUBJECTS: Final = Subjects(PREFIX)
#: The JetStream stream that stores every room.
STREAM: Final = default_stream_name(PREFIX)

# NOTE(protocol): the library keeps the direct-message header private to its broker.
_TARGET_HEADER: Final = str(nats_broker._TARGET_HEADER)

#: What each header says, by name.
HEADERS: Final[Mapping[str, str]] = {
    ORIGIN_HEADER: "The id of the node (process) that published it: 16 hex digits.",
    EXCLUDE_HEADER: "The one connection that must not receive it (`<node>-<random>`), if any.",
    TIME_HEADER: "`ts`: the appending gateway's wall clock, integer ms since the Unix epoch.",
    ID_HEADER: "`id` of a message stored without an idempotency key.",
    MSG_ID_HEADER: (
        "`id` of a message stored with an idempotency key (the sender's `clientMsgId`, per "
        "user): a digest of (room, key), on which JetStream deduplicates within "
        "`CHAT_HISTORY_DEDUP_WINDOW_S`."
    ),
    SEQUENCE_HEADER: "Set by JetStream: `seq`, the stream sequence (shared by every room).",
    LAST_SEQUENCE_HEADER: (
        "Set by JetStream: the room's previous `seq` (0 if none). A gateway that did not "
        "deliver that one has lost messages, and closes the room's members with 4003."
    ),
    "Nats-Stream": f"Set by JetStream: the stream, `{STREAM}`.",
    "Nats-Subject": "Set by JetStream: the subject it was stored on.",
    _TARGET_HEADER: "The connection the message is for (`<node>-<random>`).",
    "Nats-Service-Error": "Set on a failed query: what went wrong.",
    "Nats-Service-Error-Code": "Set on a failed query: its status code.",
}

#: Server messages that travel on a room's subject (the others go straight to one socket).
_ROOM_TRAFFIC: Final = (
    ServerNewMessage,
    ServerUserJoined,
    ServerUserLeft,
    ServerUserTyping,
    ServerSystemAnnouncement,
)

#: The directory's questions: channel id, subject, query, reply, who asks.
_QUERIES: Final = (
    ("Rooms", SUBJECTS.query_rooms, RoomsQuery, RoomsReply, "the announcer (rooms to announce in)"),
    ("Members", SUBJECTS.query_members, MembersQuery, MembersReply, "any node"),
    ("Presence", SUBJECTS.query_presence, PresenceQuery, PresenceReply, "a gateway (the roster)"),
    (
        "Connections",
        SUBJECTS.query_connections,
        ConnectionsQuery,
        CountReply,
        "a gateway (`CHAT_MAX_CONNECTIONS_PER_USER`)",
    ),
)

#: Every struct the NATS channels carry (besides the server messages).
NATS_STRUCTS: Final = (
    *get_args(NodeEvent),
    Change,
    *(struct for _, _, query, reply, _ in _QUERIES for struct in (query, reply)),
    Kick,
    Announced,
    PresenceChange,
)

_INBOX: Final = "natsInbox"


def _headers(required: tuple[str, ...], optional: tuple[str, ...] = ()) -> dict[str, Any]:
    properties = {name: {"type": "string", "description": HEADERS[name]} for name in required}
    properties |= {name: {"type": "string", "description": HEADERS[name]} for name in optional}
    return {"type": "object", "properties": properties, "required": list(required)}


def _message(
    name: str, summary: str, payload: dict[str, Any], headers: dict[str, Any] | None = None
) -> dict[str, Any]:
    message: dict[str, Any] = {"name": name, "title": name, "summary": summary}
    message["contentType"] = "application/json"
    if headers is not None:
        message["headers"] = headers
    message["payload"] = payload
    return message


def _tag(struct: Any) -> str:
    return str(struct.__struct_config__.tag)


def _stored_headers() -> tuple[str, ...]:
    return (ORIGIN_HEADER, TIME_HEADER)


def messages() -> dict[str, Any]:
    """``components.messages`` of the NATS channels."""
    one_of = {"oneOf": [ref(struct.__name__) for struct in _ROOM_TRAFFIC]}
    out = {
        "roomTraffic": _message(
            "roomTraffic",
            "Live-only room traffic: typing, presence news, announcements (and chat messages "
            "with `CHAT_HISTORY=false`), encoded once by its producer and forwarded untouched "
            "to each member's socket.",
            one_of,
            _headers((ORIGIN_HEADER,), (EXCLUDE_HEADER,)),
        ),
        "storedChatMessage": _message(
            "storedChatMessage",
            "A chat message to store, without `id`, `seq` or `ts`: the history's id "
            f"header (`{ID_HEADER}`, or `{MSG_ID_HEADER}` with a key) and `{TIME_HEADER}` "
            "carry them.",
            ref(ServerNewMessage.__name__),
            _headers(_stored_headers(), (ID_HEADER, MSG_ID_HEADER, EXCLUDE_HEADER)),
        ),
        "republishedChatMessage": _message(
            "republishedChatMessage",
            "A stored chat message as the history stream republishes it to the room: "
            "each gateway reads its position from the headers and puts `id`, `seq` and `ts` "
            "into the payload, once per message.",
            ref(ServerNewMessage.__name__),
            _headers(
                (*_stored_headers(), SEQUENCE_HEADER, LAST_SEQUENCE_HEADER),
                (ID_HEADER, MSG_ID_HEADER, EXCLUDE_HEADER, "Nats-Stream", "Nats-Subject"),
            ),
        ),
        "syncRequest": {
            "name": "syncRequest",
            "title": "syncRequest",
            "summary": "Re-send your membership: every node answers with a `snapshot` event.",
            "contentType": "application/octet-stream",
            "payload": {"type": "string", "maxLength": 0, "description": "Empty."},
        },
        "directMessage": _message(
            "directMessage",
            "A server message for one connection, a request to the node that holds it.",
            {"oneOf": [ref(struct.__name__) for struct in get_args(ServerMessage)]},
            _headers((ORIGIN_HEADER, _TARGET_HEADER)),
        ),
        "directAnswer": {
            "name": "directAnswer",
            "title": "directAnswer",
            "summary": "Whether the connection took it: `1` yes, `0` no.",
            "contentType": "text/plain",
            "payload": {"type": "string", "enum": ["1", "0"]},
        },
        "probe": {
            "name": "probe",
            "title": "probe",
            "summary": "A gateway's self-probe: a counter it times the return of.",
            "contentType": "text/plain",
            "payload": {"type": "string", "pattern": "^[0-9]+$"},
        },
        "announced": _message(
            "announced",
            "The presence changes the active rooms replica announced, one message per batch, "
            "sent after announcing them: a standby owes them no more.",
            ref(Announced.__name__),
        ),
        "kick": _message(
            "kick",
            "Close these connections with 4501 (KICKED): the identity's, in `room` only if given.",
            ref(Kick.__name__),
            _headers((ORIGIN_HEADER,)),
        ),
    }
    for event in get_args(NodeEvent):
        tag = _tag(event)
        out[f"{tag}Event"] = _message(f"{tag}Event", f"A node's `{tag}`.", ref(event.__name__))
    failed = _headers((), ("Nats-Service-Error", "Nats-Service-Error-Code"))
    for name, _, query, reply, _ in _QUERIES:
        key = name[0].lower() + name[1:]
        out[f"{key}Query"] = _message(f"{key}Query", f"A `{key}` question.", ref(query.__name__))
        out[f"{key}Reply"] = _message(
            f"{key}Reply", f"The answer to a `{key}` question.", ref(reply.__name__), failed
        )
    return out


def _refs(*names: str) -> dict[str, Any]:
    return {name: {"$ref": f"#/components/messages/{name}"} for name in names}


#: The subject tokens that vary, by their name in an address.
_PARAMETERS: Final[Mapping[str, str]] = {
    "roomToken": (
        "The room's subject token: the room's name itself (every chat room name is one: "
        "`RoomName`); the library encodes any other name as `_` + base32 of its UTF-8 bytes."
    ),
    "node": "A node's id: 16 hex digits, fresh for each process.",
}


def _channel(address: str | None, description: str, *names: str) -> dict[str, Any]:
    channel: dict[str, Any] = {"address": address, "description": description}
    channel["servers"] = [{"$ref": "#/servers/nats"}]
    varying = {name: {"description": text} for name, text in _PARAMETERS.items()}
    parameters = {name: p for name, p in varying.items() if f"{{{name}}}" in (address or "")}
    if parameters:
        channel["parameters"] = parameters
    channel["messages"] = _refs(*names)
    return channel


def channels() -> dict[str, Any]:
    """``channels`` on the ``nats`` server."""
    events = [f"{_tag(event)}Event" for event in get_args(NodeEvent)]
    out = {
        "natsRoom": _channel(
            f"{SUBJECTS.prefix}.{{roomToken}}",
            "A room's traffic: one subscription per room per gateway with local members.",
            "roomTraffic",
            "republishedChatMessage",
        ),
        "natsStored": _channel(
            SUBJECTS.stored_all.replace("*", "{roomToken}"),
            f"Where a room's chat messages are stored: the JetStream stream `{STREAM}` "
            f"(subjects `{SUBJECTS.stored_all}`) keeps them and republishes each to "
            f"`{SUBJECTS.prefix}.{{roomToken}}`.",
            "storedChatMessage",
        ),
        "natsDirectoryEvents": _channel(
            SUBJECTS.events,
            "Membership reports of every node, read by the directory through one "
            "subscription, in the order each node sent them.",
            *events,
        ),
        "natsSyncAll": _channel(
            SUBJECTS.sync_all, "The directory asks every node for a snapshot.", "syncRequest"
        ),
        "natsSyncNode": _channel(
            f"{SUBJECTS.sync_all}.{{node}}",
            "The directory asks one node for a snapshot (unknown node, or a gap).",
            "syncRequest",
        ),
        "natsDirect": _channel(
            f"{SUBJECTS.direct}.{{node}}",
            "Messages for the connections of one node (a connection id starts with its node's id).",
            "directMessage",
            "directAnswer",
        ),
        "natsKick": _channel(SUBJECTS.kick, "Kicks, heard by every node.", "kick"),
        "natsAnnounced": _channel(
            SUBJECTS.announced,
            "What the active rooms replica (the holder of the CHAT_ROOMS_LEASE_BUCKET lease) "
            "announced, heard by the standbys: at a takeover they announce only what no such "
            "message covered.",
            "announced",
        ),
        "natsProbe": _channel(
            SUBJECTS.probe("{node}"),
            "A gateway's self-probe, heard by that gateway alone: every CHAT_PROBE_INTERVAL_S "
            "it publishes here and times the return; two lost in a row fail its readiness.",
            "probe",
        ),
        _INBOX: _channel(
            None, "The asker's own inbox (`_INBOX.>`): replies to requests.", "directAnswer"
        ),
    }
    inbox = out[_INBOX]["messages"]
    for name, subject, _, _, asker in _QUERIES:
        key = name[0].lower() + name[1:]
        out[f"natsDirectory{name}"] = _channel(
            subject,
            f"A `nats.micro` endpoint of the directory, asked by {asker}. A query's `node` and "
            "`seq` name the asker's latest delta: the answer waits (at most 0.5 s) until the "
            "directory applied it.",
            f"{key}Query",
        )
        inbox |= _refs(f"{key}Reply")
    return out


def _operation(
    action: str, channel: str, summary: str, names: list[str], reply: list[str] | None = None
) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "action": action,
        "channel": {"$ref": f"#/channels/{channel}"},
        "summary": summary,
        "messages": [{"$ref": f"#/channels/{channel}/messages/{name}"} for name in names],
    }
    if reply is not None:
        operation["reply"] = {
            "channel": {"$ref": f"#/channels/{_INBOX}"},
            "messages": [{"$ref": f"#/channels/{_INBOX}/messages/{name}"} for name in reply],
        }
    return operation


def operations() -> dict[str, Any]:
    """``operations`` of the services on NATS."""
    events = [f"{_tag(event)}Event" for event in get_args(NodeEvent)]
    out = {
        "publishRoomTraffic": _operation(
            "send",
            "natsRoom",
            "Gateways (typing), the rooms service (joined, left, stopped typing) and the "
            "announcer (announcements) publish live-only traffic.",
            ["roomTraffic"],
        ),
        "receiveRoomTraffic": _operation(
            "receive",
            "natsRoom",
            "Every gateway with local members in the room; it skips the excluded connection.",
            ["roomTraffic", "republishedChatMessage"],
        ),
        "storeChatMessage": _operation(
            "send",
            "natsStored",
            "The sender's gateway stores a chat message before anyone receives it; JetStream "
            "acknowledges on the history's own inbox (a duplicate key is acknowledged as such).",
            ["storedChatMessage"],
        ),
        "reportMembership": _operation(
            "send", "natsDirectoryEvents", "Every gateway reports its membership.", events
        ),
        "readMembership": _operation(
            "receive", "natsDirectoryEvents", "The rooms service (the directory).", events
        ),
        "requestSyncAll": _operation(
            "send", "natsSyncAll", "The rooms service, when it (re)starts.", ["syncRequest"]
        ),
        "answerSyncAll": _operation("receive", "natsSyncAll", "Every gateway.", ["syncRequest"]),
        "requestSyncNode": _operation(
            "send", "natsSyncNode", "The rooms service.", ["syncRequest"]
        ),
        "answerSyncNode": _operation("receive", "natsSyncNode", "That gateway.", ["syncRequest"]),
        "sendDirect": _operation(
            "send",
            "natsDirect",
            "A gateway, for a connection on another.",
            ["directMessage"],
            ["directAnswer"],
        ),
        "receiveDirect": _operation(
            "receive",
            "natsDirect",
            "The node holding the connection.",
            ["directMessage"],
            ["directAnswer"],
        ),
        "publishKick": _operation("send", "natsKick", "`chat kick USER [--room ROOM]`.", ["kick"]),
        "sendProbe": _operation("send", "natsProbe", "Each gateway, to itself.", ["probe"]),
        "publishAnnounced": _operation(
            "send", "natsAnnounced", "The active rooms replica, after each batch.", ["announced"]
        ),
        "receiveAnnounced": _operation(
            "receive", "natsAnnounced", "Every standby rooms replica.", ["announced"]
        ),
        "receiveProbe": _operation("receive", "natsProbe", "The same gateway.", ["probe"]),
        "receiveKick": _operation(
            "receive",
            "natsKick",
            "Every gateway closes its matching connections (4501); the sender skips its echo.",
            ["kick"],
        ),
    }
    for name, _, _, _, asker in _QUERIES:
        key = name[0].lower() + name[1:]
        channel = f"natsDirectory{name}"
        out[f"ask{name}"] = _operation(
            "send", channel, f"Asked by {asker}.", [f"{key}Query"], [f"{key}Reply"]
        )
        out[f"answer{name}"] = _operation(
            "receive",
            channel,
            "Answered by the rooms service.",
            [f"{key}Query"],
            [f"{key}Reply"],
        )
    return out
