"""Fakes shared by the unit tests, handed out through fixtures.

Tests are collected with ``--import-mode=importlib``, so test modules cannot import
a sibling helper module; they receive these fakes through the fixtures below.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

import pytest

from falcon_pachinko import Connection, ConnectionLimits
from falcon_pachinko.testing import scaled

#: Upper bound of any wait for something that should happen at once.
BOUND_S = scaled(0.5)


class FakeSocket:
    """In-memory stand-in for the ``falcon.asgi.WebSocket`` a ``Connection`` wraps.

    ``log`` records what reached the client, in order: ``("accept", subprotocol)``,
    ``("text", str)``, ``("data", bytes)`` and ``("close", code, reason)``.

    * Clear ``reading`` to model a client that stops reading: sends then wait until
      it is set again (``stalled`` counts the sends waiting).
    * Clear ``closing`` to make ``close`` hang.
    * Set ``send_error`` to make sends raise it (checked again after a stall).
    """

    def __init__(self, subprotocols: Iterable[str] = ()) -> None:
        self.subprotocols = tuple(subprotocols)
        self.log: list[tuple[Any, ...]] = []
        self.reading = asyncio.Event()
        self.reading.set()
        self.closing = asyncio.Event()
        self.closing.set()
        self.send_error: BaseException | None = None
        self.stalled = 0
        self._changed = asyncio.Event()

    # -- the falcon.asgi.WebSocket API Connection uses ------------------------

    async def accept(self, subprotocol: str | None = None) -> None:
        self._record(("accept", subprotocol))

    async def send_text(self, payload: str) -> None:
        await self._send(("text", payload))

    async def send_data(self, payload: bytes) -> None:
        await self._send(("data", payload))

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        await self.closing.wait()
        self._record(("close", code, reason))

    # -- for tests -----------------------------------------------------------

    @property
    def frames(self) -> list[str | bytes]:
        """Text and binary frames the client received, in order."""
        return [entry[1] for entry in self.log if entry[0] in ("text", "data")]

    @property
    def closes(self) -> list[tuple[int, str | None]]:
        """Close frames the client received."""
        return [(entry[1], entry[2]) for entry in self.log if entry[0] == "close"]

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = BOUND_S) -> None:
        """Wait, within ``timeout``, until ``predicate()`` holds after a socket event."""
        async with asyncio.timeout(timeout):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

    async def _send(self, entry: tuple[Any, ...]) -> None:
        if self.send_error is None and not self.reading.is_set():
            self.stalled += 1
            self._changed.set()
            try:
                await self.reading.wait()
            finally:
                self.stalled -= 1
        if self.send_error is not None:
            raise self.send_error
        self._record(entry)

    def _record(self, entry: tuple[Any, ...]) -> None:
        self.log.append(entry)
        self._changed.set()


MakeConnection = Callable[..., tuple[Connection, FakeSocket]]


@pytest.fixture
def make_socket() -> Callable[..., FakeSocket]:
    """``sock = make_socket(subprotocols=())``: a fresh :class:`FakeSocket`."""
    return FakeSocket


@pytest.fixture
async def make_connection() -> AsyncIterator[MakeConnection]:
    """``conn, sock = make_connection(**limits)``: a ``Connection`` over a fake socket.

    Keyword arguments are ``ConnectionLimits`` fields (``subprotocols`` goes to the
    socket). Every connection made is released and finished when the test ends.
    """
    made: list[tuple[Connection, FakeSocket]] = []

    def make(subprotocols: Iterable[str] = (), **limits: Any) -> tuple[Connection, FakeSocket]:
        sock = FakeSocket(subprotocols)
        conn = Connection(sock, ConnectionLimits(**limits))  # type: ignore[arg-type]
        made.append((conn, sock))
        return conn, sock

    yield make
    async with asyncio.timeout(BOUND_S):
        for conn, sock in made:
            sock.reading.set()
            sock.closing.set()
            conn.mark_closed(1006)
            await conn.finish()
