"""Typed settings read from the environment once, at start, with clear errors.

A service declares a frozen dataclass whose fields carry :func:`env` metadata, then calls
:func:`load`. Every problem is reported at once, naming the variable::

    @dataclass(frozen=True)
    class CatalogSettings:
        grpc_port: int = env("SYNCSUITE_GRPC_PORT", default=50051)
        consumer_secret: Secret | None = env("NETSUITE_CONSUMER_SECRET", default=None)

    settings = load(CatalogSettings)          # raises ConfigError listing every bad variable

Secrets are wrapped in :class:`Secret`, whose ``repr``/``str`` never show the value.
"""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

__all__ = [
    "MAX_PORT",
    "ConfigError",
    "Secret",
    "env",
    "load",
    "non_negative",
    "one_of",
    "port",
    "positive",
    "positive_int",
    "resolve_data_source",
]

T = TypeVar("T")
_MISSING: Any = dataclasses.MISSING


class ConfigError(Exception):
    """The environment does not describe a runnable service; the message lists every problem."""


class Secret:
    """A string that never prints. Call :meth:`reveal` where the value is really needed."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)


def env(
    *names: str,
    default: Any = _MISSING,
    parse: Callable[[str], Any] | None = None,
    help: str = "",
) -> Any:
    """A settings field read from the first of ``names`` that is set (later names are aliases)."""
    metadata = {"env": names, "parse": parse, "help": help}
    if default is _MISSING:
        return dataclasses.field(metadata=metadata)
    if isinstance(default, list | dict | set):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def _parse_bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError("expected true/false")


def _parse_list(raw: str) -> list[str]:
    return [part.strip() for part in raw.split(",") if part.strip()]


def _parser_for(annotation: Any) -> Callable[[str], Any]:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        inner = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        return _parser_for(inner[0])
    if origin is list:
        return _parse_list
    if annotation is bool:
        return _parse_bool
    if annotation in (int, float, str, Secret):
        return annotation  # type: ignore[no-any-return]
    raise TypeError(f"no parser for settings type {annotation!r}")


def load(cls: type[T], environ: Mapping[str, str] | None = None, **overrides: Any) -> T:
    """Build ``cls`` from ``environ`` (default ``os.environ``); ``overrides`` win over both."""
    source = os.environ if environ is None else environ
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    problems: list[str] = []
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        if field.name in overrides:
            values[field.name] = overrides[field.name]
            continue
        names: tuple[str, ...] = field.metadata.get("env", ())
        raw = next((source[name] for name in names if source.get(name, "") != ""), None)
        if raw is None:
            if field.default is _MISSING and field.default_factory is _MISSING:
                problems.append(f"{names[0]} is required but not set")
            continue
        parse = field.metadata.get("parse") or _parser_for(hints[field.name])
        try:
            values[field.name] = parse(raw)
        except (ValueError, TypeError) as error:
            shown = "(secret)" if hints[field.name] in (Secret, Secret | None) else repr(raw)
            problems.append(f"{names[0]}={shown} is invalid: {error}")
    if problems:
        raise ConfigError(f"{cls.__name__}: " + "; ".join(problems))
    return cls(**values)


def one_of(*choices: str) -> Callable[[str], str]:
    """A parser accepting one of ``choices`` (case-insensitive), e.g. ``auto|sandbox|stockx``."""

    def parse(raw: str) -> str:
        value = raw.strip().lower()
        if value not in choices:
            raise ValueError(f"expected {', '.join(choices[:-1])} or {choices[-1]}")
        return value

    return parse


def _finite(raw: str) -> float:
    value = float(raw)
    if not math.isfinite(value):  # nan and inf are no durations, rates or sizes
        raise ValueError("must be a finite number")
    return value


def positive(raw: str) -> float:
    value = _finite(raw)
    if value <= 0:
        raise ValueError("must be greater than 0")
    return value


def non_negative(raw: str) -> float:
    value = _finite(raw)
    if value < 0:
        raise ValueError("must not be negative")
    return value


def positive_int(raw: str) -> int:
    value = int(raw)
    if value <= 0:
        raise ValueError("must be greater than 0")
    return value


MAX_PORT = 65535


def port(raw: str) -> int:
    """A TCP port to bind; 0 lets the system pick a free one."""
    value = int(raw)
    if not 0 <= value <= MAX_PORT:
        raise ValueError(f"must be a port number, 0 to {MAX_PORT}")
    return value


def resolve_data_source(
    choice: str, *, real: str, configured: bool, variable: str, required: str
) -> str:
    """Which upstream a service talks to: ``real`` (the vendor's API) or ``"sandbox"``.

    ``choice`` is the ``<VENDOR>_DATA_SOURCE`` setting: ``auto`` picks the real API when its
    credentials are ``configured``, else the sandbox; asking for the real API without them is
    a start-up error naming the ``required`` variables.
    """
    if choice == "auto":
        return real if configured else "sandbox"
    if choice == real and not configured:
        raise ConfigError(f"{variable}={real} needs {required}")
    return choice
