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
from rsft.ingest.contract import POLARS_TYPES


def _part_stem(digest: str) -> str:
    """A file's output parts are named by its content digest (a re-run overwrites, never duplicates)."""
    return f"part-{digest[:24]}"


def data_stem(digest: str, dtypes: dict | None = None) -> str:
    """The stem of a file's data parts: :func:`_part_stem`, or, when the file is ingested again
    because the contract changed its column types, that plus the new types' digest — new part
    names, so whatever was computed from the old parts (kept-pool days) is not reused."""
    return _part_stem(digest) if dtypes is None else f"{_part_stem(digest)}-t{digest_of_types(dtypes)}"


def digest_of_types(dtypes: dict | None) -> str:
    return digest(sorted((dtypes or {}).items()))[:8]


def contract_dtypes(contract) -> dict[str, str]:
    """The column types a contract gives the dataset (recorded in each manifest entry, ``dtypes``)."""
    return {c.name: c.dtype for c in contract.columns}


def stored_dtypes(dataset_dir: Path, digest: str, entry: dict, contract) -> dict[str, str] | None:
    """The column types a file's parts were written with: its manifest entry's ``dtypes``, or, for
    an entry written before they were recorded, read from its first data part (then recorded).
    None when it has no data part (every row quarantined: nothing typed is stored)."""
    if "dtypes" in entry:
        return entry["dtypes"]
    data = data_parts(dataset_dir, entry)
    if not data:
        return None
    schema = pl.read_parquet_schema(data[0])
    names = {c.name: c.dtype for c in contract.columns}
    found = {}
    for n, dt in schema.items():
        if n in names:
            if isinstance(dt, pl.Datetime):
                found[n] = "timestamp"
            else:
                found[n] = next((k for k, v in POLARS_TYPES.items() if dt == v), str(dt))
    for n, want in names.items():  # a column all null in the part: its type is whatever was asked
        if n in found and str(schema[n]) == "Null":
            found[n] = want
    _write_entry(Path(dataset_dir), digest, {**entry, "dtypes": found})
    return found


def type_changes(old: dict[str, str], new: dict[str, str]) -> list[str]:
    """``distance: float64 → int64`` for each column of both whose type differs."""
    return [f"{n}: {old[n]} → {new[n]}" for n in new if n in old and old[n] != new[n]]


def retyped_parts(dataset_dir: str | Path, digest: str, keep: list[str]) -> list[Path]:
    """Data parts of the file with this digest written under another contract's types (their
    stem carries ``-t<types>``) that its manifest entry does not list (``keep``): a re-ingest
    killed after publishing them, or one that failed."""
    listed = {os.path.abspath(p) for p in keep}
    return [p for p in (Path(dataset_dir) / "data").rglob(f"{_part_stem(digest)}-t*.parquet")
            if os.path.abspath(p) not in listed]


def quarantine_part(dataset_dir: str | Path, digest: str) -> Path:
    """The quarantine part of the file with this digest."""
    return Path(dataset_dir) / "quarantine" / f"{_part_stem(digest)}.parquet"


def _manifest(dataset_dir: str | Path) -> dict[str, dict]:
    d = Path(dataset_dir) / "_manifest"
    out = {}
    for p in d.glob("*.json") if d.exists() else ():
        try:
            out[p.stem] = json.loads(p.read_text())
        except FileNotFoundError:  # a changed file's entry a concurrent ingest removed after the listing
            continue
    return out


def read_entry(dataset_dir: str | Path, digest: str) -> dict:
    """One file's manifest entry ({} when it has none, or it cannot be read)."""
    try:
        return json.loads((Path(dataset_dir) / "_manifest" / f"{digest}.json").read_text())
    except (OSError, ValueError):
        return {}


def _write_entry(dataset_dir: Path, digest: str, entry: dict) -> None:
    """A file's manifest entry, written atomically and last: the file counts as done only now."""
    atomic_write_text(dataset_dir / "_manifest" / f"{digest}.json", json.dumps(entry))


def _forget_path(dataset_dir: Path, path: str, keep_digest: str | None) -> None:
    """A changed file (same path, new content) replaces its earlier parts (``keep_digest`` None:
    every entry of the path goes)."""
    for dig, entry in _manifest(dataset_dir).items():
        if entry["path"] == path and dig != keep_digest:
            for p in local_outputs(dataset_dir, entry):
                p.unlink(missing_ok=True)
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
    """Digest of an ingested dataset = digest of its manifest entries (file digests), and of the
    data part stems of the files ingested again after a contract type change (their parts differ
    though their source did not)."""
    return entries_digest(_manifest(dataset_dir))


def entries_digest(entries: dict[str, dict]) -> str:
    """:func:`dataset_digest` of some of a dataset's files (digest -> manifest entry): the same
    value as the whole dataset's when they are all of it."""
    names = sorted(f"{d}.json" for d in entries)
    stems = sorted(e["stem"] for e in entries.values() if e.get("stem"))
    return digest(names, stems) if stems else digest(names)


def local_output(dataset_dir: str | Path, path: str) -> Path:
    """An output a manifest entry lists, under ``dataset_dir`` as it is now. Entries record the
    paths their parts were written at, which a copied or moved state dir no longer has: removing
    those would remove the *original* dir's parts (a state dir copied to try a setting, then
    ingested again, deleted its source's rows). The path below ``data/``, ``quarantine/`` or
    ``_keys/`` is the same; anything else is taken as it is."""
    cuts = [path.rfind(f"{os.sep}{d}{os.sep}") for d in ("data", "quarantine", "_keys")]
    i = max(cuts)  # the dataset's own subdir: hive values are quoted (no separator inside them)
    return Path(dataset_dir) / path[i + 1:] if i >= 0 else Path(path)


def local_outputs(dataset_dir: str | Path, entry: dict) -> list[Path]:
    """Every output a manifest entry lists, under ``dataset_dir`` as it is now (:func:`local_output`)."""
    return [local_output(dataset_dir, p) for p in entry.get("outputs", [])]


def data_parts(dataset_dir: str | Path, entry: dict) -> list[Path]:
    """The data parts a manifest entry lists, found under ``dataset_dir`` now
    (:func:`local_output`). Parts that are gone are left out."""
    return [q for q in local_outputs(dataset_dir, entry)
            if q.name.endswith(".parquet") and q.parent.relative_to(Path(dataset_dir)).parts[:1] == ("data",) and q.exists()]
