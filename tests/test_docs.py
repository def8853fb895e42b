"""The documentation's links and Snakemake commands: every link of README.md and docs/*.md to a section or a file of
the project leads to one (README's contents list and its cross-references name sections by their anchors, which a
renamed heading breaks), and every Snakemake command they show means what it says to Snakemake's own parser."""
from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")
CODE_BLOCK = re.compile(r"^```[^\n]*\n(.*?)^```", flags=re.S | re.M)  # a fenced block; group 1: its lines


def anchors(path: Path) -> set[str]:
    """The anchors GitHub gives the headings of a Markdown file: the heading's text in lower case, every character
    but letters, digits, "-", "_" and spaces dropped, spaces made "-"; a repeated one gets "-1", "-2", ... Headings
    inside code blocks (a "# comment" in a bash block) are none."""
    text = CODE_BLOCK.sub("", path.read_text(encoding="utf-8"))
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


SNAKEMAKE_SPAN = re.compile(r"`((?:\.venv/bin/)?snakemake [^`]*)`")


def snakemake_commands(text: str) -> list[str]:
    """The Snakemake commands of a Markdown text: inline code that begins with one, and the lines (or the parts of a
    line between ``&&``) of its code blocks that do."""
    commands = SNAKEMAKE_SPAN.findall(CODE_BLOCK.sub("", text))
    for block in CODE_BLOCK.findall(text):
        for line in block.splitlines():
            commands += [part.strip() for part in line.split("&&")
                         if re.match(r"(\.venv/bin/)?snakemake ", part.strip())]
    return commands


def misread(command: str) -> list[str]:
    """What Snakemake's own parser makes of ``command`` that its writer cannot have meant: a target taken for a config
    file or a setting (``--configfile`` and ``--config`` take every word after them up to the next option; so does
    ``--resources``, whose parser refuses a word that is no NAME=NUMBER), an option it does not know."""
    from snakemake.cli import get_argument_parser

    parser = get_argument_parser()
    parser.exit_on_error = False
    try:
        args = parser.parse_args(shlex.split(command, comments=True)[1:])
    except (argparse.ArgumentError, ValueError, SystemExit) as exc:
        return [f"not parsed: {exc}"]
    wrong = [f"--configfile {f}: not a YAML file of the project" for f in args.configfile or []
             if Path(f).suffix not in (".yaml", ".yml") or not (ROOT / f).is_file()]
    wrong += [f"--config {c}: not KEY=VALUE" for c in args.config or [] if not re.match(r"\w+=", c)]
    return wrong


def test_a_target_after_configfile_is_read_as_a_config_file():
    """The parser the check relies on: a file to make written after --configfile is one more config file to Snakemake
    (it then stops on its contents: ``unknown config key``, or on its absence with a traceback)."""
    text = ("Run `snakemake --configfile presets/thesis.yaml results/data/vocabulary.json`, then\n\n```bash\n"
            "snakemake results/data/vocabulary.json --configfile presets/thesis.yaml  # the file first\n"
            ".venv/bin/snakemake -n --config 'figures={dpi: 200}' results/report.html && snakemake --lint\n"
            "snakemake --resources gpu=1 mem_mb=50000  # a comment\n```\n")
    commands = snakemake_commands(text)
    assert len(commands) == 5
    assert [misread(c) for c in commands] == [
        ["--configfile results/data/vocabulary.json: not a YAML file of the project"], [],
        ["--config results/report.html: not KEY=VALUE"], [], []]
    assert misread("snakemake --resources gpu=1 results/report.html")[0].startswith("not parsed: ")


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_snakemake_command_shown_means_what_it_says(doc):
    commands = snakemake_commands(doc.read_text(encoding="utf-8"))
    assert commands or doc.name != "README.md"
    wrong = {c: w for c in commands if (w := misread(c))}
    assert wrong == {}, f"{doc.name}: {wrong}"


COMMANDS = {"lstmscope-dump": "dump_cli", "lstmscope-heatmap": "heatmap_cli", "lstmscope-ablate": "ablation_cli",
            "lstmscope-explorer": "explorer_cli"}
COMMAND_LINE = re.compile(r"^ *(?:\.venv/bin/)?(lstmscope-[a-z]+) ((?:[^\n]*\\\n)*[^\n]*)", flags=re.M)


def test_every_command_of_lstmscope_shown_parses():
    """The lstmscope-* command lines of README's code blocks and of the commands' own help (their module docstrings)
    parse with the command's parser: an option renamed or removed leaves no example behind."""
    import importlib

    sources = {"README.md": "\n".join(CODE_BLOCK.findall(DOCS[0].read_text(encoding="utf-8")))}
    for module in COMMANDS.values():
        sources[f"{module}.py"] = importlib.import_module(f"lstmscope.{module}").__doc__
    parsed, failed = 0, []
    for source, text in sources.items():
        for command, rest in COMMAND_LINE.findall(text):
            parser = importlib.import_module(f"lstmscope.{COMMANDS[command]}").build_parser()
            try:
                parser.parse_args(shlex.split(rest.replace("\\\n", " "), comments=True))
                parsed += 1
            except SystemExit:
                failed.append(f"{source}: {command} {rest}")
    assert parsed >= 15 and failed == [], failed
