"""About 1.4 s: a mail server that is slow to accept messages, and a skipped test."""

from __future__ import annotations

import sys
import time

import pytest


def test_welcome_mail_is_sent(service: dict[str, object]) -> None:
    time.sleep(0.68)  # the SMTP conversation
    assert str(service["url"]).startswith("http://")


def test_password_reset_mail_is_sent() -> None:
    time.sleep(0.68)
    assert "reset".upper() == "RESET"


@pytest.mark.skipif(sys.platform != "win32", reason="needs the Windows mail client")
def test_outlook_integration() -> None:
    time.sleep(0.68)
