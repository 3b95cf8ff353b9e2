"""`make run`: find or start PostgreSQL and Redis, start the sandboxes and the five services,
print where they are, and stop everything on Ctrl-C."""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path

from services.launch import SuiteProcesses, read_or_create_secret, suite_environment
from services.suite import SUITE
from shared.backends import BackendStack
from shared.logging import configure_logging

RUN_DIR = Path(".run")


def main() -> int:
    configure_logging("info", os.environ.get("SYNCSUITE_LOG_FORMAT", "console"))
    env = suite_environment()
    if not env.get("SYNCSUITE_ADMIN_TOKEN"):
        env["SYNCSUITE_ADMIN_TOKEN"] = read_or_create_secret(RUN_DIR / "admin-token")
    if not env.get("SYNCSUITE_JWT_SECRET"):
        env["SYNCSUITE_JWT_SECRET"] = read_or_create_secret(RUN_DIR / "jwt-secret")
    if not env.get("SYNCSUITE_DATA_KEY"):  # 32 random bytes, URL-safe base64
        env["SYNCSUITE_DATA_KEY"] = read_or_create_secret(RUN_DIR / "data-key")
    stop = threading.Event()
    # SIGHUP too: the services run in sessions of their own, so a closed terminal would leave
    # them running (on their ports) if it ended this process alone
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, lambda *_: stop.set())
    with BackendStack(run_dir=RUN_DIR, environ=env) as backends:
        env.update(DATABASE_URL=backends.database_url, REDIS_URL=backends.redis_url)
        suite = SuiteProcesses(env=env, log_dir=RUN_DIR / "logs")
        try:
            suite.start()
        except RuntimeError as error:
            print(f"\nthe suite did not start: {error}", file=sys.stderr)
            return 1
        print("\nsyncsuite is running (logs in .run/logs/, Ctrl-C stops everything)\n")
        for member in SUITE:
            sandbox = (f"   {member.upstream} sandbox http://127.0.0.1:{member.sandbox_port}"
                       if member.sandbox_module else "")
            print(f"  {member.name:<12} 127.0.0.1:{member.grpc_port}"
                  f"   metrics http://127.0.0.1:{member.grpc_port + 1000}/metrics{sandbox}")
        print(f"\n  postgres: {backends.postgres_source}   redis: {backends.redis_source}")
        print(f"  admin token: {env['SYNCSUITE_ADMIN_TOKEN']}  (kept in .run/admin-token)\n")
        print("  try: .venv/bin/grpcurl -plaintext 127.0.0.1:50051 list\n")
        try:
            while not stop.wait(1.0):
                dead = [p.name for p in suite.processes if not p.running]
                if dead:
                    print(f"stopped unexpectedly: {', '.join(dead)} (see .run/logs/)",
                          file=sys.stderr)
                    return 1
        finally:
            print("\nstopping…")
            suite.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
