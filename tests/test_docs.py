"""The guide and the topic docs: every link leads somewhere, no heading is a date, and the
README stays a guide a newcomer reads in ten minutes."""

import re
from pathlib import Path

import pytest
from conftest import REPO

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")  # [text](target), not images' ![alt](src)
DATE = re.compile(r"20[0-9]{2}-[01][0-9]-[0-3][0-9]")


def anchors(path: Path) -> set[str]:
    """The anchors GitHub gives the headings of a markdown file: lower case, punctuation
    dropped, spaces as hyphens (a repeated heading gets -1, -2, ...)."""
    found: set[str] = set()
    in_code = False
    for line in path.read_text().splitlines():
        if line.startswith("```"):
            in_code = not in_code
        if in_code or not line.startswith("#"):
            continue
        slug = re.sub(r"[^\w\- ]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        anchor, n = slug, 0
        while anchor in found:
            n += 1
            anchor = f"{slug}-{n}"
        found.add(anchor)
    return found


def links(path: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.DOTALL)  # not the examples in code blocks
    return [target for target in LINK.findall(text) if not re.match(r"[a-z]+:", target)]  # http:, mailto:


@pytest.mark.parametrize("doc", DOCS, ids=lambda path: path.name)
def test_every_link_resolves_to_a_file_or_heading(doc):
    for target in links(doc):
        file, _, anchor = target.partition("#")
        linked = (doc.parent / file).resolve() if file else doc
        assert linked.exists(), f"{doc.name}: link to {target}: no such file"
        if anchor:
            assert linked.suffix == ".md" and anchor in anchors(linked), (
                f"{doc.name}: link to {target}: no such heading"
            )


def test_a_broken_link_is_found(tmp_path):
    doc = tmp_path / "doc.md"
    doc.write_text("# Results today\n\nSee [the table](#results-today), [a file](doc.md), [gone](gone.md#x).\n")
    assert links(doc) == ["#results-today", "doc.md", "gone.md#x"]
    assert "results-today" in anchors(doc) and not (tmp_path / "gone.md").exists()


@pytest.mark.parametrize("doc", DOCS, ids=lambda path: path.name)
def test_no_heading_is_a_date(doc):
    assert not [line for line in doc.read_text().splitlines() if line.startswith("#") and DATE.search(line)]


def test_the_readme_is_a_guide_not_a_lab_notebook():
    text = (REPO / "README.md").read_text()
    assert len(text) <= 20_000 and text.count("\n") <= 300
    tables = text.count("Provenance:")  # one line per results table: commit, machine, date, command
    dated = [line for line in text.splitlines() if DATE.search(line) or re.search(r"\b[0-9a-f]{7,40}\b", line)]
    assert len(dated) <= tables, dated
