"""The README is the front door: short, and every link in it leads somewhere in the clone."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
LINK = re.compile(r"\]\(([^)\s]+)\)")


def _anchors(page: Path) -> set[str]:
    """Heading anchors as the docs build makes them (lower case, punctuation dropped)."""
    anchors = set()
    for line in page.read_text().splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            title = re.sub(r"[^\w\- ]", "", title)
            anchors.add(title.replace(" ", "-"))
    return anchors


def test_the_readme_stays_short() -> None:
    assert len(README.read_text().splitlines()) <= 200


def test_every_link_in_the_readme_leads_to_a_file_and_heading_of_the_clone() -> None:
    links = [t for t in LINK.findall(README.read_text()) if not t.startswith(("http:", "https:"))]
    assert links, "the README links into docs/"
    broken = []
    for target in links:
        path, _, anchor = target.partition("#")
        page = ROOT / path
        if not page.is_file() or (anchor and anchor not in _anchors(page)):
            broken.append(target)
    assert broken == []
