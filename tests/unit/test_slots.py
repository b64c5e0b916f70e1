"""The pure decisions of the worktree pool (slots.py): what a slot holds, its config, its refs."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path
from typing import Any

import pytest

from pytest_parallel_modules import slots
from pytest_parallel_modules.slots import classify_slot
from pytest_parallel_modules.slots import packed_refs_text
from pytest_parallel_modules.slots import slot_config_text
from pytest_parallel_modules.slots import SlotObservation
from pytest_parallel_modules.slots import SlotState


SOURCE = Path("/home/u/repo/.git")
OTHER = Path("/home/u/other/.git")


def own(**changes: Any) -> SlotObservation:
    """A slot with a repository of its own, made for ``SOURCE``, with ``changes`` applied."""
    made_for_source = SlotObservation(
        path_kind="directory", git_kind="directory", recorded_source=SOURCE
    )
    return dataclasses.replace(made_for_source, **changes)


@pytest.mark.parametrize(
    ("observed", "expected"),
    [
        (SlotObservation(path_kind="missing", git_kind="missing"), "missing"),
        (SlotObservation(path_kind="other", git_kind="missing"), "broken"),
        (own(), "ours"),
        (own(recorded_source=OTHER), "foreign"),
        # Whatever the record says, a git dir that shares another one's refs and objects,
        # or that symlinks out of the slot, is not the slot's own.
        (own(has_commondir=True), "broken"),
        (own(entries_are_real=False), "broken"),
        (own(recorded_source=OTHER, has_commondir=True), "broken"),
        (own(recorded_source=None), "broken"),
        (SlotObservation(path_kind="directory", git_kind="missing"), "broken"),
        (SlotObservation(path_kind="directory", git_kind="other"), "broken"),
        # .git files: how earlier versions made slots, or a git dir pointed elsewhere.
        (
            SlotObservation(
                path_kind="directory",
                git_kind="file",
                gitfile_target=SOURCE / "worktrees" / "slot-0",
            ),
            "legacy",
        ),
        (
            SlotObservation(path_kind="directory", git_kind="file", gitfile_target=SOURCE),
            "broken",
        ),
        (
            SlotObservation(
                path_kind="directory", git_kind="file", gitfile_target=SOURCE / "modules" / "lib"
            ),
            "broken",
        ),
        (
            SlotObservation(
                path_kind="directory",
                git_kind="file",
                gitfile_target=OTHER / "worktrees" / "slot-0",
            ),
            "foreign",
        ),
        (SlotObservation(path_kind="directory", git_kind="file"), "broken"),
    ],
)
def test_classify_slot(observed: SlotObservation, expected: SlotState) -> None:
    assert classify_slot(observed, SOURCE) == expected


def test_slot_config_includes_the_users_then_overrides_it() -> None:
    init_config = "[core]\n\trepositoryformatversion = 0\n\tfilemode = true\n"

    text = slot_config_text(init_config, Path("/home/u/repo/.git/config"))

    lines = [line for line in text.splitlines() if not line.startswith("#")]
    assert lines[:2] == ["[include]", '\tpath = "/home/u/repo/.git/config"']
    # git takes the last value: the slot's own probes after the user's, ours after both.
    assert text.index("filemode = true") > text.index("[include]")
    assert text.index("logAllRefUpdates = false") > text.index("filemode = true")
    for setting in ("sparseCheckout = false", "fsmonitor = false", "bare = false", "auto = 0"):
        assert setting in text
    assert text.endswith("\n")


def test_slot_config_quotes_the_path() -> None:
    text = slot_config_text("", Path('/tmp/we"ird\\dir/config'))

    assert '\tpath = "/tmp/we\\"ird\\\\dir/config"\n' in text


def test_packed_refs_are_sorted_by_bytes_and_peeled() -> None:
    commit, tag_object = "a" * 40, "b" * 40

    text = packed_refs_text(
        [
            (commit, "refs/tags/v1", ""),
            (tag_object, "refs/tags/v1.0", commit),
            (commit, "refs/heads/main", ""),
            (commit, "refs/heads/Zeta", ""),
        ]
    )

    assert text.splitlines() == [
        "# pack-refs with: peeled fully-peeled sorted ",
        f"{commit} refs/heads/Zeta",
        f"{commit} refs/heads/main",
        f"{commit} refs/tags/v1",
        f"{tag_object} refs/tags/v1.0",
        f"^{commit}",
    ]


def test_packed_refs_of_a_repository_without_refs() -> None:
    assert packed_refs_text([]) == "# pack-refs with: peeled fully-peeled sorted \n"


def test_slots_imports_nothing_that_does_io() -> None:
    tree = ast.parse(Path(slots.__file__).read_text(encoding="utf-8"))
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            imported.add(node.module)
    assert imported <= {"__future__", "collections.abc", "dataclasses", "pathlib", "typing"}
    assert "Path" not in {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }, "PurePath only: a Path could read the disk"
