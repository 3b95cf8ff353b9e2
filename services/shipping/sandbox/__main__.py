"""``python -m services.shipping.sandbox --host 127.0.0.1 --port 8093`` (knobs: README)."""

from __future__ import annotations

import argparse
import asyncio
import os

from services.shipping.sandbox import SandboxConfig, ShipStationSandbox
from shared.logging import configure_logging
from shared.sandbox import serve


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m services.shipping.sandbox")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8093)
    args = parser.parse_args()
    configure_logging(os.environ.get("SYNCSUITE_LOG_LEVEL", "info"),
                      os.environ.get("SYNCSUITE_LOG_FORMAT", "auto"), service="shipstation-sandbox")
    asyncio.run(serve(ShipStationSandbox(SandboxConfig.from_env()), args.host, args.port))


if __name__ == "__main__":
    main()
