"""Build the backend for a worker definition."""

from __future__ import annotations

from collections.abc import Mapping

from config.settings import WorkerSpec
from workers.backends.base import Backend
from workers.backends.command import CommandBackend
from workers.backends.endpoint import EndpointBackend
from workers.backends.handler import HandlerBackend

__all__ = ["backend_for"]


def backend_for(spec: WorkerSpec, *, base_env: Mapping[str, str]) -> Backend:
    """The backend that runs ``spec``'s tasks; raises BackendError when a handler cannot be imported."""
    if spec.command:
        return CommandBackend(spec, base_env=base_env)
    if spec.endpoint:
        return EndpointBackend(spec)
    return HandlerBackend(spec)
