"""The NetSuite client: Token-Based Authentication (OAuth 1.0a, HMAC-SHA256) and bulk reads.

    NetSuiteAuth(credentials)        httpx auth: signs every attempt with a fresh nonce
    NetSuiteClient.fetch(spec, ...)  every row of customers/items via SuiteQL (or a RESTlet),
                                     read by id ranges, concurrently (services/catalog/keyset.py)
    NetSuiteClient.fetch_ids(spec)   the id-only sweep that detects deletions

A fetch says whether its rows add up to the totals NetSuite reported (``Fetched.complete``):
only then may records missing from it be taken as deleted.

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

from services.catalog.keyset import Fetched, IdRange, Page, read_range, reported_total
from services.catalog.records import EntitySpec, netsuite_id
from services.catalog.settings import NetSuiteCredentials, Upstream
from shared.upstream import RetryPolicy, UpstreamClient, UpstreamError, create_http_client

__all__ = [
    "Fetched",
    "NetSuiteAuth",
    "NetSuiteClient",
    "is_request_limit",
    "oauth_header",
]

log = structlog.get_logger("netsuite")
SUITEQL_PATH = "/services/rest/query/v1/suiteql"


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

    async def suiteql_page(self, query: str) -> Page:
        """The first page of ``query`` (pages after it are asked for by id, never offset)."""
        body = await self._recorded(self.http.post_json(
            SUITEQL_PATH, {"q": query}, params={"limit": self.page_size},
            headers={"Prefer": "transient"},
        ))
        if not isinstance(body, dict) or not isinstance(body.get("items"), list):
            raise UpstreamError("netsuite", "SuiteQL answered without items")
        return body

    async def suiteql(self, columns: str, table: str, where: str = "") -> Fetched:
        """Every row of ``SELECT columns FROM table WHERE where``, in id order, read by id
        ranges (keyset paging, see keyset.py). The first page is read together with the
        highest id, which bounds the ranges the rest is cut into: a record created after
        that is left to the next sync."""
        condition = f" AND {where}" if where else ""

        async def read_page(ids: IdRange) -> Page:
            return await self.suiteql_page(
                f"SELECT {columns} FROM {table} WHERE {ids.condition()}{condition} ORDER BY id")

        first, last = await asyncio.gather(
            read_page(IdRange(0)), self._highest_id(table, where))
        read = await read_range(read_page, IdRange(0, last), self.page_size, first)
        if not read.complete:
            log.warning("netsuite_fetch_incomplete", table=table, rows=len(read.rows),
                        reported=reported_total(first))
        return read

    async def _highest_id(self, table: str, where: str) -> int | None:
        """The highest id matching ``where``; None when there is none (or NetSuite's answer
        is not one: the rest of the read is then one open range, read page after page)."""
        page = await self.suiteql_page(
            f"SELECT MAX(id) AS last_id FROM {table}" + (f" WHERE {where}" if where else ""))
        items = page["items"]
        value = items[0].get("last_id") if items and isinstance(items[0], dict) else None
        try:
            return None if value is None else int(value)
        except (TypeError, ValueError):
            return None

    async def restlet_page(self, record_type: str, page: int, since: str | None) -> dict[str, Any]:
        assert self.upstream.restlet_url is not None
        params: dict[str, Any] = {"type": record_type, "page": page, "pageSize": self.page_size}
        if since:
            params["modifiedSince"] = since
        body = await self._recorded(self.http.get_json(self.upstream.restlet_url, params=params))
        if not isinstance(body, dict) or not isinstance(body.get("records"), list):
            raise UpstreamError("netsuite", "the RESTlet answered without records")
        return body

    async def restlet(self, record_type: str, since: str | None) -> Fetched:
        """Every record through the RESTlet. It pages by number (its contract has no id
        bound), so the pages can shift under changes: the fetch is complete only when every
        page reported the same ``totalRecords`` and the rows add up to it."""
        first = await self.restlet_page(record_type, 0, since)
        pages = [first, *await asyncio.gather(*(
            self.restlet_page(record_type, number, since)
            for number in range(1, int(first.get("pageCount", 1)))
        ))]
        rows = [row for page in pages for row in page["records"]]
        totals = {page.get("totalRecords") for page in pages}
        complete = len(totals) == 1 and totals == {len(rows)}
        if not complete:
            log.warning("netsuite_fetch_incomplete", table=record_type, rows=len(rows),
                        reported=sorted(map(str, totals)))
        return Fetched(rows, complete)

    # -- what the catalog asks for -------------------------------------------------------------

    def _since_text(self, since: datetime) -> str:
        return since.astimezone(self.zone).strftime("%Y-%m-%d %H:%M:%S")

    async def fetch(self, spec: EntitySpec, since: datetime | None = None) -> Fetched:
        """Every row of ``spec``'s record type, or those modified at or after ``since``."""
        started = time.perf_counter()
        if self.upstream.restlet_url:
            fetched = await self.restlet(spec.record_type,
                                         self._since_text(since) if since else None)
        else:
            where = "" if since is None else (
                f"lastmodifieddate >= TO_TIMESTAMP('{self._since_text(since)}',"
                " 'YYYY-MM-DD HH24:MI:SS')")
            fetched = await self.suiteql(", ".join(spec.columns), spec.record_type, where)
        log.info("netsuite_fetch", entity=spec.name, rows=len(fetched.rows),
                 complete=fetched.complete, incremental=since is not None,
                 duration_s=round(time.perf_counter() - started, 3))
        return fetched

    async def fetch_ids(self, spec: EntitySpec) -> list[int] | None:
        """Every id of ``spec``'s record type (the cheap sweep that finds deletions); None
        when the sweep is not complete (see :class:`Fetched`): nothing can be inferred
        deleted from it. Ids PostgreSQL cannot hold are left out (no record has them)."""
        fetched = await self.suiteql("id", spec.record_type)
        if not fetched.complete:
            return None
        ids = []
        for row in fetched.rows:
            try:
                ids.append(netsuite_id(row["id"]))
            except (KeyError, TypeError, ValueError):
                continue
        return ids
