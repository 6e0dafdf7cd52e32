"""Background jobs (profiling runs) recorded in a SQL database with their results."""

from gpu_optimizer.jobs.runner import JobContext, JobFailure, JobRunner, QueueFullError
from gpu_optimizer.jobs.store import JobRecord, JobStore

__all__ = ["JobContext", "JobFailure", "JobRecord", "JobRunner", "JobStore", "QueueFullError"]
