"""The docs stay navigable and true to the code, without a database.

- every relative link and ``#anchor`` in README.md and docs/*.md resolves, with the slug rule
  of MkDocs' ``toc`` extension (Python-Markdown), so ``mkdocs build --strict`` and GitHub agree;
- every docs page is in mkdocs.yml's nav and in docs/index.md's table;
- docs/signals.md lists exactly the signals of ``aurora_backend.signals`` and the counters of
  ``aurora_backend.stats``, each once, and no other page repeats either list;
- docs/health.md's system-check tables name every check id aurora_backend defines;
- nothing cites the notes users do not have (``AURORA_FACTS``): the facts are docs/aurora_facts.md.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.dispatch import Signal

from aurora_backend import signals, stats

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
README = ROOT / "README.md"
PAGES = sorted(DOCS.glob("*.md"))
FENCE = re.compile(r"^\s*(```|~~~)")
LINK = re.compile(r"(?<!!)\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
CODE_SPAN = re.compile(r"(`+)(.+?)\1")


def _prose_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) of every line outside fenced code blocks."""
    fenced = None
    for number, line in enumerate(path.read_text().splitlines(), 1):
        match = FENCE.match(line)
        if match:
            if fenced is None:
                fenced = match.group(1)
            elif match.group(1) == fenced:
                fenced = None
            continue
        if fenced is None:
            yield number, line


def _heading_text(raw: str) -> str:
    """A heading as the toc extension sees it: inline markup rendered away."""
    text = CODE_SPAN.sub(lambda m: m.group(2).strip(), raw)
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"(\*\*|__)(.+?)\1", r"\2", text)
    text = re.sub(r"(?<!\w)\*(.+?)\*", r"\1", text)
    return text.strip().rstrip("#").strip()


def mkdocs_slug(text: str) -> str:
    """``markdown.extensions.toc.slugify`` (MkDocs' default), separator "-"."""
    value = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    value = re.sub(r"[^\w\s-]", "", value).strip().lower()
    return re.sub(r"[-\s]+", "-", value)


def github_slug(text: str) -> str:
    """GitHub's anchors, for links from README.md (rendered by GitHub, not MkDocs)."""
    return re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")


def _headings(path: Path) -> list[str]:
    return [_heading_text(line.lstrip("#")) for _, line in _prose_lines(path) if re.match(r"#{1,6}\s", line)]


def _anchors(path: Path, slug=mkdocs_slug) -> set[str]:
    """Every id the page's headings get; a repeated slug gets _1, _2 ... as toc does."""
    seen: set[str] = set()
    for text in _headings(path):
        anchor = slug(text)
        base, n = anchor, 1
        while anchor in seen:
            anchor = "%s_%d" % (base, n)
            n += 1
        seen.add(anchor)
    return seen


def _links(path: Path) -> Iterator[tuple[int, str]]:
    for number, line in _prose_lines(path):
        for match in LINK.finditer(CODE_SPAN.sub(lambda m: "x" * len(m.group(0)), line)):
            yield number, match.group(1)


def _is_external(target: str) -> bool:
    return bool(re.match(r"[a-z][a-z0-9+.-]*:", target))


def _check_links(path: Path) -> list[str]:
    problems = []
    for number, target in _links(path):
        if _is_external(target):
            continue
        where = "%s:%d: %s" % (path.relative_to(ROOT) if ROOT in path.parents else path, number, target)
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        if not dest.exists():
            problems.append(where + ": no such file")
            continue
        if path.parent == DOCS and DOCS not in dest.parents and dest != DOCS:
            problems.append(where + ": outside docs/, which the site cannot link to")
            continue
        if anchor:
            if dest.suffix != ".md":
                problems.append(where + ": an anchor into a file that is not a page")
            elif anchor not in _anchors(dest):
                problems.append(where + ": no heading with this anchor in %s" % dest.name)
            elif path == README and anchor not in _anchors(dest, github_slug):
                problems.append(where + ": MkDocs has this anchor but GitHub spells it differently")
    return problems


@pytest.mark.parametrize("path", [README] + PAGES, ids=lambda p: p.name)
def test_every_relative_link_and_anchor_resolves(path):
    assert _check_links(path) == []


def test_the_link_checker_sees_broken_links(tmp_path, monkeypatch):
    page = DOCS / "index.md"
    bad = tmp_path / "page.md"
    bad.write_text("# Title\n\n[a](%s#nope) [b](missing.md) `[c](missing.md)`\n\n```\n[d](missing.md)\n```\n" % page)
    problems = _check_links(bad)
    assert len(problems) == 2, problems
    assert "no heading with this anchor" in problems[0] and "no such file" in problems[1]


def test_slug_rule_is_the_toc_extensions():
    markdown_toc = pytest.importorskip("markdown.extensions.toc")  # installed with the docs extra
    for path in [README] + PAGES:
        for text in _headings(path):
            assert mkdocs_slug(text) == markdown_toc.slugify(text, "-"), text


def _nav_pages() -> list[str]:
    text = (ROOT / "mkdocs.yml").read_text()
    nav = text.split("\nnav:\n", 1)[1]
    return re.findall(r"^\s+- (?:[^\n]*?: )?([\w./-]+\.md)\s*$", nav, re.M)


def test_every_page_is_in_the_nav_and_the_index():
    nav = _nav_pages()
    assert sorted(nav) == sorted(p.name for p in PAGES), "mkdocs.yml's nav and docs/*.md differ"
    assert len(nav) == len(set(nav))
    indexed = {target for _, target in _links(DOCS / "index.md")}
    missing = [p.name for p in PAGES if p.name != "index.md" and p.name not in indexed]
    assert missing == [], "docs/index.md does not list %s" % missing


def test_readme_stays_a_first_page():
    lines = README.read_text().count("\n")
    assert lines <= 150, "README.md has %d lines: move reference material to docs/" % lines


def _section(path: Path, title: str) -> str:
    text = path.read_text()
    assert text.count("\n## %s\n" % title) == 1, "%s must have exactly one %r section" % (path.name, title)
    return text.split("\n## %s\n" % title, 1)[1].split("\n## ", 1)[0]


def _tables(section: str) -> list[list[str]]:
    """The first column's backticked name of each row, per table in the section."""
    tables: list[list[str]] = []
    current: list[str] | None = None
    for line in section.splitlines():
        if line.startswith("|"):
            if current is None:
                current = []
                tables.append(current)
            match = re.match(r"\|\s*`([a-z_]+)`\s*\|", line)
            if match:
                current.append(match.group(1))
        else:
            current: list[str] | None = None
    return tables


def test_signals_page_lists_every_signal_once():
    declared = sorted(name for name, value in vars(signals).items() if isinstance(value, Signal))
    assert declared, "aurora_backend.signals declares no Signal"
    tables = _tables(_section(DOCS / "signals.md", "Signals"))
    assert len(tables) == 1, "docs/signals.md: one table of signals"
    assert sorted(tables[0]) == declared
    assert len(tables[0]) == len(set(tables[0]))


def test_signals_page_lists_every_counter_once():
    counters, extras = _tables(_section(DOCS / "signals.md", "Counters"))
    assert counters == list(stats.COUNTERS), "docs/signals.md's counters are not stats.COUNTERS, in order"
    assert set(stats.snapshot("docs-test")) - set(stats.COUNTERS) <= set(extras)
    assert "blue_green_phase" in extras  # the gauge set by the Blue/Green watcher


def test_no_other_page_lists_the_counters():
    """One list: a second copy is how README's two different lists came about."""
    for path in [README] + PAGES:
        if path.name == "signals.md":
            continue
        text = path.read_text()
        named = [c for c in stats.COUNTERS if "`%s`" % c in text or " %s," % c in text]
        assert len(named) < len(stats.COUNTERS) // 2, "%s repeats the counter list: link docs/signals.md" % path.name


def test_no_other_page_lists_the_signals():
    """One list, as for the counters: architecture.md once had a second, different one."""
    declared = [name for name, value in vars(signals).items() if isinstance(value, Signal)]
    for path in [README] + PAGES:
        if path.name == "signals.md":
            continue
        text = path.read_text()
        named = [s for s in declared if "`%s`" % s in text or " %s," % s in text]
        assert len(named) < len(declared) // 2, "%s repeats the signal list: link docs/signals.md" % path.name


def _check_ids() -> set[str]:
    """Every ``aurora_backend.X000`` id the package's checks can raise."""
    ids: set[str] = set()
    for path in (ROOT / "aurora_backend").rglob("*.py"):
        text = path.read_text()
        ids.update(re.findall(r'id="aurora_backend\.([EW]\d{3})"', text))
        if 'id="aurora_backend." + DATABASE_CHECK_IDS' in text:
            from aurora_backend.health.checks import DATABASE_CHECK_IDS

            ids.update(DATABASE_CHECK_IDS.values())
    return {"aurora_backend." + i for i in ids}


def test_health_page_lists_every_system_check():
    ids = _check_ids()
    assert {"aurora_backend.E001", "aurora_backend.E020", "aurora_backend.W014"} <= ids, ids
    section = _section(DOCS / "health.md", "System checks")
    listed = set(re.findall(r"^\|\s*`(aurora_backend\.[EW]\d{3})`\s*\|", section, re.M))
    assert sorted(ids - listed) == [], "docs/health.md's check tables lack these ids"
    assert sorted(listed - ids) == [], "docs/health.md lists ids aurora_backend does not define"


def test_docstring_describes_every_signal():
    for name, value in vars(signals).items():
        if isinstance(value, Signal):
            assert "``%s``" % name in signals.__doc__, name


def test_nothing_cites_facts_the_repository_does_not_carry():
    assert (DOCS / "aurora_facts.md").exists()
    code = [p for d in ("aurora_backend", "tests", "bench", "scripts", "testproject") for p in (ROOT / d).rglob("*.py")]
    for path in code:
        if path != Path(__file__).resolve():
            assert "AURORA_FACTS" not in path.read_text(), "%s cites notes users do not have" % path
    for path in [README, ROOT / "CONTRIBUTING.md", ROOT / "CHANGELOG.md"] + PAGES:
        text = path.read_text()
        cited = re.findall(r"\]\([^)]*AURORA_FACTS[^)]*\)|shared/AURORA_FACTS|see \S*AURORA_FACTS", text)
        assert cited == [], "%s cites AURORA_FACTS.md (cite docs/aurora_facts.md): %s" % (path.name, cited)
