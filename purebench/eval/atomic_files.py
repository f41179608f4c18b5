"""Writes that a crash (even SIGKILL) can never leave half done, and the lock that serialises them.

Every file purebench writes goes through a temporary file beside its target that replaces the
target only once it is complete and flushed, so a reader sees the old file or the new one. The
temporary keeps the target's permissions (or 0644 for a new file): a leaderboard shared by a group
stays readable by the group after each rewrite.

Two guards for outputs whose names or places come from data rather than code (a leaderboard CSV
from a collaborator, a shared board behind a link): :func:`safe_name` turns a cell into one plain
file-name component and :func:`inside` checks that a path built from such names stays in its
folder; :func:`link_target` and :func:`locked` follow links, so a shared board behind a link is
updated and locked where it lives and the link stays a link.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from filelock import FileLock

NEW_FILE_MODE = 0o644
# One plain file-name component: no separator, no leading dot (hidden files, '.' and '..'), a portable charset.
_SAFE_NAME = re.compile(r"[A-Za-z0-9_+-][A-Za-z0-9_.+-]{0,99}")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.+-]+|\.{2,}")


def is_safe_name(text: str) -> bool:
    """Whether ``text`` can be used as a file name as it is (every name purebench itself writes can)."""
    return bool(_SAFE_NAME.fullmatch(text)) and ".." not in text


def safe_name(cell: str) -> str:
    """``cell`` as one file-name component: unchanged when :func:`is_safe_name`, else with separators,
    '..' and other characters replaced by '_', leading dots dropped and a digest of the original appended,
    so a CSV cell such as ``x/../../tmp/escaped`` or ``/etc/x`` names a file in its folder, and two
    different cells never share one."""
    if is_safe_name(cell):
        return cell
    cleaned = _UNSAFE.sub("_", cell).lstrip(".")[:80]
    return f"{cleaned}_{hashlib.sha256(cell.encode()).hexdigest()[:8]}"


def inside(folder: Path, path: Path) -> Path:
    """``path``, after checking that it lies under ``folder`` (lexically: links the user placed in the
    folder are followed, but a name built from data never climbs out of it)."""
    relative = os.path.relpath(os.path.abspath(path), os.path.abspath(folder))
    if relative == os.pardir or relative.startswith(os.pardir + os.sep):
        raise ValueError(f"refusing to write {path}: it is outside {folder}")
    return path


def link_target(path: Path) -> Path:
    """The file a link at ``path`` leads to (``path`` itself when it is none). Writing there keeps the
    link a link and updates the file it shares; :func:`atomic_path` alone would replace the link by a
    regular file, leaving the shared file as it was."""
    return Path(os.path.realpath(path))


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary file beside ``path`` to write; it replaces ``path`` when the block ends, and is
    removed if the block fails, so readers see the old file or the new one, never a torn one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    os.chmod(tmp, path.stat().st_mode & 0o777 if path.exists() else NEW_FILE_MODE)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def stale_temporaries(path: Path) -> list[Path]:
    """Temporaries of ``path`` left by a process killed mid-write (only safe to remove under its lock)."""
    return sorted(path.parent.glob(f".{path.name}.*.tmp"))


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (flushed to disk before it replaces the old file)."""
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=1, sort_keys=True, default=str) + "\n")


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Exclusive advisory lock on ``path.lock`` for the duration of the block, beside the file a link at ``path``
    leads to: processes that reach one file through different links share one lock. filelock takes the operating
    system's lock (flock on POSIX, the msvcrt lock on Windows, where fcntl does not exist), which the kernel drops
    when its holder dies, so a killed writer never leaves the board locked; a new lock file's permissions follow
    the umask, so a group that shares a board can take its lock."""
    path = link_target(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(path.with_suffix(path.suffix + ".lock")):
        yield
