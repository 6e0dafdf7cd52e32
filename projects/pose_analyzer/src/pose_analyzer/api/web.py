"""The live browser page: ``/`` and its two static assets, shipped inside the package."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse

WEB_DIR = Path(__file__).resolve().parent.parent / "web"

# Only these files are served: an allow-list, so no request path can reach other files.
ASSETS: dict[str, str] = {
    "app.js": "text/javascript; charset=utf-8",
    "view3d.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}

router = APIRouter(tags=["web"])


@router.get("/", include_in_schema=False)
def index() -> FileResponse:
    """The page that streams webcams to ``/ws/streams/{id}`` and draws the answers."""
    return FileResponse(WEB_DIR / "index.html", media_type="text/html; charset=utf-8")


@router.get("/web/{name}", include_in_schema=False)
def asset(name: str) -> FileResponse:
    """One of the page's assets.

    Raises:
        HTTPException: 404 for any name that is not in ``ASSETS``.
    """
    media_type = ASSETS.get(name)
    if media_type is None:
        raise HTTPException(status_code=404, detail=f"no web asset named {name!r}")
    return FileResponse(WEB_DIR / name, media_type=media_type)
