"""Lua scripts, and what sends them and single commands to Redis: :class:`PipelinedRedis` on
the RPC paths, redis-py elsewhere (:class:`RedisPyRunner`)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError

__all__ = ["Arg", "LuaScript", "RedisPyRunner", "RedisRunner"]

Arg = str | int | float | bytes


@dataclass(frozen=True)
class LuaScript:
    """A script and its SHA1 (what EVALSHA names it by)."""

    body: str
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sha", hashlib.sha1(self.body.encode()).hexdigest())


class RedisRunner(Protocol):
    async def run(self, script: LuaScript, keys: Sequence[Arg], args: Sequence[Arg]) -> Any:
        """The script's reply (strings decoded as UTF-8)."""

    async def execute(self, *command: Arg) -> Any:
        """One command's reply (strings decoded as UTF-8)."""


class RedisPyRunner:
    """Scripts and commands through a redis-py client (``decode_responses=True``)."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis

    async def run(self, script: LuaScript, keys: Sequence[Arg], args: Sequence[Arg]) -> Any:
        try:
            return await self.redis.evalsha(script.sha, len(keys), *keys, *args)
        except NoScriptError:
            return await self.redis.eval(script.body, len(keys), *keys, *args)

    async def execute(self, *command: Arg) -> Any:
        return await self.redis.execute_command(*command)
