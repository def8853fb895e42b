"""The documentation's links: every link of README.md and docs/*.md to a section or a file of the project leads to one
(README's contents list and its cross-references name sections by their anchors, which a renamed heading breaks)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def anchors(path: Path) -> set[str]:
    """The anchors GitHub gives the headings of a Markdown file: the heading's text in lower case, every character
    but letters, digits, "-", "_" and spaces dropped, spaces made "-"; a repeated one gets "-1", "-2", ... Headings
    inside code blocks (a "# comment" in a bash block) are none."""
    text = re.sub(r"^```.*?^```", "", path.read_text(encoding="utf-8"), flags=re.S | re.M)
    seen: dict[str, int] = {}
    found = set()
    for heading in re.findall(r"^#{1,6} +(.+?) *#* *$", text, flags=re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        found.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
        seen[slug] = seen.get(slug, 0) + 1
    return found


def test_the_anchor_rule_on_headings_written_by_hand(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# Top\n\n## Any neuron, any passage: `lstmscope-heatmap`\n\n### Figures\n\n```bash\n# not one\n"
                    "```\n\n### Figures\n\n### Cluster explorer (thesis Fig. 4.2)\n", encoding="utf-8")
    assert anchors(page) == {"top", "any-neuron-any-passage-lstmscope-heatmap", "figures", "figures-1",
                             "cluster-explorer-thesis-fig-42"}


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_link_to_a_section_or_a_file_of_the_project_leads_to_one(doc):
    text = doc.read_text(encoding="utf-8")
    links = [link for link in LINK.findall(text) if not re.match(r"[a-z]+:", link)]  # not https:, mailto:
    assert links or doc.name != "README.md"  # (README links to its own sections: the check has something to check)
    broken = []
    for link in links:
        target, _, anchor = link.partition("#")
        path = (doc.parent / target).resolve() if target else doc
        if not path.is_file():
            broken.append(f"{link}: no file {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
        elif anchor and path.suffix == ".md" and anchor not in anchors(path):
            broken.append(f"{link}: no heading of {path.name} has the anchor #{anchor}")
    assert broken == [], f"{doc.name}: " + "; ".join(broken)
