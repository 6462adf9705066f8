"""The documentation is self-contained: every relative link in README.md and docs/*.md
resolves to a file inside the repository, and no page points at a file outside it (a
`../` path that leaves the repository, in a link or in the text, or a file path in inline
code that the repository does not have)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

# [text](target "title"), ![alt](target), [label]: target, href="target", src="target"
LINK = re.compile(
    r"!?\[[^\]]*\]\(\s*<?(?P<inline>[^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)"
    r"|^\s{0,3}\[[^\]]+\]:\s*<?(?P<ref>\S+?)>?(?:\s|$)"
    r"|\b(?:href|src)=\"(?P<html>[^\"]+)\"",
    re.MULTILINE,
)
URL = re.compile(r"^(https?://|mailto:)", re.IGNORECASE)
SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)
UPWARDS = re.compile(r"(?<![\w/.-])(?:\.\./)+[\w.-][\w./-]*")


def _prose(text: str) -> str:
    """The page without fenced code blocks and inline code (their brackets are not links)."""
    text = re.sub(r"^(```|~~~).*?^\1", "", text, flags=re.MULTILINE | re.DOTALL)
    return re.sub(r"`[^`\n]*`", "", text)


def links(page: Path) -> list[str]:
    return [
        m["inline"] or m["ref"] or m["html"]
        for m in LINK.finditer(_prose(page.read_text(encoding="utf-8")))
    ]


def inside(target: Path) -> bool:
    return target.resolve().is_relative_to(ROOT)


def test_the_pages_are_found() -> None:
    assert (ROOT / "pyproject.toml").is_file()
    assert len(PAGES) >= 10 and all(p.is_file() for p in PAGES)
    assert sum(len(links(p)) for p in PAGES) >= 20  # the parser sees the links there are


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves_inside_the_repository(page: Path) -> None:
    broken = []
    for target in links(page):
        if target.startswith("#") or URL.match(target):
            continue
        if SCHEME.match(target) or target.startswith("/"):
            broken.append(f"{target} (not a relative path nor an http(s) URL)")
            continue
        path = (page.parent / target.split("#")[0].split("?")[0]).resolve()
        if not inside(path):
            broken.append(f"{target} (outside the repository)")
        elif not path.exists():
            broken.append(f"{target} (no such file)")
    assert not broken, f"{page.relative_to(ROOT)}: {broken}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_page_points_at_files_outside_the_repository(page: Path) -> None:
    text = page.read_text(encoding="utf-8")  # code spans and blocks included
    outside = [m for m in UPWARDS.findall(text) if not URL.match(m) and not inside(page.parent / m)]
    assert not outside, f"{page.relative_to(ROOT)} names files outside the repository: {outside}"


# A file path in inline code: `dir/name.ext` (relative to the repository or to the page).
NAMED_FILE = re.compile(
    r"^(?:\.{1,2}/)?[\w.-]+(?:/[\w.-]+)+\.(?:md|png|svg|jpg|json|py|yaml|yml|"
    r"toml|txt|sql|html|css|js)$"
)
# Named on purpose though not in the tree: the installed package's view of main/, and what
# the benchmark writes.
NOT_IN_THE_TREE = {"serviceorders/__init__.py", "bench/results/latest.json"}


def named_files(page: Path) -> list[str]:
    spans = re.findall(r"`([^`\n]+)`", page.read_text(encoding="utf-8"))
    return [s.strip() for s in spans if NAMED_FILE.match(s.strip())]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_file_a_page_names_is_in_the_repository(page: Path) -> None:
    missing = [
        name
        for name in named_files(page)
        if name not in NOT_IN_THE_TREE
        and not any(inside(base / name) and (base / name).exists() for base in (ROOT, page.parent))
    ]
    assert not missing, f"{page.relative_to(ROOT)} names files the repository lacks: {missing}"


def test_the_checks_catch_what_they_look_for(tmp_path: Path) -> None:
    """The parser finds links of each form, and an escaping path is seen as outside."""
    page = tmp_path / "page.md"
    page.write_text(
        'See [a](x.md), ![b](img/y.png "t"), <a href="z.html">z</a>.\n'
        "`[not](a-link.md)`\n\n[ref]: ../r.md\n",
        encoding="utf-8",
    )
    assert links(page) == ["x.md", "img/y.png", "z.html", "../r.md"]
    assert not inside(ROOT / "docs" / "../../elsewhere.md")
    assert inside(ROOT / "docs" / "../README.md")
    assert UPWARDS.findall("as `../shared/research/limits.md` saw") == [
        "../shared/research/limits.md"
    ]
    page.write_text(
        "the diagram (`shared/tmf641/Lifecycle_ServiceOrder.png`) and "
        "`api/workflow.py`, `--items FILE`",
        encoding="utf-8",
    )
    assert named_files(page) == ["shared/tmf641/Lifecycle_ServiceOrder.png", "api/workflow.py"]
