"""Masking credentials before anything is logged, stored as an error or returned.

One set of rules for the whole suite: log processors, upstream clients and sync-job errors
all use these functions.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote_plus, urlsplit, urlunsplit

import httpx

__all__ = ["MASK", "is_secret_name", "redact", "redact_headers", "redact_text", "redact_url"]

MASK = "[redacted]"

_SECRET_NAME = re.compile(
    r"auth|key|token|secret|signature|passw|cookie|session|credential|^sig$", re.IGNORECASE
)
_SCHEME_CREDENTIALS = re.compile(r"(?i)\b(bearer|basic|zoho-oauthtoken)\s+[^\s,;\"']+")
_NAMED_CREDENTIALS = re.compile(  # token=…, oauth_signature="…", "access_token": "…"
    r"(?i)([\w-]*(?:token|secret|signature|password|api[_-]?key)[\w-]*(?:\s*=\s*\"?|\"\s*:\s*\"))"
    r"[^\s,;\"'&]+"
)
_URL_PASSWORD = re.compile(r"(://[^:/@\s]*:)[^@\s]+(@)")  # a user may be empty: redis://:pw@
# Every pattern above needs one of these (lower-cased) in the text: checking for them first
# keeps redaction cheap on the many log values that hold no credential at all.
_TRIGGER = re.compile(r"bearer|basic|oauthtoken|token|secret|signature|password|key|://", re.I)


@functools.lru_cache(maxsize=4096)
def is_secret_name(name: str) -> bool:
    """Whether a field, header or parameter called ``name`` holds a credential."""
    return bool(_SECRET_NAME.search(name))


def redact_text(text: str) -> str:
    """Masks credentials inside free text: auth schemes, ``name=value`` pairs, URL passwords."""
    if not _TRIGGER.search(text):
        return text
    text = _SCHEME_CREDENTIALS.sub(r"\1 " + MASK, text)
    text = _NAMED_CREDENTIALS.sub(r"\1" + MASK, text)
    return _URL_PASSWORD.sub(r"\1" + MASK + r"\2", text)


def redact(value: Any, key: str = "") -> Any:
    """A copy of ``value`` with secret-named fields masked and free text scrubbed, recursively."""
    if key and is_secret_name(key) and value not in (None, "", False):
        return MASK
    if isinstance(value, dict):
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    if isinstance(value, str):
        return redact_text(value)
    return value


def redact_headers(headers: Mapping[str, str] | httpx.Headers) -> dict[str, str]:
    """A copy of ``headers`` safe to log: credential-like values are masked."""
    items = headers.multi_items() if isinstance(headers, httpx.Headers) else headers.items()
    return {k: MASK if is_secret_name(k) else v for k, v in items}


def redact_url(url: str | httpx.URL) -> str:
    """``url`` safe to log: passwords and credential-like query values are masked."""
    parts = urlsplit(str(url))
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:{MASK}@{host}" if ":" in userinfo else f"{MASK}@{host}"
    query = "&".join(
        f"{piece.split('=', 1)[0]}={MASK}"
        if is_secret_name(unquote_plus(piece.split("=", 1)[0]))
        else piece
        for piece in parts.query.split("&")
        if piece
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))
