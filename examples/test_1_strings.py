"""The quickest module (about 0.2 s): a parametrized test."""

from __future__ import annotations

import time

import pytest


@pytest.mark.parametrize(
    ("text", "expected"),
    [("hello", "HELLO"), ("pytest", "PYTEST"), ("", "")],
)
def test_upper(text: str, expected: str) -> None:
    time.sleep(0.06)
    assert text.upper() == expected


def test_uses_the_session_fixture(service: dict[str, object]) -> None:
    assert str(service["url"]).startswith("http://")
