"""Ingest: raw exports (CSV/CSV.gz, Parquet, JSONL) -> a Parquet dataset + quarantine + manifest.

Layout under ``dataset_dir``::

    data/part-<digest>.parquet        rows that satisfy the contract (+ lineage: _source, _row)
    quarantine/part-<digest>.parquet  rows that do not, as raw strings, with a ``reason``
    _manifest/<digest>.json           one entry per completed file, written last
    _keys/part-<digest>.parquet       with a unique key: the file's kept keys (hashes), for later files
    .lock                             taken by one file at a time to publish its parts and entry

Every value is read as text first and cast with ``strict=False``; a row whose cast is null
while its source text was not is a violation, routed to quarantine with the column named —
never coerced silently. A file-level problem (unreadable, missing column, wrong Parquet type)
fails that file alone with a one-line error.

The way a file goes, and the module for each step (each imports only the ones above it)::

    results    FileError (a file's one-line failure), FileResult, IngestSummary
    sources    the files behind the sources (paths, dirs, globs, fsspec URIs); local plain copies
               of remote and .gz files
    manifest   the dataset on disk: part names, manifest entries, a changed file's old parts, a
               killed run's temp files; scan_dataset, scan_quarantine, quarantine_reasons
    plan       1. plan_ingest: digest every file -> FilePlan ingest | skip (done) | duplicate
    contract   the contract as expressions: header check, cheap pass (_fast), full check
               (_typed per column, _validate per frame)
    readers    2. the file as text columns: CSV, Parquet, JSONL (an empty export per empty_file)
    dedup      exact duplicate rows (_SeenHashes)
    unique     the contract's unique key (``unique``): each written row's key logged (KeyLog), then
               resolved against the dataset's other files under a lock; the losers moved to quarantine
    writers    typed rows -> Parquet parts in staging, partitioned, on a writer thread (_Parts);
               bad rows -> the quarantine part; staged parts renamed into the dataset
    stream     3. batches: cheap pass on every row, full check on the flagged, duplicates,
               rows to the data or the quarantine writer
    run        ingest_file: 2-3 into staging and a temp quarantine part, (with ``unique``: the keys
               resolved), then 4. rename into place and write the manifest entry last; ingest: 1,
               then every file
    profile    after an ingest: each new file's column profile (kept in its manifest entry) and
               the check against the files of the same machines before it (a unit change)
"""

from rsft.ingest.contract import _fast, _typed, typed_names
from rsft.ingest.manifest import clean_orphans, quarantine_part, quarantine_reasons, scan_dataset, scan_quarantine
from rsft.ingest.plan import FilePlan, file_digest, plan_ingest
from rsft.ingest.readers import JSONL_SPOOL_ROWS
from rsft.ingest.results import FileError, FileResult, IngestSummary
from rsft.ingest.run import ingest, ingest_file
from rsft.ingest.sources import list_sources
from rsft.ingest.writers import _Parts, partition_columns

__all__ = [
    "FileError", "FilePlan", "FileResult", "IngestSummary", "JSONL_SPOOL_ROWS", "clean_orphans", "file_digest", "ingest",
    "ingest_file", "list_sources", "partition_columns", "plan_ingest", "quarantine_part", "quarantine_reasons",
    "scan_dataset", "scan_quarantine", "typed_names",
    # not public, imported elsewhere: rsft.prefilter (_Parts), tests (_fast, _typed)
    "_Parts", "_fast", "_typed",
]
