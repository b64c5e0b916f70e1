"""About 0.4 s: a test class and a skipped test."""

from __future__ import annotations

import sys
import time

import pytest


class TestArithmetic:
    def test_add(self) -> None:
        time.sleep(0.2)
        assert 2 + 2 == 4

    def test_divide(self) -> None:
        time.sleep(0.2)
        assert 7 // 2 == 3

    @pytest.mark.skipif(sys.version_info >= (3,), reason="only runs on Python 2, i.e. never")
    def test_python2_division(self) -> None:
        assert 7 / 2 == 3
