"""The artifact service: what the API asks of the engine about trace artifacts (upload, list, sign, serve).

Bytes go to an :class:`~engine.artifacts.ArtifactStore`, metadata to Redis: ``ty:artifact:<id>`` (a hash) and
the trace's index ``ty:trace:<id>:artifacts`` (a zset by a global sequence, newest last). An upload streams
through a size check into the store, so a body over the limit is refused as soon as it passes the limit, and
its temporary file is removed; the metadata is written only once the bytes are safely stored, so a reader
never sees an artifact without bytes. Reading the bytes needs a signed URL (``engine/url_signing.py``).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from config import defaults
from config.settings import ArtifactSettings
from engine import keys
from engine.artifacts import ArtifactStore, Blob
from engine.clock import now_ms
from engine.errors import ArtifactNotFound, ArtifactTooLarge, TraceNotFound, UnsupportedContentType
from engine.ids import is_id, new_id
from engine.models import iso_ms
from engine.paging import page_request
from engine.store import AsyncRunner, Op
from engine.url_signing import UrlSigner

__all__ = ["Artifact", "ArtifactService", "Grant", "clean_name", "media_type"]

DEFAULT_NAME = "artifact"  # the name of an artifact uploaded without one
MAX_NAME_CHARS = 255  # characters of an artifact name kept
MAX_SHOWN_TYPE_CHARS = 100  # characters of a refused content type echoed in the error
SECRET_NAME = "artifacts"  # ty:secret:artifacts signs artifact URLs
_PATH_SEPARATORS = re.compile(r"[/\\]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class Artifact:
    id: str
    trace_id: str
    project: str
    name: str
    content_type: str
    size: int  # bytes
    sha256: str
    created_at_ms: int
    seq: int

    def to_public(self) -> dict[str, Any]:
        return {"id": self.id, "trace_id": self.trace_id, "name": self.name, "content_type": self.content_type,
                "size": self.size, "sha256": self.sha256, "created_at": iso_ms(self.created_at_ms)}

    def fields(self) -> list[str]:
        return ["id", self.id, "trace_id", self.trace_id, "project", self.project, "name", self.name,
                "content_type", self.content_type, "size", str(self.size), "sha256", self.sha256,
                "created_at", str(self.created_at_ms), "seq", str(self.seq)]

    @classmethod
    def from_hash(cls, reply: dict[str, str] | list[str]) -> Artifact | None:
        raw = reply if isinstance(reply, dict) else dict(zip(reply[::2], reply[1::2], strict=True))
        if not raw:
            return None
        return cls(id=raw["id"], trace_id=raw["trace_id"], project=raw["project"], name=raw["name"],
                   content_type=raw["content_type"], size=int(raw["size"]), sha256=raw["sha256"],
                   created_at_ms=int(raw["created_at"]), seq=int(raw["seq"]))


@dataclass(frozen=True)
class Grant:
    """Permission to read one artifact's bytes until ``expires_s`` (epoch seconds), proven by ``signature``."""

    artifact_id: str
    expires_s: int
    signature: str


def media_type(content_type: str | None) -> str:
    """The bare, lowercase media type of a Content-Type value (``"Text/Plain; charset=utf-8"`` -> ``text/plain``)."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def clean_name(raw: str | None) -> str:
    """A safe file name: the last path component, without control characters, at most 255 characters."""
    name = _CONTROL.sub("", _PATH_SEPARATORS.split(raw or "")[-1]).strip()
    name = name.encode("utf-8", "replace").decode("utf-8")[:MAX_NAME_CHARS]
    return DEFAULT_NAME if name in ("", ".", "..") else name


class ArtifactService:
    def __init__(self, runner: AsyncRunner, store: ArtifactStore, settings: ArtifactSettings, *,
                 url_ttl_s: int = defaults.ARTIFACT_URL_TTL_S, clock: Callable[[], int] = now_ms) -> None:
        self.runner = runner
        self.store = store
        self.max_bytes = settings.max_bytes
        self.content_types = frozenset(settings.content_types)
        self.url_ttl_s = url_ttl_s
        self.clock = clock
        self.signer = UrlSigner(runner, SECRET_NAME)

    async def require_trace(self, project: str, trace_id: str) -> None:
        """TraceNotFound unless the trace exists in ``project``."""
        if not is_id(trace_id) or await self.runner.run(_trace_project(trace_id)) != project:
            raise TraceNotFound()

    def check_content_type(self, content_type: str | None) -> str:
        """The media type, if the allowlist has it (or its ``type/*``); UnsupportedContentType otherwise."""
        media = media_type(content_type)
        kind, _, subtype = media.partition("/")
        if kind and subtype and subtype != "*" and "/" not in subtype and (
                media in self.content_types or f"{kind}/*" in self.content_types):
            return media
        raise UnsupportedContentType(media[:MAX_SHOWN_TYPE_CHARS] or "(none)")

    async def upload(self, project: str, trace_id: str, *, content_type: str | None, name: str | None,
                     chunks: AsyncIterable[bytes]) -> Artifact:
        """Store an artifact of the trace. Raises TraceNotFound, UnsupportedContentType, ArtifactTooLarge, or
        whatever ``chunks`` raises (a malformed body); in each case nothing is kept."""
        await self.require_trace(project, trace_id)
        media = self.check_content_type(content_type)
        artifact_id = new_id()
        stored = await self.store.put(artifact_id, _limited(chunks, self.max_bytes))
        try:
            seq = await self.runner.run(Op(int, command=("INCR", keys.key("artifact_seq"))))
            artifact = Artifact(id=artifact_id, trace_id=trace_id, project=project, name=clean_name(name),
                                content_type=media, size=stored.size, sha256=stored.sha256,
                                created_at_ms=self.clock(), seq=seq)
            await self.runner.run(Op(lambda raw: raw, commands=(
                ("HSET", keys.key("artifact", id=artifact_id), *artifact.fields()),
                ("ZADD", keys.key("trace_artifacts", id=trace_id), str(seq), artifact_id))))
        except BaseException:
            await asyncio.shield(self.store.delete(artifact_id))  # no bytes without metadata
            raise
        return artifact

    async def get(self, project: str, artifact_id: str) -> Artifact:
        artifact = await self.runner.run(_load(artifact_id)) if is_id(artifact_id) else None
        if artifact is None or artifact.project != project:
            raise ArtifactNotFound()
        return artifact

    async def list_for_trace(self, project: str, trace_id: str, *, limit: int | None,
                             cursor: str | None) -> tuple[list[Artifact], str | None]:
        """The trace's artifacts, newest first, and the cursor of the next page (None on the last one)."""
        size, below = page_request(state=None, states=(), limit=limit, cursor=cursor)
        await self.require_trace(project, trace_id)
        top = "+inf" if below is None else f"({below}"
        ids = await self.runner.run(Op(list, command=(
            "ZREVRANGEBYSCORE", keys.key("trace_artifacts", id=trace_id), top, "-inf", "LIMIT", "0", str(size))))
        loaded = await asyncio.gather(*(self.runner.run(_load(i)) for i in ids))
        page = [a for a in loaded if a is not None and a.project == project]
        last = next((a.seq for a in reversed(loaded) if a is not None), None) if len(ids) == size else None
        return page, (str(last) if last is not None else None)

    async def grant(self, project: str, artifact_id: str) -> Grant:
        """A signature for reading the artifact's bytes for the next ``url_ttl_s`` seconds."""
        artifact = await self.get(project, artifact_id)
        expires_s = self.clock() // 1000 + self.url_ttl_s
        return Grant(artifact.id, expires_s, await self.signer.sign(artifact.id, expires_s))

    async def open_signed(self, artifact_id: str, *, expires: str | None,
                          signature: str | None) -> tuple[Artifact, Blob]:
        """The artifact and its bytes, for a caller holding a valid, unexpired signature (no API key needed).
        Raises InvalidSignature, then ArtifactNotFound."""
        await self.signer.verify(artifact_id, expires, signature, now_s=self.clock() // 1000)
        artifact = await self.runner.run(_load(artifact_id)) if is_id(artifact_id) else None
        if artifact is None:
            raise ArtifactNotFound()
        return artifact, await self.store.open(artifact_id)


async def _limited(chunks: AsyncIterable[bytes], limit: int) -> AsyncIterator[bytes]:
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise ArtifactTooLarge()
        if chunk:
            yield chunk


def _trace_project(trace_id: str) -> Op[str | None]:
    return Op(lambda raw: raw, command=("HGET", keys.key("trace", id=trace_id), "project"))


def _load(artifact_id: str) -> Op[Artifact | None]:
    return Op(Artifact.from_hash, command=("HGETALL", keys.key("artifact", id=artifact_id)))
