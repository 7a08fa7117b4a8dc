"""Background workers that live for as long as the app, under the ASGI lifespan.

::

    controller = WorkerController()

    @app.lifespan
    async def lifespan(app):
        await controller.start(announcer, conn_mgr=app.ws_connection_manager)
        yield
        await controller.stop()

A worker that raises is logged and does not take the app down; with
``@worker(restart=True)`` it is started again after a delay. ``stop()`` cancels
and awaits every worker, is idempotent, and never waits longer than its timeout.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar, overload

import msgspec
import structlog

__all__ = ["WorkerController", "WorkerOptions", "worker"]

log = structlog.get_logger(__name__)

WorkerFn = Callable[..., Awaitable[Any]]
W = TypeVar("W", bound=WorkerFn)

_OPTIONS_ATTR: Final = "__pachinko_worker__"


class WorkerOptions(msgspec.Struct, frozen=True, kw_only=True):
    """How a worker is supervised.

    Attributes:
        name: Name used in logs and task names (the function's name by default).
        restart: Start the worker again when it raises (never when it returns).
        restart_delay_s: Delay before a restart.
    """

    name: str | None = None
    restart: bool = False
    restart_delay_s: float = 1.0


@overload
def worker(fn: W, /) -> W: ...


@overload
def worker(
    *, name: str | None = None, restart: bool = False, restart_delay_s: float = 1.0
) -> Callable[[W], W]: ...


def worker(
    fn: W | None = None,
    /,
    *,
    name: str | None = None,
    restart: bool = False,
    restart_delay_s: float = 1.0,
) -> W | Callable[[W], W]:
    """Mark a coroutine function as a worker, optionally with supervision options.

    Usable bare (``@worker``) or with options (``@worker(restart=True)``).

    Raises:
        TypeError: The decorated object is not an ``async def`` function.
    """
    options = WorkerOptions(name=name, restart=restart, restart_delay_s=restart_delay_s)

    def decorate(func: W) -> W:
        if not _is_coroutine_function(func):
            raise TypeError("@worker expects an 'async def' function")
        setattr(func, _OPTIONS_ATTR, options)
        return func

    return decorate(fn) if fn is not None else decorate


class WorkerController:
    """Starts background workers and stops them all, in bounded time.

    Args:
        stop_timeout_s: How long :meth:`stop` waits for cancelled workers to finish.
    """

    def __init__(self, *, stop_timeout_s: float = 5.0) -> None:
        self._stop_timeout_s = stop_timeout_s
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def running(self) -> int:
        """How many workers are running."""
        return sum(1 for t in self._tasks if not t.done())

    async def start(self, *workers: WorkerFn, **deps: Any) -> None:
        """Start each worker as ``worker(**deps)`` in its own task.

        Raises:
            TypeError: A worker is not an ``async def`` function.
        """
        for fn in workers:
            if not inspect.iscoroutinefunction(fn):
                raise TypeError(f"worker {fn!r} is not an 'async def' function")
        for fn in workers:
            options: WorkerOptions = getattr(fn, _OPTIONS_ATTR, None) or WorkerOptions()
            name = options.name or str(getattr(fn, "__qualname__", repr(fn)))
            task = asyncio.create_task(_supervise(fn, deps, name, options), name=f"worker:{name}")
            self._tasks.append(task)

    async def stop(self) -> None:
        """Cancel every worker and wait for them, at most ``stop_timeout_s``."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        if not tasks:
            return
        _done, pending = await asyncio.wait(tasks, timeout=self._stop_timeout_s)
        for task in pending:
            log.error("pachinko.worker_ignored_cancel", worker=task.get_name())


def _is_coroutine_function(obj: object) -> bool:
    # A plain bool (not inspect's TypeGuard) keeps the decorated type intact.
    return inspect.iscoroutinefunction(obj)


async def _supervise(fn: WorkerFn, deps: dict[str, Any], name: str, options: WorkerOptions) -> None:
    while True:
        try:
            await fn(**deps)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("pachinko.worker_failed", worker=name, restart=options.restart)
            if not options.restart:
                return
            await asyncio.sleep(options.restart_delay_s)
        else:
            log.info("pachinko.worker_finished", worker=name)
            return
