"""The artifact store seam (local disk and the in-memory fake), names and types, and URL signatures."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from config.settings import ArtifactSettings
from engine.artifact_service import clean_name, media_type
from engine.artifacts import ArtifactStore, LocalDiskStore, MemoryStore
from engine.errors import ArtifactNotFound, InvalidSignature
from engine.ids import new_id
from engine.url_signing import UrlSigner, signature


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def _read(store: ArtifactStore, artifact_id: str) -> bytes:
    blob = await store.open(artifact_id)
    data = b"".join([c async for c in blob.chunks()])
    assert blob.size == len(data)
    return data


@pytest.mark.parametrize("make", [lambda root: LocalDiskStore(root), lambda root: MemoryStore()])
def test_a_store_keeps_bytes_by_id_and_forgets_them_on_delete(tmp_path: Path, make: Any) -> None:
    store = make(tmp_path)
    aid = new_id()

    async def go() -> None:
        stored = await store.put(aid, _chunks(b"abc", b"", b"def"))
        assert (stored.size, stored.sha256) == (6, hashlib.sha256(b"abcdef").hexdigest())
        assert await _read(store, aid) == b"abcdef"
        await store.delete(aid)
        await store.delete(aid)  # twice is fine
        with pytest.raises(ArtifactNotFound):
            await store.open(aid)

    asyncio.run(go())


def test_a_failing_stream_leaves_no_file_not_even_a_temporary_one(tmp_path: Path) -> None:
    store = LocalDiskStore(tmp_path)
    aid = new_id()

    async def broken() -> AsyncIterator[bytes]:
        yield b"half of it"
        raise RuntimeError("client went away")

    with pytest.raises(RuntimeError):
        asyncio.run(store.put(aid, broken()))
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_ids_that_are_not_ids_never_reach_the_file_system(tmp_path: Path) -> None:
    store = LocalDiskStore(tmp_path / "root")
    (tmp_path / "secret").write_text("x")
    for bad in ("../secret", "..", "ab/../../secret", "A" * 32):
        with pytest.raises(ArtifactNotFound):
            asyncio.run(store.open(bad))


def test_stale_temporary_files_are_swept_and_fresh_ones_kept(tmp_path: Path) -> None:
    store = LocalDiskStore(tmp_path)
    (tmp_path / "tmp").mkdir()
    old, fresh = tmp_path / "tmp" / "a.part", tmp_path / "tmp" / "b.part"
    old.write_bytes(b"x")
    fresh.write_bytes(b"y")
    past = time.time() - 7200
    os.utime(old, (past, past))
    assert store.remove_stale_temp(max_age_s=3600) == 1
    assert not old.exists() and fresh.exists()


def test_names_lose_their_path_and_control_characters() -> None:
    assert clean_name("../../etc/passwd") == "passwd"
    assert clean_name("C:\\Users\\me\\report.pdf") == "report.pdf"
    assert clean_name("a\x00b\nc.txt") == "abc.txt"
    assert clean_name(None) == clean_name("") == clean_name("..") == clean_name("dir/") == "artifact"
    assert len(clean_name("x" * 1000)) == 255


def test_media_type_is_bare_and_lowercase() -> None:
    assert media_type("Text/Plain; charset=UTF-8") == "text/plain"
    assert media_type(None) == media_type("") == ""


class _SecretRunner:
    """Answers the signer's one op (SET NX + GET) with a fixed secret, counting calls."""

    def __init__(self, secret: str) -> None:
        self.secret, self.calls = secret, 0

    async def run(self, op: Any) -> Any:
        self.calls += 1
        return op.parse([None, self.secret])


def test_a_signature_binds_the_id_and_the_expiry_and_runs_out() -> None:
    runner = _SecretRunner("s" * 64)
    signer = UrlSigner(runner, "artifacts")  # type: ignore[arg-type]
    aid, now = new_id(), 1_800_000_000

    async def go() -> None:
        good = await signer.sign(aid, now + 60)
        assert good == signature("s" * 64, aid, now + 60)
        await signer.verify(aid, str(now + 60), good, now_s=now)
        await signer.verify(aid, str(now + 60), good, now_s=now + 60)  # valid through its last second
        for args in ((aid, str(now + 60), good, now + 61), (aid, str(now + 61), good, now),
                     (new_id(), str(now + 60), good, now), (aid, str(now + 60), good.upper(), now),
                     (aid, None, good, now), (aid, str(now + 60), None, now), (aid, "1e9", good, now)):
            with pytest.raises(InvalidSignature):
                await signer.verify(*args[:3], now_s=args[3])

    asyncio.run(go())
    assert runner.calls == 1  # the secret is read once per process


def test_artifact_settings_take_lowercase_media_types_and_leave_octet_stream_out_by_default() -> None:
    assert "application/octet-stream" not in ArtifactSettings().content_types
    assert ArtifactSettings(content_types=["image/*", "text/x-diff"]).content_types == ["image/*", "text/x-diff"]
    for bad in ("Text/Plain", "text", "*/*", "text/plain; charset=utf-8"):
        with pytest.raises(ValidationError):
            ArtifactSettings(content_types=[bad])
    with pytest.raises(ValidationError):
        ArtifactSettings(max_bytes=0)
