"""The timeentries service's settings (environment variables, read once at start)."""

from __future__ import annotations

from dataclasses import dataclass

from shared.config import Secret, env, one_of, resolve_data_source

__all__ = ["SANDBOX_CREDENTIALS", "TimeEntriesSettings", "ZohoCredentials"]


@dataclass(frozen=True)
class ZohoCredentials:
    client_id: str
    client_secret: Secret
    refresh_token: Secret
    portal: str


# What the Zoho sandbox (services/timeentries/sandbox.py) accepts.
SANDBOX_CREDENTIALS = ZohoCredentials(
    client_id="sandbox-client-id",
    client_secret=Secret("sandbox-client-secret"),
    refresh_token=Secret("sandbox-refresh-token"),
    portal="sandbox-portal",
)


@dataclass(frozen=True)
class TimeEntriesSettings:
    data_source: str = env(
        "ZOHO_DATA_SOURCE", default="auto", parse=one_of("auto", "sandbox", "real"),
        help="real | sandbox | auto (real when every ZOHO_ credential is set)",
    )
    sandbox_url: str = env("ZOHO_SANDBOX_URL", default="http://127.0.0.1:8094")
    accounts_url: str = env("ZOHO_ACCOUNTS_URL", default="https://accounts.zoho.com")
    projects_url: str = env("ZOHO_PROJECTS_URL", default="https://projectsapi.zoho.com")
    crm_url: str = env("ZOHO_CRM_URL", default="https://www.zohoapis.com")
    client_id: str = env("ZOHO_CLIENT_ID", default="")
    client_secret: Secret | None = env("ZOHO_CLIENT_SECRET", default=None)
    refresh_token: Secret | None = env("ZOHO_REFRESH_TOKEN", default=None)
    portal: str = env("ZOHO_PORTAL_ID", default="")
    access_module: str = env(
        "ZOHO_ACCESS_MODULE", default="Project_Access",
        help="API name of the CRM junction module linking users and projects",
    )
    projects_rate: float = env(
        "ZOHO_PROJECTS_RATE", default=0.8, help="Projects API calls per second (100 per 2 min)"
    )
    crm_rate: float = env("ZOHO_CRM_RATE", default=5.0, help="CRM API calls per second")
    zoho_concurrency: int = env("ZOHO_CONCURRENCY", default=4)
    zoho_timeout: float = env("ZOHO_TIMEOUT_SECONDS", default=15.0)
    in_process_workers: bool = env(
        "TIMEENTRIES_INPROCESS_WORKERS", default=True,
        help="run the outbox workers inside the service (false: run `python -m "
        "services.timeentries.worker` instead)",
    )
    initial_sync: bool = env(
        "TIMEENTRIES_INITIAL_SYNC", default=True,
        help="sync projects from Zoho at start when PostgreSQL has none yet",
    )
    batch_size: int = env("TIMEENTRIES_BATCH_SIZE", default=500)
    zoho_batch_size: int = env("TIMEENTRIES_ZOHO_BATCH_SIZE", default=50)
    reclaim_idle_seconds: float = env(
        "TIMEENTRIES_RECLAIM_IDLE_SECONDS", default=15.0,
        help="a delivered, unacknowledged outbox message idle this long is retried",
    )
    retry_max_seconds: float = env(
        "TIMEENTRIES_RETRY_MAX_SECONDS", default=300.0, help="longest backoff between retries"
    )
    entry_ttl_days: int = env(
        "TIMEENTRIES_ENTRY_TTL_DAYS", default=31,
        help="life of the hot copy after its last write; ListTimeEntries reads the last "
        "TTL − 1 days from Redis alone (31: the last 30 days, the default range)",
    )
    max_past_days: int = env(
        "TIMEENTRIES_MAX_PAST_DAYS", default=366, help="oldest date an entry may have"
    )
    max_description: int = env("TIMEENTRIES_MAX_DESCRIPTION", default=2000)

    def zoho_credentials(self) -> ZohoCredentials:
        if self.source == "sandbox":
            return SANDBOX_CREDENTIALS
        assert self.client_secret is not None and self.refresh_token is not None
        return ZohoCredentials(self.client_id, self.client_secret, self.refresh_token, self.portal)

    @property
    def source(self) -> str:
        """``real`` (Zoho) when asked, or with ``auto`` when every credential is set."""
        return resolve_data_source(
            self.data_source, real="real",
            configured=bool(self.client_id and self.client_secret and self.refresh_token
                            and self.portal),
            variable="ZOHO_DATA_SOURCE",
            required="ZOHO_CLIENT_ID, ZOHO_CLIENT_SECRET, ZOHO_REFRESH_TOKEN and ZOHO_PORTAL_ID",
        )

    def base_urls(self) -> tuple[str, str, str]:
        """Accounts, Projects and CRM base URLs (all the sandbox in sandbox mode)."""
        if self.source == "sandbox":
            url = self.sandbox_url.rstrip("/")
            return url, url, url
        return (self.accounts_url.rstrip("/"), self.projects_url.rstrip("/"),
                self.crm_url.rstrip("/"))
