"""``python -m services.shipping.sandbox --host 127.0.0.1 --port 8093`` (knobs: README)."""

from __future__ import annotations

from services.shipping.sandbox import SandboxConfig, ShipStationSandbox
from shared.sandbox import run_cli


def main() -> None:
    run_cli("ShipStation", 8093, lambda: ShipStationSandbox(SandboxConfig.from_env()))


if __name__ == "__main__":
    main()
