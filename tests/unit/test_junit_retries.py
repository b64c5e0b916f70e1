from __future__ import annotations

import xml.etree.ElementTree as ET

from pytest_parallel_modules.junit_retries import add_attempts
from pytest_parallel_modules.junit_retries import junit_names


def test_junit_names_mirror_pytest() -> None:
    assert junit_names("tests/test_x.py::TestC::test_m[a::b]") == (
        "tests.test_x.TestC",
        "test_m[a::b]",
    )
    assert junit_names("test_y.py::test_f") == ("test_y", "test_f")
    assert junit_names("test_y.py::test_f", prefix="pre") == ("pre.test_y", "test_f")


def test_add_attempts_marks_flaky_and_rerun_failures() -> None:
    root = ET.fromstring(
        '<testsuites><testsuite><testcase classname="test_m" name="test_flaky"/>'
        '<testcase classname="test_m" name="test_broken"><failure message="x"/></testcase></testsuite></testsuites>'
    )
    module = {
        "module": "test_m.py",
        "flaky": ["test_m.py::test_flaky"],
        "attempts": [
            {
                "attempt": 1,
                "worker": "w1",
                "outcome": "failed",
                "duration_s": 0.1,
                "failures": [
                    {
                        "nodeid": "test_m.py::test_flaky",
                        "when": "call",
                        "longrepr": "E assert 0\nboom",
                    },
                    {
                        "nodeid": "test_m.py::test_broken",
                        "when": "setup",
                        "longrepr": "setup broke",
                    },
                ],
            },
            {
                "attempt": 2,
                "worker": "w2",
                "outcome": "failed",
                "duration_s": 0.1,
                "failures": [
                    {
                        "nodeid": "test_m.py::test_broken",
                        "when": "setup",
                        "longrepr": "setup broke",
                    },
                ],
            },
        ],
    }
    assert add_attempts(root, [module]) == 2  # type: ignore[list-item]
    flaky = root.find(".//testcase[@name='test_flaky']")
    assert flaky is not None
    assert [child.tag for child in flaky] == ["flakyFailure"]
    assert flaky[0].get("message") == "attempt 1: boom"
    assert flaky[0].text == "E assert 0\nboom"
    broken = root.find(".//testcase[@name='test_broken']")
    assert broken is not None
    assert [child.tag for child in broken] == ["failure", "rerunError"]
