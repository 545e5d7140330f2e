"""Self-contained HTML reports for map tasks (``skylens change/localize --format html``).

One file a user can mail or open offline: pictures are inlined as base64 PNG data URIs, the
style sheet is inline, and nothing refers to a resource outside the file.
"""

from __future__ import annotations

import html

from skylens.imagery.render import png_data_url as png_data_uri  # noqa: F401 - reports use it

_STYLE = """
body{font:15px/1.45 system-ui,sans-serif;margin:1.5em auto;max-width:1200px;padding:0 1em;color:#222}
h1{font-size:1.3em}.caption{font-size:1.1em}.note{color:#555;font-size:.9em}
.warnings{background:#fff4d6;border-left:4px solid #e0a800;padding:.5em 1.5em}
.figs{display:flex;flex-wrap:wrap;gap:12px}figure{margin:0;flex:1 1 300px}
figure img{width:100%;height:auto;border:1px solid #ccc}figcaption{font-size:.85em;color:#555}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.25em .6em;
text-align:left}th{background:#f2f2f2}.qa{background:#eef5ff;padding:.5em 1em}
"""


def esc(text: object) -> str:
    """HTML-escape any value's text (quotes included)."""
    return html.escape(str(text), quote=True)


def warnings_html(warnings) -> str:
    """The warnings as a highlighted list ("" when there are none)."""
    if not warnings:
        return ""
    return (
        "<ul class=warnings>" + "".join(f"<li>warning: {esc(w)}</li>" for w in warnings) + "</ul>"
    )


def html_page(title: str, body: str) -> str:
    """A complete HTML5 document around ``body`` (already escaped HTML)."""
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{esc(title)}</title><style>{_STYLE}</style></head>"
        f"<body><h1>{esc(title)}</h1>{body}</body></html>\n"
    )
