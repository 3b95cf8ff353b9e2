"""The ShipStation client of each integration, kept across runs so that its limiters remember
the quota, and closed only when no run uses it.

A run takes a :class:`Lease` for each integration it syncs, for the credentials it read. When the
credentials change, the next lease gets a new client; the old one is closed when the last run
holding it ends (scopes with different locks run side by side, so one may still be reading with
it). The client is built on first use, inside the operation that needs it, so that credentials
no client can be built from fail that integration's operations, not the job.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from services.shipping.shipstation import ShipStationClient
from services.shipping.store import IntegrationRow
from shared.errors import FailedPrecondition

__all__ = ["ClientFactory", "Clients", "CredentialsUnusable", "Lease"]

ClientFactory = Callable[[IntegrationRow], ShipStationClient]


class CredentialsUnusable(FailedPrecondition):
    """No client can be built from an integration's stored credentials."""


class _Held:
    """One client (built or not yet) for one set of credentials, and how many runs hold it."""

    def __init__(self, fingerprint: tuple[str, str, str]) -> None:
        self.fingerprint = fingerprint
        self.users = 0
        self.client: ShipStationClient | None = None


class Lease:
    def __init__(self, held: _Held, integration: IntegrationRow, factory: ClientFactory) -> None:
        self._held = held
        self._integration = integration
        self._factory = factory

    def client(self) -> ShipStationClient:
        """The client, built on first use; raises :class:`CredentialsUnusable` naming only the
        kind of failure (the underlying message may quote part of a credential)."""
        held = self._held
        if held.client is None:
            try:
                held.client = self._factory(self._integration)
            except Exception as error:
                raise CredentialsUnusable(
                    f"integration {self._integration.name}: no ShipStation client can be built"
                    f" from its stored credentials ({type(error).__name__}); enter them again"
                    " with UpsertIntegration") from None
        return held.client


class Clients:
    def __init__(self, factory: ClientFactory) -> None:
        self._factory = factory
        self._current: dict[uuid.UUID, _Held] = {}
        self._closing = False

    @asynccontextmanager
    async def lease(self, integration: IntegrationRow) -> AsyncIterator[Lease]:
        held = self._current.get(integration.id)
        if held is None or held.fingerprint != integration.fingerprint:
            replaced, held = held, _Held(integration.fingerprint)
            self._current[integration.id] = held
            # a replaced client still held by a run is closed when that run lets go of it
            if replaced is not None and replaced.users == 0:
                await self._close(replaced)
        held.users += 1
        try:
            yield Lease(held, integration, self._factory)
        finally:
            held.users -= 1
            if held.users == 0 and (self._closing
                                    or self._current.get(integration.id) is not held):
                await self._close(held)

    async def close(self) -> None:
        """Closes the clients no run holds; the others close as their runs end."""
        self._closing = True
        idle = [held for held in self._current.values() if held.users == 0]
        self._current.clear()
        for held in idle:
            await self._close(held)

    @staticmethod
    async def _close(held: _Held) -> None:
        client, held.client = held.client, None
        if client is not None:
            await client.aclose()
