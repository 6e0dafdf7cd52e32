"""Background jobs (profiling runs) recorded in a SQL database with their results."""

from gpu_optimizer.jobs.runner import JobContext, JobRunner
from gpu_optimizer.jobs.store import JobRecord, JobStore

__all__ = ["JobContext", "JobRecord", "JobRunner", "JobStore"]
