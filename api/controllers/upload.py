"""Reading an upload body as a stream: a raw body, or a multipart/form-data body with one part.

Nothing here holds a whole body in memory. A raw body's chunks pass straight through; a multipart body goes
through ``multipart``'s push parser (Litestar's own parser, declared in pyproject.toml), and only the one part's
bytes come out. A declared ``Content-Length`` over the limit is refused before a byte is read; the
stream itself is cut at the limit by the consumer (``ArtifactService.upload``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from litestar import Request
from multipart import MultipartError, MultipartSegment, PushMultipartParser, parse_options_header

from config import defaults
from engine.errors import ArtifactTooLarge, InvalidBody

__all__ = ["Upload", "read_upload"]

_MALFORMED = "malformed multipart/form-data"
_ONE_PART = "expected exactly one part (the file)"


@dataclass(frozen=True)
class Upload:
    """An upload whose headers are read and whose bytes are still to come (``chunks``, read once)."""

    content_type: str | None  # of the raw body, or of the multipart part (RFC 7578's text/plain if it names none)
    filename: str | None  # the multipart part's filename, if any
    chunks: AsyncIterator[bytes]


async def read_upload(request: Request, *, max_bytes: int, check_type: Callable[[str | None], object]) -> Upload:
    """The upload's type, name and byte stream. ``check_type`` is called with the content type as soon as it is
    known (and should raise to refuse it). Raises ArtifactTooLarge on a declared length over the limit and
    ValidationFailed on a malformed multipart body."""
    header = request.headers.get("content-type")
    media, options = parse_options_header(header or "")
    if media.lower() != "multipart/form-data":
        check_type(header)
        _refuse_declared(request, max_bytes)
        return Upload(header, None, _raw(request))
    _refuse_declared(request, max_bytes + defaults.ARTIFACT_MULTIPART_OVERHEAD_BYTES)
    try:
        parser = PushMultipartParser(options.get("boundary", ""))
    except MultipartError:
        raise InvalidBody("multipart/form-data without a valid boundary") from None
    events = _events(request, parser, max_bytes + defaults.ARTIFACT_MULTIPART_OVERHEAD_BYTES)
    first = await anext(events, None)
    if not isinstance(first, MultipartSegment):
        raise InvalidBody(_ONE_PART)
    content_type = first.content_type or "text/plain"
    check_type(content_type)
    return Upload(content_type, first.filename or None, _part_body(events))


def _refuse_declared(request: Request, limit: int) -> None:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise ArtifactTooLarge()


async def _raw(request: Request) -> AsyncIterator[bytes]:
    async for chunk in request.stream():
        yield chunk


async def _events(request: Request, parser: PushMultipartParser,
                  limit: int) -> AsyncIterator[MultipartSegment | bytes | None]:
    """The parser's events (a part's headers, its body chunks, None at its end) as the body streams in; at the
    end of the body, ValidationFailed unless the closing boundary came. Every byte of the body counts against
    ``limit`` (the part, and also the preamble and epilogue the parser skips): ArtifactTooLarge past it."""
    seen = 0
    try:
        async for chunk in request.stream():
            seen += len(chunk)
            if seen > limit:
                raise ArtifactTooLarge()
            if chunk:
                for event in parser.parse(chunk):
                    yield event
        parser.close()
    except MultipartError:
        raise InvalidBody(_MALFORMED) from None


async def _part_body(events: AsyncIterator[MultipartSegment | bytes | None]) -> AsyncIterator[bytes]:
    """The first part's bytes; then the rest of the body, which may hold no other part."""
    async for event in events:
        if event is None:
            break
        if isinstance(event, bytes):
            yield event
    async for event in events:
        if isinstance(event, MultipartSegment):
            raise InvalidBody(_ONE_PART)
