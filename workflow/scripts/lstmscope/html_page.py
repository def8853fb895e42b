"""Self-contained HTML pages: a template whose ``{{TITLE}}`` and ``{{DATA}}`` placeholders receive the
page's title and its data, inlined as JSON in a ``<script type="application/json">`` element, and whose
``{{ERROR_RECORDER}}`` (first in ``<head>``) receives the script that collects the page's errors."""
from __future__ import annotations

import html
import json
import os
import re
from pathlib import Path


# Installed before the page's own script, so that its errors (even syntax errors) and whatever it reports
# with console.error are collected in window.lstmscopeErrors, which the browser tests read.
ERROR_RECORDER = """<script>
window.lstmscopeErrors = [];
window.addEventListener("error", function (e) { window.lstmscopeErrors.push(String(e.message || e)); });
(function () {
  var original = console.error;
  console.error = function () {
    window.lstmscopeErrors.push(Array.prototype.map.call(arguments, String).join(" "));
    return original.apply(console, arguments);
  };
})();
</script>"""
PLACEHOLDERS = ("{{TITLE}}", "{{DATA}}", "{{ERROR_RECORDER}}")


def script_json(data: dict) -> str:
    """JSON that is safe inside a <script> element: no '<', '>' or '&' can end or open a tag."""
    text = json.dumps(data, ensure_ascii=True, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def render_page(data: dict, template: str | os.PathLike) -> str:
    """The template with ``data["title"]`` (escaped, its lines joined by a dash), the error recorder and ``data`` (as JSON) filled in."""
    page = Path(template).read_text(encoding="utf-8")
    for placeholder in PLACEHOLDERS:
        if placeholder not in page:
            raise ValueError(f"{template}: template has no {placeholder} placeholder")
    # a figure's two-line title (cluster.space: pca) on one line: HTML would run its lines together
    values = {"{{TITLE}}": html.escape(" — ".join(data["title"].splitlines())), "{{ERROR_RECORDER}}": ERROR_RECORDER,
              "{{DATA}}": script_json(data)}
    # one pass, so that a title or data containing a placeholder's text is left as it is
    return re.sub("|".join(map(re.escape, PLACEHOLDERS)), lambda m: values[m.group(0)], page)
