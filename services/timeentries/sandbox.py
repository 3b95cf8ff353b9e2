"""The Zoho sandbox: accounts (OAuth2 refresh grant), Projects (projects, time logs) and CRM
(users, the user↔project junction module), speaking the real paths, paging and error bodies.

Run it: ``python -m services.timeentries.sandbox --host 127.0.0.1 --port 8094``. Credentials it
accepts: :data:`services.timeentries.settings.SANDBOX_CREDENTIALS`. Data (deterministic):
``ZOHO_SANDBOX_SEED`` (1), ``ZOHO_SANDBOX_PROJECTS`` (40), ``ZOHO_SANDBOX_USERS`` (20; emails
``user{n}@example.com``), ``ZOHO_SANDBOX_PROJECTS_PER_USER`` (5), ``ZOHO_SANDBOX_TOKEN_SECONDS``
(3600), ``ZOHO_SANDBOX_PROJECTS_LIMIT`` calls per ``ZOHO_SANDBOX_WINDOW_SECONDS`` (100 per 120).
Faults: ``/_sandbox/faults`` (shared kit: 429 / 5xx / hangs / malformed bodies); a log on a
project whose status is ``closed`` is refused with 400, as Zoho does.
"""

from __future__ import annotations

import itertools
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from services.timeentries.settings import SANDBOX_CREDENTIALS
from shared.sandbox import (
    ConcurrencyLimit,
    FaultInjector,
    FixedWindowLimit,
    RateLimitMiddleware,
    Rejection,
    company_name,
    first_name,
    last_name,
    rng_for,
    run_cli,
)

__all__ = ["SandboxConfig", "ZohoSandbox", "create_app"]

PROJECT_ID_BASE = 1_700_000_000_000
USER_ID_BASE = 4_100_000_000_000
ACCESS_ID_BASE = 5_200_000_000_000
DISCRETE_PAGE_LIMIT = 2000


@dataclass(frozen=True)
class SandboxConfig:
    seed: int = 1
    projects: int = 40
    users: int = 20
    projects_per_user: int = 5
    token_seconds: float = 3600.0
    projects_limit: int = 100
    window_seconds: float = 120.0

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> SandboxConfig:
        source = os.environ if environ is None else environ

        def number(name: str, default: float) -> float:
            return float(source.get(name) or default)

        return cls(
            seed=int(number("ZOHO_SANDBOX_SEED", 1)),
            projects=int(number("ZOHO_SANDBOX_PROJECTS", 40)),
            users=int(number("ZOHO_SANDBOX_USERS", 20)),
            projects_per_user=int(number("ZOHO_SANDBOX_PROJECTS_PER_USER", 5)),
            token_seconds=number("ZOHO_SANDBOX_TOKEN_SECONDS", 3600),
            projects_limit=int(number("ZOHO_SANDBOX_PROJECTS_LIMIT", 100)),
            window_seconds=number("ZOHO_SANDBOX_WINDOW_SECONDS", 120),
        )


def sandbox_email(index: int) -> str:
    return f"user{index}@example.com"


@dataclass
class ZohoSandbox:
    """The sandbox's state; tests change it directly (grant/revoke access, read logs)."""

    config: SandboxConfig = field(default_factory=SandboxConfig)
    clock: Callable[[], float] = time.monotonic
    projects: dict[str, dict[str, Any]] = field(default_factory=dict)
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    access: dict[str, tuple[str, str]] = field(default_factory=dict)  # record id → (user, project)
    logs: dict[str, dict[str, Any]] = field(default_factory=dict)
    tokens: dict[str, float] = field(default_factory=dict)
    log_calls: int = 0

    def __post_init__(self) -> None:
        self._ids = itertools.count(9_000_000_000_000)
        seed = self.config.seed
        for index in range(self.config.projects):
            rng = rng_for(seed, "project", index)
            project_id = str(PROJECT_ID_BASE + index)
            self.projects[project_id] = {
                "id": int(project_id), "id_string": project_id,
                "name": f"{company_name(rng)} project {index}", "status": "active",
            }
        project_ids = list(self.projects)
        for index in range(self.config.users):
            rng = rng_for(seed, "user", index)
            user_id = str(USER_ID_BASE + index)
            self.users[user_id] = {
                "id": user_id, "email": sandbox_email(index),
                "full_name": f"{first_name(rng)} {last_name(rng)}", "status": "active",
            }
            count = min(self.config.projects_per_user, len(project_ids))
            for project_id in rng_for(seed, "access", index).sample(project_ids, count):
                self.grant(sandbox_email(index), project_id)

    # -- test helpers -----------------------------------------------------------------------

    def user_id(self, email: str) -> str:
        return next(uid for uid, user in self.users.items() if user["email"] == email)

    def projects_of(self, email: str) -> set[str]:
        user_id = self.user_id(email)
        return {project for uid, project in self.access.values() if uid == user_id}

    def grant(self, email: str, project_id: str) -> None:
        if project_id not in self.projects_of(email):
            self.access[str(ACCESS_ID_BASE + next(self._ids))] = (self.user_id(email), project_id)

    def revoke(self, email: str, project_id: str) -> None:
        user_id = self.user_id(email)
        for record_id, pair in list(self.access.items()):
            if pair == (user_id, project_id):
                del self.access[record_id]

    def logs_for(self, entry_id: str) -> list[dict[str, Any]]:
        marker = f"[syncsuite:{entry_id}]"
        return [log for log in self.logs.values() if marker in log["notes"]]

    def stats(self) -> dict[str, Any]:
        return {"logs": len(self.logs), "log_calls": self.log_calls}

    # -- auth ---------------------------------------------------------------------------------

    def issue_token(self) -> tuple[str, float]:
        token = "1000." + secrets.token_hex(16)
        self.tokens[token] = self.clock() + self.config.token_seconds
        return token, self.config.token_seconds

    def token_valid(self, request: Request) -> bool:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        expires = self.tokens.get(token.strip()) if scheme == "Zoho-oauthtoken" else None
        return expires is not None and self.clock() < expires


def projects_error(status: int, code: int, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def crm_error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"code": code, "details": {}, "message": message, "status": "error"},
                        status_code=status)


def _vendor_error(status: int, message: str) -> Response:
    if status == 429:
        return crm_error(429, "TOO_MANY_REQUESTS", message)
    return projects_error(status, 6500 if status >= 500 else 6400, message)


async def _form(request: Request) -> dict[str, str]:
    """An application/x-www-form-urlencoded body (Zoho takes its parameters that way)."""
    return dict(parse_qsl((await request.body()).decode(errors="replace")))


def _int(request: Request, name: str, default: int) -> int:
    try:
        return int(request.query_params.get(name, default))
    except ValueError:
        return -1


def create_app(sandbox: ZohoSandbox | None = None) -> Starlette:
    state = sandbox or ZohoSandbox(SandboxConfig.from_env())
    faults = FaultInjector(_vendor_error, extra_stats=state.stats)

    async def token(request: Request) -> Response:
        form = dict(request.query_params)
        form.update(await _form(request))
        expected = SANDBOX_CREDENTIALS
        if form.get("grant_type") != "refresh_token":
            return JSONResponse({"error": "unsupported_grant_type"})
        if (form.get("client_id") != expected.client_id
                or form.get("client_secret") != expected.client_secret.reveal()):
            return JSONResponse({"error": "invalid_client"})
        if form.get("refresh_token") != expected.refresh_token.reveal():
            return JSONResponse({"error": "invalid_code"})
        access_token, lifetime = state.issue_token()
        return JSONResponse({"access_token": access_token, "expires_in": int(lifetime),
                             "api_domain": "https://www.zohoapis.com", "token_type": "Bearer"})

    def check_projects(request: Request) -> Response | None:
        if not state.token_valid(request):
            return projects_error(401, 6401, "Invalid OAuth access token.")
        if request.path_params["portal"] != SANDBOX_CREDENTIALS.portal:
            return projects_error(404, 6831, "Portal not found")
        return None

    async def list_projects(request: Request) -> Response:
        if (problem := check_projects(request)) is not None:
            return problem
        index, size = _int(request, "index", 1), _int(request, "range", 100)
        if index < 1 or not 1 <= size <= 200:
            return projects_error(400, 6832, "Invalid value for index or range")
        page = list(state.projects.values())[index - 1 : index - 1 + size]
        if not page:
            return Response(status_code=204)
        return JSONResponse({"projects": page})

    def log_fields(form: dict[str, str]) -> dict[str, Any] | Response:
        try:
            day = datetime.strptime(form.get("date", ""), "%m-%d-%Y").date()
            hours, minutes = (int(part) for part in form.get("hours", "").split(":"))
        except ValueError:
            return projects_error(400, 6832, "Invalid date or hours")
        if not 0 < hours * 60 + minutes <= 24 * 60 or minutes >= 60:
            return projects_error(400, 6832, "Hours must be more than 00:00 and at most 24:00")
        if form.get("bill_status") not in ("Billable", "Non Billable"):
            return projects_error(400, 6832, "Invalid bill_status")
        return {"date": day.strftime("%m-%d-%Y"), "hours": form["hours"],
                "bill_status": form["bill_status"], "name": form.get("name", ""),
                "notes": form.get("notes", ""), "owner": form.get("owner", "")}

    async def logs(request: Request) -> Response:
        if (problem := check_projects(request)) is not None:
            return problem
        project = state.projects.get(request.path_params["project"])
        if project is None:
            return projects_error(404, 6404, "Project not found")
        if request.method == "GET":
            day = request.query_params.get("date", "")
            found = [log for log in state.logs.values()
                     if log["project_id"] == project["id_string"] and (not day or
                                                                        log["date"] == day)]
            return JSONResponse({"timelogs": {"date": [{"date": day, "generallogs": found}]}})
        state.log_calls += 1
        if project["status"] == "closed":
            return projects_error(400, 6504, "Cannot add time logs to a closed project")
        fields = log_fields(await _form(request))
        if isinstance(fields, Response):
            return fields
        log_id = str(next(state._ids))
        log = {"id": int(log_id), "id_string": log_id, "project_id": project["id_string"],
               **fields}
        state.logs[log_id] = log
        return JSONResponse({"timelogs": {"generallogs": [log]}}, status_code=201)

    async def one_log(request: Request) -> Response:
        if (problem := check_projects(request)) is not None:
            return problem
        log = state.logs.get(request.path_params["log"])
        if log is None or log["project_id"] != request.path_params["project"]:
            return projects_error(404, 6404, "Time log not found")
        state.log_calls += 1
        if request.method == "DELETE":
            del state.logs[request.path_params["log"]]
            return JSONResponse({"response": "Timelog deleted successfully"})
        fields = log_fields(await _form(request))
        if isinstance(fields, Response):
            return fields
        log.update(fields)
        return JSONResponse({"timelogs": {"generallogs": [log]}})

    def crm_page(request: Request, key: str, records: list[dict[str, Any]]) -> Response:
        if not state.token_valid(request):
            return crm_error(401, "INVALID_TOKEN", "invalid oauth token")
        per_page = _int(request, "per_page", 200)
        if not 1 <= per_page <= 200:
            return crm_error(400, "INVALID_DATA", "per_page must be 1 to 200")
        token = request.query_params.get("page_token")
        if token is not None:
            try:
                start = int(token.removeprefix("pt-"))
            except ValueError:
                return crm_error(400, "INVALID_DATA", "invalid page_token")
            page = start // per_page + 1
        else:
            page = _int(request, "page", 1)
            if page < 1:
                return crm_error(400, "INVALID_DATA", "page must be at least 1")
            start = (page - 1) * per_page
            if start + per_page > DISCRETE_PAGE_LIMIT:
                return crm_error(400, "DISCRETE_PAGINATION_LIMIT_EXCEEDED",
                                 "use page_token to fetch records beyond 2000")
        chunk = records[start : start + per_page]
        if not chunk:
            return Response(status_code=204)
        more = start + per_page < len(records)
        info: dict[str, Any] = {"per_page": per_page, "count": len(chunk), "page": page,
                                "more_records": more}
        if more:
            info["next_page_token"] = f"pt-{start + per_page}"
        return JSONResponse({key: chunk, "info": info})

    async def crm_users(request: Request) -> Response:
        return crm_page(request, "users", list(state.users.values()))

    async def crm_module(request: Request) -> Response:
        module = request.path_params["module"]
        if module != "Project_Access":
            return crm_error(400, "INVALID_MODULE", "the module name given seems to be invalid")
        records = [
            {"id": record_id,
             "User": {"id": user_id, "name": state.users[user_id]["full_name"]},
             "Project": {"id": project_id, "name": state.projects[project_id]["name"]}}
            for record_id, (user_id, project_id) in state.access.items()
            if project_id in state.projects
        ]
        return crm_page(request, "data", records)

    def reject_projects(rejection: Rejection) -> Response:
        return projects_error(429, 6403, "URL Rolling Throttles Limit Exceeded")

    def reject_crm(rejection: Rejection) -> Response:
        return crm_error(429, "TOO_MANY_REQUESTS", "too many concurrent requests")

    portal = "/restapi/portal/{portal}"
    app = Starlette(
        routes=[
            Route("/oauth/v2/token", token, methods=["POST"]),
            Route(f"{portal}/projects/", list_projects, methods=["GET"]),
            Route(f"{portal}/projects/{{project}}/logs/", logs, methods=["GET", "POST"]),
            Route(f"{portal}/projects/{{project}}/logs/{{log}}/", one_log,
                  methods=["POST", "DELETE"]),
            Route("/crm/v2/users", crm_users, methods=["GET"]),
            Route("/crm/v2/{module}", crm_module, methods=["GET"]),
        ],
        middleware=[
            faults.middleware(),
            Middleware(RateLimitMiddleware, limit=FixedWindowLimit(
                state.config.projects_limit, state.config.window_seconds,
                retry_after_header=True), reject=reject_projects, path_prefix="/restapi/"),
            Middleware(RateLimitMiddleware, limit=ConcurrencyLimit(10), reject=reject_crm,
                       path_prefix="/crm/"),
        ],
    )
    app.state.sandbox = state
    app.state.faults = faults
    return app


def main() -> None:
    run_cli("Zoho", 8094, create_app)


if __name__ == "__main__":
    main()
