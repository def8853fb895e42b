"""Self-contained HTML pages: a template whose ``{{TITLE}}`` and ``{{DATA}}`` placeholders receive the
page's title and its data, inlined as JSON in a ``<script type="application/json">`` element, and whose
``{{ERROR_RECORDER}}`` (first in ``<head>``) receives the script that collects the page's errors, and an optional
``{{ADDRESS_WRITER}}`` the one that writes a page's view into its address. Where the data
carry a ``provenance`` record (:func:`page_provenance`: the code and the models the page shows), an optional
``{{PROVENANCE}}`` placeholder receives it as a line of text."""
from __future__ import annotations

import html
import json
import os
import re
from pathlib import Path
from typing import Any, Sequence

from .provenance import code_version, models_of


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
# Shared by the explorer pages: the address follows what a page shows, so that copying it shares the view.
# lstmscopeAddress(own, testing) gives the page its writer: called with the query of what is shown (a
# URLSearchParams of the page's own parameters, `own`), it adds the word in the search box both pages have (#search,
# and ignorecase=1 where #ignorecase is ticked), keeps the page's test hook's parameters of the address (`testing`:
# a test's selftest), drops any other (no option of the page: said on opening, not passed on) and replaces the
# address (history.replaceState: no new history entry). Inside the report a page is a data: address, where the
# browser refuses it: the address then stays as it is, and is not tried again there. lstmscopeUnknown names what
# the address holds that the page has no option of.
ADDRESS_WRITER = """<script>
window.lstmscopeAddress = function (own, testing) {
  var fixed = false;
  return function (q) {
    var word = document.getElementById("search").value.trim();
    if (word) {
      q.set("search", word);
      if (document.getElementById("ignorecase").checked) q.set("ignorecase", "1");
    }
    new URLSearchParams(location.search).forEach(function (value, name) {
      if (testing.indexOf(name) >= 0) q.append(name, value);
    });
    var query = q.toString();
    if (fixed || (query ? "?" + query : "") === location.search) return;
    try { history.replaceState(history.state, "", (query ? "?" + query : location.pathname) + location.hash); }
    catch (err) { fixed = location.protocol === "data:"; }  // (another refusal, too many calls at once, passes)
  };
};
// what the address names that is none of the page's options (`own`) nor its test hook's (`testing`): one note for
// the line beside the search box, naming them with the page's options (the other explorer's names, show= or
// colour=, or a slip were passed over without a word)
window.lstmscopeUnknown = function (own, testing) {
  var names = [];
  new URLSearchParams(location.search).forEach(function (value, name) {
    if (own.indexOf(name) < 0 && testing.indexOf(name) < 0 && names.indexOf(name) < 0) names.push(name);
  });
  if (!names.length) return [];
  return [names.map(function (name) { return name + "="; }).join(", ") +
          (names.length > 1 ? " are no options" : " is no option") + " of this page (" + own.join(", ") + ")"];
};
</script>"""
PLACEHOLDERS = ("{{TITLE}}", "{{DATA}}", "{{ERROR_RECORDER}}")  # each template must have them
OPTIONAL = ("{{PROVENANCE}}", "{{ADDRESS_WRITER}}")


def page_provenance(inputs: Sequence[str | os.PathLike], rule: str | None = None) -> dict[str, Any]:
    """A page's provenance record: the code's version, git commit and library digest, the models whose numbers
    the ``inputs`` hold (:func:`lstmscope.provenance.models_of`: name, dropout, replicate, seed, checkpoint
    SHA-256) and, for a pipeline page, the ``rule`` that wrote it (a command's page names none: lstmscope-explorer
    does not replace a page that names one, :func:`page_rule`)."""
    return {**code_version(), "models": models_of(inputs), **({"rule": rule} if rule else {})}


def page_rule(path: str | os.PathLike) -> str | None:
    """The pipeline rule an HTML page's provenance names (:func:`page_provenance`; in the explorers' data, or in the
    record :func:`with_provenance` appends), or None: a page without one, or no page of ours."""
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    for script_id, key in (("lstmscope-provenance", None), ("lstmscope-data", "provenance")):
        found = re.search(rf'<script type="application/json" id="{script_id}">(.*?)</script>', text, re.S)
        try:
            record = json.loads(found[1]) if found else None
        except ValueError:
            continue
        record = record.get(key) if key and isinstance(record, dict) else record
        if isinstance(record, dict) and isinstance(record.get("rule"), str) and record["rule"]:
            return record["rule"]
    return None


def provenance_line(record: dict[str, Any] | None) -> str:
    """The record of :func:`page_provenance` as one line a reader of the page sees (the commit and hashes to 12 digits,
    as ``git log`` abbreviates; the page's data hold them whole); empty without one."""
    if not record:
        return ""

    def short(digest: Any) -> str:
        return f"{str(digest)[:12]}…" if isinstance(digest, str) and len(digest) > 12 else str(digest)

    models = "; ".join(f"{name} (dropout {m.get('dropout')}, replicate {m.get('replicate')}, seed {m.get('seed')}, "
                       f"checkpoint SHA-256 {short(m.get('checkpoint_sha256'))})"
                       for name, m in record.get("models", {}).items())
    commit = str(record.get("git_commit"))
    base = commit.removesuffix("-dirty")
    commit = base[:12] + commit[len(base):]  # a changed checkout's -dirty stays
    return (f"Made by lstmscope {record.get('lstmscope_version')} (git {commit}, library "
            f"{short(record.get('library_sha256'))})"
            + (f" from model{'s' * (len(record['models']) > 1)} {models}" if models else "") + ".")


def with_provenance(page: str, record: dict[str, Any]) -> str:
    """``page`` (a whole HTML page, ending in ``</body></html>``) with its provenance ``record``
    (:func:`page_provenance`) as the explorers carry theirs: a line a reader sees (``<footer id="provenance">``) and
    the record whole (``<script type="application/json" id="lstmscope-provenance">``), before ``</body>``."""
    if page.count("</body>") != 1:
        raise ValueError("a page for its provenance ends in one </body>")
    return page.replace("</body>", f'<footer id="provenance" style="color: #777; font-size: 11px">'
                                   f"{html.escape(provenance_line(record))}</footer>"
                                   f'<script type="application/json" id="lstmscope-provenance">{script_json(record)}'
                                   "</script></body>")


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
              "{{DATA}}": script_json(data), "{{PROVENANCE}}": html.escape(provenance_line(data.get("provenance"))),
              "{{ADDRESS_WRITER}}": ADDRESS_WRITER}
    # one pass, so that a title or data containing a placeholder's text is left as it is
    return re.sub("|".join(map(re.escape, PLACEHOLDERS + OPTIONAL)), lambda m: values[m.group(0)], page)
