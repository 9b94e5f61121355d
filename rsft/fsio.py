"""Atomic file writes: every output is written beside its destination under a unique hidden
temporary name, then renamed into place, so a reader (or a re-run after a kill) sees either
the old file, the new one, or nothing — never half a file.

Temporary names are ``.<name>.tmp-<pid>-<thread>-<random>``: unique across processes and
threads writing the same destination, hidden from dataset scans (dot-files), and recognisable
(with the writer's pid) by the clean-up of a killed run's leftovers.
"""

from __future__ import annotations

import os
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
