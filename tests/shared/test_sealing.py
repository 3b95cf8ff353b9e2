"""Secrets sealed at rest: they open with their key and purpose only."""

from __future__ import annotations

import base64
import os

import pytest

from shared.sealing import SEALED_PREFIX, Sealer, SealingError

KEY = os.urandom(32)


def test_a_sealed_value_opens_with_its_key_and_purpose_only() -> None:
    sealer = Sealer(KEY)
    sealed = sealer.seal("ss-api-secret-ü", "api_secret")
    assert sealed.startswith(SEALED_PREFIX) and "ss-api-secret" not in sealed
    assert sealer.unseal(sealed, "api_secret") == "ss-api-secret-ü"
    assert sealer.seal("same", "api_key") != sealer.seal("same", "api_key")  # fresh nonce
    with pytest.raises(SealingError, match="does not open"):
        sealer.unseal(sealed, "api_key")  # moved to another column
    with pytest.raises(SealingError, match="does not open"):
        Sealer(os.urandom(32)).unseal(sealed, "api_secret")
    altered = sealed[:-2] + ("A" if sealed[-2] != "A" else "B") + sealed[-1]
    with pytest.raises(SealingError):
        sealer.unseal(altered, "api_secret")
    with pytest.raises(SealingError, match="not sealed"):
        sealer.unseal("plain-old-secret", "api_secret")


@pytest.mark.parametrize("encode", [base64.b64encode, base64.urlsafe_b64encode,
                                    lambda raw: base64.urlsafe_b64encode(raw).rstrip(b"=")])
def test_the_key_setting_is_32_bytes_in_any_base64(encode: object) -> None:
    setting = encode(KEY).decode()  # type: ignore[operator]
    sealed = Sealer(KEY).seal("x", "p")
    assert Sealer.from_setting(setting).unseal(sealed, "p") == "x"


@pytest.mark.parametrize("setting", ["", "not base64!", base64.b64encode(b"short").decode()])
def test_a_key_setting_that_is_not_a_key_is_refused_clearly(setting: str) -> None:
    with pytest.raises(SealingError, match="SYNCSUITE_DATA_KEY"):
        Sealer.from_setting(setting)
