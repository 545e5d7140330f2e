"""``/docs``: the OpenAPI docs (Swagger UI) from files installed with skylens, never a CDN.

The Swagger UI files come from the ``swagger-ui-bundle`` package (``pip install skylens[serve]``);
without it ``/docs`` says which package to install, and ``/openapi.json`` still works.
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS = "/docs-assets"

router = APIRouter(include_in_schema=False)


def swagger_ui_dir() -> str | None:
    """The folder of Swagger UI's files, or None when ``swagger-ui-bundle`` is not installed."""
    try:
        import swagger_ui_bundle
    except ImportError:
        return None
    return str(swagger_ui_bundle.swagger_ui_path)


@router.get("/docs")
async def docs() -> HTMLResponse:
    if swagger_ui_dir() is None:
        return HTMLResponse(
            "<p>The API docs need Swagger UI's files: <code>pip install swagger-ui-bundle</code> "
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
