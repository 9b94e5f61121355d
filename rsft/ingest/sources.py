"""Where a file comes from: the files behind the configured sources (files, directories, globs,
``file://`` or any fsspec URI), opening them, their sizes, and local plain copies for the
readers — a remote file fetched to disk, a ``.gz`` export decompressed — written beside the
dataset as ``.fetch-<pid>-…`` / ``.gunzip-<pid>-…`` (a killed run's copies are recognised by
:func:`rsft.ingest.manifest.clean_orphans`).
"""

from __future__ import annotations

import glob
import gzip
import os
import shutil
import threading
import zlib
from pathlib import Path
from typing import Sequence

from rsft.ingest.results import FileError


# object-store listings are read fresh every time: fsspec keeps filesystem instances (and their
# listing caches) for the life of the process, so a long-running `rsft serve` would otherwise
# never see a new export under a glob, and fail on one rewritten under the same key
_FRESH = {"use_listings_cache": False}


def _is_remote(path: str) -> bool:
    return "://" in path and not path.startswith("file://")


def _strip_file(path: str) -> str:
    return path[len("file://"):] if path.startswith("file://") else path


def list_sources(sources: str | Sequence[str]) -> list[str]:
    """Files of the given files / directories / globs; local paths, file:// or any fsspec URI."""
    items = [sources] if isinstance(sources, (str, Path)) else list(sources)
    out: list[str] = []
    for s in map(str, items):
        if _is_remote(s):
            import fsspec

            fs, _, paths = fsspec.get_fs_token_paths(s, storage_options=_FRESH)
            proto = s.split("://", 1)[0]
            for p in paths:
                found = fs.find(p) if fs.isdir(p) else [p]
                out += [f"{proto}://{q.lstrip('/')}" if proto != "memory" else f"memory://{q}" for q in found]
            continue
        s = _strip_file(s)
        if os.path.isdir(s):
            out += [p for p in glob.glob(os.path.join(s, "**", "*"), recursive=True) if os.path.isfile(p)]
        elif any(ch in s for ch in "*?["):
            out += glob.glob(s, recursive=True)
        else:
            out.append(s)
    return sorted(set(out), key=lambda p: (os.path.basename(p), p))


def _open(path: str):
    if _is_remote(path):
        import fsspec

        return fsspec.open(path, "rb", **_FRESH).open()
    return open(path, "rb")


def _size(path: str) -> int:
    """Bytes of a file (the progress bar's unit); 0 when unknown."""
    try:
        if _is_remote(path):
            import fsspec

            fs, _, (p,) = fsspec.get_fs_token_paths(path, storage_options=_FRESH)
            return int(fs.size(p) or 0)
        return os.path.getsize(_strip_file(path))
    except (OSError, ValueError):
        return 0


def _fetch(uri: str, tmp_dir: Path) -> str:
    """Copy a remote (fsspec) file to a local temp file in 4 MiB blocks."""
    tmp_dir.mkdir(parents=True, exist_ok=True)
    out = tmp_dir / f".fetch-{os.getpid()}-{threading.get_ident()}-{uri.rsplit('/', 1)[-1]}"
    with _open(uri) as src, open(out, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 22)
    return str(out)


def _gunzip(path: str, tmp_dir: Path) -> str:
    """Stream-decompress a .gz export next to the outputs (bounded memory); truncation is an error."""
    tmp_dir.mkdir(parents=True, exist_ok=True)
    out = tmp_dir / f".gunzip-{os.getpid()}-{threading.get_ident()}-{Path(path).name[:-3]}"
    try:
        with gzip.open(path, "rb") as src, open(out, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 22)
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:
        out.unlink(missing_ok=True)
        raise FileError(f"truncated or corrupt gzip stream: {e}") from None
    return str(out)
