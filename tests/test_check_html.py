"""scripts/check_html.py (what .ci/run uses on the demo's report) accepts good pages and catches bad ones."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from check_html import check

GOOD = """<!DOCTYPE html><html><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'"><title>t</title></head>
<body><div><p>x<br></p><img src="data:image/png;base64,AA"></div></body></html>"""


def test_good_page(tmp_path: Path):
    p = tmp_path / "a.html"
    p.write_text(GOOD)
    assert check(p) == []


def test_committed_example_report_is_valid():
    assert check(ROOT / "reports" / "example" / "index.html") == []


def test_bad_pages(tmp_path: Path):
    cases = {
        "unclosed": GOOD.replace("</div>", ""),
        "no doctype": GOOD.replace("<!DOCTYPE html>", ""),
        "no csp": GOOD.replace('http-equiv="Content-Security-Policy"', 'name="x"'),
        "remote": GOOD.replace("data:image/png;base64,AA", "https://cdn.example.com/x.png"),
        "two bodies": GOOD.replace("</body>", "</body><body></body>"),
    }
    for name, html in cases.items():
        p = tmp_path / f"{name.replace(' ', '_')}.html"
        p.write_text(html)
        assert check(p), name
