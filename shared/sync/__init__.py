"""The common SyncService: scopes, jobs, locks, reports."""

from shared.sync.job import INTERRUPTED, INTERRUPTED_STEP, Counts, Operation, SyncJob
from shared.sync.service import SyncRegistry, SyncScope, SyncServicer, report_from_record
from shared.sync.store import JobRecord, SyncJobStore

__all__ = [
    "INTERRUPTED",
    "INTERRUPTED_STEP",
    "Counts",
    "JobRecord",
    "Operation",
    "SyncJob",
    "SyncJobStore",
    "SyncRegistry",
    "SyncScope",
    "SyncServicer",
    "report_from_record",
]
