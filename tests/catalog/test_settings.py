"""Which NetSuite the catalog talks to, and clear errors for a bad environment."""

from __future__ import annotations

import pytest

from services.catalog.settings import SANDBOX_CREDENTIALS, CatalogSettings, resolve_upstream
from shared.config import ConfigError, load

CREDENTIALS = {
    "NETSUITE_ACCOUNT_ID": "1234567-sb1", "NETSUITE_CONSUMER_KEY": "ck",
    "NETSUITE_CONSUMER_SECRET": "cs-very-secret", "NETSUITE_TOKEN_ID": "tid",
    "NETSUITE_TOKEN_SECRET": "ts-very-secret",
}


def test_auto_uses_the_sandbox_without_credentials() -> None:
    upstream = resolve_upstream(load(CatalogSettings, {"NETSUITE_SANDBOX_URL": "http://x:1/"}))
    assert (upstream.active, upstream.rest_url) == ("sandbox", "http://x:1")
    assert upstream.credentials == SANDBOX_CREDENTIALS and not upstream.credentials_configured


def test_auto_uses_netsuite_when_every_credential_is_set() -> None:
    upstream = resolve_upstream(load(CatalogSettings, CREDENTIALS))
    assert upstream.active == "netsuite"
    assert upstream.rest_url == "https://1234567-sb1.suitetalk.api.netsuite.com"
    assert upstream.credentials.realm == "1234567_SB1"
    assert "very-secret" not in repr(upstream)


def test_forcing_the_sandbox_keeps_real_credentials_unused() -> None:
    upstream = resolve_upstream(load(CatalogSettings, {**CREDENTIALS,
                                                       "NETSUITE_DATA_SOURCE": "sandbox"}))
    assert upstream.active == "sandbox" and upstream.credentials_configured


def test_netsuite_without_credentials_and_bad_values_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="NETSUITE_TOKEN_SECRET"):
        resolve_upstream(load(CatalogSettings, {"NETSUITE_DATA_SOURCE": "netsuite"}))
    with pytest.raises(ConfigError, match="NETSUITE_DATA_SOURCE"):
        load(CatalogSettings, {"NETSUITE_DATA_SOURCE": "prod"})
    with pytest.raises(ConfigError, match="NETSUITE_PAGE_SIZE"):
        load(CatalogSettings, {"NETSUITE_PAGE_SIZE": "0"})
    with pytest.raises(ConfigError, match="NETSUITE_TIMEZONE"):
        load(CatalogSettings, {"NETSUITE_TIMEZONE": "Mars/Olympus"}).validate()
