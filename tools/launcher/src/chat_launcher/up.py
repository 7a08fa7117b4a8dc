"""``chat up``: nats-server, rooms, announcer and N gateways, until Ctrl-C.

Order of events:

1. Plan (options, CHAT_* values; exit 2 when invalid) and check the ports are free
   (exit 1 with a hint when not). Nothing is running yet.
2. Start nats-server (unless CHAT_NATS_URL is set), then rooms, then the announcer,
   then the gateways; each group must log ``service.ready`` before the next starts.
3. Print the URLs and how to connect; wait for a signal or for a child to exit.
4. In every case, ``finally``: stop the gateways, the announcer, rooms, nats-server,
   each with SIGTERM and a bounded wait, then SIGKILL. Exit 0 after a signal, 1
   when a child died or did not start.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import signal
from collections.abc import Callable, Coroutine, Iterator, Mapping
from pathlib import Path
from typing import Any, Final, TextIO, TypeVar

from .errors import ChildFailed, ConfigError, LaunchError, NotReady, PortInUse
from .plan import Plan, UpOptions, make_plan
from .ports import busy_ports
from .summary import DEMO_TTL_S, DEMO_USER, ready_message
from .supervisor import Emit, Supervisor
from .tokens import mint

__all__ = ["NATS_DIR", "READY_TIMEOUT_S", "STOP_TIMEOUT_S", "run_up"]

#: The local nats-server's JetStream directory, relative to the current directory.
NATS_DIR: Final = Path(".data/nats")
#: Bound on each group's readiness: a Python service starts in a second or two.
READY_TIMEOUT_S: Final = 30.0
#: Bound on each child's graceful stop before SIGKILL: the gateway's own
#: CHAT_SHUTDOWN_TIMEOUT_S default is 10 s.
STOP_TIMEOUT_S: Final = 10.0
_SIGNALS: Final = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

T = TypeVar("T")


def run_up(options: UpOptions, environ: Mapping[str, str], out: TextIO, err: TextIO) -> int:
    """Run ``chat up`` to the end.

    Returns:
        The exit code: 0 after Ctrl-C/SIGTERM, 1 when a child failed, 2 for bad input.
    """
    return asyncio.run(_up(options, environ, out, _emitter(err)))


async def _up(options: UpOptions, environ: Mapping[str, str], out: TextIO, emit: Emit) -> int:
    try:
        plan = make_plan(options, environ, lambda: secrets.token_urlsafe(32))
        _check_ports(plan, options, environ)
    except ConfigError as exc:
        emit(f"chat: {exc}")
        return 2
    except PortInUse as exc:
        emit(f"chat: {exc}")
        return 1
    width = max(len(spec.name) for group in plan.groups for spec in group)
    supervisor = Supervisor(
        emit, ready_timeout_s=READY_TIMEOUT_S, stop_timeout_s=STOP_TIMEOUT_S, width=width
    )
    stop = asyncio.Event()
    with _signals(stop, supervisor, emit):
        try:
            return await _serve(plan, options, environ, supervisor, stop, out, emit)
        finally:
            await supervisor.stop_all()
            emit("chat: every process has stopped")


async def _serve(
    plan: Plan,
    options: UpOptions,
    environ: Mapping[str, str],
    supervisor: Supervisor,
    stop: asyncio.Event,
    out: TextIO,
    emit: Emit,
) -> int:
    try:
        ports = await _unless_stopped(_start(plan, options, supervisor), stop)
    except LaunchError as exc:
        _report(exc, emit)
        return 1
    if ports is None:
        return 0
    token = None if plan.gateway.auth == "dev" else mint(plan.gateway, DEMO_USER, DEMO_TTL_S)
    metrics_host = environ.get("CHAT_METRICS_HOST", "127.0.0.1")
    message = ready_message(
        plan, ports, nats_dir=str(NATS_DIR), token=token, metrics_host=metrics_host
    )
    print(message, file=out, flush=True)
    failure = await _unless_stopped(supervisor.failed(), stop)
    if failure is None:
        return 0
    _report(failure, emit)
    return 1


async def _start(plan: Plan, options: UpOptions, supervisor: Supervisor) -> dict[str, int]:
    if plan.own_nats:
        await supervisor.start_nats(NATS_DIR, options.nats_port)
    ports: dict[str, int] = {}
    for group in plan.groups:
        ports.update(await supervisor.start_group(group))
    return ports


async def _unless_stopped(work: Coroutine[Any, Any, T], stop: asyncio.Event) -> T | None:
    """``work``'s result, or ``None`` (``work`` cancelled) once ``stop`` is set."""
    task = asyncio.ensure_future(work)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait([task, stopped], return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
        if not task.done() or stop.is_set():
            task.cancel()
            # A failure racing the signal is moot: everything is being stopped anyway.
            with contextlib.suppress(asyncio.CancelledError, LaunchError):
                await task
    return None if stop.is_set() else task.result()


def _check_ports(plan: Plan, options: UpOptions, environ: Mapping[str, str]) -> None:
    if plan.own_nats and busy_ports("127.0.0.1", [options.nats_port]):
        raise PortInUse(
            f"127.0.0.1:{options.nats_port} is already in use (another nats-server?). "
            f"To use it, set CHAT_NATS_URL=nats://127.0.0.1:{options.nats_port}; "
            "or pass --nats-port to start one on another port"
        )
    taken = busy_ports(plan.gateway.host, [spec.port for spec in plan.gateways])
    if taken:
        raise PortInUse(f"gateway port(s) {_join(taken)} already in use; pick others with --port")
    metrics_host = environ.get("CHAT_METRICS_HOST", "127.0.0.1")
    taken = busy_ports(metrics_host, [plan.groups[0][0].port, plan.groups[1][0].port])
    if taken:
        raise PortInUse(
            f"metrics port(s) {_join(taken)} already in use; pick others with --metrics-port "
            "(0: any free port)"
        )


def _join(ports: list[int]) -> str:
    return ", ".join(str(port) for port in ports)


def _report(exc: LaunchError, emit: Emit) -> None:
    emit(f"chat: {exc}")
    tail = exc.tail if isinstance(exc, ChildFailed | NotReady) else []
    if tail:
        emit("chat: its last log lines were:")
        for line in tail:
            emit(f"    {line}")


@contextlib.contextmanager
def _signals(stop: asyncio.Event, supervisor: Supervisor, emit: Emit) -> Iterator[None]:
    """SIGINT/SIGTERM/SIGHUP: stop in order; a second one while stopping: SIGKILL all."""
    loop = asyncio.get_running_loop()

    def on_signal(sig: signal.Signals) -> None:
        if stop.is_set() or supervisor.stopping:
            emit(f"chat: {sig.name} again: killing every process now")
            supervisor.kill_all()
            return
        emit(f"chat: {sig.name} received: stopping (send it again to kill at once)")
        stop.set()

    for sig in _SIGNALS:
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        yield
    finally:
        for sig in _SIGNALS:
            loop.remove_signal_handler(sig)


def _emitter(err: TextIO) -> Callable[[str], None]:
    def emit(line: str) -> None:
        # A closed stderr must not stop the supervision (nor leave children behind).
        with contextlib.suppress(OSError, ValueError):
            print(line, file=err, flush=True)

    return emit
