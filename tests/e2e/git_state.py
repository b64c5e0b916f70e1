"""What the e2e tests look at in a repository and a worktree pool: ``.git``, objects, modes."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
import stat
import subprocess
import zlib


def git_dir_digest(repo: Path) -> dict[str, tuple[int, str]]:
    """Every entry under ``repo/.git``: relative path -> (mode, hash of content or link)."""
    digest: dict[str, tuple[int, str]] = {}
    root = repo / ".git"
    for directory, subdirectories, names in os.walk(root):
        for name in [*names, *subdirectories]:
            path = Path(directory, name)
            info = path.lstat()
            if stat.S_ISLNK(info.st_mode):
                content = os.readlink(path).encode()
            elif stat.S_ISREG(info.st_mode):
                content = path.read_bytes()
            else:
                content = b""
            relative = path.relative_to(root).as_posix()
            digest[relative] = (info.st_mode, hashlib.sha256(content).hexdigest())
    return digest


def secret_holders(root: Path, secret: bytes) -> list[Path]:
    """Files under ``root`` holding ``secret``, as they are or zlib-compressed (loose objects)."""
    holders = []
    for directory, _subdirectories, names in os.walk(root):
        for name in names:
            path = Path(directory, name)
            if path.is_symlink() or not path.is_file():
                continue
            content = path.read_bytes()
            try:
                inflated = zlib.decompress(content)
            except zlib.error:
                inflated = b""
            if secret in content or secret in inflated:
                holders.append(path)
    return holders


def readable_by_others(path: Path, top: Path) -> bool:
    """Whether a user other than the owner can read ``path`` (every directory up to ``top``)."""
    if not path.stat().st_mode & stat.S_IROTH:
        return False
    for directory in [path.parent, *path.parent.parents]:
        if not directory.stat().st_mode & stat.S_IXOTH:
            return False
        if directory == top:
            break
    return True


def all_objects(repo: Path) -> bytes:
    """Every object of ``repo``'s object store (alternates included), contents concatenated."""
    return subprocess.run(
        ["git", "cat-file", "--batch-all-objects", "--batch"],
        cwd=repo,
        capture_output=True,
        check=True,
    ).stdout
