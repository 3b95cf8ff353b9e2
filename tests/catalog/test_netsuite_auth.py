"""TBA signing (OAuth 1.0a HMAC-SHA256) against the public test vector and the sandbox's
verification: wrong key, stale timestamp, reused nonce; retries of NetSuite's limit errors."""

from __future__ import annotations

import time
from dataclasses import replace
from zoneinfo import ZoneInfo

import httpx
import pytest
from structlog.testing import capture_logs

from services.catalog.netsuite import NetSuiteClient, is_request_limit, oauth_header
from services.catalog.records import ENTITIES
from services.catalog.sandbox import NetSuiteSandbox, SandboxConfig, create_app
from services.catalog.settings import SANDBOX_CREDENTIALS, NetSuiteCredentials, Upstream
from shared.config import Secret
from shared.sandbox import asgi_client
from shared.upstream import UpstreamAuthError

VECTOR_URL = ("https://1234567.restlets.api.netsuite.com/app/site/hosting/restlet.nl"
              "?script=6&deploy=1&customParam=someValue&testParam=someOtherValue")
VECTOR = NetSuiteCredentials(
    account_id="1234567",
    consumer_key=Secret("ef40afdd8abaac111b13825dd5e5e2ddddb44f86d5a0dd6dcf38c20aae6b67e4"),
    consumer_secret=Secret("d26ad321a4b2f23b0741c8d38392ce01c3e23e109df6c96eac6d099e9ab9e8b5"),
    token_id=Secret("2b0ce516420110bcbd36b69e99196d1b7f6de3c6234c5afb799b73d87569f5cc"),
    token_secret=Secret("c29a677df7d5439a458c063654187e3d678d73aca8e3c9d8bea1478a3eb0d295"),
)
ZONE = ZoneInfo("America/Los_Angeles")
SUITEQL = "/services/rest/query/v1/suiteql"


def test_signature_matches_the_published_test_vector() -> None:
    header = oauth_header(VECTOR, "POST", VECTOR_URL, nonce="fjaLirsIcCGVZWzBX0pg",
                          timestamp="1508242306")
    assert 'oauth_signature="i7MEtGwhCTIZbTsTrNGw9LdcERn4wsjt5C7TxmKWIfU%3D"' in header
    assert header.startswith('OAuth realm="1234567"')
    assert 'oauth_signature_method="HMAC-SHA256"' in header


def test_realm_and_host_spelling_of_a_sandbox_account() -> None:
    account = replace(VECTOR, account_id="1234567-sb1")
    assert account.realm == "1234567_SB1"
    assert account.host_account == "1234567-sb1"


def _upstream(credentials: NetSuiteCredentials = SANDBOX_CREDENTIALS,
              restlet: str | None = None) -> Upstream:
    return Upstream("sandbox", credentials, "http://sandbox", restlet, False)


def _client(app: object, credentials: NetSuiteCredentials = SANDBOX_CREDENTIALS, *,
            restlet: str | None = None, page_size: int = 1000, concurrency: int = 4,
            max_attempts: int = 3) -> NetSuiteClient:
    return NetSuiteClient(_upstream(credentials, restlet), zone=ZONE,
                          transport=httpx.ASGITransport(app=app),  # type: ignore[arg-type]
                          page_size=page_size, concurrency=concurrency, max_attempts=max_attempts)


async def test_the_sandbox_accepts_our_signature_and_pages_like_netsuite() -> None:
    sandbox = NetSuiteSandbox(SandboxConfig(customers=250, items=10))
    app, _ = create_app(sandbox)
    client = _client(app, page_size=100)
    try:
        fetched = await client.fetch(ENTITIES["customers"])
        ids = await client.fetch_ids(ENTITIES["customers"])
    finally:
        await client.aclose()
    assert [int(r["id"]) for r in fetched.rows] == list(range(1, 251)) == ids
    assert fetched.complete
    assert sandbox.auth_failures == 0


async def test_a_wrong_secret_is_refused_with_netsuites_error_body() -> None:
    app, _ = create_app(NetSuiteSandbox(SandboxConfig(customers=5, items=1)))
    client = _client(app, replace(SANDBOX_CREDENTIALS, token_secret=Secret("not-the-secret")))
    try:
        with pytest.raises(UpstreamAuthError) as raised:
            await client.fetch(ENTITIES["customers"])
    finally:
        await client.aclose()
    assert raised.value.status == 401
    assert raised.value.code == "INVALID_LOGIN"
    assert "not-the-secret" not in str(raised.value)
    assert client.last_call.ok is False


async def _post(http: httpx.AsyncClient, header: str) -> httpx.Response:
    return await http.post(SUITEQL, params={"limit": 5, "offset": 0},
                           json={"q": "SELECT id FROM customer ORDER BY id"},
                           headers={"Authorization": header, "Prefer": "transient"})


async def test_stale_timestamps_and_reused_nonces_are_refused() -> None:
    sandbox = NetSuiteSandbox(SandboxConfig(customers=5, items=1))
    app, _ = create_app(sandbox)
    url = f"http://sandbox{SUITEQL}?limit=5&offset=0"
    async with asgi_client(app) as http:
        fresh = oauth_header(SANDBOX_CREDENTIALS, "POST", url, nonce="nonce-123456",
                             timestamp=str(int(time.time())))
        assert (await _post(http, fresh)).status_code == 200
        replayed = await _post(http, fresh)
        assert replayed.status_code == 401
        assert replayed.json()["o:errorDetails"][0]["o:errorCode"] == "INVALID_LOGIN"
        stale = oauth_header(SANDBOX_CREDENTIALS, "POST", url, nonce="nonce-654321",
                             timestamp=str(int(time.time()) - 3600))
        assert (await _post(http, stale)).status_code == 401
        tampered = oauth_header(SANDBOX_CREDENTIALS, "POST", url.replace("limit=5", "limit=6"),
                                nonce="nonce-abcdef", timestamp=str(int(time.time())))
        assert (await _post(http, tampered)).status_code == 401  # the query is signed
    assert sandbox.auth_failures == 3


async def test_the_restlet_concurrency_limit_is_retried_until_every_page_arrives() -> None:
    sandbox = NetSuiteSandbox(SandboxConfig(customers=1200, items=1, concurrency=2,
                                            latency_ms=30))
    app, _ = create_app(sandbox)
    client = _client(app, restlet="http://sandbox/app/site/hosting/restlet.nl?script=7&deploy=1",
                     page_size=100, concurrency=6, max_attempts=10)
    try:
        fetched = await client.fetch(ENTITIES["customers"])
    finally:
        await client.aclose()
    assert len({r["id"] for r in fetched.rows}) == 1200 and fetched.complete
    assert client.http.stats.retries > 0  # some pages met SSS_REQUEST_LIMIT_EXCEEDED


async def test_the_rest_concurrency_limit_answers_429_and_is_retried() -> None:
    sandbox = NetSuiteSandbox(SandboxConfig(customers=1200, items=1, concurrency=2,
                                            latency_ms=30))
    app, _ = create_app(sandbox)
    client = _client(app, page_size=100, concurrency=6, max_attempts=10)
    try:
        fetched = await client.fetch(ENTITIES["customers"])
    finally:
        await client.aclose()
    assert len({r["id"] for r in fetched.rows}) == 1200 and fetched.complete
    assert client.http.stats.throttled > 0


def test_request_limit_errors_are_recognised() -> None:
    limited = httpx.Response(400, json={"error": {"code": "SSS_REQUEST_LIMIT_EXCEEDED",
                                                  "message": "Request limit exceeded"}})
    other = httpx.Response(400, json={"error": {"code": "INVALID_RCRD_TYPE"}})
    assert is_request_limit(limited) and not is_request_limit(other)


async def test_server_errors_are_retried_and_no_secret_is_logged() -> None:
    app, faults = create_app(NetSuiteSandbox(SandboxConfig(customers=30, items=1)))
    faults.force("status", count=2, status=503)
    client = _client(app)
    try:
        with capture_logs() as logs:
            fetched = await client.fetch(ENTITIES["customers"])
    finally:
        await client.aclose()
    assert len(fetched.rows) == 30 and client.http.stats.retries == 2
    assert any(entry["event"] == "upstream_retry" for entry in logs)
    logged = repr(logs)
    for secret in (SANDBOX_CREDENTIALS.consumer_secret, SANDBOX_CREDENTIALS.token_secret,
                   SANDBOX_CREDENTIALS.token_id, SANDBOX_CREDENTIALS.consumer_key):
        assert secret.reveal() not in logged
    assert "oauth_signature" not in logged
