"""List paging the AIP way: ``page_size`` (negative → INVALID_ARGUMENT, 0 → default, too large →
clamped) and an opaque ``page_token`` that only our own responses produce."""

from __future__ import annotations

import base64
import json
from typing import Any

from shared.errors import InvalidArgument

__all__ = ["decode_page_token", "encode_page_token", "page_size"]


def page_size(requested: int, *, default: int = 50, maximum: int = 1000) -> int:
    if requested < 0:
        raise InvalidArgument("page_size", f"must be between 0 and {maximum}, got {requested}")
    return min(requested or default, maximum)


def encode_page_token(position: dict[str, Any]) -> str:
    """An opaque token for ``position`` (any JSON-serialisable cursor)."""
    raw = json.dumps(position, separators=(",", ":"), default=str).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_page_token(token: str, *, required: tuple[str, ...] = ()) -> dict[str, Any]:
    """The cursor inside a token from :func:`encode_page_token`; INVALID_ARGUMENT otherwise."""
    try:
        padded = token + "=" * (-len(token) % 4)
        position = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, UnicodeDecodeError):
        position = None
    if (not isinstance(position, dict) or any(key not in position for key in required)
            # a NUL is in no text PostgreSQL stores, so in no token we hand out
            or any(isinstance(value, str) and "\x00" in value for value in position.values())):
        raise InvalidArgument("page_token", "not a token from a previous response")
    return position
