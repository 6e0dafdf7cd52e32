"""Read a request body up to a limit, without holding more than the limit in memory.

FastAPI reads a whole body before any dependency runs, so a route that must refuse a 50 MB body
reads it itself: the declared ``Content-Length`` is checked first, and a chunked body is counted
as it arrives.
"""

from __future__ import annotations

from fastapi import Request

from service_kit.errors import InvalidInputError, PayloadTooLargeError


async def read_body_limited(request: Request, limit: int) -> bytes:
    """The request body; raises ``PayloadTooLargeError`` (413) as soon as it is known to exceed ``limit``."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise InvalidInputError("Content-Length is not a number")
        if int(declared) > limit:
            raise PayloadTooLargeError(f"the request body is {declared} bytes; at most {limit} are accepted")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLargeError(f"the request body is over the {limit}-byte limit")
        chunks.append(chunk)
    return b"".join(chunks)
