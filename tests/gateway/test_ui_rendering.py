"""Pure pieces of the UI's rendering: artifacts shown safely, percentiles."""

from __future__ import annotations

from gateway.ui.dashboard_view import percentile
from gateway.ui.run_history import markdown_text, safe_link, table_of


def test_markdown_is_escaped_and_only_http_links_become_links() -> None:
    html = str(markdown_text('# Hi <script>alert(1)</script> [docs](https://x.example/a?b=1&c="2")'
                             " [bad](javascript:alert(1)) [img](data:text/html,x)"))
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert '<a href="https://x.example/a?b=1&amp;c=&#34;2&#34;" rel="noopener noreferrer">docs</a>' in html
    assert "javascript:" not in html.split("<a ")[-1].split(">")[0] and html.count("<a ") == 1


def test_link_artifacts_are_links_only_for_http() -> None:
    assert safe_link("https://example.com/x") == "https://example.com/x"
    assert safe_link("HTTP://example.com") == "HTTP://example.com"
    for value in ("javascript:alert(1)", "data:text/html,x", "//evil", 3, None):
        assert safe_link(value) is None


def test_tables_of_rows_or_columns_and_nothing_else() -> None:
    assert table_of([{"a": 1}, {"b": 2}]) == (["a", "b"], [[1, ""], ["", 2]])
    assert table_of({"a": [1, 2], "b": [3]}) == (["a", "b"], [[1, 3], [2, ""]])
    assert table_of([[1, 2], [3]]) == (["0", "1"], [[1, 2], [3]])
    for value in ("text", 3, {"a": 1}, [1, {"a": 1}], {}):
        assert table_of(value) is None


def test_nearest_rank_percentiles() -> None:
    values = [float(v) for v in range(1, 101)]
    assert (percentile(values, 50), percentile(values, 99), percentile(values, 100)) == (50, 99, 100)
    assert percentile([7.0], 99) == 7.0
