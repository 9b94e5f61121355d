"""Planning: the configured sources expanded to files, each digested (SHA-256 of its bytes) and
given an action — ``ingest``, ``skip`` (this path with this content is in the manifest) or
``duplicate`` (byte-identical to another file, under ``file_dedupe: skip_identical``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

from rsft import progress as _progress
from rsft.config import ContractConfig
from rsft.fsio import atomic_write_text
from rsft.ingest.manifest import _manifest, clean_orphans, contract_dtypes, stored_dtypes, type_changes
from rsft.ingest.sources import _open, _size, list_sources

log = logging.getLogger("rsft.ingest")


@dataclass(frozen=True)
class FilePlan:
    path: str
    name: str
    digest: str
    action: str = "ingest"  # ingest | skip (already done) | duplicate (of another file)
    duplicate_of: str | None = None
    # ingested again: its parts in the dataset have column types the contract no longer gives
    reingest: bool = False
    # ingested again because the operator asked (`rsft ingest --again`): a file done before, under
    # the contract as it is now (a fixed policy accepts rows it quarantined); also ``reingest``
    again: bool = False


class ContractChanged(ValueError):
    """The contract changed the column types of ingested files that cannot be ingested again."""


def file_digest(path: str) -> str:
    h = hashlib.sha256()
    with _open(path) as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


DIGEST_CACHE = "_digests.json"  # local path -> [size, mtime_ns, SHA-256] of files digested before


def _stat(path: str) -> list[int] | None:
    """(size, mtime in ns) of a local file; None for remote sources (always digested)."""
    if "://" in path and not path.startswith("file://"):
        return None
    try:
        st = os.stat(path[len("file://"):] if path.startswith("file://") else path)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


def _cached_digests(dataset_dir: str | Path) -> dict[str, list]:
    try:
        return json.loads((Path(dataset_dir) / DIGEST_CACHE).read_text())
    except (OSError, ValueError):
        return {}


def plan_ingest(sources: str | Sequence[str], dataset_dir: str | Path, contract: ContractConfig,
                again: bool = False) -> list[FilePlan]:
    """Expand the sources, digest each file, and decide: ingest, skip (done) or duplicate.

    A local file whose size and modification time (ns) match what the dataset's digest cache
    recorded is not read again: a night costs the new exports, not the whole raw history.
    Remote sources are digested every time.

    ``again``: the files done before are ingested again under the contract as it is now, their
    parts and quarantine part replaced as after a column type change (``reingest``) — a contract
    policy fixed after its rows were quarantined (``naive_timestamps``, a column the exports lack)
    applies only to files ingested from then on otherwise."""
    clean_orphans(dataset_dir)
    done = _manifest(dataset_dir)
    seen: dict[str, str] = {}
    plans = []
    paths = list_sources(sources)
    cache = _cached_digests(dataset_dir)
    fresh: dict[str, list] = {}

    def digest(path: str) -> str:
        st = _stat(path)
        hit = cache.get(path)
        if st is not None and hit and hit[:2] == st:
            fresh[path] = hit
            return hit[2]
        try:
            dig = file_digest(path)
        except OSError:
            return ""  # ingest_file reports the error
        if st is not None:
            fresh[path] = [*st, dig]
        return dig

    # hashlib releases the GIL: a nightly drop of many files is digested on every core
    with ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1))) as pool:
        digests = list(pool.map(digest, paths))
    if fresh != cache:  # files no longer listed drop out of the cache
        Path(dataset_dir).mkdir(parents=True, exist_ok=True)
        atomic_write_text(Path(dataset_dir) / DIGEST_CACHE, json.dumps(fresh))
    for path, dig in zip(paths, digests):
        name = os.path.basename(path)
        if not dig:
            plans.append(FilePlan(path, name, "", "ingest"))
            continue
        if dig in done and done[dig]["path"] == path:
            plans.append(FilePlan(path, name, dig, "ingest", reingest=True, again=True) if again
                         else FilePlan(path, name, dig, "skip"))
        elif contract.file_dedupe == "skip_identical" and (dig in seen or dig in done):
            plans.append(FilePlan(path, name, dig, "duplicate", seen.get(dig) or os.path.basename(done[dig]["path"])))
        else:
            plans.append(FilePlan(path, name, dig, "ingest"))
        seen.setdefault(dig, name)
    plans = _reingest_stale(plans, dataset_dir, done, contract)
    todo = [p for p in plans if p.action == "ingest"]
    _progress.emit("ingest.plan", files=len(todo), bytes=sum(_size(p.path) for p in todo))
    return plans


def _reingest_stale(plans: list[FilePlan], dataset_dir: str | Path, done: dict[str, dict],
                    contract: ContractConfig) -> list[FilePlan]:
    """A dataset never holds two types of a column: the files ingested under other column types
    than the contract's now are ingested again (their parts replaced); when one of them is no
    longer among the sources, the ingest is refused (:class:`ContractChanged`), one line."""
    want = contract_dtypes(contract)
    stale = {}
    for dig, entry in done.items():
        have = stored_dtypes(Path(dataset_dir), dig, entry, contract)
        # a column both know, typed differently: an added or dropped column is no reason (an old
        # export cannot have a column added since; ingesting it again would only fail)
        if have is not None and type_changes(have, want):
            stale[dig] = (entry, have)
    if not stale:
        return plans
    listed = {p.path for p in plans if p.action in ("ingest", "skip")}
    gone = [e for e, _ in stale.values() if e["path"] not in listed]
    changes = sorted({c for _, have in stale.values() for c in type_changes(have, want)})
    if gone:
        names = ", ".join(sorted(os.path.basename(e["path"]) for e in gone)[:3]) + (", …" if len(gone) > 3 else "")
        raise ContractChanged(
            f"contract {contract.name} changed column types ({'; '.join(changes)}) of {len(gone)} ingested file(s) "
            f"whose export is no longer among the sources ({names}): put the exports back where the config's "
            f"sources list them to ingest them again, or revert the contract's dtype (a dataset never holds "
            f"two types of a column)")
    log.warning("%s: contract %s changed column types (%s): ingesting %d file(s) again", Path(dataset_dir).name,
                contract.name, "; ".join(changes), len(stale))
    paths = {e["path"] for e, _ in stale.values()}  # a changed export of such a path replaces it as well
    return [replace(p, action="ingest", reingest=True, again=False)  # for the types, whether asked or not
            if (p.action == "skip" and p.digest in stale) or (p.action == "ingest" and p.path in paths) else p
            for p in plans]
