"""Child processes for `make run` and end-to-end tests: start, wait until ready, stop cleanly."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from shared.backends import free_port

__all__ = ["ManagedProcess", "ProcessExited", "free_port", "wait_for_health", "wait_for_port"]


class ProcessExited(RuntimeError):
    """The process being waited for ended before it was ready."""


def _still_waiting(what: str, deadline: float, alive: Callable[[], bool] | None) -> None:
    if alive is not None and not alive():
        raise ProcessExited(f"the process exited before {what}")
    if time.monotonic() > deadline:
        raise TimeoutError(f"not {what} in time")
    time.sleep(0.1)


def wait_for_port(host: str, port: int, timeout: float,
                  alive: Callable[[], bool] | None = None) -> None:
    """Waits until something listens on ``host:port``; with ``alive``, stops waiting (raising
    :class:`ProcessExited`) as soon as it says the process meant to listen has ended."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            _still_waiting(f"listening on {host}:{port} after {timeout:.0f}s", deadline, alive)


def wait_for_health(address: str, timeout: float, service: str = "",
                    alive: Callable[[], bool] | None = None) -> None:
    """Waits until the gRPC health service at ``address`` says SERVING (``alive``: as in
    :func:`wait_for_port`)."""
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=1.0)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            _still_waiting(f"SERVING at {address} after {timeout:.0f}s", deadline, alive)


class ManagedProcess:
    """A child process whose output goes to a log file; stopped with SIGTERM, then SIGKILL."""

    def __init__(
        self, name: str, args: Sequence[str], env: Mapping[str, str], log_path: Path,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.args = list(args)
        self.env = dict(env)
        self.log_path = log_path
        self.cwd = cwd
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> ManagedProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log_file:
            self.process = subprocess.Popen(
                self.args, env=self.env, stdout=log_file, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, cwd=self.cwd, start_new_session=True,
            )
        return self

    @classmethod
    def python_module(
        cls, name: str, module: str, env: Mapping[str, str], log_dir: Path,
        extra_args: Sequence[str] = (),
    ) -> ManagedProcess:
        return cls(name, [sys.executable, "-m", module, *extra_args], env, log_dir / f"{name}.log")

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def signal(self, signum: int) -> None:
        if self.running and self.process is not None:
            os.kill(self.process.pid, signum)

    def stop(self, timeout: float = 10.0) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        return self.process.returncode

    def kill(self) -> None:
        if self.running and self.process is not None:
            self.process.kill()
            self.process.wait(5)
