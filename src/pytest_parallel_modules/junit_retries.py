"""Adds the failed attempts of retried tests to pytest's junit XML. Runs in the controller.

With ``--module-retries`` only a module's last attempt is replayed into
pytest's hooks, so ``--junitxml`` holds one testcase per test. CI servers read
earlier attempts from child elements of that testcase (the convention of
Maven Surefire, read by Jenkins, GitLab and others): ``flakyFailure`` /
``flakyError`` for a test that passed in the end, ``rerunFailure`` /
``rerunError`` for one that kept failing. The transformation is pure; only
:func:`rewrite_junit_xml` reads and writes the file.
"""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Sequence
from pathlib import Path
import re
import xml.etree.ElementTree as ET

from pytest_parallel_modules.atomic_files import write_atomic
from pytest_parallel_modules.reports import AttemptRecord
from pytest_parallel_modules.reports import ModuleReport


def junit_names(nodeid: str, prefix: str | None = None) -> tuple[str, str]:
    """PURE: the ``(classname, name)`` pytest's junitxml gives a node id.

    ``tests/test_x.py::TestC::test_m[a::b]`` -> ``("tests.test_x.TestC", "test_m[a::b]")``.
    """
    path, bracket, params = nodeid.partition("[")
    names = path.split("::")
    names[0] = re.sub(r"\.py$", "", names[0].replace("/", "."))
    names[-1] += bracket + params
    classnames = names[:-1]
    if prefix:
        classnames.insert(0, prefix)
    return ".".join(classnames), names[-1]


def earlier_attempts(attempts: Sequence[AttemptRecord]) -> list[AttemptRecord]:
    """PURE: every attempt but the last one of each unit, whose result the testcase already holds.

    A module split into parts (``--split-modules``) retries each part on its own:
    its ``attempts`` hold each retried part's attempts in turn, each numbered from 1.
    """
    runs: list[list[AttemptRecord]] = []
    for attempt in attempts:
        if attempt["attempt"] == 1 or not runs:
            runs.append([])
        runs[-1].append(attempt)
    return [attempt for run in runs for attempt in run[:-1]]


def add_attempts(
    root: ET.Element, modules: Iterable[ModuleReport], prefix: str | None = None
) -> int:
    """PURE (on the tree): add one element per failed earlier attempt; return how many were added."""
    cases = {
        (case.get("classname", ""), case.get("name", "")): case for case in root.iter("testcase")
    }
    added = 0
    for module in modules:
        flaky = set(module.get("flaky", []))
        for attempt in earlier_attempts(module.get("attempts", [])):
            for failure in attempt["failures"]:
                case = cases.get(junit_names(failure["nodeid"], prefix))
                if case is None:
                    continue
                kind = "flaky" if failure["nodeid"] in flaky else "rerun"
                what = "Failure" if failure["when"] == "call" else "Error"
                element = ET.SubElement(case, f"{kind}{what}")
                text = failure["longrepr"] or ""
                element.set(
                    "message",
                    f"attempt {attempt['attempt']}: {text.strip().splitlines()[-1] if text.strip() else 'failed'}",
                )
                element.text = text
                added += 1
    return added


def rewrite_junit_xml(
    path: Path, modules: Iterable[ModuleReport], prefix: str | None = None
) -> None:
    """Add retried tests' earlier attempts to the junit XML file at ``path`` (atomically)."""
    tree = ET.parse(path)
    if not add_attempts(tree.getroot(), modules, prefix):
        return
    text = ET.tostring(tree.getroot(), encoding="unicode")
    write_atomic(path, "<?xml version='1.0' encoding='utf-8'?>\n" + text)
