from __future__ import annotations

import pytest

from pytest_parallel_modules.options import available_cpus
from pytest_parallel_modules.options import parse_worker_count


@pytest.mark.parametrize(
    ("raw", "expected"), [("1", 1), ("4", 4), (" 8 ", 8), ("auto", 3), ("AUTO", 3)]
)
def test_valid_worker_counts(raw: str, expected: int) -> None:
    assert parse_worker_count(raw, source="--parallel-modules", cpus=3) == expected


@pytest.mark.parametrize("raw", ["0", "-1", "abc", "1.5", "", "  ", "+2", "1e3", "٣"])
def test_invalid_worker_counts_name_the_option_and_the_value(raw: str) -> None:
    with pytest.raises(pytest.UsageError) as excinfo:
        parse_worker_count(raw, source="--parallel-modules", cpus=3)
    message = str(excinfo.value)
    assert message.startswith("--parallel-modules: ")
    assert repr(raw) in message


def test_available_cpus_is_positive() -> None:
    assert available_cpus() >= 1
