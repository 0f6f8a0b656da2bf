"""Trace artifacts: upload, list, and read through a signed URL.

``GET /artifacts/{id}`` (with a key) answers 307 to ``/artifacts/{id}/content?expires=&signature=``, which
serves the bytes to anyone holding the URL until it expires (1 hour): the auth gate lets exactly that path
shape through without a key (``api/auth.py``), and this handler checks the signature.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath
from litestar.response import Stream

from api.auth import principal_of
from api.controllers.body import int_param
from api.controllers.upload import read_upload
from engine.artifact_service import ArtifactService, Grant
from engine.models import iso_ms

__all__ = ["ArtifactController", "signed_path"]

Artifacts = NamedDependency[ArtifactService]  # the app's ArtifactService, injected by name ("artifacts")

_UNSAFE_FILENAME = re.compile(r"[^A-Za-z0-9._()+ -]")


def signed_path(grant: Grant) -> str:
    """The URL path (with query) that serves an artifact's bytes under ``grant``."""
    return f"/artifacts/{grant.artifact_id}/content?expires={grant.expires_s}&signature={grant.signature}"


def _disposition(name: str) -> str:
    """``attachment`` with an ASCII fallback name and the exact name in RFC 6266's ``filename*``."""
    fallback = _UNSAFE_FILENAME.sub("_", name).strip() or "artifact"
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


class ArtifactController(Controller):
    tags = ["artifacts"]

    @post("/api/traces/{trace_id:str}/artifacts", status_code=201, opt={"scope": "ingest"},
          summary="Upload an artifact of a trace (raw body or multipart/form-data)", request_max_body_size=None)
    async def upload(self, request: Request, artifacts: Artifacts, trace_id: FromPath[str]) -> dict[str, Any]:
        project = principal_of(request).project
        await artifacts.require_trace(project, trace_id)
        upload = await read_upload(request, max_bytes=artifacts.max_bytes, check_type=artifacts.check_content_type)
        artifact = await artifacts.upload(project, trace_id, content_type=upload.content_type,
                                          name=request.query_params.get("name") or upload.filename,
                                          chunks=upload.chunks)
        return artifact.to_public()

    @get("/api/traces/{trace_id:str}/artifacts", opt={"scope": "read"}, summary="List a trace's artifacts")
    async def index(self, request: Request, artifacts: Artifacts,
                    trace_id: FromPath[str]) -> Response[list[dict[str, Any]]]:
        q = request.query_params
        page, cursor = await artifacts.list_for_trace(principal_of(request).project, trace_id,
                                                      limit=int_param(q.get("limit"), "limit"),
                                                      cursor=q.get("cursor") or None)
        return Response([a.to_public() for a in page], headers={"X-Next-Cursor": cursor} if cursor else {})

    @get("/artifacts/{artifact_id:str}", status_code=307, opt={"scope": "read"},
         summary="Redirect to a signed URL of the artifact's bytes (valid 1 hour)")
    async def redirect(self, request: Request, artifacts: Artifacts,
                       artifact_id: FromPath[str]) -> Response[dict[str, Any]]:
        grant = await artifacts.grant(principal_of(request).project, artifact_id)
        url = signed_path(grant)
        return Response({"url": url, "expires_at": iso_ms(grant.expires_s * 1000)}, status_code=307,
                        headers={"Location": url, "Cache-Control": "no-store"})

    @get("/artifacts/{artifact_id:str}/content", summary="An artifact's bytes (signed URL; no API key)")
    async def content(self, request: Request, artifacts: Artifacts, artifact_id: FromPath[str]) -> Stream:
        q = request.query_params
        artifact, blob = await artifacts.open_signed(artifact_id, expires=q.get("expires"),
                                                     signature=q.get("signature"))
        return Stream(blob.chunks(), media_type=artifact.content_type, headers={
            "Content-Length": str(blob.size),
            "Content-Disposition": _disposition(artifact.name),
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "default-src 'none'; sandbox",
            "Cache-Control": "private, no-store",
        })
