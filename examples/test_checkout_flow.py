"""About 2 s: a payment gateway that answers slowly, and a module-scoped fixture."""

from __future__ import annotations

from collections.abc import Iterator
import time

import pytest


@pytest.fixture(scope="module")
def cart(service: dict[str, object]) -> Iterator[dict[str, int]]:
    """Created once for this module (a database row) and removed after its last test."""
    time.sleep(0.45)
    items = {"book": 12, "pen": 2}
    yield items
    items.clear()


def test_total(cart: dict[str, int]) -> None:
    time.sleep(0.45)
    assert sum(cart.values()) == 14


def test_payment_is_authorised(cart: dict[str, int]) -> None:
    time.sleep(0.6)  # the payment gateway's round trip
    assert all(price > 0 for price in cart.values())


def test_receipt_names_every_item(cart: dict[str, int]) -> None:
    time.sleep(0.45)
    receipt = ", ".join(sorted(cart))
    assert receipt == "book, pen"
