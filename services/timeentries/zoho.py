"""The Zoho client: OAuth2 refresh-token grant, Projects (projects, time logs) and CRM (the
user↔project junction module, users), with their paging, errors and rate limits.

The same code talks to the real Zoho and to our sandbox; only base URLs and credentials differ.

    ZohoClient
    ├── ZohoTokens        POST {accounts}/oauth/v2/token, refreshed before expiry and on 401
    ├── projects          {projects}/restapi/portal/{portal}/…   index (1-based) / range ≤ 200
    └── crm               {crm}/crm/v2/{Module}                  page / per_page ≤ 200, 204 when
                                                                 empty, page_token past 2,000
Errors are :mod:`shared.upstream` errors: ``UpstreamHttpError`` (a 4xx that retrying will not
fix: the caller may dead-letter), ``UpstreamUnavailable`` (429 / 5xx / timeouts after retries).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import date
from typing import Any

import httpx

from services.timeentries.model import Entry
from services.timeentries.settings import TimeEntriesSettings, ZohoCredentials
from shared.oauth import AccessToken, RefreshingToken
from shared.upstream import (
    RetryPolicy,
    TokenBucket,
    UpstreamAuthError,
    UpstreamClient,
    UpstreamHttpError,
    UpstreamUnavailable,
    create_http_client,
)

__all__ = ["ZohoClient", "ZohoProject", "ZohoTokens", "ZohoUser", "entry_marker", "log_hours"]

PROJECTS_RANGE = 200
CRM_PER_PAGE = 200
REFRESH_MARGIN = 300.0  # seconds before expiry that a token is refreshed


@dataclass(frozen=True)
class ZohoProject:
    id: str
    name: str
    status: str


@dataclass(frozen=True)
class ZohoUser:
    id: str
    email: str


def entry_marker(entry_id: str) -> str:
    """Written into a log's notes so that a retry can find a log it already created."""
    return f"[syncsuite:{entry_id}]"


def log_hours(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _zoho_date(day: str) -> str:
    return date.fromisoformat(day).strftime("%m-%d-%Y")


class ZohoTokens(RefreshingToken):
    """Access tokens from Zoho's refresh-token grant (no new refresh token is issued)."""

    def __init__(
        self, accounts: UpstreamClient, credentials: ZohoCredentials,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(margin_seconds=REFRESH_MARGIN, clock=clock)
        self._accounts = accounts
        self._credentials = credentials

    async def grant(self) -> AccessToken:
        credentials = self._credentials
        body = await self._accounts.post_json(
            "/oauth/v2/token", None, params={
                "grant_type": "refresh_token",
                "client_id": credentials.client_id,
                "client_secret": credentials.client_secret.reveal(),
                "refresh_token": credentials.refresh_token.reveal(),
            },
        )
        if not isinstance(body, dict) or "access_token" not in body:
            error = body.get("error") if isinstance(body, dict) else None
            raise UpstreamAuthError("zoho", f"token refresh refused ({error or 'no token'})", 400,
                                    code=str(error) if error else None)
        return AccessToken(str(body["access_token"]), float(body.get("expires_in", 3600)))


class ZohoClient:
    def __init__(
        self, accounts: UpstreamClient, projects: UpstreamClient, crm: UpstreamClient,
        credentials: ZohoCredentials, access_module: str,
    ) -> None:
        self.accounts = accounts
        self.projects = projects
        self.crm = crm
        self.tokens = ZohoTokens(accounts, credentials)
        self.portal = credentials.portal
        self.access_module = access_module

    @classmethod
    def from_settings(
        cls, settings: TimeEntriesSettings, transport: httpx.AsyncBaseTransport | None = None
    ) -> ZohoClient:
        accounts_url, projects_url, crm_url = settings.base_urls()
        retry = RetryPolicy(max_attempts=3, base_delay=0.2, max_delay=2.0, max_retry_after=30.0)

        def upstream(name: str, url: str, rate: float) -> UpstreamClient:
            return UpstreamClient(
                name, create_http_client(url, timeout=settings.zoho_timeout, transport=transport),
                TokenBucket(rate, max(1.0, rate)), retry, concurrency=settings.zoho_concurrency,
                attempt_timeout=settings.zoho_timeout,
            )

        return cls(
            upstream("zoho-accounts", accounts_url, 1.0),
            upstream("zoho-projects", projects_url, settings.projects_rate),
            upstream("zoho-crm", crm_url, settings.crm_rate),
            settings.zoho_credentials(), settings.access_module,
        )

    async def aclose(self) -> None:
        for client in (self.accounts, self.projects, self.crm):
            await client.aclose()

    # -- calls with the OAuth header, refreshed once on an invalid token -------------------

    async def _call(
        self, client: UpstreamClient, method: str, url: str, *, retry: RetryPolicy | None = None,
        **kwargs: Any,
    ) -> Any:
        for attempt in (1, 2):
            token = await self.tokens.get()
            headers = {"Authorization": f"Zoho-oauthtoken {token}"}
            try:
                response = await client.request(method, url, headers=headers, retry=retry,
                                                 **kwargs)
            except UpstreamAuthError:
                self.tokens.invalidate(token)
                if attempt == 2:
                    raise
                continue
            if response.status_code == 204 or not response.content.strip():
                return None
            try:
                return response.json()
            except ValueError:
                raise UpstreamUnavailable(client.name, "malformed JSON body",
                                          response.status_code) from None
        raise AssertionError("unreachable")

    # -- Projects ------------------------------------------------------------------------

    def _portal(self) -> str:
        return f"/restapi/portal/{self.portal}"

    async def list_projects(self) -> list[ZohoProject]:
        """Every project of the portal, paged with index (1-based) and range."""
        found: list[ZohoProject] = []
        index = 1
        while True:
            body = await self._call(self.projects, "GET", f"{self._portal()}/projects/",
                                    params={"index": index, "range": PROJECTS_RANGE})
            page = (body or {}).get("projects") or []
            for item in page:
                found.append(ZohoProject(str(item.get("id_string") or item["id"]),
                                         str(item.get("name", "")), str(item.get("status", ""))))
            if len(page) < PROJECTS_RANGE:
                return found
            index += PROJECTS_RANGE

    def _log_form(self, entry: Entry, owner: str | None) -> dict[str, str]:
        form = {
            "date": _zoho_date(entry.date),
            "hours": log_hours(entry.minutes),
            "bill_status": "Billable" if entry.billable else "Non Billable",
            "name": (entry.description.splitlines() or ["Time entry"])[0][:100] or "Time entry",
            "notes": f"{entry.description} {entry_marker(entry.id)}".strip(),
        }
        if owner:
            form["owner"] = owner
        return form

    async def create_log(self, entry: Entry, owner: str | None) -> str:
        """A general time log; sent once (never retried here: a lost answer could mean a
        created log, so the caller searches with :meth:`find_log` before trying again)."""
        body = await self._call(
            self.projects, "POST", f"{self._portal()}/projects/{entry.project_id}/logs/",
            data=self._log_form(entry, owner), retry=RetryPolicy.no_retry(),
        )
        log_id = _first_log_id(body)
        if log_id is None:
            raise UpstreamUnavailable("zoho-projects", "created log has no id in the answer")
        return log_id

    async def update_log(self, log_id: str, entry: Entry, owner: str | None) -> None:
        await self._call(
            self.projects, "POST",
            f"{self._portal()}/projects/{entry.project_id}/logs/{log_id}/",
            data=self._log_form(entry, owner),
        )

    async def delete_log(self, project_id: str, log_id: str) -> None:
        try:
            await self._call(self.projects, "DELETE",
                             f"{self._portal()}/projects/{project_id}/logs/{log_id}/")
        except UpstreamHttpError as error:
            if error.status != 404:
                raise

    async def find_log(self, project_id: str, day: str, entry_id: str) -> str | None:
        """The id of the log carrying ``entry_id``'s marker on that day, if one exists."""
        body = await self._call(
            self.projects, "GET", f"{self._portal()}/projects/{project_id}/logs/",
            params={"users_list": "all", "view_type": "day", "date": _zoho_date(day),
                    "bill_status": "All", "component_type": "general"},
        )
        marker = entry_marker(entry_id)
        for log in _walk_logs(body):
            if marker in str(log.get("notes", "")):
                return str(log.get("id_string") or log["id"])
        return None

    # -- CRM -------------------------------------------------------------------------------

    async def crm_pages(
        self, path: str, key: str, params: dict[str, Any]
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """Pages of a CRM list: page/per_page, then page_token when the answer offers one
        (required past 2,000 records); a 204 means no (more) records."""
        page, token = 1, None
        while True:
            query = {**params, "per_page": CRM_PER_PAGE}
            query.update({"page_token": token} if token else {"page": page})
            body = await self._call(self.crm, "GET", path, params=query)
            if not body:
                return
            yield list(body.get(key) or [])
            info = body.get("info") or {}
            if not info.get("more_records"):
                return
            token = info.get("next_page_token") or None
            page += 1

    async def list_users(self) -> list[ZohoUser]:
        users: list[ZohoUser] = []
        async for page in self.crm_pages("/crm/v2/users", "users", {"type": "AllUsers"}):
            users += [ZohoUser(str(u["id"]), str(u.get("email", "")).strip().lower())
                      for u in page if u.get("email")]
        return users

    async def list_access(self) -> list[tuple[str, str]]:
        """(Zoho user id, project id) for every record of the junction module."""
        pairs: list[tuple[str, str]] = []
        async for page in self.crm_pages(f"/crm/v2/{self.access_module}", "data",
                                         {"fields": "User,Project"}):
            for record in page:
                user, project = record.get("User") or {}, record.get("Project") or {}
                if user.get("id") and project.get("id"):
                    pairs.append((str(user["id"]), str(project["id"])))
        return pairs


def _walk_logs(body: Any) -> list[dict[str, Any]]:
    """Every log object in a time-log answer, however it is nested."""
    found: list[dict[str, Any]] = []
    if isinstance(body, dict):
        if "notes" in body and ("id" in body or "id_string" in body):
            found.append(body)
        for value in body.values():
            found += _walk_logs(value)
    elif isinstance(body, list):
        for item in body:
            found += _walk_logs(item)
    return found


def _first_log_id(body: Any) -> str | None:
    logs = (body or {}).get("timelogs", {}) if isinstance(body, dict) else {}
    for kind in ("generallogs", "tasklogs", "buglogs"):
        items = logs.get(kind) if isinstance(logs, dict) else None
        if items:
            item = items[0]
            return str(item.get("id_string") or item["id"])
    return None
