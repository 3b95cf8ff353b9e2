"""Running a sandbox: in-process for tests, on a port for ``make run``, and a manual clock.

    asgi_client(app)              an httpx client calling the app in-process (no lifespan)
    SandboxServer(app).start()    uvicorn in a background thread; returns the bound URL
    await serve(app, host, port)  uvicorn in the foreground, until SIGINT / SIGTERM
    run_cli(name, port, build)    a sandbox's ``python -m`` entry point (--host, --port)
    ManualClock()                 a clock + sleep pair that moves only when slept on

We bind the listening socket ourselves, so port 0 gives a real port before uvicorn starts.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping
from types import TracebackType

import httpx
import structlog
import uvicorn
from starlette.types import ASGIApp

from shared.logging import configure_logging
from shared.upstream import create_http_client

__all__ = ["ManualClock", "SandboxServer", "asgi_client", "bind_socket", "run_cli", "serve"]


def asgi_client(
    app: ASGIApp,
    base_url: str = "http://sandbox",
    *,
    headers: Mapping[str, str] | None = None,
    auth: httpx.Auth | tuple[str, str] | None = None,
) -> httpx.AsyncClient:
    """A client built like production's (:func:`create_http_client`) whose requests go
    straight into ``app`` on the same event loop. The app's lifespan is not run, and httpx
    timeouts do not apply (use ``UpstreamClient(attempt_timeout=…)``)."""
    transport = httpx.ASGITransport(app=app)
    return create_http_client(base_url, headers=headers, auth=auth, transport=transport)


def bind_socket(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """A bound TCP socket (IPv4 or IPv6 by ``host``); port 0 picks a free port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def _url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class _Server(uvicorn.Server):
    """uvicorn's server, calling ``on_started`` once it accepts connections."""

    def __init__(self, config: uvicorn.Config, on_started: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_started = on_started

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self._on_started()


def _server(app: ASGIApp, *, graceful: int, on_started: Callable[[], None]) -> _Server:
    config = uvicorn.Config(
        app,
        lifespan="auto",
        log_config=None,  # leave logging to the process (shared logging setup)
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=graceful,
    )
    return _Server(config, on_started)


class SandboxServer:
    """Serves ``app`` over real TCP from a background thread (its own event loop)."""

    def __init__(self, app: ASGIApp, host: str = "127.0.0.1", port: int = 0) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.url = ""
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self, timeout: float = 10.0) -> str:
        """Start serving; the base URL with the real port."""
        if self._thread is not None:
            raise RuntimeError("already started")
        sock = bind_socket(self.host, self.port)
        self.url = _url(sock)
        self.port = sock.getsockname()[1]
        started = threading.Event()
        server = self._server = _server(self.app, graceful=1, on_started=started.set)
        self._thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name=f"sandbox {self.url}", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while self._thread.is_alive() and time.monotonic() < deadline:
            if started.wait(0.05):
                break
        if not started.is_set():
            self.stop()
            raise RuntimeError(f"sandbox at {self.url} did not start within {timeout} s")
        return self.url

    def stop(self, timeout: float = 5.0) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive() and self._server is not None:
                self._server.force_exit = True
                self._thread.join(timeout)
        self._server = self._thread = None

    def __enter__(self) -> SandboxServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


async def serve(
    app: ASGIApp,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve ``app`` until SIGINT / SIGTERM (``python -m services.X.sandbox``)."""
    sock = bind_socket(host, port)
    url = _url(sock)

    def started() -> None:
        structlog.get_logger().info("sandbox_listening", url=url)
        if on_ready is not None:
            on_ready(url)

    await _server(app, graceful=5, on_started=started).serve(sockets=[sock])


def run_cli(
    name: str, default_port: int, build: Callable[[], ASGIApp], argv: list[str] | None = None
) -> None:
    """``python -m services.<x>.sandbox [--host H] [--port P]``: logs like the services do
    (``SYNCSUITE_LOG_LEVEL`` / ``SYNCSUITE_LOG_FORMAT``) and serves ``build()`` until stopped."""
    parser = argparse.ArgumentParser(description=f"The {name} sandbox")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=default_port)
    args = parser.parse_args(argv)
    configure_logging(os.environ.get("SYNCSUITE_LOG_LEVEL", "info"),
                      os.environ.get("SYNCSUITE_LOG_FORMAT", "auto"),
                      service=f"{name.lower()}-sandbox")
    asyncio.run(serve(build(), args.host, args.port))


class ManualClock:
    """A monotonic clock for tests: ``clock()`` reads it, ``await clock.sleep(s)`` advances it.

    Sleepers that overlap share the time (the clock moves to the latest wake-up, not the sum),
    and each sleep yields to the event loop once. ``sleeps`` records every requested sleep.
    """

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        wake_at = self.now + max(0.0, seconds)
        await asyncio.sleep(0)
        self.now = max(self.now, wake_at)
