"""Self-contained HTML pages: a template whose ``{{TITLE}}`` and ``{{DATA}}`` placeholders receive the
page's title and its data, inlined as JSON in a ``<script type="application/json">`` element."""
from __future__ import annotations

import html
import json
import os
from pathlib import Path


def script_json(data: dict) -> str:
    """JSON that is safe inside a <script> element: no '<', '>' or '&' can end or open a tag."""
    text = json.dumps(data, ensure_ascii=True, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def render_page(data: dict, template: str | os.PathLike) -> str:
    """The template with ``data["title"]`` (escaped) and ``data`` (as JSON) filled in."""
    page = Path(template).read_text(encoding="utf-8")
    for placeholder in ("{{TITLE}}", "{{DATA}}"):
        if placeholder not in page:
            raise ValueError(f"{template}: template has no {placeholder} placeholder")
    page = page.replace("{{TITLE}}", html.escape(data["title"]))
    return page.replace("{{DATA}}", script_json(data), 1)
