"""install(app), add_websocket_route and @app.lifespan on a real falcon.asgi.App."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import falcon
import falcon.asgi
import falcon.testing
import pytest

import falcon_pachinko
from falcon_pachinko import InProcessBackend, WebSocketConnectionManager, WebSocketResource


class Lifespan:
    """Drives the ASGI lifespan protocol against an app, in memory."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.incoming: asyncio.Queue[dict[str, str]] = asyncio.Queue()
        self.sent: list[dict[str, Any]] = []
        self._got: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None

    async def _receive(self) -> dict[str, str]:
        return await self.incoming.get()

    async def _send(self, event: dict[str, Any]) -> None:
        self.sent.append(event)
        await self._got.put(event)

    async def event(self, kind: str) -> dict[str, Any]:
        if self.task is None:
            scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}}
            self.task = asyncio.create_task(self.app(scope, self._receive, self._send))
        await self.incoming.put({"type": f"lifespan.{kind}"})
        async with asyncio.timeout(5):
            return await self._got.get()


def test_install_attaches_the_extension_to_a_real_app() -> None:
    app = falcon.asgi.App()
    manager = falcon_pachinko.install(app)
    assert isinstance(app, falcon.asgi.App)
    assert isinstance(manager, WebSocketConnectionManager)
    assert app.ws_connection_manager is manager  # type: ignore[attr-defined]
    assert isinstance(manager.backend, InProcessBackend)
    # Other apps are untouched.
    assert not hasattr(falcon.asgi.App(), "ws_connection_manager")


def test_install_uses_the_given_backend() -> None:
    backend = InProcessBackend()
    app = falcon.asgi.App()
    assert falcon_pachinko.install(app, backend=backend).backend is backend


def test_install_rejects_other_objects_and_double_install() -> None:
    with pytest.raises(TypeError, match="falcon.asgi.App"):
        falcon_pachinko.install(falcon.App())  # type: ignore[arg-type]
    app = falcon.asgi.App()
    falcon_pachinko.install(app)
    with pytest.raises(RuntimeError, match="already installed"):
        falcon_pachinko.install(app)


def test_add_websocket_route_needs_a_resource_class() -> None:
    app = falcon.asgi.App()
    falcon_pachinko.install(app)

    class NotAResource:
        pass

    with pytest.raises(TypeError, match="WebSocketResource subclass"):
        app.add_websocket_route("/ws", NotAResource)  # type: ignore[attr-defined]


def test_lifespan_needs_an_async_generator_function() -> None:
    app = falcon.asgi.App()
    falcon_pachinko.install(app)

    async def not_a_generator(app: Any) -> None: ...

    with pytest.raises(TypeError, match="async generator"):
        app.lifespan(not_a_generator)  # type: ignore[attr-defined]


async def test_lifespan_runs_before_yield_at_startup_and_after_at_shutdown() -> None:
    app = falcon.asgi.App()
    falcon_pachinko.install(app)
    calls: list[str] = []

    @app.lifespan  # type: ignore[attr-defined]
    async def first(app_instance: Any) -> AsyncIterator[None]:
        assert app_instance is app
        calls.append("first-start")
        yield
        calls.append("first-stop")

    @app.lifespan  # type: ignore[attr-defined]
    async def second(app_instance: Any) -> AsyncIterator[None]:
        calls.append("second-start")
        yield
        calls.append("second-stop")

    driver = Lifespan(app)
    assert (await driver.event("startup"))["type"] == "lifespan.startup.complete"
    assert calls == ["first-start", "second-start"]
    assert (await driver.event("shutdown"))["type"] == "lifespan.shutdown.complete"
    assert calls == ["first-start", "second-start", "second-stop", "first-stop"]


async def test_exception_before_yield_fails_startup_visibly_and_unwinds() -> None:
    app = falcon.asgi.App()
    falcon_pachinko.install(app)
    calls: list[str] = []

    @app.lifespan  # type: ignore[attr-defined]
    async def ok(app_instance: Any) -> AsyncIterator[None]:
        yield
        calls.append("ok-stop")

    @app.lifespan  # type: ignore[attr-defined]
    async def broken(app_instance: Any) -> AsyncIterator[None]:
        raise RuntimeError("database unreachable")
        yield  # pragma: no cover

    event = await Lifespan(app).event("startup")
    assert event["type"] == "lifespan.startup.failed"
    assert "database unreachable" in event["message"]
    assert calls == ["ok-stop"]  # what had started was stopped


async def test_lifespan_that_never_yields_fails_startup() -> None:
    app = falcon.asgi.App()
    falcon_pachinko.install(app)

    @app.lifespan  # type: ignore[attr-defined]
    async def no_yield(app_instance: Any) -> AsyncIterator[None]:
        if False:  # pragma: no cover
            yield

    event = await Lifespan(app).event("startup")
    assert event["type"] == "lifespan.startup.failed"
    assert "without yielding" in event["message"]


async def test_exception_after_yield_fails_shutdown_but_stops_everything() -> None:
    app = falcon.asgi.App()
    falcon_pachinko.install(app)
    calls: list[str] = []

    @app.lifespan  # type: ignore[attr-defined]
    async def outer(app_instance: Any) -> AsyncIterator[None]:
        yield
        calls.append("outer-stop")

    @app.lifespan  # type: ignore[attr-defined]
    async def inner(app_instance: Any) -> AsyncIterator[None]:
        yield
        raise RuntimeError("flush failed")

    driver = Lifespan(app)
    await driver.event("startup")
    event = await driver.event("shutdown")
    assert event["type"] == "lifespan.shutdown.failed"
    assert calls == ["outer-stop"]


async def test_http_routes_keep_working_next_to_websocket_routes() -> None:
    app = falcon.asgi.App()
    falcon_pachinko.install(app)

    class Hello:
        async def on_get(self, req: Any, resp: Any) -> None:
            resp.media = {"hello": "world"}

    app.add_route("/hello", Hello())
    app.add_websocket_route("/ws", WebSocketResource)  # type: ignore[attr-defined]
    async with falcon.testing.ASGIConductor(app) as conductor:
        assert (await conductor.simulate_get("/hello")).json == {"hello": "world"}
        assert (await conductor.simulate_get("/ws")).status_code == 405
