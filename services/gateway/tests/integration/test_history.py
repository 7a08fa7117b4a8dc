"""Durable rooms in the single-process chat: history on join, resume, scroll-back, resend.

Real uvicorn, real WebSocket clients, the in-process backend (its history is
bounded memory). The same contract over NATS and JetStream, with processes
killed, is in ``tests/system/test_durable.py``.
"""

from __future__ import annotations

from typing import Any

import pytest

from falcon_pachinko.testing import LiveServer, WSClient, connect, handshake_status

from .conftest import StartGateway

pytestmark = pytest.mark.integration


def url(server: LiveServer, user: str, room: str = "general", **query: str) -> str:
    return server.ws_url(f"/ws/chat/{room}", {"user": user, **query})


def send(text: str, client_msg_id: str | None = None) -> dict[str, Any]:
    payload: dict[str, Any] = {"text": text}
    if client_msg_id is not None:
        payload["clientMsgId"] = client_msg_id
    return {"type": "clientSendMessage", "payload": payload}


async def joined(client: WSClient) -> dict[str, Any]:
    """The join's history frame (after the welcome and the roster)."""
    types = [(await client.receive())["type"] for _ in range(2)]
    assert types == ["serverSystemMessage", "serverPresence"]
    history = await client.receive()
    assert history["type"] == "serverHistory", history
    return history["payload"]  # type: ignore[no-any-return]


async def say(client: WSClient, *texts: str) -> list[dict[str, Any]]:
    """Send messages and return their echoes (payloads), in order."""
    echoes = []
    for text in texts:
        await client.send_json(send(text))
        echoes.append((await client.expect("serverNewMessage"))["payload"])
    return echoes


async def test_a_late_joiner_sees_the_recent_conversation_oldest_first(
    start_gateway: StartGateway,
) -> None:
    server = await start_gateway(CHAT_HISTORY_ON_JOIN="3")
    async with connect(url(server, "Ann")) as ann:
        assert await joined(ann) == {"messages": [], "complete": True}
        echoes = await say(ann, "one", "two", "three", "four")
        async with connect(url(server, "Bob")) as bob:
            history = await joined(bob)
            assert history["messages"] == echoes[1:]  # exactly what was received live
            assert history["complete"] is False  # "one" is older
            assert "resumed" not in history
            later = await say(ann, "five")
            assert (await bob.expect("serverNewMessage"))["payload"] == later[0]


async def test_positions_are_unique_and_increasing(start_gateway: StartGateway) -> None:
    server = await start_gateway()
    async with connect(url(server, "Ann")) as ann:
        await joined(ann)
        echoes = await say(ann, *(f"m{i}" for i in range(5)))
    seqs = [echo["seq"] for echo in echoes]
    assert seqs == sorted(seqs) and len(set(seqs)) == 5
    assert len({echo["id"] for echo in echoes}) == 5
    assert all(isinstance(echo["ts"], int) for echo in echoes)


async def test_a_resume_gets_exactly_what_it_missed_then_live(start_gateway: StartGateway) -> None:
    server = await start_gateway()
    async with connect(url(server, "Ann")) as ann:
        await joined(ann)
        async with connect(url(server, "Bob")) as bob:
            await joined(bob)
            seen = await say(ann, "before")
            await bob.expect("serverNewMessage")
        missed = await say(ann, "while away 1", "while away 2")
        async with connect(url(server, "Bob", since=str(seen[-1]["seq"]))) as back:
            history = await joined(back)
            assert history["messages"] == missed
            assert history["resumed"] is True
            live = await say(ann, "after")
            assert (await back.expect("serverNewMessage"))["payload"] == live[0]


async def test_a_resume_at_the_newest_message_is_complete_and_empty(
    start_gateway: StartGateway,
) -> None:
    server = await start_gateway()
    async with connect(url(server, "Ann")) as ann:
        await joined(ann)
        (last,) = await say(ann, "only")
    async with connect(url(server, "Ann", since=str(last["seq"]))) as back:
        history = await joined(back)
        assert history["messages"] == [] and history["resumed"] is True


async def test_a_resume_past_retention_gets_recent_history_and_resumed_false(
    start_gateway: StartGateway,
) -> None:
    server = await start_gateway(CHAT_HISTORY_MAX_MESSAGES="3", CHAT_HISTORY_ON_JOIN="2")
    async with connect(url(server, "Ann")) as ann:
        await joined(ann)
        echoes = await say(ann, *(f"m{i}" for i in range(6)))
    async with connect(url(server, "Ann", since=str(echoes[0]["seq"]))) as back:
        history = await joined(back)
        assert history["resumed"] is False
        assert history["messages"] == echoes[-2:]


async def test_scroll_back_pages_older_messages_capped(start_gateway: StartGateway) -> None:
    server = await start_gateway(CHAT_HISTORY_ON_JOIN="2", CHAT_HISTORY_PAGE_MAX="3")
    async with connect(url(server, "Ann")) as ann:
        await joined(ann)
        echoes = await say(ann, *(f"m{i}" for i in range(8)))
    async with connect(url(server, "Bob")) as bob:
        history = await joined(bob)
        assert history["messages"] == echoes[-2:]
        oldest = history["messages"][0]["seq"]
        request = {"type": "clientFetchHistory", "payload": {"before": oldest, "limit": 50}}
        await bob.send_json(request)
        page = (await bob.expect("serverHistory"))["payload"]
        assert page["messages"] == echoes[3:6]  # capped at CHAT_HISTORY_PAGE_MAX
        assert page["complete"] is False
        request["payload"]["before"] = page["messages"][0]["seq"]
        await bob.send_json(request)
        last = (await bob.expect("serverHistory"))["payload"]
        assert last == {"messages": echoes[:3], "complete": True}


async def test_a_resend_with_the_same_client_msg_id_is_not_a_second_message(
    start_gateway: StartGateway,
) -> None:
    server = await start_gateway()
    async with connect(url(server, "Watcher")) as watcher:
        await joined(watcher)
        async with connect(url(server, "Ann")) as ann:
            await joined(ann)
            await ann.send_json(send("hello", "c-1"))
            echo = (await ann.expect("serverNewMessage"))["payload"]
            assert echo["clientMsgId"] == "c-1" and echo["text"] == "hello"
        # Ann reconnects, not sure it went through, and sends it again.
        async with connect(url(server, "Ann", since=str(echo["seq"]))) as again:
            await joined(again)
            await again.send_json(send("hello", "c-1"))
            await again.send_json(send("marker", "c-2"))
            # The gateway cannot know what Ann's earlier connection saw: she is
            # answered with the stored original, to her alone (same id and seq).
            original = (await again.expect("serverNewMessage"))["payload"]
            assert original == echo
            marker = (await again.expect("serverNewMessage"))["payload"]
            assert marker["clientMsgId"] == "c-2"  # the resend stored nothing
        seen = [m["payload"] for m in watcher.received if m["type"] == "serverNewMessage"]
        seen.append((await watcher.expect("serverNewMessage"))["payload"])
        while seen[-1]["text"] != "marker":
            seen.append((await watcher.expect("serverNewMessage"))["payload"])
        assert [m["text"] for m in seen] == ["hello", "marker"]
        # Another user's message with the same clientMsgId is its own message.
        async with connect(url(server, "Bob")) as bob:
            await joined(bob)
            await bob.send_json(send("mine", "c-1"))
            assert (await bob.expect("serverNewMessage"))["payload"]["text"] == "mine"


@pytest.mark.parametrize("since", ["-1", "abc", "1.5", "9" * 30, ""])
async def test_a_since_that_is_not_a_position_is_http_400(
    start_gateway: StartGateway, since: str
) -> None:
    server = await start_gateway()
    assert await handshake_status(url(server, "Ann", since=since)) == 400


async def test_with_history_off_messages_are_live_only(start_gateway: StartGateway) -> None:
    server = await start_gateway(CHAT_HISTORY="false")
    async with connect(url(server, "Ann", since="5")) as ann:
        assert (await ann.receive())["type"] == "serverSystemMessage"
        assert (await ann.receive())["type"] == "serverPresence"
        await ann.send_json(send("hi"))
        message = await ann.receive()
        assert message == {"type": "serverNewMessage", "payload": {"user": "Ann", "text": "hi"}}
        await ann.send_json({"type": "clientFetchHistory"})
        error = await ann.expect("serverError")
        assert error["payload"]["code"] == "unavailable"


async def test_a_resend_the_sender_has_not_seen_is_answered_with_the_original(
    start_gateway: StartGateway,
) -> None:
    server = await start_gateway(CHAT_HISTORY_ON_JOIN="1")
    async with connect(url(server, "Watcher")) as watcher:
        await joined(watcher)
        async with connect(url(server, "Ann")) as ann:
            await joined(ann)
            await ann.send_json(send("hello", "c-1"))
            original = (await ann.expect("serverNewMessage"))["payload"]
            await say(ann, "newer")  # the join history of 1 will not reach "hello"
        # A reload: no cursor. The client resends what it never saw echoed.
        async with connect(url(server, "Ann")) as again:
            await joined(again)
            await again.send_json(send("hello", "c-1"))
            assert (await again.expect("serverNewMessage"))["payload"] == original
            await again.send_json(send("marker", "c-2"))
            assert (await again.expect("serverNewMessage"))["payload"]["text"] == "marker"
        texts = []
        while not texts or texts[-1] != "marker":
            texts.append((await watcher.expect("serverNewMessage"))["payload"]["text"])
        assert texts == ["hello", "newer", "marker"]  # the resend reached no one else
