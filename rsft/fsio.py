"""Atomic file writes: every output is written beside its destination under a unique hidden
temporary name, then renamed into place, so a reader (or a re-run after a kill) sees either
the old file, the new one, or nothing — never half a file.

Temporary names are ``.<name>.tmp-<pid>-<thread>-<random>``: unique across processes and
threads writing the same destination, hidden from dataset scans (dot-files), and recognisable
(with the writer's pid) by the clean-up of a killed run's leftovers.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import threading
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

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


def digest(*parts: Any) -> str:
    """A content key: 16 hex digits of sha256 over the JSON of ``parts`` (keys sorted)."""
    h = hashlib.sha256()
    for p in parts:
        h.update(json.dumps(p, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


@contextmanager
def file_lock(path: str | Path, waiting: Callable[[], None] | None = None) -> Iterator[None]:
    """An exclusive lock on ``path`` (created) for the block: processes and threads alike (each
    call opens its own file description); released by the OS when the holder dies. ``waiting`` is
    called once when the lock is held by someone else, before blocking for it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if waiting is not None:
                waiting()
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _proc_start(pid: int) -> str | None:
    """Process ``pid``'s start time in clock ticks since boot (Linux ``/proc``), or None."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _namespace() -> str:
    """This machine's boot and this process's pid namespace: where a pid means the same process."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        return f"{boot}/{os.stat('/proc/self/ns/pid').st_ino}"
    except OSError:
        return ""


def owner() -> dict[str, str]:
    """Who runs a night, for telling a killed night from a running one later (tags, labels):
    host, pid, and where the pid is valid plus when that process started (``rsft.proc``)."""
    import socket

    pid = os.getpid()
    return {"rsft.host": socket.gethostname(), "rsft.pid": str(pid),
            "rsft.proc": f"{_namespace()}@{_proc_start(pid) or ''}"}


def owner_gone(tags: dict[str, str]) -> bool:
    """Whether the process an :func:`owner` record names is certainly gone: recorded on this host,
    in this boot and pid namespace (a container sharing the hostname has its own pids: unknown,
    so not gone), and its pid is free or now another process (started at another time)."""
    import socket

    pid = str(tags.get("rsft.pid", ""))
    if tags.get("rsft.host") != socket.gethostname() or not pid.isdigit():
        return False
    where, _, started = str(tags.get("rsft.proc", "")).partition("@")
    if "rsft.proc" in tags and where != _namespace():
        return False
    if not pid_alive(int(pid)):
        return True
    return bool(started) and _proc_start(int(pid)) not in (None, started)  # the pid was reused


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
