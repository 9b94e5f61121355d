"""Atomic file writes: every output is written beside its destination under a unique hidden
temporary name, then renamed into place, so a reader (or a re-run after a kill) sees either
the old file, the new one, or nothing — never half a file.

Temporary names are ``.<name>.tmp-<pid>-<thread>-<random>``: unique across processes and
threads writing the same destination, hidden from dataset scans (dot-files), and recognisable
(with the writer's pid) by the clean-up of a killed run's leftovers.
"""

from __future__ import annotations

import os
import re
import shutil
import threading
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

TMP_MARK = ".tmp-"


def temp_path(path: str | Path) -> Path:
    """A unique temporary path in ``path``'s directory (same file system: rename is atomic)."""
    p = Path(path)
    return p.with_name(f".{p.name}{TMP_MARK}{os.getpid()}-{threading.get_ident()}-{uuid.uuid4().hex[:8]}")


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path``, on error it is removed.

    >>> with atomic_path("out.parquet") as tmp:   # doctest: +SKIP
    ...     df.write_parquet(tmp)
    """
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(dest)
    try:
        yield tmp
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically; returns ``path``."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns ``path``."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


# a hidden temp name carrying the pid of the process that writes it: fsio's ".<name>.tmp-<pid>-…",
# the ingest's ".staging-<pid>-…", ".fetch-<pid>-…", ".gunzip-<pid>-…", the prefilter's ".split-<pid>-…"
ORPHAN_NAME = re.compile(r"(?:tmp|gunzip|fetch|staging|split)-(\d+)-")


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_orphans(directory: str | Path) -> int:
    """Remove the hidden temp files and folders in ``directory`` left by a process that died
    (its pid is in the name; a live writer's are kept). Returns how many were removed."""
    removed = 0
    for p in Path(directory).glob(".*"):
        m = ORPHAN_NAME.search(p.name)
        if m and not pid_alive(int(m.group(1))):
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
            removed += 1
    return removed
