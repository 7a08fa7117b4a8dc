"""A raw WebSocket client for hostile-input tests: it writes any bytes, valid or not.

Real clients (``websockets``) refuse to send broken frames; these tests need to,
and to read exactly what the server sends back.
"""

from __future__ import annotations

import asyncio
import base64
import os
import struct
from typing import NamedTuple

from falcon_pachinko.testing import scaled

OP_CONTINUATION, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


class Frame(NamedTuple):
    fin: bool
    opcode: int
    payload: bytes


def encode_frame(
    opcode: int,
    payload: bytes,
    *,
    fin: bool = True,
    mask: bool = True,
    rsv: int = 0,
    declared_length: int | None = None,
) -> bytes:
    """One frame; ``declared_length`` lies about the payload length when set."""
    first = (0x80 if fin else 0) | (rsv << 4) | opcode
    length = len(payload) if declared_length is None else declared_length
    mask_bit = 0x80 if mask else 0
    if length < 126:
        header = struct.pack("!BB", first, mask_bit | length)
    elif length < 1 << 16:
        header = struct.pack("!BBH", first, mask_bit | 126, length)
    else:
        header = struct.pack("!BBQ", first, mask_bit | 127, length)
    if not mask:
        return header + payload
    key = os.urandom(4)
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return header + key + masked


class RawWebSocket:
    """A WebSocket client speaking bytes on a plain TCP connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.status = 0
        self.headers: dict[str, str] = {}

    @classmethod
    async def open(
        cls, port: int, path: str, *, extra_headers: dict[str, str] | None = None
    ) -> RawWebSocket:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        client = cls(reader, writer)
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [
            f"GET {path} HTTP/1.1",
            f"Host: 127.0.0.1:{port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
            *(f"{k}: {v}" for k, v in (extra_headers or {}).items()),
        ]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        await writer.drain()
        async with asyncio.timeout(scaled(5)):
            head = await reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        client.status = int(status_line.split()[1])
        for line in header_lines:
            if ":" in line:
                name, _, value = line.partition(":")
                client.headers[name.strip().lower()] = value.strip()
        return client

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def read_frame(self, timeout_s: float = 5) -> Frame:
        async with asyncio.timeout(scaled(timeout_s)):
            first, second = await self.reader.readexactly(2)
            length = second & 0x7F
            if length == 126:
                (length,) = struct.unpack("!H", await self.reader.readexactly(2))
            elif length == 127:
                (length,) = struct.unpack("!Q", await self.reader.readexactly(8))
            payload = await self.reader.readexactly(length)  # servers never mask
        return Frame(bool(first & 0x80), first & 0x0F, payload)

    async def close_code(self, timeout_s: float = 5, *, answer_pings: bool = True) -> int:
        """Read until the server's close frame; return its code (1005 if it has none)."""
        while True:
            frame = await self.read_frame(timeout_s)
            if frame.opcode == OP_CLOSE:
                return struct.unpack("!H", frame.payload[:2])[0] if frame.payload else 1005
            if frame.opcode == OP_PING and answer_pings:
                await self.send(encode_frame(OP_PONG, frame.payload))

    async def closed_by_server(self, timeout_s: float = 5) -> None:
        """Wait until the server has closed the TCP connection (reads until EOF)."""
        async with asyncio.timeout(scaled(timeout_s)):
            while await self.reader.read(65536):
                pass

    def abort(self) -> None:
        self.writer.transport.abort()
