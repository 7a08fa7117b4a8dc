"""Durable rooms across real processes: what a sender saw echoed survives any one failure.

nats-server with JetStream, chat-rooms and chat-gateways as processes, real
WebSocket clients. Each guarantee of the durable-room contract has its test:

* an echoed message survives ``kill -9`` of the gateway that accepted it, and of
  nats-server (restarted on the same store);
* while NATS is away a send is refused with ``serverError`` ``unavailable`` and
  never stored behind the sender's back;
* a client that was away resumes on *another* gateway with exactly what it
  missed, in room order; so do all the clients of a gateway killed with SIGKILL;
* a resume past retention says ``resumed: false`` and sends the recent history.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed

from falcon_pachinko.testing import WSClient, connect
from falcon_pachinko.testing.nats import NatsCluster

from .cluster import Cluster, Service, nats_cluster_chat

pytestmark = pytest.mark.system


def send(text: str, client_msg_id: str | None = None) -> dict[str, Any]:
    payload: dict[str, Any] = {"text": text}
    if client_msg_id is not None:
        payload["clientMsgId"] = client_msg_id
    return {"type": "clientSendMessage", "payload": payload}


async def joined(client: WSClient) -> dict[str, Any]:
    """Wait for the join's history (after welcome and roster); its payload."""
    return (await client.expect("serverHistory", timeout_s=10))["payload"]  # type: ignore[no-any-return]


async def say(client: WSClient, text: str, client_msg_id: str | None = None) -> dict[str, Any]:
    """Send a message and wait for its echo: from then on it is durable."""
    await client.send_json(send(text, client_msg_id))
    while True:
        echo = (await client.expect("serverNewMessage", timeout_s=10))["payload"]
        if echo["text"] == text:
            return echo  # type: ignore[no-any-return]


async def resumed(client: WSClient) -> tuple[list[dict[str, Any]], bool | None]:
    """Every history message of a resume, in order, and its ``resumed`` flag."""
    messages: list[dict[str, Any]] = []
    while True:
        page = await joined(client)
        messages += page["messages"]
        if "resumed" in page:
            return messages, page["resumed"]


async def durable_chat(chat: Cluster, gateways: int = 1, **env: str) -> list[Service]:
    await chat.rooms()
    return [await chat.gateway(**env) for _ in range(gateways)]


async def test_an_echoed_message_survives_kill_9_of_its_gateway(chat: Cluster) -> None:
    first, second = await durable_chat(chat, gateways=2)
    async with connect(chat.ws_url(first, "general", user="Ann")) as ann:
        await joined(ann)
        before = await say(ann, "hello")
        echo = await say(ann, "kept")
        await first.kill()
    async with connect(chat.ws_url(second, "general", user="Bob")) as bob:
        history = await joined(bob)
        assert history["messages"] == [before, echo]
    async with connect(chat.ws_url(second, "general", user="Ann", since=str(before["seq"]))) as ann:
        messages, complete = await resumed(ann)
        assert (messages, complete) == ([echo], True)


async def test_an_echoed_message_survives_kill_9_of_nats_server(chat: Cluster) -> None:
    (gateway,) = await durable_chat(chat)
    async with connect(chat.ws_url(gateway, "general", user="Ann")) as ann:
        await joined(ann)
        first = await say(ann, "before the crash")
        echo = await say(ann, "acknowledged")
    await chat.nats.kill()  # SIGKILL: no chance to flush anything more
    mark = len(gateway.logs)
    await chat.nats.restart()  # the same port and the same JetStream store
    await gateway.wait_for(gateway.since(mark, "nats.reconnected"), timeout_s=20)
    async with connect(chat.ws_url(gateway, "general", user="Bob")) as bob:
        assert (await joined(bob))["messages"] == [first, echo]
    async with connect(chat.ws_url(gateway, "general", user="Ann", since=str(first["seq"]))) as ann:
        assert await resumed(ann) == ([echo], True)
        # And the room goes on: new messages get later positions.
        after = await say(ann, "after the restart")
        assert after["seq"] > echo["seq"]


async def test_while_nats_is_away_a_send_is_refused_and_not_stored_later(chat: Cluster) -> None:
    (gateway,) = await durable_chat(chat)
    async with connect(chat.ws_url(gateway, "general", user="Ann")) as ann:
        await joined(ann)
        kept = await say(ann, "before")
        mark = len(gateway.logs)
        await chat.nats.stop()
        await gateway.wait_for(gateway.since(mark, "nats.disconnected"), timeout_s=10)
        await ann.send_json(send("during the outage", "c-out"))
        error = await ann.expect("serverError", timeout_s=10)
        assert error["payload"]["code"] == "unavailable"
        mark = len(gateway.logs)
        await chat.nats.start()
        await gateway.wait_for(gateway.since(mark, "nats.reconnected"), timeout_s=20)
    async with connect(chat.ws_url(gateway, "general", user="Bob")) as bob:
        # What was refused was not stored behind the sender's back.
        assert (await joined(bob))["messages"] == [kept]
    async with connect(chat.ws_url(gateway, "general", user="Ann")) as ann:
        await joined(ann)
        retried = await say(ann, "during the outage", "c-out")  # the client's retry
        assert retried["seq"] > kept["seq"] and retried["clientMsgId"] == "c-out"


async def test_a_client_away_resumes_on_the_other_gateway_with_exactly_what_it_missed(
    chat: Cluster,
) -> None:
    first, second = await durable_chat(chat, gateways=2)
    url = chat.ws_url
    async with (
        connect(url(first, "general", user="Ann")) as ann,
        connect(url(second, "general", user="Bob")) as bob,
    ):
        await joined(ann)
        await joined(bob)
        async with connect(url(first, "general", user="Cat")) as cat:
            await joined(cat)
            last_seen = await say(cat, "Cat was here")
        missed = []
        for i in range(12):  # both gateways keep chatting while Cat is away
            speaker = ann if i % 2 else bob
            missed.append(await say(speaker, f"missed {i}"))
        async with connect(url(second, "general", user="Cat", since=str(last_seen["seq"]))) as cat:
            messages, complete = await resumed(cat)
            assert complete is True
            assert messages == sorted(missed, key=lambda m: m["seq"])
            assert [m["text"] for m in messages] == [f"missed {i}" for i in range(12)]
            live = await say(ann, "live again")
            assert (await cat.expect("serverNewMessage"))["payload"] == live


async def test_every_client_of_a_killed_gateway_resumes_elsewhere_without_gap_or_duplicate(
    chat: Cluster,
) -> None:
    doomed, survivor = await durable_chat(chat, gateways=2)
    url = chat.ws_url
    users = [f"U{i}" for i in range(4)]
    async with contextlib.AsyncExitStack() as stack:
        speaker = await stack.enter_async_context(connect(url(survivor, "general", user="Spk")))
        await joined(speaker)
        victims = [
            await stack.enter_async_context(connect(url(doomed, "general", user=user)))
            for user in users
        ]
        for victim in victims:
            await joined(victim)
        said = [await say(speaker, f"m{i}") for i in range(3)]
        last_seen = []
        for victim in victims:  # every victim has received everything so far
            while True:
                message = (await victim.expect("serverNewMessage"))["payload"]
                if message["seq"] == said[-1]["seq"]:
                    break
            last_seen.append(message["seq"])
        await doomed.kill()
        # The room goes on while they reconnect.
        talking = asyncio.create_task(_chatter(speaker, "after", 10))
        resumes = [
            await stack.enter_async_context(
                connect(url(survivor, "general", user=user, since=str(seen)))
            )
            for user, seen in zip(users, last_seen, strict=True)
        ]
        after = await talking
        for client, seen in zip(resumes, last_seen, strict=True):
            got, complete = await resumed(client)
            assert complete is True
            got += await _until(client, after[-1]["seq"], got)
            assert [m["seq"] for m in got] == [m["seq"] for m in after if m["seq"] > seen]
            assert len({m["id"] for m in got}) == len(got)


async def test_a_resume_past_retention_says_resumed_false(chat: Cluster) -> None:
    (gateway,) = await durable_chat(chat, CHAT_HISTORY_MAX_MESSAGES="3", CHAT_HISTORY_ON_JOIN="2")
    async with connect(chat.ws_url(gateway, "general", user="Ann")) as ann:
        await joined(ann)
        said = [await say(ann, f"m{i}") for i in range(6)]
    async with connect(
        chat.ws_url(gateway, "general", user="Ann", since=str(said[0]["seq"]))
    ) as ann:
        messages, complete = await resumed(ann)
        assert complete is False
        assert messages == said[-2:]


async def _chatter(client: WSClient, prefix: str, count: int) -> list[dict[str, Any]]:
    return [await say(client, f"{prefix} {i}") for i in range(count)]


async def _until(
    client: WSClient, last_seq: int, got: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Live messages after the history, until ``last_seq`` has arrived."""
    if got and got[-1]["seq"] >= last_seq:
        return []
    live = []
    while True:
        message = (await client.expect("serverNewMessage", timeout_s=10))["payload"]
        live.append(message)
        if message["seq"] >= last_seq:
            return live


async def test_a_gateway_cut_off_from_nats_loses_no_message_for_its_clients(
    tmp_path: Path,
) -> None:
    """A gateway is cut off from NATS while its room goes on talking elsewhere.

    A three-node JetStream cluster keeps the history stream with three replicas.
    One gateway knows only one node; that node is killed, the room talks through
    the other gateway, and the node comes back. What was stored meanwhile was
    republished to no one on the cut-off gateway: its client is closed with 4003
    and resumes with ``since``. It ends with every message exactly once, in room
    order.
    """
    async with nats_cluster_chat(tmp_path, jetstream=True, CHAT_HISTORY_REPLICAS="3") as chat:
        nats = chat.nats
        assert isinstance(nats, NatsCluster)
        await chat.rooms()
        steady = await chat.gateway(CHAT_NATS_URL=",".join(nats.urls[1:]))
        cut = await chat.gateway(CHAT_NATS_URL=nats.urls[0])  # knows only node 0
        async with connect(chat.ws_url(steady, "general", user="Ben")) as ben:
            await joined(ben)
            reader = ResumingReader(chat, cut, "Ann")
            await reader.open()
            said = [await say(ben, "before")]
            await reader.until(said[-1]["seq"])
            mark = len(cut.logs)
            await nats.kill(0)
            await cut.wait_for(cut.since(mark, "nats.disconnected"), timeout_s=10)
            said += [await say_until_stored(ben, f"while cut off {i}") for i in range(5)]
            await nats.restart(0)
            await cut.wait_for(cut.since(mark, "nats.reconnected"), timeout_s=20)
            said.append(await say_until_stored(ben, "after"))
            got = await reader.until(said[-1]["seq"])
            await reader.close()
        assert [m["seq"] for m in got] == [m["seq"] for m in said]
        assert [m["text"] for m in got] == [m["text"] for m in said]
        assert reader.resumes == 1, "the cut-off gateway's client must have resumed"


class ResumingReader:
    """A client that reads a room's messages and resumes with ``since`` on 4003."""

    def __init__(self, chat: Cluster, gateway: Service, user: str) -> None:
        self.chat, self.gateway, self.user = chat, gateway, user
        self.got: list[dict[str, Any]] = []
        self.resumes = 0
        self._client: WSClient | None = None
        self._stack = contextlib.AsyncExitStack()

    async def open(self) -> None:
        query = {"user": self.user}
        if self.got:
            query["since"] = str(self.got[-1]["seq"])
        url = self.chat.ws_url(self.gateway, "general", **query)
        self._client = await self._stack.enter_async_context(connect(url))
        if not self.got:
            await joined(self._client)  # a first join: the reader starts after it
            return
        messages, complete = await resumed(self._client)  # every frame of the resume
        assert complete is True, "a resume within retention must complete"
        self.got += messages

    async def until(self, seq: int) -> list[dict[str, Any]]:
        while not self.got or self.got[-1]["seq"] < seq:
            assert self._client is not None
            try:
                message = await self._client.expect("serverNewMessage", timeout_s=15)
            except ConnectionClosed:
                assert self._client.conn.close_code == 4003, self._client.conn.close_code
                self.resumes += 1
                await self._stack.aclose()
                self._stack = contextlib.AsyncExitStack()
                await self.open()
                continue
            self.got.append(message["payload"])
        return self.got

    async def close(self) -> None:
        await self._stack.aclose()


async def say_until_stored(client: WSClient, text: str) -> dict[str, Any]:
    """Send with a clientMsgId until it is echoed: resends while the store is away."""
    client_msg_id = f"id-{text}"
    async with asyncio.timeout(30):
        while True:
            await client.send_json(send(text, client_msg_id))
            while True:
                message = await client.receive(timeout_s=15)
                if message["type"] == "serverError":
                    assert message["payload"]["code"] == "unavailable", message
                    break  # not stored: send it again, with the same id
                if message["type"] == "serverNewMessage" and message["payload"]["text"] == text:
                    return message["payload"]  # type: ignore[no-any-return]
