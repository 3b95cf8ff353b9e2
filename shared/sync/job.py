"""A running sync job as domain code sees it: counts, operations, progress."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog

from shared.errors import SyncSuiteError
from shared.redaction import redact_text

__all__ = ["INTERRUPTED", "INTERRUPTED_STEP", "Counts", "Operation", "SyncJob"]

log = structlog.get_logger("sync")

INTERRUPTED = "interrupted: the service is shutting down"  # a job cancelled mid-run
INTERRUPTED_STEP = "cancelled before it finished"  # an operation of such a job


@dataclass
class Counts:
    seen: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    failed: int = 0
    skipped: int = 0

    def add(self, other: Counts) -> None:
        for name, value in asdict(other).items():
            setattr(self, name, getattr(self, name) + value)

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass
class Operation:
    """One step of a job. Domain code fills ``records``, ``counts`` and ``details``."""

    name: str
    ok: bool = True
    records: int = 0
    duration_seconds: float = 0.0
    error: str = ""
    counts: Counts = field(default_factory=Counts)
    details: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "ok": self.ok, "records": self.records,
            "duration_seconds": self.duration_seconds, "error": self.error,
            "counts": self.counts.as_dict(), "details": self.details,
        }


def describe_error(error: BaseException) -> str:
    """A caller-safe one-line reason: our own messages as they are, others by type, redacted."""
    if isinstance(error, SyncSuiteError) and error.public:
        return redact_text(error.message)
    text = str(error) or type(error).__name__
    return redact_text(f"{type(error).__name__}: {text}")[:500]


class SyncJob:
    def __init__(
        self, scope: str, *, full: bool = False, dry_run: bool = False, reason: str = "",
        job_id: str | None = None,
    ) -> None:
        self.id = job_id or str(uuid.uuid4())
        self.scope = scope
        self.full = full
        self.dry_run = dry_run
        self.reason = reason
        self.started_at = datetime.now(UTC)
        self.finished_at: datetime | None = None
        self.status = "RUNNING"
        self.counts = Counts()
        self.operations: list[Operation] = []
        self.error = ""
        self.message = ""
        self.fraction = 0.0
        self._changed = asyncio.Event()

    # -- used by domain code ------------------------------------------------------------------
    def progress(self, fraction: float | None = None, message: str | None = None) -> None:
        if fraction is not None:
            self.fraction = max(0.0, min(1.0, fraction))
        if message is not None:
            self.message = message
        self.notify()

    @asynccontextmanager
    async def operation(self, name: str, *, isolate: bool = True) -> AsyncIterator[Operation]:
        """Times a step and records it. With ``isolate`` a failure is recorded, not raised, so
        the job goes on; without it the failure is recorded and re-raised. A step cancelled
        (the service stopping, a time budget) is recorded as failed and the cancellation goes
        on; an error the step set itself is kept."""
        op = Operation(name)
        started = time.perf_counter()
        try:
            yield op
        except asyncio.CancelledError:
            op.ok = False
            op.error = op.error or INTERRUPTED_STEP
            raise
        except Exception as error:
            op.ok = False
            op.error = describe_error(error)
            if not isolate:
                raise
        finally:
            op.duration_seconds = round(time.perf_counter() - started, 4)
            self.operations.append(op)
            self.counts.add(op.counts)
            log.info("sync_operation", job_id=self.id, scope=self.scope, operation=name,
                     ok=op.ok, records=op.records, duration_s=op.duration_seconds,
                     error=op.error or None, **{k: v for k, v in op.counts.as_dict().items() if v})
            self.notify()

    # -- used by the runner -------------------------------------------------------------------
    def notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_changed(self, timeout: float) -> None:
        event = self._changed
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except TimeoutError:
            pass

    def finish(self, error: BaseException | None = None) -> None:
        self.finished_at = datetime.now(UTC)
        failed_ops = [op for op in self.operations if not op.ok]
        if error is not None:
            self.status = "FAILED"
            self.error = describe_error(error)
        elif failed_ops and len(failed_ops) == len(self.operations):
            self.status = "FAILED"
            self.error = "; ".join(f"{op.name}: {op.error}" for op in failed_ops)[:1000]
        elif failed_ops:
            self.status = "PARTIAL"
            self.error = "; ".join(f"{op.name}: {op.error}" for op in failed_ops)[:1000]
        else:
            self.status = "COMPLETED"
        self.fraction = 1.0 if self.status != "FAILED" else self.fraction
        if not self.message or self.status != "COMPLETED":
            self.message = self.summary()
        self.notify()

    def summary(self) -> str:
        figures = ", ".join(f"{value} {name}" for name, value in self.counts.as_dict().items()
                            if value)
        prefix = "dry run: " if self.dry_run else ""
        return f"{prefix}{self.status.lower()}" + (f": {figures}" if figures else "")
