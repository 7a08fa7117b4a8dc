"""The ``chat`` command line: ``chat up``, ``chat token``, ``chat kick``, ``chat client``
and ``chat asyncapi``."""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from typing import TextIO

from .plan import DEFAULT_METRICS_PORT, DEFAULT_NATS_PORT, DEFAULT_PORT, UpOptions
from .tokens import DEFAULT_TTL_S, run_token

#: The close reason ``chat kick`` sends unless told otherwise.
DEFAULT_REASON = "removed by an operator"

__all__ = ["build_parser", "main", "up_options"]

_DESCRIPTION = "Run the whole chat on this machine, and make tokens for it."
_UP_HELP = (
    "Start nats-server (unless CHAT_NATS_URL is set; JetStream data in .data/nats), "
    "the rooms service, the announcer and the gateways; print their URLs and how to "
    "connect; stop them all on Ctrl-C."
)
_KICK_HELP = (
    "Close USER's connections on every gateway (only in ROOM with --room) with close "
    "code 4501, which clients take as final. Publishes one kick to CHAT_NATS_URL."
)
_CLIENT_HELP = (
    "Join ROOM of the gateway at URL: lines read are sent, what arrives is printed with "
    "its sender and time (/who: who is here, /older: older messages, /quit). It "
    "reconnects and resumes by itself. At the end of input it waits until its messages "
    "are echoed, then exits 0; 1 if the chat ended it or an echo did not come."
)
_ASYNCAPI_HELP = (
    "Write the AsyncAPI 3.0 document of the client protocol and of the NATS subjects "
    "between the services, generated from chat_protocol's structs, to standard output "
    "or PATH. The committed copy is docs/asyncapi.yaml: --output docs/asyncapi.yaml."
)
_TOKEN_HELP = (
    "Print a token for NAME, signed with CHAT_JWT_SECRET (honours CHAT_JWT_AUDIENCE, "
    "CHAT_JWT_ISSUER and CHAT_JWT_USER_CLAIM)."
)


def _int_in(low: int, high: int) -> type[int]:
    def convert(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is not within {low}-{high}")
        return value

    convert.__name__ = "int"
    return convert  # type: ignore[return-value]


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text} is not a positive number of seconds")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The ``chat`` argument parser, with its ``up`` and ``token`` sub-commands."""
    parser = argparse.ArgumentParser(prog="chat", description=_DESCRIPTION)
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="{up,token,kick,client,asyncapi}"
    )
    up = commands.add_parser("up", help="run everything until Ctrl-C", description=_UP_HELP)
    up.add_argument(
        "--gateways",
        type=_int_in(1, 64),
        default=1,
        metavar="N",
        help="number of gateways (default: 1)",
    )
    up.add_argument(
        "--port",
        type=_int_in(1, 65535),
        default=DEFAULT_PORT,
        metavar="BASE",
        help=f"first gateway port; the others follow (default: {DEFAULT_PORT})",
    )
    up.add_argument(
        "--host",
        default="127.0.0.1",
        metavar="H",
        help="interface the gateways listen on (default: 127.0.0.1)",
    )
    up.add_argument(
        "--metrics-port",
        type=_int_in(0, 65534),
        default=DEFAULT_METRICS_PORT,
        metavar="PORT",
        help="rooms metrics port, the announcer's is the next one; "
        f"0 picks free ones (default: {DEFAULT_METRICS_PORT})",
    )
    up.add_argument(
        "--nats-port",
        type=_int_in(1, 65535),
        default=DEFAULT_NATS_PORT,
        metavar="PORT",
        help="port of the nats-server started when CHAT_NATS_URL "
        f"is unset (default: {DEFAULT_NATS_PORT})",
    )
    token = commands.add_parser("token", help="print a token for NAME", description=_TOKEN_HELP)
    token.add_argument("name", metavar="NAME", help="the user's chat name")
    token.add_argument(
        "--ttl",
        type=_positive_float,
        default=DEFAULT_TTL_S,
        metavar="SECONDS",
        help=f"lifetime of the token (default: {DEFAULT_TTL_S:g})",
    )
    kick = commands.add_parser("kick", help="disconnect USER everywhere", description=_KICK_HELP)
    kick.add_argument("user", metavar="USER", help="the user's chat name")
    kick.add_argument("--room", metavar="ROOM", help="only the user's connections to ROOM")
    kick.add_argument(
        "--reason",
        default=DEFAULT_REASON,
        metavar="TEXT",
        help=f"close reason the clients see (default: {DEFAULT_REASON!r})",
    )
    _add_client(commands)
    asyncapi = commands.add_parser(
        "asyncapi", help="write the AsyncAPI document", description=_ASYNCAPI_HELP
    )
    asyncapi.add_argument("--output", metavar="PATH", help="file to write (default: stdout)")
    return parser


def _add_client(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    client = commands.add_parser("client", help="chat in a terminal", description=_CLIENT_HELP)
    client.add_argument(
        "--url",
        default=f"ws://127.0.0.1:{DEFAULT_PORT}",
        metavar="URL",
        help=f"the gateway (default: ws://127.0.0.1:{DEFAULT_PORT})",
    )
    client.add_argument("--room", required=True, metavar="ROOM", help="the room to join")
    who = client.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", metavar="NAME", help="your name (a gateway with CHAT_AUTH=dev)")
    who.add_argument("--token", metavar="TOKEN", help="a token (chat token NAME)")
    client.add_argument(
        "--since", type=_int_in(0, 2**63 - 1), metavar="SEQ", help="resume after this seq"
    )
    client.add_argument(
        "--echo-timeout",
        type=_positive_float,
        default=10.0,
        metavar="SECONDS",
        help="at the end of input, how long to wait for echoes (default: 10)",
    )


def up_options(args: argparse.Namespace) -> UpOptions:
    """The :class:`UpOptions` of parsed ``chat up`` arguments."""
    return UpOptions(
        gateways=args.gateways,
        port=args.port,
        host=args.host,
        metrics_port=args.metrics_port,
        nats_port=args.nats_port,
    )


def main(argv: Sequence[str], environ: Mapping[str, str], out: TextIO, err: TextIO) -> int:
    """Run ``chat`` with ``argv`` (without the program name).

    Returns:
        The exit code. Usage errors exit 2 through argparse (``SystemExit``).
    """
    args = build_parser().parse_args(argv)
    if args.command == "token":
        return run_token(args.name, args.ttl, environ, out, err)
    if args.command == "client":
        from .client import run_client

        return run_client(args, out, err)
    if args.command == "kick":
        from .kick import run_kick

        return run_kick(args.user, args.room, args.reason, environ, out, err)
    if args.command == "asyncapi":
        from .asyncapi import run_asyncapi

        return run_asyncapi(args.output, out, err)
    # Imported here: `chat token` needs neither asyncio subprocesses nor the services.
    from .up import run_up

    return run_up(up_options(args), environ, out, err)
