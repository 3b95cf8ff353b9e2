"""List paging the AIP way: ``page_size`` (negative → INVALID_ARGUMENT, 0 → default, too large →
clamped) and an opaque ``page_token`` that only our own responses produce; and the enum filters
of list requests."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import datetime
from typing import Any

from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper

from shared.errors import InvalidArgument

__all__ = [
    "decode_page_token",
    "decode_time_id_token",
    "encode_page_token",
    "enum_filter",
    "page_size",
]


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


def decode_time_id_token(token: str, time_key: str) -> tuple[datetime, str]:
    """The position in a list ordered by a time and then an id, from a token of
    ``{time_key: aware ISO 8601 time, "id": UUID}``; INVALID_ARGUMENT for anything else."""
    position = decode_page_token(token, required=(time_key, "id"))
    try:
        moment = datetime.fromisoformat(position[time_key])
        if moment.tzinfo is None:
            raise ValueError("the tokens we hand out carry the time zone")
        return moment, str(uuid.UUID(str(position["id"])))
    except (TypeError, ValueError):
        raise InvalidArgument("page_token", "not a token from a previous response") from None


def enum_filter(enum: EnumTypeWrapper, value: int, *, field: str, prefix: str) -> str:
    """A list filter given as a proto enum: the value's name without ``prefix`` ('' for 0, no
    filter). Proto3 enums are open, so a client may send a number we do not know:
    INVALID_ARGUMENT naming ``field``."""
    if not value:
        return ""
    if value not in enum.values():
        raise InvalidArgument(field, f"unknown value {value}")
    return enum.Name(value).removeprefix(prefix)
