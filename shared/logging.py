"""structlog, configured once: JSON off a terminal, readable on one, secrets redacted.

Request-scoped values (request id, method, peer) live in contextvars and are merged into
every line by ``merge_contextvars``, which runs first.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

__all__ = ["configure_logging", "redact", "redact_text"]

_SECRET_KEYS = re.compile(
    r"(pass(word)?|secret|token|authorization|api[_-]?key|signature|credential|cookie)", re.I
)
_SECRET_IN_TEXT = re.compile(
    r"(?i)((?:bearer|basic|zoho-oauthtoken)\s+)[A-Za-z0-9._~+/=-]+"
    r"|((?:password|secret|token|api[_-]?key|signature)=)[^&\s\"']+"
    r"|(://[^:/@\s]+:)[^@\s]+(@)"
)
MASK = "**********"


def redact_text(text: str) -> str:
    """Masks credentials inside free text: bearer tokens, ``key=value`` pairs, URL passwords."""

    def _mask(match: re.Match[str]) -> str:
        if match.group(1):
            return match.group(1) + MASK
        if match.group(2):
            return match.group(2) + MASK
        return match.group(3) + MASK + match.group(4)

    return _SECRET_IN_TEXT.sub(_mask, text)


def redact(value: Any, key: str = "") -> Any:
    """A copy of ``value`` with secret-looking keys masked, recursively."""
    if key and _SECRET_KEYS.search(key) and value not in (None, "", False):
        return MASK
    if isinstance(value, dict):
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    if isinstance(value, str):
        return redact_text(value)
    return value


def _redact_processor(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> Any:
    return {key: redact(value, key) for key, value in event_dict.items()}


def configure_logging(level: str = "info", fmt: str = "auto", service: str | None = None) -> None:
    """Configures structlog and the stdlib root logger. Safe to call more than once."""
    json_output = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if json_output
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    numeric_level = logging.getLevelName(level.upper())
    if not isinstance(numeric_level, int):
        numeric_level = logging.INFO
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _redact_processor,
        structlog.processors.format_exc_info,
        renderer,
    ]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    if service:
        structlog.contextvars.bind_contextvars(service=service)
    logging.basicConfig(level=max(numeric_level, logging.WARNING), stream=sys.stderr, force=True)
