"""Who is calling: the admin bearer token and user JWTs.

The access an RPC needs is declared in its proto (``option (syncsuite.auth.v1.access)``); the
server interceptor asks :class:`Authenticator` for the caller's :class:`Principal` and keeps it
in :data:`current_principal` for the handler. Tokens are compared in constant time and never
logged or echoed.

A user JWT that verified is remembered (by its exact text, until its ``exp``) in a small
per-process table, so a client that sends the same token on every call pays the signature check
and claim validation once: a later call is accepted only with that very token, before its
expiry. A token that failed is never remembered, so it is checked in full every time.
"""

from __future__ import annotations

import contextvars
import hmac
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import jwt
from syncsuite.auth.v1 import access_pb2

from shared.config import Secret
from shared.errors import PermissionDenied, Unauthenticated

__all__ = [
    "ADMIN",
    "ANONYMOUS",
    "Authenticator",
    "Principal",
    "current_principal",
    "current_user_email",
    "issue_user_token",
]


@dataclass(frozen=True)
class Principal:
    kind: str  # "anonymous" | "admin" | "user"
    subject: str = ""
    email: str = ""


ANONYMOUS = Principal("anonymous")
ADMIN = Principal("admin", subject="admin")

current_principal: contextvars.ContextVar[Principal] = contextvars.ContextVar(
    "current_principal", default=ANONYMOUS
)


def current_user_email() -> str:
    """The verified email of the calling user; the handler's data scope."""
    principal = current_principal.get()
    if principal.kind != "user" or not principal.email:
        raise PermissionDenied("this call needs a user token")
    return principal.email


def _bearer(metadata: Iterable[tuple[str, str | bytes]]) -> str | None:
    for key, value in metadata:
        if key == "authorization":
            text = value.decode() if isinstance(value, bytes) else value
            scheme, _, token = text.partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
            raise Unauthenticated("the authorization header must be 'Bearer <token>'")
    return None


class Authenticator:
    def __init__(
        self,
        admin_token: Secret | None,
        jwt_secret: Secret | None,
        audience: str = "authenticated",
        leeway_seconds: int = 30,
        verified_cache_size: int = 4096,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._admin_token = admin_token.reveal().encode() if admin_token else None
        self._jwt_secret = jwt_secret.reveal() if jwt_secret else None
        self._audience = audience
        self._leeway = leeway_seconds
        # token text → (principal, exp): user tokens that verified, until they expire
        self._verified: dict[str, tuple[Principal, float]] = {}
        self._verified_cache_size = verified_cache_size
        self._clock = clock

    def authenticate(
        self, access: int, metadata: Iterable[tuple[str, str | bytes]]
    ) -> Principal:
        """The caller's principal for an RPC needing ``access``; raises when not allowed."""
        if access == access_pb2.ACCESS_PUBLIC:
            return ANONYMOUS
        token = _bearer(metadata)
        if access == access_pb2.ACCESS_USER:
            return self._verify_user(token)
        return self._verify_admin(token)

    def _verify_admin(self, token: str | None) -> Principal:
        if self._admin_token is None:
            raise Unauthenticated("admin calls are disabled: SYNCSUITE_ADMIN_TOKEN is not set")
        if token is None:
            raise Unauthenticated("this call needs the admin token: 'authorization: Bearer …'")
        if not hmac.compare_digest(token.encode(), self._admin_token):
            raise Unauthenticated("the admin token is not valid")
        return ADMIN

    def _verify_user(self, token: str | None) -> Principal:
        if self._jwt_secret is None:
            raise Unauthenticated("user calls are disabled: SYNCSUITE_JWT_SECRET is not set")
        if token is None:
            raise Unauthenticated("this call needs a user token: 'authorization: Bearer <JWT>'")
        remembered = self._verified.get(token)
        if remembered is not None:
            if self._clock() < remembered[1]:
                return remembered[0]
            del self._verified[token]  # expired: the full check below decides (leeway)
        try:
            claims = jwt.decode(
                token,
                self._jwt_secret,
                algorithms=["HS256"],
                audience=self._audience,
                leeway=self._leeway,
                options={"require": ["exp", "sub", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("the user token has expired") from None
        except jwt.InvalidTokenError as error:
            raise Unauthenticated(f"the user token is not valid ({type(error).__name__})") from None
        email = str(claims.get("email") or "").strip().lower()
        if not email:
            raise Unauthenticated("the user token has no email claim")
        principal = Principal("user", subject=str(claims["sub"]), email=email)
        self._remember(token, principal, claims["exp"])
        return principal

    def _remember(self, token: str, principal: Principal, exp: object) -> None:
        if self._verified_cache_size <= 0 or not isinstance(exp, int | float):
            return
        if len(self._verified) >= self._verified_cache_size:
            now = self._clock()
            for stale in [t for t, (_, until) in self._verified.items() if until <= now]:
                del self._verified[stale]
            while len(self._verified) >= self._verified_cache_size:
                del self._verified[next(iter(self._verified))]  # the oldest remembered
        self._verified[token] = (principal, float(exp))


def issue_user_token(
    secret: Secret | str,
    email: str,
    subject: str | None = None,
    ttl_seconds: int = 3600,
    audience: str = "authenticated",
) -> str:
    """A Supabase-style user JWT (for tests, tools and `make run`'s sample token)."""
    key = secret.reveal() if isinstance(secret, Secret) else secret
    now = int(time.time())
    claims = {
        "sub": subject or email,
        "email": email,
        "aud": audience,
        "role": "authenticated",
        "iat": now,
        "exp": now + ttl_seconds,
    }
    return jwt.encode(claims, key, algorithm="HS256")
