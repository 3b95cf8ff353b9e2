"""structlog, configured once: JSON off a terminal, readable on one, secrets redacted.

Request-scoped values (request id, method, peer) live in contextvars and are merged into
every line by ``merge_contextvars``, which runs first.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from shared.redaction import redact

__all__ = ["configure_logging"]


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
        # the traceback becomes text first, so that it is scrubbed like every other field (an
        # exception's message can quote a URL with its password, or a token)
        structlog.processors.format_exc_info,
        _redact_processor,
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
