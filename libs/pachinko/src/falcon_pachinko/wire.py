"""Server frames on the wire, and the socket that takes them (pure).

A server's WebSocket frames are not masked (RFC 6455, section 5.1), so one
message sent to many connections is one frame: :func:`server_frame` builds its
bytes once, and each recipient's socket gets those same bytes. A server that
lets the library write to its sockets directly offers a :class:`FrameSink` per
connection in the ASGI scope, under :data:`EXTENSION`; the connection then
writes room traffic synchronously while the socket can take it, with no task
switch and no second encoding, and falls back to its bounded queue (and the
ASGI ``send``) when it cannot. Without the extension everything goes through
ASGI, on any server.

Compression: a frame written this way is never compressed (RSV1 clear), which
permessage-deflate allows for any message; the peer's decompression context is
untouched by uncompressed messages.
"""

from __future__ import annotations

import struct
from typing import Final, Protocol

__all__ = ["EXTENSION", "FrameSink", "server_frame"]

#: The ASGI scope extension under which a server offers a :class:`FrameSink`.
EXTENSION: Final = "pachinko.wire"

_TEXT: Final = 0x81  # FIN | text
_BINARY: Final = 0x82  # FIN | binary
_SHORT: Final = struct.Struct("!BB")
_MEDIUM: Final = struct.Struct("!BBH")
_LONG: Final = struct.Struct("!BBQ")


def server_frame(payload: bytes, *, text: bool = True) -> bytes:
    """The bytes of one unfragmented, unmasked server frame holding ``payload``."""
    first = _TEXT if text else _BINARY
    size = len(payload)
    if size < 126:
        header = _SHORT.pack(first, size)
    elif size < 1 << 16:
        header = _MEDIUM.pack(first, 126, size)
    else:
        header = _LONG.pack(first, 127, size)
    return header + payload


class FrameSink(Protocol):
    """A connection's socket, as the server lends it for data frames.

    Close frames, pings and the handshake stay the server's: a sink only ever
    takes whole data frames, between the server's own writes.
    """

    def writable(self) -> bool:
        """Whether the socket is open and its write buffer below the high-water mark."""
        ...

    def write(self, data: bytes) -> None:
        """Write whole frames, in order (never blocks; they may go out a moment later).

        Whatever the server writes on the connection afterwards — its close
        frame above all — goes after them.
        """
        ...

    def flush(self) -> None:
        """Hand what was written to the transport now."""
        ...

    async def drained(self) -> None:
        """Wait until the socket can take more (or is gone)."""
        ...
