"""A missing dependency skips locally and fails under CI (issue 14, item 10).

Every skip goes through conftest's ``skip_or_fail`` (or the fixtures built on it: ``tiny_model_dir``,
``taubench_dir``), so this file checks both that helper and that nothing else skips.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
DIRECT_SKIP = re.compile(r"pytest\.skip\(|importorskip\(|mark\.skip(if)?\b")


def test_no_test_skips_around_the_ci_rule():
    offenders = []
    for p in sorted(TESTS.rglob("*.py")):
        if p.name in ("conftest.py", "test_skips.py"):
            continue
        for n, line in enumerate(p.read_text().splitlines(), 1):
            if DIRECT_SKIP.search(line):
                offenders.append(f"{p.relative_to(TESTS)}:{n}: {line.strip()}")
    assert offenders == [], "use the skip_or_fail fixture (fails under CI=true):\n" + "\n".join(offenders)


@pytest.mark.parametrize("ci", ["true", "1", "TRUE"])
def test_skip_or_fail_fails_under_ci(skip_or_fail, monkeypatch, ci):
    monkeypatch.setenv("CI", ci)
    with pytest.raises(pytest.fail.Exception, match="required under CI"):
        skip_or_fail("tiny model unavailable")


@pytest.mark.parametrize("ci", [None, "", "false"])
def test_skip_or_fail_skips_elsewhere(skip_or_fail, monkeypatch, ci):
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    with pytest.raises(pytest.skip.Exception):
        skip_or_fail("tiny model unavailable")
