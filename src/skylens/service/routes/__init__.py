"""The service's routers, one a resource (``../shared/STYLE.md`` #13).

``create_app`` mounts ``PUBLIC`` as they are and every router of ``API`` under ``/api`` with the
bearer-token dependency; each module holds plain top-level handlers that parse, call one task
function and format.
"""

from skylens.service.routes import (
    ask,
    caption,
    change,
    chat,
    chips,
    classify,
    docs,
    kb,
    localize,
    page,
    search,
    status,
)

PUBLIC = (status.public, page.router, docs.router)  # no token: liveness, the page, the docs
API = (
    status.router,
    search.router,
    classify.router,
    caption.router,
    ask.router,
    change.router,
    localize.router,
    chips.router,
    kb.router,
    chat.router,
)

__all__ = ["API", "PUBLIC", "docs"]
