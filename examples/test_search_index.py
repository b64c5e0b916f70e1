"""About 1.7 s: a search index that takes a moment to refresh; a test class."""

from __future__ import annotations

import time


class TestSearch:
    def test_finds_a_product_by_name(self) -> None:
        time.sleep(0.6)  # waiting for the index to refresh
        assert "book" in ["book", "pen"]

    def test_ignores_case(self) -> None:
        time.sleep(0.6)
        assert "Book".casefold() == "book"

    def test_empty_query_finds_nothing(self) -> None:
        time.sleep(0.45)
        assert [] == []
