"""The ShipStation sandbox (see app.py for the protocol, data.py for accounts and data)."""

from services.shipping.sandbox.app import JournalEntry, ShipStationSandbox
from services.shipping.sandbox.data import Account, AccountSpec, SandboxConfig, credentials_of

__all__ = [
    "Account",
    "AccountSpec",
    "JournalEntry",
    "SandboxConfig",
    "ShipStationSandbox",
    "credentials_of",
]
