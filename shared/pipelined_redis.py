"""The RPCs' Redis calls (Lua scripts, a GET) on one pipelined connection, cheaply.

redis-py's asyncio client spends ~85 µs of CPU per command (a pooled connection checked out
and health-checked, a timeout armed per command, layers of Python around the socket). Here
every caller of the replica shares one connection: the commands queued in one event-loop turn
go out in one write, and the replies are handed back in order (Redis answers a connection's
commands in the order it received them), parsed by hiredis. A command costs ~20-25 µs of CPU
alone (mostly its write and read system calls), ~7 µs when callers' commands share a write.

Failures raise redis-py's exceptions, so callers handle them as before: an error reply raises
``ResponseError``; a connection that is lost, or that leaves its oldest command unanswered
for ``timeout`` seconds, fails every command in flight with ``ConnectionError`` /
``TimeoutError`` and is dropped; the next command connects again. As with any client, a
command in flight when the connection broke may or may not have run: nothing is retried here
(CreateTimeEntry's request id makes the caller's retry safe).

A subscribed connection (the Redis invalidation feed's) gives ``on_push`` the published
messages (``["message", channel, payload]``), which answer no command. Give ``on_push`` only to
a connection that subscribes: it then runs no command whose reply could look like a message.
``reconnect=False`` makes the client connect once (its commands fail once that connection is
gone), and ``on_lost`` hears of a lost connection even when no command is in flight.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import hiredis
from redis.connection import SSLConnection, parse_url
from redis.exceptions import ConnectionError, InvalidResponse, ResponseError, TimeoutError

from shared.lua import Arg, LuaScript

__all__ = ["PipelinedRedis"]


class _Protocol(asyncio.Protocol):
    def __init__(self, owner: PipelinedRedis) -> None:
        self.owner = owner

    def data_received(self, data: bytes) -> None:
        self.owner._received(self, data)

    def connection_lost(self, error: Exception | None) -> None:
        self.owner._lost(self, ConnectionError("the Redis connection was lost"))


class PipelinedRedis:
    """One connection to the Redis at ``url`` (``redis://``, ``rediss://`` or ``unix://``,
    with its user, password and database), opened on first use."""

    def __init__(
        self, url: str, *, timeout: float = 5.0, connect_timeout: float = 2.0,
        client_name: str | None = None, text_errors: str = "strict", reconnect: bool = True,
        on_push: Callable[[list[Any]], None] | None = None,
        on_lost: Callable[[Exception], None] | None = None,
    ) -> None:
        """``text_errors``: how text that is not UTF-8 is decoded (``strict``: that reply
        fails its caller; ``surrogateescape``: kept, byte for byte)."""
        options = parse_url(url)
        self._path: str | None = options.get("path")
        self._host = str(options.get("host") or "127.0.0.1")
        self._port = int(options.get("port") or 6379)
        self._ssl = ssl.create_default_context() if (
            options.get("connection_class") is SSLConnection) else None
        self._handshake: list[tuple[Arg, ...]] = []
        if options.get("password"):
            user = options.get("username")
            self._handshake.append(("AUTH", user, options["password"]) if user
                                   else ("AUTH", options["password"]))
        if options.get("db"):
            self._handshake.append(("SELECT", int(options["db"])))
        if client_name:
            self._handshake.append(("CLIENT", "SETNAME", client_name))
        self._text_errors = text_errors
        self._reconnect = reconnect
        self._on_push = on_push
        self._on_lost = on_lost
        self._timeout = timeout
        self._connect_timeout = connect_timeout
        self._connect_lock = asyncio.Lock()
        self._transport: asyncio.Transport | None = None
        self._protocol: _Protocol | None = None
        self._reader: Any = None
        self._outgoing: list[bytes] = []
        self._waiting: deque[tuple[asyncio.Future[Any], float]] = deque()
        self._flush_scheduled = False
        self._watchdog: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._no_connect: str | None = None  # why no (new) connection is made (None: as needed)

    async def run(self, script: LuaScript, keys: Sequence[Arg], args: Sequence[Arg]) -> Any:
        """The script's reply (EVALSHA; EVAL once if Redis does not have it cached)."""
        try:
            return await self.execute("EVALSHA", script.sha, len(keys), *keys, *args)
        except ResponseError as error:
            if not str(error).startswith("NOSCRIPT"):
                raise
        return await self.execute("EVAL", script.body, len(keys), *keys, *args)

    async def execute(self, *command: Arg) -> Any:
        """One command's reply (strings decoded as UTF-8)."""
        if self._transport is None:
            await self._connect()
            if self._transport is None:  # lost again as its set-up was answered
                raise ConnectionError("the Redis connection was lost as it was set up")
        return await self._send(command)

    async def aclose(self) -> None:
        """Closes the connection (commands in flight fail); later commands fail at once."""
        self._no_connect = "the Redis client was closed"
        if self._transport is not None:
            self._transport.close()
            self._lost(self._protocol, ConnectionError("the Redis client was closed"))

    # -- the connection ----------------------------------------------------------------------

    async def _connect(self) -> None:
        async with self._connect_lock:
            if self._no_connect is not None:
                raise ConnectionError(self._no_connect)
            if self._transport is not None:
                return
            if not self._reconnect:
                self._no_connect = "this Redis client connects once, and that connection is gone"
            loop = asyncio.get_running_loop()
            protocol = _Protocol(self)
            try:
                async with asyncio.timeout(self._connect_timeout):
                    if self._path is not None:
                        transport, _ = await loop.create_unix_connection(
                            lambda: protocol, self._path)
                    else:
                        transport, _ = await loop.create_connection(
                            lambda: protocol, self._host, self._port, ssl=self._ssl)
            except (OSError, TimeoutError) as error:
                raise ConnectionError(f"cannot connect to Redis ({type(error).__name__})"
                                      ) from None
            self._loop = loop
            self._transport = transport  # type: ignore[assignment]
            self._protocol = protocol
            self._reader = hiredis.Reader(encoding="utf-8", errors=self._text_errors,
                                          replyError=ResponseError,
                                          protocolError=InvalidResponse)
            # Queued first, so Redis runs them before any command sent after them.
            try:
                await asyncio.gather(*(self._send(command) for command in self._handshake))
            except ResponseError as error:
                refused = f"Redis refused the connection's set-up ({error})"
                self._drop(ConnectionError(refused))
                raise ConnectionError(refused) from None

    def _send(self, command: tuple[Arg, ...]) -> asyncio.Future[Any]:
        """Queues ``command`` on the open connection (a command queued with none would go out
        first on the next one, before its set-up, and take another command's reply)."""
        assert self._transport is not None, "a command is sent only on an open connection"
        loop = self._loop
        future = loop.create_future()
        self._outgoing.append(hiredis.pack_command(command))
        self._waiting.append((future, loop.time()))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        if self._watchdog is None:
            self._watchdog = loop.call_later(self._timeout, self._check_stalled)
        return future

    def _flush(self) -> None:
        self._flush_scheduled = False
        outgoing, self._outgoing = self._outgoing, []
        if self._transport is not None and outgoing:
            self._transport.writelines(outgoing)

    def _received(self, protocol: _Protocol, data: bytes) -> None:
        if protocol is not self._protocol:
            return
        reader = self._reader
        reader.feed(data)
        waiting = self._waiting
        while True:
            try:
                reply = reader.gets()
            except UnicodeDecodeError as error:  # that reply is consumed: its caller fails
                reply = ResponseError(f"Redis answered text that is not UTF-8 ({error.reason})")
            except InvalidResponse:
                self._drop(ConnectionError("Redis sent a reply that does not parse"))
                return
            if reply is False:
                return
            if (self._on_push is not None and type(reply) is list and reply
                    and reply[0] == "message"):
                self._on_push(reply)
                continue
            if not waiting:
                self._drop(ConnectionError("Redis sent a reply that nothing asked for"))
                return
            future = waiting.popleft()[0]
            if future.done():  # its caller was cancelled
                continue
            if isinstance(reply, ResponseError):
                future.set_exception(reply)
            else:
                future.set_result(reply)

    def _check_stalled(self) -> None:
        self._watchdog = None
        if not self._waiting:
            return
        loop = self._loop
        oldest = self._waiting[0][1]
        if loop.time() - oldest >= self._timeout:
            self._drop(TimeoutError(f"Redis did not answer within {self._timeout:g} s"))
        else:
            self._watchdog = loop.call_at(oldest + self._timeout, self._check_stalled)

    def _drop(self, error: Exception) -> None:
        if self._transport is not None:
            self._transport.abort()
        self._lost(self._protocol, error)

    def _lost(self, protocol: _Protocol | None, error: Exception) -> None:
        """Fails every command in flight on ``protocol``'s connection and forgets it."""
        if protocol is not self._protocol:
            return  # an earlier connection's news: its commands failed when it was dropped
        self._transport = None
        self._protocol = None
        self._outgoing = []
        waiting, self._waiting = self._waiting, deque()
        for future, _ in waiting:
            if not future.done():
                future.set_exception(type(error)(*error.args))
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        if self._on_lost is not None and protocol is not None:
            self._on_lost(error)
