"""``chat client``: wire the command line to the terminal client of :mod:`chat_client`."""

from __future__ import annotations

import argparse
import asyncio
from typing import TextIO

from chat_client import ChatClient
from chat_client.terminal import run, stdin_lines
from chat_protocol.errors import InvalidRoomName

__all__ = ["run_client"]


def run_client(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Run the terminal client on standard input until it ends; the exit code."""
    try:
        client = ChatClient(args.url, args.room, user=args.user, token=args.token, since=args.since)
    except InvalidRoomName as exc:
        print(f"chat client: {exc}", file=err)
        return 2
    return asyncio.run(run(client, stdin_lines(), out, err, echo_timeout_s=args.echo_timeout))
