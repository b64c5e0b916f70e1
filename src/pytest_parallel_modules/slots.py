"""PURE: what a worktree slot holds and what its repository is made of. Runs in the controller.

:mod:`pytest_parallel_modules.worktrees` reads a slot from disk and runs git; the
decisions and file contents it needs come from here, as plain data: whether a slot
may be used (:func:`classify_slot`), the slot repository's config
(:func:`slot_config_text`) and its read-only copy of the user's refs
(:func:`packed_refs_text`). Nothing here touches the file system or starts a process.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import PurePath
from typing import final
from typing import Literal


__all__ = [
    "SlotObservation",
    "SlotState",
    "classify_slot",
    "is_within",
    "packed_refs_text",
    "slot_config_text",
]


def is_within(path: PurePath, directory: PurePath) -> bool:
    """Return whether ``path`` is ``directory`` or lies below it (both resolved already)."""
    return path == directory or directory in path.parents


#: What :func:`classify_slot` finds in a slot directory:
#:
#: - ``missing``: nothing there; create it.
#: - ``ours``: a checkout with its own repository, made by a pool of this repository; move it.
#: - ``foreign``: one made for another repository (a pool directory shared by two); skip it.
#: - ``legacy``: a ``git worktree`` registered in this repository (how earlier versions
#:   made slots); unregister it, then create it again.
#: - ``broken``: anything else, including a ``.git`` that names a git directory other than
#:   the slot's own (git would then move *that* repository's HEAD and rewrite its index);
#:   delete it and create it again. Never used as it is.
SlotState = Literal["missing", "ours", "foreign", "legacy", "broken"]


@final
@dataclass(frozen=True, slots=True)
class SlotObservation:
    """What a slot directory holds, as the pool reads it from disk (``worktrees._observe_slot``)."""

    #: The slot path itself: nothing, a real directory, or anything else (file, symlink).
    path_kind: Literal["missing", "directory", "other"]
    #: ``<slot>/.git``: nothing, a real directory, a ``gitdir:`` file, or anything else.
    git_kind: Literal["missing", "directory", "file", "other"]
    #: For a ``.git`` file: the absolute git directory it names, symlinks resolved.
    gitfile_target: PurePath | None = None
    #: ``<slot>/.git/commondir`` exists: that git directory would use another one's
    #: refs, objects and config.
    has_commondir: bool = False
    #: Every entry of the git directory that the pool writes or deletes
    #: (``worktrees._SLOT_GIT_ENTRIES``) is a real file or directory, or absent; none is
    #: a symlink that would lead the pool out of the slot.
    entries_are_real: bool = True
    #: The repository (its resolved common git dir) recorded when the slot was made;
    #: ``None`` when there is no readable record.
    recorded_source: PurePath | None = None


def classify_slot(observed: SlotObservation, source: PurePath) -> SlotState:
    """PURE: say what to do with a slot of the pool of the repository at ``source``.

    :param observed: what the pool found in the slot.
    :param source: the resolved common git directory of the pool's repository.
    """
    if observed.path_kind == "missing":
        return "missing"
    if observed.path_kind == "other":
        return "broken"
    if observed.git_kind == "directory":
        if observed.has_commondir or not observed.entries_are_real:
            return "broken"
        if observed.recorded_source is None:
            return "broken"
        return "ours" if observed.recorded_source == source else "foreign"
    if observed.git_kind == "file" and observed.gitfile_target is not None:
        target = observed.gitfile_target
        if target.parent == source / "worktrees":
            return "legacy"
        if not is_within(target, source):
            # A worktree of another repository (a shared pool directory): not ours to delete.
            return "foreign"
    return "broken"


def _quote_config_value(value: str) -> str:
    """PURE: return ``value`` as a double-quoted git config value."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def slot_config_text(init_config: str, source_config: PurePath) -> str:
    """PURE: return the config of a slot's repository.

    The slot first includes the config of the repository it checks out, so that
    filters, line-ending settings, hooks and the identity tests commit with stay the
    user's; then comes what ``git init`` wrote for the slot (its repository format and
    what it probed of the file system); then what a slot must never do, whatever the
    user's config says. Git takes the last value of a setting, and reads
    ``core.worktree``, ``core.bare`` and ``extensions.*`` only from the slot's own file.

    :param init_config: the config ``git init`` wrote for the slot.
    :param source_config: the config file of the repository the slot checks out.
    """
    return (
        "# Written by pytest-parallel-modules, and written again whenever a run takes\n"
        "# this slot: changes made here do not last.\n"
        f"[include]\n\tpath = {_quote_config_value(str(source_config))}\n"
        f"{init_config.rstrip()}\n"
        "[core]\n"
        "\tbare = false\n"
        # No reflog: it would keep every snapshot this slot ever held alive.
        "\tlogAllRefUpdates = false\n"
        "\tsparseCheckout = false\n"
        "\tsparseCheckoutCone = false\n"
        # A daemon per slot would outlive the run.
        "\tfsmonitor = false\n"
        "[index]\n"
        "\tsparse = false\n"
        "[gc]\n"
        "\tauto = 0\n"
        "[maintenance]\n"
        "\tauto = false\n"
    )


def packed_refs_text(refs: Iterable[tuple[str, str, str]]) -> str:
    """PURE: return a ``packed-refs`` file holding ``refs``.

    :param refs: ``(object id, ref name, peeled object id or "")`` triples, as
        ``git for-each-ref --format=%(objectname) %(refname) %(*objectname)`` lists them.
    :returns: git's format with every trait it can rely on: sorted by the bytes of the
        ref names (as git's output was decoded: UTF-8, undecodable bytes escaped), and
        every annotated tag followed by the commit it points at.
    """
    lines = ["# pack-refs with: peeled fully-peeled sorted \n"]
    for oid, name, peeled in sorted(
        refs, key=lambda ref: ref[1].encode("utf-8", "surrogateescape")
    ):
        lines.append(f"{oid} {name}\n")
        if peeled:
            lines.append(f"^{peeled}\n")
    return "".join(lines)
