"""Configuration: the typed settings model and the YAML/env loader. Read only at entry points."""

from config.loader import load_settings
from config.settings import Settings, WorkerSpec

__all__ = ["Settings", "WorkerSpec", "load_settings"]
