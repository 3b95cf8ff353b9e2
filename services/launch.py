"""Starts the whole suite as processes (sandboxes first, then services) and stops it cleanly.

Used by `make run` (``python -m services``) and by the end-to-end tests, which pass their own
ports and environment.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from services.suite import SUITE, SuiteMember
from shared.config import non_negative
from shared.processes import ManagedProcess, ProcessExited, wait_for_health, wait_for_port
from shared.server import longest_stop
from shared.settings import DEFAULT_SHUTDOWN_GRACE

__all__ = ["SuiteProcesses", "child_stop_timeout", "read_or_create_secret"]

EXIT_MARGIN_SECONDS = 5.0  # for the interpreter to exit after the stop (a loaded machine)


def child_stop_timeout(env: Mapping[str, str]) -> float:
    """How long a service is given after SIGTERM before it is killed: the longest its stop may
    take with the SYNCSUITE_SHUTDOWN_GRACE it runs with, and a margin, so it is never killed
    while it still records its interrupted sync jobs."""
    raw = env.get("SYNCSUITE_SHUTDOWN_GRACE") or str(DEFAULT_SHUTDOWN_GRACE)
    try:
        grace = non_negative(raw)
    except ValueError:  # the services refused it at start: none of them is running
        grace = DEFAULT_SHUTDOWN_GRACE
    return longest_stop(grace) + EXIT_MARGIN_SECONDS


def read_or_create_secret(path: Path) -> str:
    """A random secret kept in ``path`` (mode 0600) so it survives restarts of `make run`."""
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(32)
    path.touch(mode=0o600)
    path.write_text(value + "\n")
    return value


@dataclass
class SuiteProcesses:
    env: Mapping[str, str]
    log_dir: Path
    grpc_ports: dict[str, int] = field(default_factory=dict)
    sandbox_ports: dict[str, int] = field(default_factory=dict)
    members: tuple[SuiteMember, ...] = SUITE
    processes: list[ManagedProcess] = field(default_factory=list)

    def grpc_port(self, member: SuiteMember) -> int:
        return self.grpc_ports.get(member.name, member.grpc_port)

    def sandbox_port(self, member: SuiteMember) -> int:
        return self.sandbox_ports.get(member.name, member.sandbox_port)

    def _environment(self) -> dict[str, str]:
        env = dict(self.env)
        for member in self.members:
            env[member.address_env] = f"127.0.0.1:{self.grpc_port(member)}"
            if member.sandbox_module:
                env[member.sandbox_url_env] = f"http://127.0.0.1:{self.sandbox_port(member)}"
        return env

    def start(self, timeout: float = 60.0) -> None:
        env = self._environment()
        try:
            sandboxes = [
                (member, self._spawn(
                    f"{member.name}-sandbox", member.sandbox_module, env,
                    ["--host", "127.0.0.1", "--port", str(self.sandbox_port(member))],
                ))
                for member in self.members if member.sandbox_module
            ]
            for member, process in sandboxes:
                port = self.sandbox_port(member)
                self._await_ready(process, partial(wait_for_port, "127.0.0.1", port, timeout))
            services = [
                (member, self._spawn(member.name, member.module,
                                     {**env, "SYNCSUITE_GRPC_PORT": str(self.grpc_port(member))}))
                for member in self.members
            ]
            for member, process in services:
                address = f"127.0.0.1:{self.grpc_port(member)}"
                self._await_ready(process, partial(wait_for_health, address, timeout))
        except BaseException:
            self.stop()
            raise

    def _spawn(
        self, name: str, module: str | None, env: Mapping[str, str], args: list[str] | None = None
    ) -> ManagedProcess:
        assert module is not None
        process = ManagedProcess.python_module(name, module, env, self.log_dir, args or [])
        self.processes.append(process.start())
        return process

    @staticmethod
    def _await_ready(process: ManagedProcess, wait: Callable[..., None]) -> None:
        """``wait(alive=...)``: waits until ``process`` is ready, or has exited."""
        try:
            wait(alive=lambda: process.running)
        except (TimeoutError, ProcessExited) as error:
            status = "exited" if not process.running else "still starting"
            raise RuntimeError(
                f"{process.name} did not become ready ({status}); last log lines:\n"
                f"{process.log_tail()}"
            ) from error

    def stop(self) -> None:
        timeout = child_stop_timeout(self.env)
        for process in reversed(self.processes):
            process.stop(timeout)
        self.processes.clear()


def suite_environment(base: Mapping[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env
