"""What an ingest reports: each file's outcome (:class:`FileResult`), the run's
(:class:`IngestSummary`), and :class:`FileError` — a file that cannot be ingested, with a
one-line message — which the other ingest modules raise and :mod:`rsft.ingest.run` turns into a
``failed`` result for that file alone.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class FileResult:
    file: str
    digest: str
    status: str  # ok | skipped | duplicate | failed
    error: str | None = None
    rows_total: int | None = None
    rows_ok: int | None = None
    rows_quarantined: int | None = None
    duplicate_of: str | None = None
    key_conflicts: int | None = None  # rows of the file in a unique-key conflict (``unique``), kept or not

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class IngestSummary:
    files: list[FileResult] = field(default_factory=list)

    @property
    def rows_ok(self) -> int:
        return sum(f.rows_ok or 0 for f in self.files)

    @property
    def rows_quarantined(self) -> int:
        return sum(f.rows_quarantined or 0 for f in self.files)

    def to_dict(self) -> dict[str, Any]:
        return {"files": [f.to_dict() for f in self.files], "rows_ok": self.rows_ok, "rows_quarantined": self.rows_quarantined,
                "files_failed": sum(f.status == "failed" for f in self.files)}


class FileError(Exception):
    """A file that cannot be ingested; the message is one line."""
