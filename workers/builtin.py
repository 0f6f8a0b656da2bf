"""Built-in handlers. ``echo`` is the worker defined when a config names none, so a first task completes."""

from __future__ import annotations

from workers.backends.base import TaskContext

__all__ = ["echo", "noop"]


def echo(ctx: TaskContext) -> str:
    """Answer with the prompt."""
    return ctx.prompt


def noop(ctx: TaskContext) -> str:
    """Do nothing (benchmarks)."""
    return ""
