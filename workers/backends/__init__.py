"""Worker backends: a shell command, an HTTP endpoint (mecha's worker contract), or a Python function."""

from workers.backends.base import Backend, Outcome, RunHandle, TaskContext
from workers.backends.factory import backend_for

__all__ = ["Backend", "Outcome", "RunHandle", "TaskContext", "backend_for"]
