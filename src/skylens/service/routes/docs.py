"""``/docs``: the OpenAPI docs (Swagger UI) from files installed with skylens, never a CDN.

The Swagger UI files (5.x: FastAPI writes OpenAPI 3.1, which Swagger UI 4 cannot render) come
from the ``swagger-ui-py`` package's ``static`` folder (``pip install skylens[serve]``); only the
files are used, none of its code. Without it ``/docs`` says which package to install, and
``/openapi.json`` still works.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS = "/docs-assets"

router = APIRouter(include_in_schema=False)


def swagger_ui_dir() -> str | None:
    """The folder of Swagger UI's files, or None when ``swagger-ui-py`` is not installed."""
    spec = importlib.util.find_spec("swagger_ui")  # located, not imported
    for folder in (spec.submodule_search_locations or []) if spec else []:
        static = Path(folder) / "static"
        if (static / "swagger-ui-bundle.js").is_file():
            return str(static)
    return None


@router.get("/docs")
async def docs() -> HTMLResponse:
    if swagger_ui_dir() is None:
        return HTMLResponse(
            "<p>The API docs need Swagger UI's files: <code>pip install swagger-ui-py</code> "
            "(part of <code>skylens[serve]</code>). The schema is at "
            '<a href="/openapi.json">/openapi.json</a>.</p>',
            status_code=501,
        )
    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="skylens API",
        swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
        swagger_css_url=f"{ASSETS}/swagger-ui.css",
        swagger_favicon_url=f"{ASSETS}/favicon-32x32.png",
    )


def mount_assets(app: FastAPI) -> None:
    """Serve Swagger UI's files under ``ASSETS`` when they are installed."""
    folder = swagger_ui_dir()
    if folder is not None:
        app.mount(ASSETS, StaticFiles(directory=folder), name="docs-assets")
