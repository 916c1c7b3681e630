"""HTML reports: Markdown rendered by a real parser, error bars for intervals, the
environment the figures came from."""

from __future__ import annotations

import re
from html.parser import HTMLParser

from akidb.bench.results import markdown_to_html

REPORT = """# Search `P50` report

| metric | ratio | interval | verdict |
|---|---|---|---|
| search_p50_ms | 1.020 | [0.980, 1.050] | ok |
| upsert_docs_per_s | 0.700 | [0.600, 0.800] | **REGRESSION** |

- a failure said <script>alert(1)</script>

```
Traceback: x < y
```
"""
ENV = {"cpu": "Test CPU", "cores": 2, "os": "Linux", "python": "3.11.9",
       "git_sha": "abc123", "packages": {"numpy": "2.1.0", "absent": None}}


class _Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def _parse(page: str) -> _Collect:
    parser = _Collect()
    parser.feed(page)
    return parser


def test_markdown_is_rendered_not_shown():
    page = markdown_to_html(REPORT, "r", ENV)
    assert "<code>P50</code>" in page and "`" not in page
    assert "<strong>REGRESSION</strong>" in page and "**" not in page
    assert "<script>" not in page and "&lt;script&gt;" in page  # quoted text stays text
    assert "x &lt; y" in page


def test_intervals_get_error_bars_on_one_scale():
    page = markdown_to_html(REPORT, "r", ENV)
    bars = re.findall(r"<svg class='bar'.*?</svg>", page)
    assert len(bars) == 2
    assert "interval 0.98 to 1.05" in bars[0] and "interval 0.6 to 0.8" in bars[1]
    # one scale per table: the lowest low sits at the left end, the highest high right
    ends = [[float(v) for v in re.findall(r"<line x1='([0-9.]+)' x2='([0-9.]+)' y1='6'",
                                          bar)[0]] for bar in bars]
    assert ends[1][0] == min(e[0] for e in ends) and ends[0][1] == max(e[1] for e in ends)
    assert ends[1][1] < ends[0][0]  # [0.6, 0.8] lies wholly left of [0.98, 1.05]
    assert all("stroke-dasharray" in bar for bar in bars)  # ratio reference line at 1.0


def test_no_interval_column_no_bars():
    page = markdown_to_html("| a | b |\n|---|---|\n| [1, 2] | x |\n", "r", ENV)
    assert "<svg" not in page and "<table>" in page


def test_environment_fingerprint_is_embedded():
    parsed = _parse(markdown_to_html(REPORT, "r", ENV))
    text = " ".join(parsed.text)
    for value in ("Environment", "Test CPU", "abc123", "numpy", "2.1.0"):
        assert value in text
    assert "absent" not in text  # packages that are not installed are left out
    assert any(tag == "table" and attrs.get("class") == "environment"
               for tag, attrs in parsed.tags)


def test_without_a_record_environment_this_machines_is_used():
    import os

    text = " ".join(_parse(markdown_to_html("# x\n", "r")).text)
    assert "Environment" in text and str(os.cpu_count()) in text
