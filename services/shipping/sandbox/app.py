"""The ShipStation sandbox: v1 (Basic auth, camelCase bare arrays, ``page``/``pageSize`` and a
fixed window with ``X-Rate-Limit-Limit/Remaining/Reset``) and the v2 inventory API (``API-Key``
header, snake_case envelopes with ``page``/``page_size``/``links``, 429 + ``Retry-After``).

Control endpoints (never rate limited, faulted or journaled)::

    POST   /_sandbox/v1/faults, /_sandbox/v2/faults   fault plan / forced faults (shared kit)
    GET    /_sandbox/v1/stats, /_sandbox/v2/stats     request counters and limiter figures
    POST   /_sandbox/mutate                           one round of upstream changes, every account
    GET    /_sandbox/journal                          every request: path, status, start, end
    DELETE /_sandbox/journal                          forget it
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import math
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from services.shipping.sandbox.data import (
    START_DATE_MEANINGS,
    Account,
    SandboxConfig,
    credentials_of,
)
from services.shipping.shipstation import parse_v1_date
from shared.sandbox import (
    FaultInjector,
    FixedWindowLimit,
    RateLimitMiddleware,
    Rejection,
    TokenBucketLimit,
    header_key,
)

__all__ = ["JournalEntry", "ShipStationSandbox"]

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


def v1_error(status: int, message: str) -> Response:
    return JSONResponse({"Message": message}, status_code=status)


def v2_error(status: int, message: str) -> Response:
    error_type = {401: "security", 404: "not_found", 429: "system"}.get(status, "system")
    code = {401: "unauthorized", 404: "not_found", 429: "rate_limit_exceeded",
            400: "invalid_field_value"}.get(status, "unspecified")
    return JSONResponse({
        "request_id": str(uuid.uuid4()),
        "errors": [{"error_source": "shipstation", "error_type": error_type,
                    "error_code": code, "message": message}],
    }, status_code=status)


def _v1_reject(rejection: Rejection) -> Response:
    return v1_error(429, "Too Many Requests")


def _v2_reject(rejection: Rejection) -> Response:
    return v2_error(429, "You have exceeded the rate limit.")


class BadRequest(Exception):
    pass


def _int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"{name} must be an integer") from None
    if not low <= value <= high:
        raise BadRequest(f"{name} must be between {low} and {high}")
    return value


@dataclass(frozen=True)
class JournalEntry:
    api: str
    path: str
    status: int
    started: float
    finished: float


class ShipStationSandbox:
    """The sandbox's state and its ASGI app (``sandbox`` itself is the app)."""

    def __init__(
        self,
        config: SandboxConfig | None = None,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.config = config or SandboxConfig()
        self._clock = clock
        self._wall_clock = wall_clock
        self._accounts: dict[int, Account] = {}
        self._started = clock()
        self._auto_rounds = 0
        self.journal: list[JournalEntry] = []
        self._requests_by_path: dict[str, int] = {}
        self._before: dict[tuple[str, int], list[Callable[[], object]]] = {}
        self.v1_limit = FixedWindowLimit(self.config.v1_limit, self.config.v1_window, clock=clock)
        self.v2_limit = TokenBucketLimit(
            self.config.v2_rate_per_minute / 60.0, self.config.v2_burst, clock=clock
        )
        self.v1_faults = FaultInjector(v1_error, sleep=sleep, control_prefix="/_sandbox/v1",
                                       extra_stats=lambda: {"limit": self.v1_limit.stats()})
        self.v2_faults = FaultInjector(v2_error, sleep=sleep, control_prefix="/_sandbox/v2",
                                       extra_stats=lambda: {"limit": self.v2_limit.stats()})
        self._v1 = Starlette(
            routes=[Route("/warehouses", self._warehouses), Route("/products", self._products),
                    Route("/stores", self._stores)],
            middleware=[
                self.v1_faults.middleware(),
                Middleware(RateLimitMiddleware, limit=self.v1_limit, reject=_v1_reject,
                           key=header_key("authorization")),
            ],
        )
        self._v2 = Starlette(
            routes=[Route("/v2/inventory", self._inventory),
                    Route("/v2/inventory_warehouses", self._inventory_warehouses),
                    Route("/v2/inventory_locations", self._inventory_locations)],
            middleware=[
                self.v2_faults.middleware(),
                Middleware(RateLimitMiddleware, limit=self.v2_limit, reject=_v2_reject,
                           key=header_key("api-key")),
            ],
        )
        self._control = Starlette(routes=[
            Route("/_sandbox/mutate", self._mutate, methods=["POST"]),
            Route("/_sandbox/journal", self._journal, methods=["GET", "DELETE"]),
        ])

    # -- data

    def account(self, number: int) -> Account:
        if number not in self._accounts:
            spec = next(s for s in self.config.accounts if s.number == number)
            self._accounts[number] = Account.generate(spec, self.config.seed,
                                                      self.config.mutation_share)
        return self._accounts[number]

    def mutate(self) -> dict[int, dict[str, int]]:
        """One round of changes in every account (products edited/deleted/added, stock)."""
        now = self._wall_clock()
        return {spec.number: self.account(spec.number).mutate(now)
                for spec in self.config.accounts}

    def before_request(self, path: str, nth: int, action: Callable[[], object]) -> None:
        """Runs ``action`` just before the ``nth`` request (1-based, counted from now) to
        ``path`` is served: upstream changing between two page requests of one read."""
        due = self._requests_by_path.get(path, 0) + nth
        self._before.setdefault((path, due), []).append(action)

    def _run_before(self, path: str) -> None:
        count = self._requests_by_path[path] = self._requests_by_path.get(path, 0) + 1
        for action in self._before.pop((path, count), []):
            action()

    def _catch_up(self) -> None:
        every = self.config.mutate_every
        if every <= 0:
            return
        due = math.floor((self._clock() - self._started) / every)
        while self._auto_rounds < due:
            self._auto_rounds += 1
            self.mutate()

    def _v1_account(self, request: Request) -> Account | None:
        scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            key, _, secret = base64.b64decode(encoded).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        for spec in self.config.accounts:
            if credentials_of(spec.number)[:2] == (key, secret):
                return self.account(spec.number)
        return None

    def _v2_account(self, request: Request) -> Account | None:
        key = request.headers.get("api-key", "")
        for spec in self.config.accounts:
            if credentials_of(spec.number)[2] == key:
                return self.account(spec.number)
        return None

    # -- ASGI

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http":
            await self._v1(scope, receive, send)
            return
        for prefix, faults in (("/_sandbox/v1/", self.v1_faults),
                               ("/_sandbox/v2/", self.v2_faults)):
            if path.startswith(prefix):
                await (await faults.control(Request(scope, receive)))(scope, receive, send)
                return
        if path.startswith("/_sandbox/"):
            await self._control(scope, receive, send)
            return
        self._catch_up()
        self._run_before(path)
        api = "v2" if path.startswith("/v2/") else "v1"
        status = 0

        async def recording(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        started = time.monotonic()
        try:
            await (self._v2 if api == "v2" else self._v1)(scope, receive, recording)
        finally:
            self.journal.append(JournalEntry(api, path, status, started, time.monotonic()))

    # -- v1 handlers

    async def _warehouses(self, request: Request) -> Response:
        account = self._v1_account(request)
        if account is None:
            return v1_error(401, "Authorization has been denied for this request.")
        return JSONResponse(account.warehouses)

    async def _stores(self, request: Request) -> Response:
        account = self._v1_account(request)
        if account is None:
            return v1_error(401, "Authorization has been denied for this request.")
        return JSONResponse([account.store])

    async def _products(self, request: Request) -> Response:
        account = self._v1_account(request)
        if account is None:
            return v1_error(401, "Authorization has been denied for this request.")
        try:
            page = _int_param(request, "page", 1, 1, 1_000_000)
            size = _int_param(request, "pageSize", 100, 1, self.config.v1_max_page_size)
            start = parse_v1_date(request.query_params.get("startDate"))
            end = parse_v1_date(request.query_params.get("endDate"))
        except (BadRequest, ValueError) as error:
            return v1_error(400, str(error))
        sort_by = request.query_params.get("sortBy", "")
        items = account.products_sorted(sort_by)
        if request.query_params.get("showInactive", "false").lower() != "true":
            items = [p for p in items if p["active"]]
        if start is not None or end is not None:
            field = START_DATE_MEANINGS[self.config.start_date_means]
            items = [p for p in items if _within(parse_v1_date(p[field]), start, end)]
        if request.query_params.get("sortDir", "ASC").upper() == "DESC":
            items = items[::-1]
        pages = math.ceil(len(items) / size)
        chunk = items[(page - 1) * size: page * size]
        return JSONResponse({"products": chunk, "total": len(items), "page": page,
                             "pages": pages})

    # -- v2 handlers

    def _v2_page(self, request: Request, key: str, items: list[dict[str, Any]]) -> Response:
        try:
            page = _int_param(request, "page", 1, 1, 1_000_000)
            size = _int_param(request, "page_size", 25, 1, self.config.v2_max_page_size)
        except BadRequest as error:
            return v2_error(400, str(error))
        pages = max(1, math.ceil(len(items) / size))
        chunk = items[(page - 1) * size: page * size]
        base = f"{request.url.path}?page_size={size}&page="

        def link(number: int) -> dict[str, str] | None:
            return {"href": f"{base}{number}"} if 1 <= number <= pages else None

        envelope = {
            key: chunk, "total": len(items), "page": page, "pages": pages,
            "links": {"first": link(1), "last": link(pages), "prev": link(page - 1),
                      "next": link(page + 1)},
        }
        if not self.config.v2_reports_pages:
            del envelope["pages"]
        return JSONResponse(envelope)

    async def _inventory(self, request: Request) -> Response:
        account = self._v2_account(request)
        if account is None:
            return v2_error(401, "The request is not authorized: check the API-Key header.")
        items = account.stock_sorted()
        for name in ("sku", "inventory_warehouse_id", "inventory_location_id"):
            wanted = request.query_params.get(name)
            if wanted:
                items = [row for row in items if row[name] == wanted]
        return self._v2_page(request, "inventory", items)

    async def _inventory_warehouses(self, request: Request) -> Response:
        account = self._v2_account(request)
        if account is None:
            return v2_error(401, "The request is not authorized: check the API-Key header.")
        return self._v2_page(request, "inventory_warehouses", account.inventory_warehouses)

    async def _inventory_locations(self, request: Request) -> Response:
        account = self._v2_account(request)
        if account is None:
            return v2_error(401, "The request is not authorized: check the API-Key header.")
        return self._v2_page(request, "inventory_locations", account.inventory_locations)

    # -- control

    async def _mutate(self, request: Request) -> Response:
        return JSONResponse({str(k): v for k, v in self.mutate().items()})

    async def _journal(self, request: Request) -> Response:
        if request.method == "DELETE":
            self.journal.clear()
        return JSONResponse([asdict(entry) for entry in self.journal])


def _within(moment: datetime | None, start: datetime | None, end: datetime | None) -> bool:
    if moment is None:
        return start is None and end is None
    return (start is None or moment >= start) and (end is None or moment <= end)
