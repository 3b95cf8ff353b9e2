"""The Authenticator remembers user tokens that verified (exact text, until exp) and never one
that failed."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest
from syncsuite.auth.v1 import access_pb2

from shared.auth import Authenticator, issue_user_token
from shared.config import Secret
from shared.errors import Unauthenticated

SECRET = "verified-cache-test-secret-of-enough-length"


def bearer(token: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token}")]


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The tokens PyJWT was asked to verify (the real decode still runs)."""
    seen: list[str] = []
    real = jwt.decode

    def counting(token: str, *args: Any, **kwargs: Any) -> Any:
        seen.append(token)
        return real(token, *args, **kwargs)

    monkeypatch.setattr("shared.auth.jwt.decode", counting)
    return seen


def authenticator(**options: Any) -> Authenticator:
    return Authenticator(Secret("admin"), Secret(SECRET), **options)


def test_a_verified_token_is_checked_once_until_it_expires(decodes: list[str]) -> None:
    auth = authenticator()
    token = issue_user_token(SECRET, "Ann@Example.com")
    first = auth.authenticate(access_pb2.ACCESS_USER, bearer(token))
    again = auth.authenticate(access_pb2.ACCESS_USER, bearer(token))
    assert first == again and again.email == "ann@example.com"
    assert decodes == [token]


def test_a_remembered_token_past_its_exp_is_checked_in_full(decodes: list[str]) -> None:
    auth = authenticator(leeway_seconds=0)
    token = jwt.encode({"sub": "ann", "email": "ann@example.com", "aud": "authenticated",
                        "exp": int(time.time()) + 1}, SECRET, algorithm="HS256")
    auth.authenticate(access_pb2.ACCESS_USER, bearer(token))
    time.sleep(1.2)
    with pytest.raises(Unauthenticated, match="expired"):
        auth.authenticate(access_pb2.ACCESS_USER, bearer(token))
    assert decodes == [token, token]


def test_a_failed_token_is_never_remembered(decodes: list[str]) -> None:
    auth = authenticator()
    forged = issue_user_token("another-secret-of-sufficient-length!", "ann@example.com")
    for _ in range(2):
        with pytest.raises(Unauthenticated, match="not valid"):
            auth.authenticate(access_pb2.ACCESS_USER, bearer(forged))
    assert decodes == [forged, forged]
    # a remembered token with its signature altered is a different token: checked and refused
    token = issue_user_token(SECRET, "ann@example.com")
    auth.authenticate(access_pb2.ACCESS_USER, bearer(token))
    tampered = token[:-2] + ("AA" if token[-2:] != "AA" else "BB")
    with pytest.raises(Unauthenticated):
        auth.authenticate(access_pb2.ACCESS_USER, bearer(tampered))
    assert decodes[-1] == tampered


def test_the_table_is_bounded_and_the_oldest_is_forgotten(decodes: list[str]) -> None:
    auth = authenticator(verified_cache_size=2)
    tokens = [issue_user_token(SECRET, f"u{n}@example.com") for n in range(3)]
    for token in tokens:
        auth.authenticate(access_pb2.ACCESS_USER, bearer(token))
    assert decodes == tokens
    for token in tokens[1:]:  # still remembered
        auth.authenticate(access_pb2.ACCESS_USER, bearer(token))
    assert decodes == tokens
    assert auth.authenticate(access_pb2.ACCESS_USER, bearer(tokens[0])).email == "u0@example.com"
    assert decodes == [*tokens, tokens[0]]  # forgotten, so verified again


def test_the_admin_token_is_unaffected() -> None:
    auth = authenticator()
    assert auth.authenticate(access_pb2.ACCESS_ADMIN, bearer("admin")).kind == "admin"
    with pytest.raises(Unauthenticated):
        auth.authenticate(access_pb2.ACCESS_ADMIN, bearer("admin2"))
