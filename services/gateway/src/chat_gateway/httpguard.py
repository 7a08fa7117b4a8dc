"""HTTP/1.1 with a deadline for request headers: slow clients cannot hold sockets open.

uvicorn arms no timer on a new connection, and every byte received cancels its
keep-alive timer, so a client that trickles its request headers one byte at a
time (slowloris) keeps a socket, a file descriptor and a parser forever — before
any route, middleware or authentication runs. This protocol gives every request
``timeout_s`` from its first byte (or from the connection, for the first
request) to finish its headers; past that the connection is dropped.

Once the headers are complete, a WebSocket upgrade is bounded by the library's
``on_connect`` timeout and an ordinary request by uvicorn's own handling.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["HeaderDeadlineProtocol", "header_deadline_protocol"]


class HeaderDeadlineProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline for each request's headers.

    Configure a subclass with :func:`header_deadline_protocol`.
    """

    timeout_s: ClassVar[float] = 10.0
    _deadline: asyncio.TimerHandle | None = None

    def on_timeout(self) -> None:
        """Called once per connection dropped for slow headers (before it closes)."""

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._deadline is None:  # the first request's runs from the connection
            self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(self.timeout_s, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            self.on_timeout()
            self.transport.close()


def header_deadline_protocol(
    timeout_s: float, on_timeout: Callable[[], None] = lambda: None
) -> type[asyncio.Protocol]:
    """A :class:`HeaderDeadlineProtocol` for ``uvicorn.Config(http=...)``.

    Args:
        timeout_s: Seconds a request has to send its complete headers.
        on_timeout: Called once per dropped connection (metrics, logs).
    """

    def timed_out(self: HeaderDeadlineProtocol) -> None:
        on_timeout()

    namespace = {"timeout_s": timeout_s, "on_timeout": timed_out}
    return type("HeaderDeadlineProtocol", (HeaderDeadlineProtocol,), namespace)
