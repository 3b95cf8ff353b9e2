"""The NetSuite client: Token-Based Authentication (OAuth 1.0a, HMAC-SHA256) and bulk reads.

    NetSuiteAuth(credentials)        httpx auth: signs every attempt with a fresh nonce
    NetSuiteClient.fetch(spec, ...)  every row of customers/items via SuiteQL (or a RESTlet),
                                     pages fetched concurrently, keyset windows past 100,000
    NetSuiteClient.fetch_ids(spec)   the id-only sweep that detects deletions

The same code talks to NetSuite and to our sandbox (services/catalog/sandbox.py): only the
base URL and the credentials differ. Retries (429, 5xx, a RESTlet's HTTP 400
SSS_REQUEST_LIMIT_EXCEEDED, timeouts) come from shared.upstream; no secret is ever logged.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Generator
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import structlog
from oauthlib import oauth1

from services.catalog.records import EntitySpec
from services.catalog.settings import NetSuiteCredentials, Upstream
from shared.upstream import RetryPolicy, UpstreamClient, UpstreamError, create_http_client

__all__ = [
    "MAX_RESULTS",
    "NetSuiteAuth",
    "NetSuiteClient",
    "is_request_limit",
    "oauth_header",
]

log = structlog.get_logger("netsuite")
SUITEQL_PATH = "/services/rest/query/v1/suiteql"
MAX_RESULTS = 100_000  # NetSuite answers at most this many rows for one query, whatever paging


def oauth_header(
    credentials: NetSuiteCredentials, method: str, url: str, *,
    nonce: str | None = None, timestamp: str | None = None,
) -> str:
    """The ``Authorization: OAuth realm=…`` value for one request (query parameters signed,
    body not: NetSuite signs only form bodies, and we send JSON)."""
    client = oauth1.Client(
        credentials.consumer_key.reveal(),
        client_secret=credentials.consumer_secret.reveal(),
        resource_owner_key=credentials.token_id.reveal(),
        resource_owner_secret=credentials.token_secret.reveal(),
        signature_method=oauth1.SIGNATURE_HMAC_SHA256,
        realm=credentials.realm, nonce=nonce, timestamp=timestamp,
    )
    _, headers, _ = client.sign(url, http_method=method.upper())
    return str(headers["Authorization"])


class NetSuiteAuth(httpx.Auth):
    """Signs each request as it is sent, so a retry gets a new nonce and timestamp."""

    def __init__(self, credentials: NetSuiteCredentials) -> None:
        self._credentials = credentials

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = oauth_header(
            self._credentials, request.method, str(request.url)
        )
        yield request


def is_request_limit(response: httpx.Response) -> bool:
    """A RESTlet over the account's concurrency pool answers HTTP 400 with this code."""
    if response.status_code != 400:
        return False
    try:
        body = response.json()
    except ValueError:
        return False
    error = body.get("error") if isinstance(body, dict) else None
    return isinstance(error, dict) and error.get("code") == "SSS_REQUEST_LIMIT_EXCEEDED"


@dataclass
class CallRecord:
    """The outcome of the last call, for GetDataSourceStatus."""

    ok: bool = False
    at: float | None = None
    error: str = ""


class NetSuiteClient:
    def __init__(
        self, upstream: Upstream, *, zone: ZoneInfo, page_size: int = 1000, concurrency: int = 4,
        timeout: float = 60.0, max_attempts: int = 5,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.upstream = upstream
        self.zone = zone
        self.page_size = min(page_size, 1000)
        self.concurrency = concurrency
        http = create_http_client(
            upstream.rest_url, timeout=timeout, auth=NetSuiteAuth(upstream.credentials),
            transport=transport, max_connections=concurrency * 2,
        )
        retry = RetryPolicy(max_attempts=max_attempts, base_delay=0.25, max_delay=10.0,
                            retry_if=is_request_limit)
        self.http = UpstreamClient("netsuite", http, None, retry, concurrency,
                                   attempt_timeout=timeout)
        self.last_call = CallRecord()

    async def aclose(self) -> None:
        await self.http.aclose()

    # -- calls -------------------------------------------------------------------------------

    async def _recorded(self, call: Any) -> Any:
        try:
            result = await call
        except UpstreamError as error:
            self.last_call = CallRecord(False, time.time(), error.message)
            raise
        self.last_call = CallRecord(True, time.time(), "")
        return result

    async def suiteql_page(self, query: str, offset: int, limit: int) -> dict[str, Any]:
        body = await self._recorded(self.http.post_json(
            SUITEQL_PATH, {"q": query}, params={"limit": limit, "offset": offset},
            headers={"Prefer": "transient"},
        ))
        if not isinstance(body, dict) or not isinstance(body.get("items"), list):
            raise UpstreamError("netsuite", "SuiteQL answered without items")
        return body

    async def suiteql(self, query: str) -> list[dict[str, Any]]:
        """Every row of ``query`` (which must ORDER BY id and may contain ``{after}``, the
        keyset bound that moves the window on past NetSuite's 100,000-row limit)."""
        rows: list[dict[str, Any]] = []
        after = 0
        while True:
            first = await self.suiteql_page(query.format(after=after), 0, self.page_size)
            window = list(first["items"])
            total = int(first.get("totalResults", len(window)))
            reachable = min(total, MAX_RESULTS)
            if first.get("hasMore") and reachable > len(window):
                offsets = range(self.page_size, reachable, self.page_size)
                pages = await asyncio.gather(*(
                    self.suiteql_page(query.format(after=after), offset, self.page_size)
                    for offset in offsets
                ))
                for page in pages:
                    window.extend(page["items"])
            rows.extend(window)
            if total <= MAX_RESULTS or not window or "{after}" not in query:
                return rows
            after = int(window[-1]["id"])

    async def restlet_page(self, record_type: str, page: int, since: str | None) -> dict[str, Any]:
        assert self.upstream.restlet_url is not None
        params: dict[str, Any] = {"type": record_type, "page": page, "pageSize": self.page_size}
        if since:
            params["modifiedSince"] = since
        body = await self._recorded(self.http.get_json(self.upstream.restlet_url, params=params))
        if not isinstance(body, dict) or not isinstance(body.get("records"), list):
            raise UpstreamError("netsuite", "the RESTlet answered without records")
        return body

    async def restlet(self, record_type: str, since: str | None) -> list[dict[str, Any]]:
        first = await self.restlet_page(record_type, 0, since)
        rows = list(first["records"])
        pages = await asyncio.gather(*(
            self.restlet_page(record_type, number, since)
            for number in range(1, int(first.get("pageCount", 1)))
        ))
        for page in pages:
            rows.extend(page["records"])
        return rows

    # -- what the catalog asks for -------------------------------------------------------------

    def _since_text(self, since: datetime) -> str:
        return since.astimezone(self.zone).strftime("%Y-%m-%d %H:%M:%S")

    async def fetch(self, spec: EntitySpec, since: datetime | None = None) -> list[dict[str, Any]]:
        """Every row of ``spec``'s record type, or those modified at or after ``since``."""
        started = time.perf_counter()
        if self.upstream.restlet_url:
            rows = await self.restlet(spec.record_type, self._since_text(since) if since else None)
        else:
            where = "id > {after}"
            if since is not None:
                where += (f" AND lastmodifieddate >= TO_TIMESTAMP('{self._since_text(since)}',"
                          " 'YYYY-MM-DD HH24:MI:SS')")
            rows = await self.suiteql(
                f"SELECT {', '.join(spec.columns)} FROM {spec.record_type}"
                f" WHERE {where} ORDER BY id"
            )
        log.info("netsuite_fetch", entity=spec.name, rows=len(rows), incremental=since is not None,
                 duration_s=round(time.perf_counter() - started, 3))
        return rows

    async def fetch_ids(self, spec: EntitySpec) -> list[int]:
        """Every id of ``spec``'s record type (the cheap sweep that finds deletions)."""
        rows = await self.suiteql(
            f"SELECT id FROM {spec.record_type} WHERE id > {{after}} ORDER BY id"
        )
        return [int(row["id"]) for row in rows]
