"""Ingest: raw exports (CSV/CSV.gz, Parquet, JSONL) -> a Parquet dataset + quarantine + manifest.

Layout under ``dataset_dir``::

    data/part-<digest>.parquet        rows that satisfy the contract (+ lineage: _source, _row)
    quarantine/part-<digest>.parquet  rows that do not, as raw strings, with a ``reason``
    _manifest/<digest>.json           one entry per completed file, written last

Every value is read as text first and cast with ``strict=False``; a row whose cast is null
while its source text was not is a violation, routed to quarantine with the column named —
never coerced silently. A file-level problem (unreadable, missing column, wrong Parquet type)
fails that file alone with a one-line error.
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
