"""``chat`` argument parsing."""

from __future__ import annotations

import pytest

from chat_launcher.cli import build_parser, up_options
from chat_launcher.plan import UpOptions


def test_up_defaults_are_the_documented_ports() -> None:
    args = build_parser().parse_args(["up"])
    assert up_options(args) == UpOptions(
        gateways=1, port=8000, host="127.0.0.1", metrics_port=9101, nats_port=4222
    )


def test_up_takes_every_option() -> None:
    argv = ["up", "--gateways", "3", "--port", "9000", "--host", "0.0.0.0"]
    argv += ["--metrics-port", "0", "--nats-port", "14222"]
    assert up_options(build_parser().parse_args(argv)) == UpOptions(
        gateways=3, port=9000, host="0.0.0.0", metrics_port=0, nats_port=14222
    )


def test_token_takes_a_name_and_a_ttl() -> None:
    args = build_parser().parse_args(["token", "Alice", "--ttl", "60"])
    assert (args.command, args.name, args.ttl) == ("token", "Alice", 60.0)
    assert build_parser().parse_args(["token", "Bob"]).ttl == 3600.0


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["down"],
        ["up", "--gateways", "0"],
        ["up", "--gateways", "two"],
        ["up", "--port", "0"],
        ["up", "--port", "65536"],
        ["up", "--metrics-port", "-1"],
        ["up", "--nats-port", "0"],
        ["token"],
        ["token", "Alice", "--ttl", "0"],
        ["token", "Alice", "--ttl", "-5"],
        ["token", "Alice", "--ttl", "inf"],
    ],
    ids=lambda argv: " ".join(argv) or "nothing",
)
def test_bad_usage_exits_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(argv)
    assert exited.value.code == 2
    assert "usage: chat" in capsys.readouterr().err


def test_kick_takes_a_user_a_room_and_a_reason() -> None:
    args = build_parser().parse_args(["kick", "Alice", "--room", "general", "--reason", "spam"])
    assert (args.command, args.user, args.room, args.reason) == ("kick", "Alice", "general", "spam")
    args = build_parser().parse_args(["kick", "Bob"])
    assert (args.room, args.reason) == (None, "removed by an operator")
