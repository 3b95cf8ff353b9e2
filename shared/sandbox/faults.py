"""Fault injection for sandboxes: latency, random errors and forced next-N faults.

A vendor sandbox adds ``injector.middleware()`` (outermost) and passes in how its vendor
formats an error body. Tests hold the :class:`FaultInjector`; processes are driven over HTTP::

    POST   /_sandbox/faults  {"plan": {"error_rate": 0.1, "error_status": 503, "seed": 7},
                              "force": [{"kind": "status", "status": 429, "count": 3,
                                         "retry_after": 1}]}
    DELETE /_sandbox/faults  back to no faults
    GET    /_sandbox/stats   {"requests": …, "by_path": {…}, "injected": …, …}
    DELETE /_sandbox/stats   counters to zero

Forced faults: ``status`` (the vendor's error body with that status, optional Retry-After),
``hang`` (wait ``seconds`` or until the client goes away, then answer normally), ``malformed``
(200 with a truncated JSON body), ``lost`` (the request is carried out but its answer never
comes: the connection is held until the client gives up, or after ``seconds`` a 504 that says
nothing of what happened). Control paths are never delayed, failed or counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import random
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "ErrorResponder",
    "FaultInjector",
    "FaultKind",
    "FaultMiddleware",
    "FaultPlan",
    "ForcedFault",
    "default_error_response",
    "format_seconds",
]

FaultKind = Literal["status", "hang", "malformed", "lost"]
ErrorResponder = Callable[[int, str], Response]
Sleep = Callable[[float], Awaitable[None]]

FAULT_KINDS: tuple[FaultKind, ...] = ("status", "hang", "malformed", "lost")
MALFORMED_BODY = b'{"items": [{"id": "1", "name": "trunc'


def default_error_response(status: int, message: str) -> Response:
    """A neutral JSON error; vendor sandboxes pass their own format instead."""
    return JSONResponse({"status": status, "message": message}, status_code=status)


def format_seconds(seconds: float) -> str:
    """A Retry-After / X-Rate-Limit-Reset value: whole seconds, rounded up."""
    return str(max(0, math.ceil(seconds - 1e-9)))


@dataclass(frozen=True)
class FaultPlan:
    """Standing faults for requests whose path starts with ``path_prefix``."""

    latency_ms: float = 0.0
    jitter_ms: float = 0.0  # extra uniform(0, jitter_ms)
    error_rate: float = 0.0
    error_status: int = 503
    retry_after: float | None = None  # sent with random errors when set
    path_prefix: str = ""
    seed: int = 0


@dataclass
class ForcedFault:
    """The next ``count`` matching requests get this fault."""

    kind: FaultKind = "status"
    count: int = 1
    status: int = 503
    retry_after: float | None = None
    seconds: float = 30.0  # for "hang"
    path_prefix: str = ""


def _from_mapping(cls: type, data: Any) -> Any:
    """Build a plan or forced fault from JSON, checking names and value types."""
    if not isinstance(data, Mapping):
        raise ValueError(f"{cls.__name__} must be a JSON object")
    defaults = {f.name: f.default for f in fields(cls)}
    for name, value in data.items():
        if name not in defaults:
            raise ValueError(f"unknown {cls.__name__} field: {name}")
        default = defaults[name]
        expected: tuple[type, ...] = (str,) if isinstance(default, str) else (int, float)
        if isinstance(default, int) and not isinstance(default, bool):
            expected = (int,)
        if value is None and default is None:
            continue
        if isinstance(value, bool) or not isinstance(value, expected):
            raise ValueError(f"{cls.__name__}.{name} has the wrong type")
    return cls(**data)


class FaultInjector:
    """The fault state of one sandbox, shared by its middleware, tests and the HTTP control."""

    def __init__(
        self,
        error_response: ErrorResponder = default_error_response,
        *,
        plan: FaultPlan | None = None,
        sleep: Sleep = asyncio.sleep,
        control_prefix: str = "/_sandbox",
        extra_stats: Callable[[], Mapping[str, Any]] | None = None,
    ) -> None:
        self.error_response = error_response
        self.control_prefix = control_prefix
        self.sleep = sleep
        self._extra_stats = extra_stats
        self._forced: deque[ForcedFault] = deque()
        self.plan = FaultPlan()
        self._rng = random.Random(0)
        self.configure(plan or FaultPlan())
        self.requests = 0
        self.by_path: Counter[str] = Counter()
        self.injected = 0

    # -- control

    def configure(self, plan: FaultPlan) -> None:
        """Replace the standing plan; its seed restarts the random sequence."""
        self.plan = plan
        self._rng = random.Random(plan.seed)

    def force(
        self,
        kind: FaultKind = "status",
        *,
        count: int = 1,
        status: int = 503,
        retry_after: float | None = None,
        seconds: float = 30.0,
        path_prefix: str = "",
    ) -> None:
        """Queue a fault for the next ``count`` requests under ``path_prefix``."""
        self._forced.append(ForcedFault(kind, count, status, retry_after, seconds, path_prefix))

    def clear(self) -> None:
        """No standing plan, no forced faults (counters are kept)."""
        self._forced.clear()
        self.configure(FaultPlan())

    def reset_stats(self) -> None:
        self.requests = 0
        self.injected = 0
        self.by_path.clear()

    def stats(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "requests": self.requests,
            "by_path": dict(self.by_path),
            "injected": self.injected,
            "plan": asdict(self.plan),
            "forced": [asdict(f) for f in self._forced],
        }
        if self._extra_stats is not None:
            data.update(self._extra_stats())
        return data

    def middleware(self) -> Middleware:
        """For ``Starlette(middleware=[injector.middleware(), …])``."""
        return Middleware(FaultMiddleware, injector=self)

    # -- per request

    def _take_forced(self, path: str) -> ForcedFault | None:
        for fault in self._forced:
            if path.startswith(fault.path_prefix):
                fault.count -= 1
                if fault.count <= 0:
                    self._forced.remove(fault)
                return fault
        return None

    def decide(self, path: str) -> tuple[float, ForcedFault | None]:
        """Count a request; its added latency (seconds) and the fault to apply, if any."""
        self.requests += 1
        self.by_path[path] += 1
        fault = self._take_forced(path)
        plan = self.plan
        delay = 0.0
        if path.startswith(plan.path_prefix):
            # Always draw both numbers, so one seed gives one sequence whatever the settings.
            jitter, roll = self._rng.uniform(0.0, plan.jitter_ms), self._rng.random()
            delay = (plan.latency_ms + jitter) / 1000.0
            if fault is None and roll < plan.error_rate:
                fault = ForcedFault("status", 1, plan.error_status, plan.retry_after)
        if fault is not None:
            self.injected += 1
        return delay, fault

    def error(self, status: int, message: str, retry_after: float | None) -> Response:
        response = self.error_response(status, message)
        if retry_after is not None:
            response.headers["Retry-After"] = format_seconds(retry_after)
        return response

    async def control(self, request: Request) -> Response:
        """The ``/_sandbox/faults`` and ``/_sandbox/stats`` endpoints."""
        path = request.url.path[len(self.control_prefix) :]
        if path == "/stats" and request.method == "GET":
            return JSONResponse(self.stats())
        if path == "/stats" and request.method == "DELETE":
            self.reset_stats()
            return JSONResponse(self.stats())
        if path == "/faults" and request.method == "DELETE":
            self.clear()
            return JSONResponse(self.stats())
        if path == "/faults" and request.method == "POST":
            try:
                self._apply(json.loads(await request.body() or b"{}"))
            except (ValueError, TypeError) as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
            return JSONResponse(self.stats())
        if path == "/faults" and request.method == "GET":
            return JSONResponse(self.stats())
        return JSONResponse({"error": "unknown sandbox control endpoint"}, status_code=404)

    def _apply(self, body: Any) -> None:
        if not isinstance(body, dict) or set(body) - {"plan", "force"}:
            raise ValueError('expected {"plan": {...}, "force": [{...}]}')
        plan = _from_mapping(FaultPlan, body["plan"]) if "plan" in body else None
        forced = [_from_mapping(ForcedFault, item) for item in body.get("force", [])]
        if any(f.kind not in FAULT_KINDS for f in forced):
            raise ValueError(f"force.kind must be one of {', '.join(FAULT_KINDS)}")
        if plan is not None:
            self.configure(plan)
        self._forced.extend(forced)


class FaultMiddleware:
    """ASGI middleware applying a :class:`FaultInjector` (and serving its control paths)."""

    def __init__(self, app: ASGIApp, injector: FaultInjector) -> None:
        self.app = app
        self.injector = injector

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        injector = self.injector
        path: str = scope["path"]
        if path.startswith(injector.control_prefix + "/"):
            await (await injector.control(Request(scope, receive)))(scope, receive, send)
            return
        delay, fault = injector.decide(path)
        if delay > 0:
            await injector.sleep(delay)
        with contextlib.suppress(ClientDisconnect):  # the caller gave up: nobody to answer
            if fault is None:
                await self.app(scope, receive, send)
            elif fault.kind == "status":
                message = f"injected fault: HTTP {fault.status}"
                await injector.error(fault.status, message, fault.retry_after)(
                    scope, receive, send)
            elif fault.kind == "malformed":
                response = Response(MALFORMED_BODY, media_type="application/json")
                await response(scope, receive, send)
            elif fault.kind == "lost":
                await self.app(scope, receive, _discard)
                if await _client_waited(injector.sleep, fault.seconds, receive):
                    await injector.error(504, "injected fault: the answer was lost", None)(
                        scope, receive, send)
            else:
                replay = await _hang(injector.sleep, fault.seconds, receive)
                if replay is not None:
                    await self.app(scope, replay, send)


async def _discard(message: Message) -> None:
    """The ``send`` of a request whose answer is lost."""


async def _hang(sleep: Sleep, seconds: float, receive: Receive) -> Receive | None:
    """Hold the request for ``seconds``; None if the client left, else a replaying receive."""
    body: list[Message] = []
    while not body or body[-1].get("more_body", False):
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        body.append(message)
    if not await _client_waited(sleep, seconds, receive):
        return None

    async def replay() -> Message:
        return body.pop(0) if body else await receive()

    return replay


async def _client_waited(sleep: Sleep, seconds: float, receive: Receive) -> bool:
    """Waits ``seconds``: False if the client disconnected meanwhile (what is left of the
    request's body is read and dropped)."""

    async def disconnected() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    timer = asyncio.ensure_future(sleep(seconds))
    watcher = asyncio.ensure_future(disconnected())
    try:
        await asyncio.wait({timer, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (timer, watcher):
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(timer, watcher, return_exceptions=True)
    return not (watcher.done() and not watcher.cancelled())
