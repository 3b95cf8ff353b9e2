"""The NetSuite sandbox: our own server speaking the parts of NetSuite the catalog uses.

    POST /services/rest/query/v1/suiteql?limit=&offset=   SuiteQL (the subset below), paged
    GET  /services/rest/record/v1/{customer|item}         ids and links, paged
    GET  /services/rest/record/v1/{customer|item}/{id}    one record
    GET  /app/site/hosting/restlet.nl?script=&deploy=&type=&page=&pageSize=&modifiedSince=
                                                          the catalog RESTlet (records, paged)

Every request must carry a valid TBA header (OAuth 1.0a HMAC-SHA256, realm = account id): a
wrong key or signature, a timestamp more than ``max_clock_skew`` from our clock or a reused
nonce answer 401 INVALID_LOGIN with NetSuite's error body. One account-wide concurrency pool:
over it, REST answers 429 and the RESTlet HTTP 400 SSS_REQUEST_LIMIT_EXCEEDED, as NetSuite.

SuiteQL understood: ``SELECT <columns|*> FROM customer|item [WHERE <cond> [AND <cond>]...]
ORDER BY id`` and ``SELECT MAX(id) AS <name> FROM customer|item [WHERE ...]``, with conditions
``id > <n>``, ``id <= <n>`` and ``lastmodifieddate >= TO_TIMESTAMP('<Y-m-d H:M:S>',
'YYYY-MM-DD HH24:MI:SS')``. Moments are sent in the account's time zone without an offset,
booleans as "T"/"F", as NetSuite does.

Data is deterministic (seed, counts); mutation rounds change a share of records (new values,
lastmodifieddate = now), delete some and add some, to exercise delta syncs. Control endpoints
(never authenticated, never limited): ``/_sandbox/faults`` and ``/_sandbox/stats`` (shared
fault injector), ``POST /_control/mutate`` ``{"entity", "share", "delete_share", "add",
"invalid": [ids], "put": {id: {column: value}}, "remove": [ids]}`` (``put`` sets any value,
also ones NetSuite would never send, to exercise validation; a new id is a new record).

Run: ``python -m services.catalog.sandbox --host 127.0.0.1 --port 8091`` (settings: see
``SandboxConfig.from_env``).
"""

from __future__ import annotations

import asyncio
import bisect
import hmac
import json
import math
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from oauthlib.oauth1.rfc5849 import signature, utils
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from services.catalog.settings import SANDBOX_CREDENTIALS, NetSuiteCredentials
from shared.sandbox import (
    ConcurrencyLimit,
    FaultInjector,
    RateLimitMiddleware,
    Rejection,
    city,
    company_name,
    date_between,
    email,
    first_name,
    industry,
    last_name,
    mutation_round,
    phone,
    price,
    product_name,
    rng_for,
    run_cli,
    sku,
    stable_hash,
)

__all__ = ["NetSuiteSandbox", "SandboxConfig", "SuiteQLAnswer", "create_app", "netsuite_error"]

Row = dict[str, Any]
CUSTOMER_COLUMNS = (
    "id", "entityid", "companyname", "isperson", "firstname", "lastname", "email", "phone",
    "subsidiary", "address", "city", "country", "industry", "isinactive", "datecreated",
    "lastmodifieddate",
)
ITEM_COLUMNS = ("id", "itemid", "displayname", "itemtype", "baseprice", "isinactive",
                "lastmodifieddate")
TABLES = {"customer": CUSTOMER_COLUMNS, "item": ITEM_COLUMNS}
ITEM_TYPES = ("InvtPart", "NonInvtPart", "Service", "Kit", "Assembly", "OthCharge")
SUBSIDIARIES = ("Parent Company", "US Subsidiary", "EMEA Subsidiary", "APAC Subsidiary")
_EPOCH_START = datetime(2015, 1, 1, tzinfo=UTC)
_EPOCH_END = datetime(2025, 1, 1, tzinfo=UTC)
_SELECT = re.compile(
    r"^\s*SELECT\s+(?P<columns>.+?)\s+FROM\s+(?P<table>\w+)"
    r"(?:\s+WHERE\s+(?P<where>.+?))?(?P<order>\s+ORDER\s+BY\s+id\s*(?:ASC)?)?\s*$",
    re.IGNORECASE | re.DOTALL,
)
_MAX_ID = re.compile(r"^MAX\(\s*id\s*\)\s+AS\s+(\w+)$", re.IGNORECASE)
_ID_AFTER = re.compile(r"^id\s*>\s*(\d+)$", re.IGNORECASE)
_ID_UP_TO = re.compile(r"^id\s*<=\s*(\d+)$", re.IGNORECASE)
_MODIFIED_SINCE = re.compile(
    r"^lastmodifieddate\s*>=\s*TO_TIMESTAMP\(\s*'([^']+)'\s*,\s*'YYYY-MM-DD HH24:MI:SS'\s*\)$",
    re.IGNORECASE,
)
MAX_RESULTS = 100_000


def netsuite_error(status: int, detail: str, code: str = "") -> Response:
    """NetSuite's REST error body (RFC 9457 problem details with o:errorDetails)."""
    titles = {400: "Bad Request", 401: "Unauthorized", 404: "Not Found",
              429: "Too Many Requests", 500: "Internal Server Error",
              503: "Service Unavailable"}
    code = code or {400: "INVALID_PARAMETER", 401: "INVALID_LOGIN", 404: "NONEXISTENT_ID",
                     429: "CONCURRENCY_LIMIT_EXCEEDED", 500: "UNEXPECTED_ERROR",
                     503: "UNEXPECTED_ERROR"}.get(status, "UNEXPECTED_ERROR")
    return JSONResponse(
        {"type": f"https://www.rfc-editor.org/rfc/rfc9110.html#section-15.{status // 100 + 1}",
         "title": titles.get(status, "Error"), "status": status,
         "o:errorDetails": [{"detail": detail,
                             "o:errorCode": code}]},
        status_code=status,
    )


class _AsciiJSONResponse(JSONResponse):
    """JSON with every non-ASCII character escaped (``\\uXXXX``), which NetSuite may send: any
    text can be served, even a lone surrogate (that has no UTF-8 form)."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, allow_nan=False, separators=(",", ":")).encode()


def _restlet_error(status: int, code: str, message: str) -> Response:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


@dataclass(frozen=True)
class _SigningSecrets:
    """What oauthlib's signers read from a client."""

    client_secret: str
    resource_owner_secret: str


@dataclass(frozen=True)
class SuiteQLAnswer:
    table: str
    columns: list[str]
    rows: list[Row]  # in id order
    starts_fetch: bool  # the query reads a table from its first id on (counted in the stats)


def _env_float(environ: Mapping[str, str], name: str, default: float) -> float:
    raw = environ.get(name, "")
    return float(raw) if raw.strip() else default


@dataclass
class SandboxConfig:
    customers: int = 1234
    items: int = 567
    seed: int = 42
    # Mutation rounds applied at start: round r changes round(share * n) records, so a sandbox
    # restarted with round + 1 serves a data set where that share changed since the last run.
    rounds: int = 0
    change_share: float = 0.01
    # Records whose email NetSuite holds malformed (they fail our validation).
    invalid_share: float = 0.0
    concurrency: int = 15
    timezone: str = "America/Los_Angeles"
    max_clock_skew: float = 300.0
    latency_ms: float = 0.0
    credentials: NetSuiteCredentials = field(default_factory=lambda: SANDBOX_CREDENTIALS)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SandboxConfig:
        """NETSUITE_SANDBOX_CUSTOMERS, _ITEMS, _SEED, _ROUND, _CHANGE_SHARE, _INVALID_SHARE,
        _CONCURRENCY, _TIMEZONE, _LATENCY_MS."""
        source = os.environ if environ is None else environ
        prefix = "NETSUITE_SANDBOX_"
        return cls(
            customers=int(_env_float(source, prefix + "CUSTOMERS", 1234)),
            items=int(_env_float(source, prefix + "ITEMS", 567)),
            seed=int(_env_float(source, prefix + "SEED", 42)),
            rounds=int(_env_float(source, prefix + "ROUND", 0)),
            change_share=_env_float(source, prefix + "CHANGE_SHARE", 0.01),
            invalid_share=_env_float(source, prefix + "INVALID_SHARE", 0.0),
            concurrency=int(_env_float(source, prefix + "CONCURRENCY", 15)),
            timezone=source.get(prefix + "TIMEZONE", "") or "America/Los_Angeles",
            latency_ms=_env_float(source, prefix + "LATENCY_MS", 0.0),
        )


class NetSuiteSandbox:
    """The data and the auth state of one sandbox account."""

    def __init__(self, config: SandboxConfig, *, wall_clock: Callable[[], float] = time.time):
        self.config = config
        self.zone = ZoneInfo(config.timezone)
        self.wall_clock = wall_clock
        self.tables: dict[str, dict[int, Row]] = {
            "customer": {i: self._customer(i) for i in range(1, config.customers + 1)},
            "item": {i: self._item(i) for i in range(1, config.items + 1)},
        }
        self._next_id = {"customer": config.customers + 1, "item": config.items + 1}
        self._round = 0
        self._ordered: dict[str, list[tuple[int, Row]]] = {}
        self._ids: dict[str, list[int]] = {}
        self._results: dict[tuple[str, int, int | None, str], list[Row]] = {}
        self._seen_nonces: dict[tuple[str, str], float] = {}
        self.fetches: dict[str, int] = {"customer": 0, "item": 0}
        self.id_sweeps: dict[str, int] = {"customer": 0, "item": 0}
        self.auth_failures = 0
        if config.invalid_share:
            for table in self.tables.values():
                count = round(len(table) * config.invalid_share)
                chosen = sorted(table, key=lambda i: stable_hash(config.seed, "invalid", i))
                for record_id in chosen[:count]:
                    self.make_invalid(table, record_id)
        for _ in range(config.rounds):
            self.mutate("customer", config.change_share)
            self.mutate("item", config.change_share)

    # -- data ----------------------------------------------------------------------------------

    def _moment(self, value: datetime) -> str:
        return value.astimezone(self.zone).strftime("%Y-%m-%d %H:%M:%S")

    def _now(self) -> str:
        return self._moment(datetime.fromtimestamp(self.wall_clock(), UTC))

    def _customer(self, record_id: int) -> Row:
        rng = rng_for(self.config.seed, "customer", record_id)
        person = rng.random() < 0.15
        first, last = first_name(rng), last_name(rng)
        place = city(rng)
        created = date_between(rng, _EPOCH_START, _EPOCH_END)
        modified = date_between(rng, created, _EPOCH_END)
        return {
            "id": str(record_id), "entityid": f"CUST-{record_id:06d}",
            "companyname": "" if person else company_name(rng),
            "isperson": "T" if person else "F",
            "firstname": first, "lastname": last, "email": email(rng, first, last),
            "phone": phone(rng), "subsidiary": rng.choice(SUBSIDIARIES),
            "address": f"{rng.randint(1, 999)} {last_name(rng)} Street",
            "city": place.name, "country": place.country_code, "industry": industry(rng),
            "isinactive": "T" if rng.random() < 0.08 else "F",
            "datecreated": self._moment(created), "lastmodifieddate": self._moment(modified),
        }

    def _item(self, record_id: int) -> Row:
        rng = rng_for(self.config.seed, "item", record_id)
        modified = date_between(rng, _EPOCH_START, _EPOCH_END)
        return {
            "id": str(record_id), "itemid": sku(rng), "displayname": product_name(rng),
            "itemtype": rng.choice(ITEM_TYPES), "baseprice": str(price(rng)),
            "isinactive": "T" if rng.random() < 0.05 else "F",
            "lastmodifieddate": self._moment(modified),
        }

    def make_invalid(self, table: dict[int, Row], record_id: int) -> None:
        row = table[record_id]
        if "email" in row:
            row["email"] = "not-an-email"
        else:
            row["itemtype"] = "Bogus"
        row["lastmodifieddate"] = self._now()
        self.touched()

    def put(self, table_name: str, record_id: int, values: Mapping[str, Any]) -> None:
        """Sets columns of a record, as given (a new id is a new record); its
        lastmodifieddate is now unless ``values`` has one."""
        unknown = set(values) - set(TABLES[table_name])
        if unknown:
            raise ValueError(f"unknown columns {sorted(unknown)}")
        table = self.tables[table_name]
        if record_id not in table:
            table[record_id] = (self._customer(record_id) if table_name == "customer"
                                else self._item(record_id))
        table[record_id].update({"lastmodifieddate": self._now(), **values})
        self.touched()

    def remove(self, table_name: str, record_id: int) -> None:
        self.tables[table_name].pop(record_id, None)
        self.touched()

    def mutate(self, table_name: str, share: float, delete_share: float = 0.0,
               add: int = 0) -> dict[str, list[int]]:
        """One mutation round: ``share`` of the records change, ``delete_share`` vanish and
        ``add`` new ones appear; all touched records get lastmodifieddate = now."""
        self._round += 1
        table = self.tables[table_name]
        seed = self.config.seed
        changed = mutation_round(table, share, self._round, seed)
        now = self._now()
        for record_id in changed:
            rng = rng_for(seed, table_name, record_id, "round", self._round)
            row = table[record_id]
            if table_name == "customer":
                row["phone"] = phone(rng)
                if row["isperson"] == "F":
                    row["companyname"] = company_name(rng)
                row["city"] = city(rng).name
            else:
                row["displayname"] = product_name(rng)
                row["baseprice"] = str(price(rng))
            row["lastmodifieddate"] = now
        changed_set = set(changed)
        remaining = [i for i in table if i not in changed_set]
        deleted = mutation_round(remaining, delete_share, self._round, f"{seed}-delete")
        for record_id in deleted:
            del table[record_id]
        added = []
        for _ in range(add):
            record_id = self._next_id[table_name]
            self._next_id[table_name] += 1
            row = self._customer(record_id) if table_name == "customer" else self._item(record_id)
            row["lastmodifieddate"] = now
            table[record_id] = row
            added.append(record_id)
        self.touched()
        return {"changed": changed, "deleted": deleted, "added": added}

    # -- auth ------------------------------------------------------------------------------------

    def check_auth(self, request: Request) -> Response | None:
        """None when the request is signed by our token, else NetSuite's 401."""
        header = request.headers.get("authorization", "")
        if not header.startswith("OAuth "):
            return self._unauthorized("missing OAuth header")
        try:
            params = {k: utils.unescape(v) for k, v in utils.parse_authorization_header(header)}
        except (ValueError, IndexError):
            return self._unauthorized("malformed OAuth header")
        creds = self.config.credentials
        expected = {"realm": creds.realm, "oauth_consumer_key": creds.consumer_key.reveal(),
                    "oauth_token": creds.token_id.reveal(),
                    "oauth_signature_method": "HMAC-SHA256", "oauth_version": "1.0"}
        for name, value in expected.items():
            if not hmac.compare_digest(params.get(name, "").encode(), value.encode()):
                return self._unauthorized(f"wrong {name}")
        nonce, stamp = params.get("oauth_nonce", ""), params.get("oauth_timestamp", "")
        if len(nonce) < 6 or not stamp.isdigit():
            return self._unauthorized("bad nonce or timestamp")
        now = self.wall_clock()
        if abs(now - int(stamp)) > self.config.max_clock_skew:
            return self._unauthorized("timestamp out of range")
        collected = signature.collect_parameters(
            uri_query=request.url.query, headers={"Authorization": header},
            exclude_oauth_signature=True, with_realm=False,
        )
        base = signature.signature_base_string(
            request.method, signature.base_string_uri(str(request.url)),
            signature.normalize_parameters(collected),
        )
        wanted = signature.sign_hmac_sha256_with_client(base, _SigningSecrets(
            creds.consumer_secret.reveal(), creds.token_secret.reveal()))
        if not hmac.compare_digest(wanted.encode(), params.get("oauth_signature", "").encode()):
            return self._unauthorized("signature mismatch")
        key = (nonce, stamp)
        if key in self._seen_nonces:
            return self._unauthorized("nonce reused")
        self._seen_nonces[key] = now
        if len(self._seen_nonces) > 10_000:
            horizon = now - 2 * self.config.max_clock_skew
            self._seen_nonces = {k: v for k, v in self._seen_nonces.items() if v >= horizon}
        return None

    def _unauthorized(self, reason: str) -> Response:
        self.auth_failures += 1
        return netsuite_error(
            401, "Invalid login attempt. For more details, see the Login Audit Trail in the"
                 " NetSuite UI at Setup > Users/Roles > User Management > View Login Audit Trail.",
        )

    # -- queries ---------------------------------------------------------------------------------

    def run_suiteql(self, query: str) -> SuiteQLAnswer:
        """The answer to a query of the supported subset."""
        match = _SELECT.match(query)
        if match is None:
            raise ValueError("Invalid search query. Detailed unprocessed description follows."
                             " Search error occurred: unsupported query.")
        table = match["table"].lower()
        if table not in TABLES:
            raise ValueError(f"Record '{match['table']}' was not found.")
        after, up_to, since = self._conditions(match["where"] or "")
        rows = self._select(table, after, up_to, since)
        if highest := _MAX_ID.match(match["columns"].strip()):
            name = highest[1].lower()
            return SuiteQLAnswer(table, [name], [{name: rows[-1]["id"] if rows else None}],
                                 starts_fetch=False)
        if not match["order"]:
            raise ValueError("Invalid search query: rows must be ORDER BY id.")
        requested = [c.strip().lower() for c in match["columns"].split(",")]
        columns = list(TABLES[table]) if requested == ["*"] else requested
        unknown = [c for c in columns if c not in TABLES[table]]
        if unknown:
            raise ValueError(f"Field '{unknown[0]}' for record '{table}' was not found.")
        return SuiteQLAnswer(table, columns, rows, starts_fetch=after == 0 and up_to is None)

    @staticmethod
    def _conditions(where: str) -> tuple[int, int | None, str]:
        """(id above, id at most, modified since) of a WHERE clause."""
        after, up_to, since = 0, None, ""
        for condition in re.split(r"\s+AND\s+", where, flags=re.IGNORECASE):
            condition = condition.strip()
            if not condition:
                continue
            if found := _ID_AFTER.match(condition):
                after = int(found[1])
            elif found := _ID_UP_TO.match(condition):
                up_to = int(found[1])
            elif found := _MODIFIED_SINCE.match(condition):
                since = datetime.fromisoformat(found[1].strip()).strftime("%Y-%m-%d %H:%M:%S")
            else:
                raise ValueError(f"Invalid search query: unsupported condition {condition!r}.")
        return after, up_to, since

    def _select(self, table: str, after: int, up_to: int | None, since: str) -> list[Row]:
        """The rows with ids in (after, up_to], modified since ``since``: the id range is
        found by bisection, so reading a table by id ranges costs what the rows read do."""
        key = (table, after, up_to, since)
        rows = self._results.get(key)
        if rows is None:
            ordered, ids = self.ordered(table), self._ids[table]
            low = bisect.bisect_right(ids, after)
            high = len(ids) if up_to is None else bisect.bisect_right(ids, up_to)
            rows = [row for _, row in ordered[low:high]
                    if not since or row["lastmodifieddate"] >= since]
            if len(self._results) >= 64:
                self._results.clear()
            self._results[key] = rows
        return rows

    def ordered(self, table: str) -> list[tuple[int, Row]]:
        """The table in id order (kept until the next mutation)."""
        if table not in self._ordered:
            self._ordered[table] = sorted(self.tables[table].items())
            self._ids[table] = [record_id for record_id, _ in self._ordered[table]]
        return self._ordered[table]

    def touched(self) -> None:
        """Data changed: forget ordered tables and cached query results."""
        self._ordered.clear()
        self._ids.clear()
        self._results.clear()


def _paging(request: Request, default: int = 1000) -> tuple[int, int]:
    try:
        limit = int(request.query_params.get("limit", default))
        offset = int(request.query_params.get("offset", 0))
    except ValueError:
        raise ValueError("limit and offset must be integers") from None
    if not 1 <= limit <= 1000 or offset < 0:
        raise ValueError("limit must be 1 to 1000 and offset 0 or more")
    if offset >= MAX_RESULTS:
        raise ValueError(f"offset must be below {MAX_RESULTS}")
    return limit, offset


def _page_body(request: Request, items: list[Row], total: int, limit: int,
               offset: int) -> dict[str, Any]:
    has_more = offset + len(items) < min(total, MAX_RESULTS)
    links = [{"rel": "self", "href": str(request.url)}]
    if has_more:
        links.append({"rel": "next", "href": str(
            request.url.include_query_params(offset=offset + limit, limit=limit))})
    return {"links": links, "count": len(items), "hasMore": has_more, "items": items,
            "offset": offset, "totalResults": total}


def create_app(sandbox: NetSuiteSandbox) -> tuple[ASGIApp, FaultInjector]:
    """The sandbox's ASGI app and its fault injector (tests drive it directly)."""
    pool = ConcurrencyLimit(sandbox.config.concurrency)

    async def work() -> None:
        """The time NetSuite spends on a request, holding a slot of the concurrency pool."""
        if sandbox.config.latency_ms > 0:
            await asyncio.sleep(sandbox.config.latency_ms / 1000)

    async def suiteql(request: Request) -> Response:
        if (denied := sandbox.check_auth(request)) is not None:
            return denied
        await work()
        if request.headers.get("prefer", "").lower() != "transient":
            return netsuite_error(400, "The request header 'Prefer: transient' is required.")
        try:
            limit, offset = _paging(request)
            body = json.loads(await request.body() or b"{}")
            query = body.get("q") if isinstance(body, dict) else None
            if not isinstance(query, str):
                raise ValueError("The request body must be {\"q\": \"<SuiteQL>\"}.")
            answer = sandbox.run_suiteql(query)
        except ValueError as error:
            return netsuite_error(400, str(error))
        columns, rows = answer.columns, answer.rows
        if offset == 0 and answer.starts_fetch:
            counter = sandbox.id_sweeps if columns == ["id"] else sandbox.fetches
            counter[answer.table] += 1
        page = [{"links": [], **{c: row[c] for c in columns}}
                for row in rows[offset:offset + limit]]
        return _AsciiJSONResponse(_page_body(request, page, len(rows), limit, offset))

    async def record_list(request: Request) -> Response:
        if (denied := sandbox.check_auth(request)) is not None:
            return denied
        table = request.path_params["record"]
        if table not in sandbox.tables:
            return netsuite_error(404, f"Record type '{table}' was not found.")
        try:
            limit, offset = _paging(request)
        except ValueError as error:
            return netsuite_error(400, str(error))
        ids = sorted(sandbox.tables[table])
        base = str(request.base_url).rstrip("/")
        items = [{"links": [{"rel": "self",
                             "href": f"{base}/services/rest/record/v1/{table}/{i}"}],
                  "id": str(i)} for i in ids[offset:offset + limit]]
        return JSONResponse(_page_body(request, items, len(ids), limit, offset))

    async def record_get(request: Request) -> Response:
        if (denied := sandbox.check_auth(request)) is not None:
            return denied
        table = request.path_params["record"]
        try:
            row = sandbox.tables.get(table, {})[int(request.path_params["id"])]
        except (KeyError, ValueError):
            return netsuite_error(404, "The record instance does not exist.", "NONEXISTENT_ID")
        return JSONResponse({"links": [{"rel": "self", "href": str(request.url)}], **row})

    async def restlet(request: Request) -> Response:
        if (denied := sandbox.check_auth(request)) is not None:
            return denied
        await work()
        params = request.query_params
        table = params.get("type", "")
        if table not in sandbox.tables:
            return _restlet_error(400, "INVALID_RCRD_TYPE", f"unknown type {table!r}")
        try:
            page_number = int(params.get("page", 0))
            size = max(1, min(1000, int(params.get("pageSize", 1000))))
        except ValueError:
            return _restlet_error(400, "INVALID_PARAMETER", "page and pageSize are integers")
        since = params.get("modifiedSince", "")
        rows = [row for _, row in sandbox.ordered(table)
                if not since or row["lastmodifieddate"] >= since]
        if page_number == 0:
            sandbox.fetches[table] += 1
        return _AsciiJSONResponse({
            "records": rows[page_number * size:(page_number + 1) * size], "page": page_number,
            "pageCount": max(1, math.ceil(len(rows) / size)), "totalRecords": len(rows),
        })

    def rest_reject(rejection: Rejection) -> Response:
        return netsuite_error(429, "Concurrent request limit exceeded. Request blocked.")

    def restlet_reject(rejection: Rejection) -> Response:
        return _restlet_error(400, "SSS_REQUEST_LIMIT_EXCEEDED",
                              "Request limit exceeded. Please try again later.")

    faults = FaultInjector(
        lambda status, message: netsuite_error(status, message),
        extra_stats=lambda: {
            "fetches": dict(sandbox.fetches), "id_sweeps": dict(sandbox.id_sweeps),
            "auth_failures": sandbox.auth_failures, "concurrency": pool.stats(),
            "records": {name: len(table) for name, table in sandbox.tables.items()},
        },
    )
    api = Starlette(
        routes=[
            Route("/services/rest/query/v1/suiteql", suiteql, methods=["POST"]),
            Route("/services/rest/record/v1/{record}", record_list, methods=["GET"]),
            Route("/services/rest/record/v1/{record}/{id}", record_get, methods=["GET"]),
            Route("/app/site/hosting/restlet.nl", restlet, methods=["GET", "POST"]),
        ],
        middleware=[
            faults.middleware(),
            Middleware(RateLimitMiddleware, limit=pool, reject=rest_reject,
                       path_prefix="/services/", key=lambda _: "account"),
            Middleware(RateLimitMiddleware, limit=pool, reject=restlet_reject,
                       path_prefix="/app/", key=lambda _: "account"),
        ],
    )

    async def mutate(request: Request) -> Response:
        try:
            body = json.loads(await request.body() or b"{}")
            table = {"customers": "customer", "items": "item"}[body.get("entity", "customers")]
            result = sandbox.mutate(table, float(body.get("share", 0.0)),
                                    float(body.get("delete_share", 0.0)), int(body.get("add", 0)))
            for record_id in body.get("invalid", []):
                sandbox.make_invalid(sandbox.tables[table], int(record_id))
            for record_id, values in body.get("put", {}).items():
                sandbox.put(table, int(record_id), values)
            for record_id in body.get("remove", []):
                sandbox.remove(table, int(record_id))
        except (ValueError, KeyError, TypeError) as error:
            return JSONResponse({"error": f"bad mutation: {error}"}, status_code=400)
        return JSONResponse(result)

    control = Starlette(routes=[Route("/_control/mutate", mutate, methods=["POST"])])

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/_control/"):
            await control(scope, receive, send)
        else:
            await api(scope, receive, send)

    return app, faults


def main() -> None:
    run_cli("NetSuite", 8091, lambda: create_app(NetSuiteSandbox(SandboxConfig.from_env()))[0])


if __name__ == "__main__":
    main()
