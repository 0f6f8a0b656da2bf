"""Where artifact bytes live: one small interface, a local-disk store, and an in-memory fake for tests.

The bytes of a trace artifact (a screenshot, a diff, a log) go to an :class:`ArtifactStore`; their metadata goes
to Redis (``engine/artifact_service.py``). The store is an interface so that object storage can replace the
local disk later without touching the service or the API. Every method is async: an object store is a network
call, and the local store keeps its file work off the event loop.

:class:`LocalDiskStore` writes each artifact to a temporary file, flushes it to disk, then renames it into
place, so a crash at any moment leaves either the whole artifact or none of it (at worst a temporary file,
removed by :meth:`LocalDiskStore.remove_stale_temp`). Files are sharded by the first two characters of the id.
Local disk means one machine: replicas behind a load balancer need a shared ``data_dir`` (or object storage).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

from engine.errors import ArtifactNotFound
from engine.ids import is_id, new_id

__all__ = ["ArtifactStore", "Blob", "LocalDiskStore", "MemoryStore", "Stored"]

READ_CHUNK_BYTES = 65_536  # bytes read from disk per chunk when serving an artifact
TEMP_MAX_AGE_S = 3600.0  # seconds after which a leftover temporary file counts as abandoned
_TEMP_SUFFIX = ".part"


@dataclass(frozen=True)
class Stored:
    """What :meth:`ArtifactStore.put` wrote: the size in bytes and the SHA-256 (hex) of the bytes."""

    size: int
    sha256: str


class Blob(Protocol):
    """An artifact opened for reading: ``size`` in bytes, and its bytes as chunks (read once)."""

    size: int

    def chunks(self) -> AsyncIterator[bytes]: ...


class ArtifactStore(Protocol):
    """Bytes by artifact id. ``put`` leaves nothing behind when its chunks raise (a size limit, a client that
    went away); ``open`` raises ArtifactNotFound for an id it does not hold; ``delete`` of a missing id is fine."""

    async def put(self, artifact_id: str, chunks: AsyncIterable[bytes]) -> Stored: ...

    async def open(self, artifact_id: str) -> Blob: ...

    async def delete(self, artifact_id: str) -> None: ...


class LocalDiskStore:
    """Artifacts as files under ``root`` (``<root>/<id[:2]>/<id>``), temporary files in ``<root>/tmp``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._tmp = root / "tmp"

    def path(self, artifact_id: str) -> Path:
        if not is_id(artifact_id):  # never let an id name a path outside the root
            raise ArtifactNotFound()
        return self.root / artifact_id[:2] / artifact_id

    async def put(self, artifact_id: str, chunks: AsyncIterable[bytes]) -> Stored:
        final = self.path(artifact_id)
        temp = self._tmp / f"{artifact_id}.{new_id()[:8]}{_TEMP_SUFFIX}"
        handle = await asyncio.to_thread(_open_new, temp)
        digest, size = hashlib.sha256(), 0
        try:
            async for chunk in chunks:
                digest.update(chunk)
                size += len(chunk)
                await asyncio.to_thread(handle.write, chunk)
            await asyncio.to_thread(_seal, handle, temp, final)
        except BaseException:
            await asyncio.shield(asyncio.to_thread(_discard, handle, temp))
            raise
        return Stored(size=size, sha256=digest.hexdigest())

    async def open(self, artifact_id: str) -> Blob:
        path = self.path(artifact_id)
        try:
            handle = await asyncio.to_thread(path.open, "rb")
        except FileNotFoundError:
            raise ArtifactNotFound() from None
        return _FileBlob(handle)

    async def delete(self, artifact_id: str) -> None:
        await asyncio.to_thread(self.path(artifact_id).unlink, missing_ok=True)

    def remove_stale_temp(self, *, max_age_s: float = TEMP_MAX_AGE_S) -> int:
        """Remove temporary files older than ``max_age_s`` (left by a process that died mid-upload); returns how
        many. Blocking: call it at start-up."""
        if not self._tmp.is_dir():
            return 0
        removed, cutoff = 0, time.time() - max_age_s
        for entry in self._tmp.iterdir():
            try:
                if entry.name.endswith(_TEMP_SUFFIX) and entry.stat().st_mtime < cutoff:
                    entry.unlink()
                    removed += 1
            except FileNotFoundError:  # another process removed it first
                continue
        return removed


def _open_new(temp: Path) -> IO[bytes]:
    temp.parent.mkdir(parents=True, exist_ok=True)
    return temp.open("xb")


def _seal(handle: IO[bytes], temp: Path, final: Path) -> None:
    """Flush the temporary file to disk and rename it into place (atomic on one file system), then flush the
    directory entry too, so the metadata written next never points at a rename a power cut undid."""
    handle.flush()
    os.fsync(handle.fileno())
    handle.close()
    final.parent.mkdir(parents=True, exist_ok=True)
    os.replace(temp, final)
    directory = os.open(final.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def _discard(handle: IO[bytes], temp: Path) -> None:
    handle.close()
    temp.unlink(missing_ok=True)


class _FileBlob:
    def __init__(self, handle: IO[bytes]) -> None:
        self._handle = handle
        self.size = os.fstat(handle.fileno()).st_size

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            while chunk := await asyncio.to_thread(self._handle.read, READ_CHUNK_BYTES):
                yield chunk
        finally:
            self._handle.close()


class MemoryStore:
    """The in-memory fake: the same contract, for unit tests."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}

    async def put(self, artifact_id: str, chunks: AsyncIterable[bytes]) -> Stored:
        data = bytearray()
        async for chunk in chunks:
            data += chunk
        self.blobs[artifact_id] = bytes(data)
        return Stored(size=len(data), sha256=hashlib.sha256(data).hexdigest())

    async def open(self, artifact_id: str) -> Blob:
        if artifact_id not in self.blobs:
            raise ArtifactNotFound()
        return _MemoryBlob(self.blobs[artifact_id])

    async def delete(self, artifact_id: str) -> None:
        self.blobs.pop(artifact_id, None)


class _MemoryBlob:
    def __init__(self, data: bytes) -> None:
        self._data = data
        self.size = len(data)

    async def chunks(self) -> AsyncIterator[bytes]:
        yield self._data
