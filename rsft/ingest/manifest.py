"""The dataset on disk, as its readers see it: where a file's parts go (named by the file's
digest), the manifest (``_manifest/<digest>.json``, one entry per completed file), removing the
parts of a file that changed and the temp files of a killed run, and the scans of the data and
the quarantine (with a count of quarantine reasons).
"""

from __future__ import annotations

import glob
import json
import os
from pathlib import Path
from typing import Sequence

import polars as pl

from rsft.fsio import atomic_write_text, digest, remove_orphans


def _part_stem(digest: str) -> str:
    """A file's output parts are named by its content digest (a re-run overwrites, never duplicates)."""
    return f"part-{digest[:24]}"


def quarantine_part(dataset_dir: str | Path, digest: str) -> Path:
    """The quarantine part of the file with this digest."""
    return Path(dataset_dir) / "quarantine" / f"{_part_stem(digest)}.parquet"


def _manifest(dataset_dir: str | Path) -> dict[str, dict]:
    d = Path(dataset_dir) / "_manifest"
    return {p.stem: json.loads(p.read_text()) for p in d.glob("*.json")} if d.exists() else {}


def _write_entry(dataset_dir: Path, digest: str, entry: dict) -> None:
    """A file's manifest entry, written atomically and last: the file counts as done only now."""
    atomic_write_text(dataset_dir / "_manifest" / f"{digest}.json", json.dumps(entry))


def _forget_path(dataset_dir: Path, path: str, keep_digest: str) -> None:
    """A changed file (same path, new content) replaces its earlier parts."""
    for dig, entry in _manifest(dataset_dir).items():
        if entry["path"] == path and dig != keep_digest:
            for p in entry.get("outputs", []):
                Path(p).unlink(missing_ok=True)
            (dataset_dir / "_manifest" / f"{dig}.json").unlink(missing_ok=True)


def clean_orphans(dataset_dir: str | Path) -> int:
    """Remove temp files left by an ingest process that died (its pid is in the name:
    :data:`rsft.fsio.ORPHAN_NAME`)."""
    return sum(remove_orphans(Path(dataset_dir) / sub) for sub in ("data", "quarantine", "_manifest", "_keys"))


def scan_dataset(dataset_dir: str | Path) -> pl.LazyFrame:
    parts = sorted(glob.glob(os.path.join(str(dataset_dir), "data", "**", "*.parquet"), recursive=True))
    if not parts:
        raise FileNotFoundError(f"dataset {dataset_dir} has no ingested rows yet")
    return pl.scan_parquet(parts, hive_partitioning=False)  # keys are stored in the files too


def quarantine_reasons(dataset_dir: str | Path, digests: Sequence[str], top: int = 5) -> dict[str, int]:
    """Rows quarantined per reason by the given files (this run's: their quarantine parts), the
    ``top`` most frequent first and the rest summed as ``other reasons``."""
    parts = [p for p in (quarantine_part(dataset_dir, d) for d in digests if d) if p.exists()]
    if not parts:
        return {}
    try:
        counts = (pl.scan_parquet(parts).group_by("reason").len()
                  .sort(["len", "reason"], descending=[True, False]).collect())
    except (OSError, pl.exceptions.PolarsError):  # a part replaced by a concurrent ingest: a summary line only
        return {}
    out = dict(zip(counts["reason"].head(top).to_list(), counts["len"].head(top).to_list()))
    if counts.height > top:
        out["other reasons"] = int(counts["len"].slice(top).sum())
    return out


def scan_quarantine(dataset_dir: str | Path) -> pl.LazyFrame:
    parts = sorted(glob.glob(os.path.join(str(dataset_dir), "quarantine", "*.parquet")))
    if not parts:
        return pl.LazyFrame(schema={"_source": pl.String, "_row": pl.Int64, "reason": pl.String})
    return pl.concat([pl.scan_parquet(p) for p in parts], how="diagonal_relaxed")


def dataset_digest(dataset_dir: str | Path) -> str:
    """Digest of an ingested dataset = digest of its manifest entries (file digests)."""
    return digest(sorted(p.name for p in (Path(dataset_dir) / "_manifest").glob("*.json")))
