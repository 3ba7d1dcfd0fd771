"""The README's lists of signals and counters are the code's, each name once."""

from __future__ import annotations

import re
from pathlib import Path

from django.dispatch import Signal

from aurora_backend import signals, stats

README = Path(__file__).resolve().parent.parent / "README.md"


def _section(title: str) -> str:
    text = README.read_text()
    assert text.count("## " + title + "\n") == 1, "README must have exactly one %r section" % title
    body = text.split("## " + title + "\n", 1)[1]
    return body.split("\n## ", 1)[0]


def _names(text: str) -> list[str]:
    return re.findall(r"[a-z_]+", text)


def test_every_signal_is_listed_once():
    section = _section("Signals and counters")
    listed = section.split("Per-process counters", 1)[0]
    declared = sorted(name for name, value in vars(signals).items() if isinstance(value, Signal))
    assert declared, "aurora_backend.signals declares no Signal"
    for name in declared:
        assert listed.count("`%s`" % name) == 1, "README lists signal %s %d times" % (name, listed.count("`%s`" % name))


def test_counter_list_is_the_snapshot():
    section = _section("Signals and counters")
    listing = re.search(r"snapshot\(alias\)` → `([^`]*)`", section)
    assert listing, "README's counter list not found"
    listed = _names(listing.group(1))
    assert sorted(listed) == sorted(stats.snapshot("docs-test"))
    assert len(listed) == len(set(listed))


def test_docstring_describes_every_signal():
    for name, value in vars(signals).items():
        if isinstance(value, Signal):
            assert "``%s``" % name in signals.__doc__, name


def test_code_cites_facts_the_repository_carries():
    root = README.parent
    facts = root / "docs" / "aurora_facts.md"
    assert facts.exists()
    for path in list((root / "aurora_backend").rglob("*.py")) + list((root / "tests").rglob("*.py")):
        text = path.read_text()
        assert "AURORA_FACTS" not in text or path.name == "test_docs.py", "%s cites notes users do not have" % path
