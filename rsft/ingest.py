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

from __future__ import annotations

import glob
import gzip
import hashlib
import json
import logging
import os
import queue
import re
import shutil
import threading
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence
from urllib.parse import quote

import polars as pl
import pyarrow.parquet as pq

from rsft import progress as _progress
from rsft.config import ColumnContract, ContractConfig

log = logging.getLogger(__name__)

_TZ = r"(Z|[+-]\d{2}:?\d{2})$"
_ISO_AWARE = "%Y-%m-%dT%H:%M:%S%.f%#z"  # Z, +01:00 or +0100, optional fraction
_ISO_NAIVE = "%Y-%m-%dT%H:%M:%S%.f"
_ISO_Z = "%Y-%m-%dT%H:%M:%SZ"  # the fast path's one shape
_BOOL = {"true": True, "1": True, "false": False, "0": False}


@dataclass(frozen=True)
class FilePlan:
    path: str
    name: str
    digest: str
    action: str = "ingest"  # ingest | skip (already done) | duplicate (of another file)
    duplicate_of: str | None = None


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


# --------------------------------------------------------------------------------------
# planning
# --------------------------------------------------------------------------------------
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

            fs, _, paths = fsspec.get_fs_token_paths(s)
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

        return fsspec.open(path, "rb").open()
    return open(path, "rb")


def file_digest(path: str) -> str:
    h = hashlib.sha256()
    with _open(path) as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _manifest(dataset_dir: str | Path) -> dict[str, dict]:
    d = Path(dataset_dir) / "_manifest"
    return {p.stem: json.loads(p.read_text()) for p in d.glob("*.json")} if d.exists() else {}


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_orphans(dataset_dir: str | Path) -> int:
    """Remove temp files left by an ingest process that died (its pid is in the name)."""
    removed = 0
    for sub in ("data", "quarantine", "_manifest"):
        for p in (Path(dataset_dir) / sub).glob(".*"):
            m = re.search(r"(?:tmp|gunzip|fetch|staging)-(\d+)-", p.name)
            if m and not _pid_alive(int(m.group(1))):
                shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
                removed += 1
    return removed


def plan_ingest(sources: str | Sequence[str], dataset_dir: str | Path, contract: ContractConfig) -> list[FilePlan]:
    """Expand the sources, digest each file, and decide: ingest, skip (done) or duplicate."""
    clean_orphans(dataset_dir)
    done = _manifest(dataset_dir)
    seen: dict[str, str] = {}
    plans = []
    paths = list_sources(sources)

    def digest(path: str) -> str:
        try:
            return file_digest(path)
        except OSError:
            return ""  # ingest_file reports the error

    # hashlib releases the GIL: a nightly drop of many files is digested on every core
    with ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1))) as pool:
        digests = list(pool.map(digest, paths))
    for path, dig in zip(paths, digests):
        name = os.path.basename(path)
        if not dig:
            plans.append(FilePlan(path, name, "", "ingest"))
            continue
        if dig in done and done[dig]["path"] == path:
            plans.append(FilePlan(path, name, dig, "skip"))
        elif contract.file_dedupe == "skip_identical" and (dig in seen or dig in done):
            plans.append(FilePlan(path, name, dig, "duplicate", seen.get(dig) or os.path.basename(done[dig]["path"])))
        else:
            plans.append(FilePlan(path, name, dig, "ingest"))
        seen.setdefault(dig, name)
    todo = [p for p in plans if p.action == "ingest"]
    _progress.emit("ingest.plan", files=len(todo), bytes=sum(_size(p.path) for p in todo))
    return plans


def _size(path: str) -> int:
    try:
        return os.path.getsize(_strip_file(path)) if not _is_remote(path) else 0
    except OSError:
        return 0


# --------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------
def _header(path: str) -> str:
    """First line of a (plain) CSV, BOM stripped; an empty file is an error."""
    with open(path, "rb") as fh:
        line = fh.readline(1 << 20)
    if line.startswith(b"\xef\xbb\xbf"):
        line = line[3:]
    if not line.strip():
        raise FileError("empty file (no header)")
    return line.decode("utf-8", errors="replace").rstrip("\r\n")


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


def _scan_text_table(path: str, contract: ContractConfig) -> tuple[pl.LazyFrame, list[str], str | None]:
    """CSV as a lazy all-string frame with a 1-based ``_row`` (streamed by the sinks), its extra
    columns, and the structural reason for a cut-off last record (:func:`_short_last_record`)."""
    if os.path.getsize(path) == 0:
        raise FileError("empty file (no header)")
    header = _header(path)
    sep = contract.delimiter
    if contract.sniff_delimiter:
        sep = max([",", ";", "\t", "|"], key=header.count)
    cols = [c.strip().strip('"') for c in header.split(sep)]
    extra = _check_columns(cols, contract)
    if contract.structural_errors == "fail_file":
        _check_structure(path, sep, len(cols))
    lf = pl.scan_csv(path, infer_schema=False, separator=sep)
    lf = lf.with_row_index("_row", offset=1).with_columns(pl.col("_row").cast(pl.Int64))
    if contract.max_line_bytes:  # the record's bytes: its fields plus the separators
        text = [pl.col(c).str.len_bytes().fill_null(0) for c in cols]
        lf = lf.with_columns(__len=pl.sum_horizontal(text) + (len(cols) - 1))
    return lf, extra, _short_last_record(path, sep, len(cols))


def _short_last_record(path: str, sep: str, expected: int) -> str | None:
    """A file cut off mid-record (no final newline, last line with too few fields, no quotes to
    make the count ambiguous): the reason its last record gets instead of the first missing column."""
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        fh.seek(max(0, size - (1 << 20)))
        tail = fh.read()
    if not tail or tail.endswith(b"\n") or b"\n" not in tail or b'"' in tail.rsplit(b"\n", 1)[1]:
        return None
    got = len(tail.rsplit(b"\n", 1)[1].rstrip(b"\r").decode("utf-8", errors="replace").split(sep))
    return f"wrong number of fields ({got}, expected {expected})" if got < expected else None


def _name_short_last_record(tmp_bad: Path, last_row: int, reason: str, name: str) -> None:
    """Give the truncated last record its structural reason in the quarantine part."""
    if tmp_bad.exists():
        q = pl.read_parquet(tmp_bad)
        if (q["_row"] == last_row).any():
            q.with_columns(reason=pl.when(pl.col("_row") == last_row).then(pl.lit(reason)).otherwise(pl.col("reason"))
                           ).write_parquet(tmp_bad, compression="zstd")
            return
    log.warning("%s: last record (row %d) has %s but passed the value checks; it was ingested", name, last_row, reason)


def _check_structure(path: str, sep: str, expected: int) -> None:
    """``structural_errors: fail_file``: a quote-aware pass (Python's csv module, RFC 4180) that
    fails the file at the first record whose field count differs from the header's. Opt-in: it
    reads the file once more (~50–100 MB/s); by default such a record is quarantined instead."""
    import csv

    csv.field_size_limit(2**31 - 1)  # a huge field is not a structural error
    with open(path, encoding="utf-8", errors="replace", newline="") as fh:
        reader = csv.reader(fh, delimiter=sep)
        next(reader, None)
        for row, rec in enumerate(reader, start=1):
            if len(rec) != expected and rec:
                raise FileError(f"row {row}: wrong number of fields ({len(rec)}, expected {expected}); "
                                f"structural_errors: fail_file")


def _check_columns(cols: list[str], contract: ContractConfig) -> list[str]:
    expected = [c.name for c in contract.columns]
    missing = [c for c in expected if c not in cols]
    if missing:
        raise FileError(f"missing required column(s): {', '.join(missing)}")
    extra = [c for c in cols if c not in expected and not c.startswith("_")]
    if extra and contract.unknown_columns == "reject":
        raise FileError(f"unknown column(s): {', '.join(extra)}")
    if extra and contract.unknown_columns == "drop":
        log.warning("dropping unknown column(s): %s", ", ".join(extra))
    return extra if contract.unknown_columns == "keep" else []


def _typed(
    col: ColumnContract, naive_policy: str = "reject", utc_only: bool = False,
    value: pl.Expr | None = None, present: pl.Expr | None = None,
) -> tuple[pl.Expr, pl.Expr]:
    """(typed value, reason or null) for one contract column read as text.

    ``value`` / ``present`` may name columns that already hold this column's parsed value and
    its presence flag, so the reason expressions do not parse the text again.
    """
    raw = pl.col(col.name)
    if present is None:
        present = raw.is_not_null() & (raw.str.strip_chars() != "")
    missing = pl.when(~present & (not col.nullable)).then(pl.lit(f"missing {col.name}"))
    if col.dtype == "float64":
        val = pl.when(present).then(raw.str.strip_chars().cast(pl.Float64, strict=False)) if value is None else value
        bad = pl.when(present & val.is_null()).then(pl.lit(f"{col.name} not a number"))
        nonfinite = pl.when(col.finite & val.is_not_null() & ~val.is_finite()).then(pl.lit(f"{col.name} non-finite"))
        rng = pl.lit(False)
        if col.min is not None:
            rng = rng | (val < col.min)
        if col.max is not None:
            rng = rng | (val > col.max)
        out = pl.when(val.is_finite() & rng).then(pl.lit(f"{col.name} out of range [{col.min}, {col.max}]"))
        return val, pl.coalesce(missing, bad, nonfinite, out)
    if col.dtype == "int64":
        val = pl.when(present).then(raw.str.strip_chars().cast(pl.Int64, strict=False)) if value is None else value
        return val, pl.coalesce(missing, pl.when(present & val.is_null()).then(pl.lit(f"{col.name} not an integer")))
    if col.dtype == "bool":
        low = raw.str.strip_chars().str.to_lowercase()
        val = pl.when(low.is_in(["true", "1"])).then(True).when(low.is_in(["false", "0"])).then(False)
        return val, pl.coalesce(missing, pl.when(present & val.is_null()).then(pl.lit(f"{col.name} not a boolean")))
    if col.dtype == "timestamp":
        s = raw.str.strip_chars()
        has_tz = s.str.contains(_TZ)
        aware = s.str.to_datetime(_ISO_AWARE, strict=False, time_unit="us", time_zone="UTC")
        naive = s.str.to_datetime(_ISO_NAIVE, strict=False, time_unit="us").dt.replace_time_zone("UTC")
        utc_form = s.str.contains(r"(Z|\+00:?00)$")
        if naive_policy == "assume_utc":
            val = pl.when(has_tz).then(aware).otherwise(naive) if value is None else value
            naive_reason = pl.lit(None, dtype=pl.String)
        else:
            val = pl.when(has_tz).then(aware) if value is None else value
            # a well-formed wall-clock time without zone (shape check; its validity is in `val` via assume_utc only)
            naive_shape = s.str.contains(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?$")
            naive_reason = pl.when(present & ~has_tz & naive_shape).then(pl.lit(f"{col.name}: timestamp without time zone"))
        offset_reason = pl.when(present & has_tz & ~utc_form).then(pl.lit(f"{col.name}: non-UTC offset")) if utc_only else pl.lit(None, dtype=pl.String)
        reason = pl.coalesce(
            missing, naive_reason, offset_reason,
            pl.when(present & val.is_null()).then(pl.lit(f"{col.name}: unparseable timestamp")),
        )
        return val, reason
    # str
    val = raw
    checks = [missing]
    if col.pattern:
        checks.append(pl.when(present & ~raw.str.contains(f"^(?:{col.pattern})$")).then(pl.lit(f"{col.name} does not match {col.pattern}")))
    if col.allowed is not None:
        checks.append(pl.when(present & ~raw.is_in(col.allowed)).then(pl.lit(f"{col.name} not one of {'|'.join(col.allowed)}")))
    return val, pl.coalesce(*checks)


def _fast(col: ColumnContract) -> tuple[pl.Expr, pl.Expr]:
    """(typed value, needs-a-closer-look flag) for one column read as text — the cheap first pass.

    Conservative by construction: it never accepts a value the full check (:func:`_typed`)
    rejects, and every value it accepts parses to the same result there. A flagged row is
    decided by the full check, which may still accept it (``" 1.5"``, a whitespace-only
    nullable field) — so the flag only decides how much work a row costs, never its fate.
    """
    raw = pl.col(col.name)
    present = raw.is_not_null()
    flags = [] if col.nullable else [~present]
    if col.dtype in ("float64", "int64"):
        val = raw.cast(pl.Float64 if col.dtype == "float64" else pl.Int64, strict=False)
        flags.append(present & val.is_null())
        if col.dtype == "float64":
            if col.finite:
                flags.append(~val.is_finite())
            if col.min is not None:
                flags.append(val < col.min)
            if col.max is not None:
                flags.append(val > col.max)
    elif col.dtype == "bool":
        val = pl.when(raw.is_in(["true", "1"])).then(True).when(raw.is_in(["false", "0"])).then(False)
        flags.append(present & val.is_null())
    elif col.dtype == "timestamp":
        # The usual export shape (whole seconds, 'Z') has a fixed-format parser about 4x faster
        # than the general ISO pattern; any other shape (fraction, offset, naive) is flagged and
        # the full check decides it. Either way the row's fate is the same; only its cost differs.
        val = raw.str.to_datetime(_ISO_Z, strict=False, time_unit="us", time_zone="UTC")
        flags.append(present & val.is_null())
    else:
        val = raw
        if not col.nullable:
            flags.append(raw.str.contains(r"^\s*$"))
        if col.pattern:
            flags.append(~raw.str.contains(f"^(?:{col.pattern})$"))
        if col.allowed is not None:
            flags.append(~raw.is_in(col.allowed))
    flag = pl.any_horizontal(flags).fill_null(False) if flags else pl.lit(False)
    return val, flag


def _validate(raw: pl.LazyFrame, contract: ContractConfig, keep_extra: list[str]) -> tuple[pl.LazyFrame, pl.LazyFrame]:
    """The full check: (good rows typed by the contract, quarantined rows as text with ``reason``).

    Runs on the rows the first pass flagged; a ``__dup`` column (exact duplicate of an earlier
    row of the file) comes from that pass, because only it sees every row.
    """
    names = raw.collect_schema().names()
    # stage 1: parse every column once into helper columns; stage 2: reasons read the parsed values
    pol = (contract.naive_timestamps, contract.utc_only)
    parsed = [_typed(c, *pol)[0].alias(f"__v_{c.name}") for c in contract.columns]
    flags = [(pl.col(c.name).is_not_null() & (pl.col(c.name).str.strip_chars() != "")).alias(f"__p_{c.name}") for c in contract.columns]
    raw = raw.with_columns(parsed + flags)
    typed, reasons = zip(*[
        (pl.col(f"__v_{c.name}"), _typed(c, *pol, value=pl.col(f"__v_{c.name}"), present=pl.col(f"__p_{c.name}"))[1])
        for c in contract.columns
    ])
    reason = pl.coalesce(*reasons)
    if "__pre" in names:
        reason = pl.coalesce(pl.col("__pre"), reason)
    if "__dup" in names:
        reason = pl.coalesce(reason, pl.when(pl.col("__dup")).then(pl.lit("duplicate row")))
    df = raw.with_columns(reason.alias("__reason"))
    good = df.filter(pl.col("__reason").is_null()).select(
        [t.alias(c.name) for t, c in zip(typed, contract.columns)] + [pl.col(c) for c in keep_extra] + [pl.col("_source"), pl.col("_row")]
    )
    text_cols = [c for c in names if c not in ("_row", "_source", "__pre", "__dup")]
    bad = df.filter(pl.col("__reason").is_not_null()).select(
        [pl.col("_source"), pl.col("_row"), pl.col("__reason").alias("reason")] + [pl.col(c).cast(pl.String) for c in text_cols]
    )
    return good, bad


_PARQUET_TYPES = {"float64": pl.Float64, "int64": pl.Int64, "bool": pl.Boolean, "str": pl.String}


def _scan_parquet(path: str, contract: ContractConfig) -> tuple[pl.LazyFrame, list[str]]:
    """Parquet checked against the contract types, then values through the same text path."""
    try:
        lf = pl.scan_parquet(path)
        schema = lf.collect_schema()
    except Exception as e:
        raise FileError(f"corrupt or invalid Parquet footer/metadata: {str(e).splitlines()[0]}") from None
    extra = _check_columns(schema.names(), contract)
    for c in contract.columns:
        dt = schema[c.name]
        ok = isinstance(dt, pl.Datetime) if c.dtype == "timestamp" else (dt == _PARQUET_TYPES[c.dtype] or dt == pl.Null)
        castable = dt == pl.String  # cast_if_lossless: text that parses exactly (checked per value below)
        if not ok and (contract.parquet_types == "strict" or not castable):
            want = {"float64": "float64 (double)", "str": "string"}.get(c.dtype, c.dtype)
            raise FileError(f"column {c.name}: expected {want}, found {str(dt).lower()}")

    def as_text(c: ColumnContract) -> pl.Expr:
        e, dt = pl.col(c.name), schema[c.name]
        if c.dtype == "timestamp" and isinstance(dt, pl.Datetime):
            # an aware timestamp keeps its instant; a naive one stays naive (policy decides)
            e = e.dt.convert_time_zone("UTC").dt.strftime("%Y-%m-%dT%H:%M:%S%.fZ") if dt.time_zone else e.dt.strftime("%Y-%m-%dT%H:%M:%S%.f")
        return e.cast(pl.String).alias(c.name)

    # no row index here: it would stop Polars pushing each batch's slice into the scan (7x slower
    # measured); the sliced batch reader numbers the rows (_batches)
    return lf.select([as_text(c) for c in contract.columns] + [pl.col(c) for c in extra]), extra


# --------------------------------------------------------------------------------------
# one file
# --------------------------------------------------------------------------------------
def _forget_path(dataset_dir: Path, path: str, keep_digest: str) -> None:
    """A changed file (same path, new content) replaces its earlier parts."""
    for dig, entry in _manifest(dataset_dir).items():
        if entry["path"] == path and dig != keep_digest:
            for p in entry.get("outputs", []):
                Path(p).unlink(missing_ok=True)
            (dataset_dir / "_manifest" / f"{dig}.json").unlink(missing_ok=True)


def _rows(path: Path) -> int:
    return pq.ParquetFile(path).metadata.num_rows


def ingest_file(plan: FilePlan, dataset_dir: str | Path, contract: ContractConfig, chunk_rows: int = 250_000,
                progress: Callable[[int], None] | None = None) -> FileResult:
    """Ingest one file: stream it through the contract into data parts (hive partitions when the
    contract names keys) and a quarantine part (temp names, renamed), then write its manifest
    entry last. ``progress`` is called with the rows of every batch."""
    res = _ingest_file(plan, dataset_dir, contract, chunk_rows, progress)
    _progress.emit("ingest.file", file=plan.name, status=res.status, bytes=_size(plan.path) if plan.action == "ingest" else 0)
    return res


def _ingest_file(plan: FilePlan, dataset_dir: str | Path, contract: ContractConfig, chunk_rows: int = 250_000,
                progress: Callable[[int], None] | None = None) -> FileResult:
    dataset_dir = Path(dataset_dir)
    if plan.action == "skip":
        entry = _manifest(dataset_dir).get(plan.digest, {})
        return FileResult(plan.name, plan.digest, "skipped", rows_total=entry.get("rows_total"), rows_ok=0, rows_quarantined=0)
    if plan.action == "duplicate":
        return FileResult(plan.name, plan.digest, "duplicate", rows_total=None, rows_ok=0, rows_quarantined=0,
                          duplicate_of=plan.duplicate_of)
    tag = f"{os.getpid()}-{threading.get_ident()}"
    stem = _part_stem(plan.digest)
    staging = dataset_dir / "data" / f".staging-{tag}-{plan.digest[:12]}"
    qpart = quarantine_part(dataset_dir, plan.digest)
    tmp_bad = qpart.with_name(f".{qpart.name}.tmp-{tag}")
    unzipped, tail, spool = None, None, None
    try:
        if not plan.digest:
            raise FileError("not found" if not _is_remote(plan.path) and not os.path.exists(plan.path) else "cannot read file")
        source = plan.path
        if _is_remote(source):  # stream an object-store file to local disk once, then as local
            unzipped = source = _fetch(source, dataset_dir / "data")
        if contract.format == "jsonl":
            # no .parquet suffix: readers that glob data/**/*.parquet with Polars (which does not
            # skip dot-files) must never pick up a half-written spool
            spool = staging.with_name(staging.name + ".jsonl-spool")
            spool.parent.mkdir(parents=True, exist_ok=True)
            raw, extra = _read_jsonl(source, contract, spool, chunk_rows)
        elif plan.path.endswith((".parquet", ".pq")):
            raw, extra = _scan_parquet(source, contract)
        else:
            if plan.path.endswith(".gz"):
                plain = _gunzip(source, dataset_dir / "data")
                if unzipped:
                    Path(unzipped).unlink(missing_ok=True)
                unzipped = source = plain
            raw, extra, tail = _scan_text_table(source, contract)
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        qpart.parent.mkdir(parents=True, exist_ok=True)
        try:
            rows_ok, rows_bad = _stream(raw.with_columns(_source=pl.lit(plan.name)), contract, extra, staging, stem,
                                        tmp_bad, chunk_rows, progress,
                                        sliced=contract.format == "jsonl" or plan.path.endswith((".parquet", ".pq")))
            if tail:
                _name_short_last_record(tmp_bad, rows_ok + rows_bad, tail, plan.name)
        except Exception as e:  # polars errors are multi-line; the operator gets one
            if isinstance(e, FileError):
                raise
            raise FileError(f"unreadable: {str(e).strip().splitlines()[0]}") from None
        staged = sorted(p for p in staging.rglob("*.parquet"))
    except Exception as e:  # a failed file writes nothing; its error is one line, never a traceback
        shutil.rmtree(staging, ignore_errors=True)
        tmp_bad.unlink(missing_ok=True)
        msg = str(e) if isinstance(e, FileError) else f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        return FileResult(plan.name, plan.digest, "failed", error=f"{plan.name}: {msg}")
    finally:
        if unzipped:
            Path(unzipped).unlink(missing_ok=True)
        if spool is not None:  # the JSONL block spool (read back by then)
            spool.unlink(missing_ok=True)
    _forget_path(dataset_dir, plan.path, plan.digest)
    outputs = []
    for p in staged:  # each rename is atomic; names carry the digest, so a re-run overwrites, never duplicates
        dest = dataset_dir / "data" / p.relative_to(staging)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(p, dest)
        outputs.append(str(dest))
    shutil.rmtree(staging, ignore_errors=True)
    if rows_bad:
        os.replace(tmp_bad, qpart)
        outputs.append(str(qpart))
    else:
        tmp_bad.unlink(missing_ok=True)
    entry = {"path": plan.path, "name": plan.name, "digest": plan.digest, "rows_total": rows_ok + rows_bad,
             "rows_ok": rows_ok, "rows_quarantined": rows_bad, "outputs": outputs}
    m = dataset_dir / "_manifest" / f"{plan.digest}.json"
    m.parent.mkdir(parents=True, exist_ok=True)
    tmp = m.with_name(f".{m.name}.tmp-{tag}")
    tmp.write_text(json.dumps(entry))
    os.replace(tmp, m)  # written last: the file counts as done only now
    return FileResult(plan.name, plan.digest, "ok", rows_total=rows_ok + rows_bad, rows_ok=rows_ok, rows_quarantined=rows_bad)


def partition_columns(contract: ContractConfig) -> dict[str, pl.Expr]:
    """The dataset's partition keys: contract columns, or ``date`` (UTC day of the timestamp column)."""
    names = {c.name for c in contract.columns}
    keys = {}
    for k in contract.partition_by:
        if k in names:
            keys[k] = pl.col(k)
        elif k == "date" and contract.timestamp_column:
            keys[k] = pl.col(contract.timestamp_column).dt.date()
        else:
            raise FileError(f"partition key {k!r} is neither a contract column nor 'date'")
    return keys


def _hive_path(keys: pl.DataFrame, name: str) -> str:
    parts = [f"{k}={quote(str(v) if v is not None else '__null__', safe='')}" for k, v in keys.row(0, named=True).items()]
    return "/".join(parts + [name])


class _Parts:
    """Parquet writers of one ingest: one file, or files per partition (hive directories).

    Rows are buffered per partition and written in row groups of about ``row_group`` rows. A
    partition that a batch no longer touches is flushed and closed (exports are mostly in time
    order, so a day's partition is done once the stream has moved past it): open writers and
    buffers stay bounded however many partitions a file spans. A partition met again later gets
    a further file (``-1``, ``-2``, ...).
    """

    def __init__(self, root: Path, stem: str, keys: dict[str, pl.Expr], row_group: int = 250_000):
        self.root, self.stem, self.keys, self.row_group = root, stem, keys, row_group
        self.open: set[tuple] = set()  # partitions with an open writer (the writers live on the writer thread)
        self.buffers: dict[tuple, list[pl.DataFrame]] = {}
        self.files: dict[tuple, int] = {}
        self.rows = 0
        # Parquet encoding runs on a writer thread (pyarrow releases the GIL) while the caller
        # prepares the next batch; the queue holds at most one table, so memory stays bounded.
        self._writers: dict[tuple, pq.ParquetWriter] = {}
        self._jobs: queue.Queue = queue.Queue(maxsize=1)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, name="rsft-parquet-writer", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            if self._error is None:
                try:
                    job()
                except BaseException as e:  # re-raised on the caller's thread
                    self._error = e

    def _submit(self, job: Callable[[], None]) -> None:
        if self._error is not None:
            raise self._error
        self._jobs.put(job)

    def _flush(self, key: tuple) -> None:
        frames = self.buffers.pop(key, [])
        if not frames:
            return
        df = pl.concat(frames, how="vertical_relaxed", rechunk=False) if len(frames) > 1 else frames[0]
        table, path = df.to_arrow(), None
        if key not in self.open:
            n = self.files.get(key, 0)
            rel = f"{self.stem}.parquet" if n == 0 else f"{self.stem}-{n}.parquet"
            if self.keys:
                rel = _hive_path(df.select(list(self.keys)).head(1), rel)
            path = self.root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            self.open.add(key)
            self.files[key] = n + 1

        def write() -> None:
            if path is not None:
                self._writers[key] = pq.ParquetWriter(path, table.schema, compression="zstd")
            w = self._writers[key]
            w.write_table(table.cast(w.schema), row_group_size=self.row_group)

        self._submit(write)

    def _close_one(self, key: tuple) -> None:
        self.open.discard(key)
        self._submit(lambda: self._writers.pop(key).close())

    def write(self, df: pl.DataFrame) -> None:
        if self.keys:
            derived = {k: e for k, e in self.keys.items() if k not in df.columns}
            df = df.with_columns(**derived)
            groups = df.partition_by(list(self.keys), as_dict=True, maintain_order=True) if df.height else {}
        else:
            groups = {(): df}
        for key, part in groups.items():
            self.buffers.setdefault(key, []).append(part)
            self.rows += part.height
            if sum(f.height for f in self.buffers[key]) >= self.row_group:
                self._flush(key)
        sizes = {k: sum(f.height for f in v) for k, v in self.buffers.items()}
        while sum(sizes.values()) > 2 * self.row_group:  # many open partitions: the biggest buffer goes first
            k = max(sizes, key=sizes.get)
            self._flush(k)
            sizes.pop(k)
        if self.keys and df.height:
            for key in [k for k in self.open | set(self.buffers) if k not in groups]:
                self._flush(key)
                if key in self.open:
                    self._close_one(key)

    def close(self) -> None:
        """Write what is buffered, close every file, stop the writer thread; re-raise its error."""
        try:
            if self._error is None:
                for key in list(self.buffers):
                    self._flush(key)
                for key in list(self.open):
                    self._close_one(key)
        finally:
            self._jobs.put(None)
            self._thread.join()
            for w in self._writers.values():  # after an error: release the files
                w.close()
            self._writers.clear()
            self.open.clear()
        if self._error is not None:
            raise self._error


class _SeenHashes:
    """Exact-duplicate detection across a file's batches: sorted runs of 64-bit row hashes,
    merged LSM-style (amortised O(n log n)); 8 bytes of state per distinct row."""

    def __init__(self):
        self.runs: list = []

    def check_add(self, h) -> "Any":
        import numpy as np

        h = np.asarray(h, dtype=np.uint64)
        uniq, first = np.unique(h, return_index=True)  # sorted needles: searchsorted stays in cache
        seen = np.zeros(len(uniq), dtype=bool)
        for run in self.runs:
            i = np.searchsorted(run, uniq).clip(max=len(run) - 1)
            seen |= run[i] == uniq
        dup = np.ones(len(h), dtype=bool)  # every row but the first of each new hash
        dup[first[~seen]] = False
        new = uniq[~seen]
        if len(new):  # a batch of nothing but repeats adds no run (an empty run cannot be searched)
            self.runs.append(new)
        while len(self.runs) > 1 and len(self.runs[-2]) <= 1.5 * len(self.runs[-1]):
            b, a = self.runs.pop(), self.runs.pop()
            self.runs.append(np.sort(np.concatenate([a, b]), kind="mergesort"))
        return dup


def _batches(lf: pl.LazyFrame, chunk_rows: int, sliced: bool) -> Iterator[pl.DataFrame]:
    """``lf`` in frames of ``chunk_rows``. ``sliced``: one slice query per batch — for Parquet
    sources, whose ``collect_batches`` decodes every row group ahead of the consumer (measured:
    peak RSS grew with the file); a slice reads only the row groups it covers. A frame without
    ``_row`` gets 1-based row numbers here."""
    if not sliced:
        yield from lf.collect_batches(chunk_size=chunk_rows)
        return
    number = "_row" not in lf.collect_schema().names()  # 1-based row numbers from the slice offset
    n = lf.select(pl.len()).collect().item()
    for off in range(0, n, chunk_rows):
        df = lf.slice(off, chunk_rows).collect()
        yield df.with_columns(_row=pl.int_range(off + 1, off + 1 + df.height, dtype=pl.Int64)) if number else df


def _stream(raw: pl.LazyFrame, contract: ContractConfig, extra: list[str], staging: Path, stem: str,
            tmp_bad: Path, chunk_rows: int, progress: Callable[[int], None] | None,
            sliced: bool = False) -> tuple[int, int]:
    """One streaming read in batches of ``chunk_rows``: the cheap checks on every row, the full
    check on flagged rows only, typed rows to ``staging`` (partitioned), the rest to quarantine.
    Memory is bounded by the batch size (plus 8 bytes per row with duplicate detection);
    ``sliced`` for Parquet-backed sources (see :func:`_batches`)."""
    names = raw.collect_schema().names()
    if "_row" not in names:  # numbered per batch (see _batches)
        if not sliced:
            raise ValueError("a source without _row needs the sliced batch reader")
        names.append("_row")
    limit = contract.max_line_bytes if "__len" in names else None
    names = [n for n in names if n != "__len"]
    vals, flags = zip(*[_fast(c) for c in contract.columns])
    flag = pl.any_horizontal(flags)
    if "__pre" in names:  # structural problems found while reading (JSONL)
        flag = flag | pl.col("__pre").is_not_null()
    cols = [c.name for c in contract.columns]
    exprs = [v.alias(f"__v_{c}") for v, c in zip(vals, cols)] + [flag.alias("__flag")]
    if contract.duplicate_rows == "quarantine":
        exprs.append(pl.struct(cols).hash(17).alias("__h"))
    typed = [pl.col(f"__v_{c}").alias(c) for c in cols] + [pl.col(c) for c in extra] + [pl.col("_source"), pl.col("_row")]
    data, bad_w = _Parts(staging, stem, partition_columns(contract), chunk_rows), None
    seen = _SeenHashes() if contract.duplicate_rows == "quarantine" else None
    rows_bad = 0
    batches = _batches(raw.with_columns(exprs), chunk_rows, sliced)
    try:
        for df in batches:
            if limit and df["__len"].max() > limit:
                bad_row = df.filter(pl.col("__len") > limit).row(0, named=True)
                raise FileError(f"row {bad_row['_row']}: record of {bad_row['__len']:,} bytes, over max_line_bytes "
                                f"{limit:,}")
            fl = df["__flag"]
            if seen is not None:
                dup = pl.Series("__dup", seen.check_add(df["__h"].to_numpy()))
                df, fl = df.with_columns(dup), fl | dup
            else:
                df = df.with_columns(__dup=pl.lit(False))
            data.write(df.filter(~fl).select(typed))
            flagged = df.filter(fl).select(names + ["__dup"])
            if flagged.height:  # the full check decides each flagged row
                rescued, bad = pl.collect_all(_validate(flagged.lazy(), contract, extra))
                data.write(rescued.select([c for c in typed_names(contract, extra)]))
                if bad.height:
                    t = bad.to_arrow()
                    bad_w = bad_w or pq.ParquetWriter(tmp_bad, t.schema, compression="zstd")
                    bad_w.write_table(t.cast(bad_w.schema))
                    rows_bad += bad.height
            _progress.emit("ingest.rows", rows=df.height)
            if progress:
                progress(df.height)
    finally:
        data.close()
        if bad_w:
            bad_w.close()
    if not data.files and not contract.partition_by:  # an empty dataset part still records the schema
        empty = raw.with_columns(exprs).head(0).with_columns(_row=pl.lit(None, pl.Int64)).select(typed).collect()
        data.write(empty)
        data.close()
    return data.rows, rows_bad


def typed_names(contract: ContractConfig, extra: list[str]) -> list[str]:
    return [c.name for c in contract.columns] + list(extra) + ["_source", "_row"]


JSONL_SPOOL_ROWS = 100_000  # lines parsed per block before they are spooled to Parquet


def _read_jsonl(path: str, contract: ContractConfig, spool: Path,
                chunk_rows: int = JSONL_SPOOL_ROWS) -> tuple[pl.LazyFrame, list[str]]:
    """JSON lines as text columns; lines that are not UTF-8, not JSON or have wrong types get a
    reason (``__pre``). Parsed in blocks of ``min(chunk_rows, JSONL_SPOOL_ROWS)`` lines, each
    appended to a Parquet ``spool`` file as one row group and scanned back lazily: memory is
    bounded by the block, not the file."""
    block = max(1, min(chunk_rows, JSONL_SPOOL_ROWS))
    names = [c.name for c in contract.columns]
    schema = {**{n: pl.String for n in names}, "_row": pl.Int64, "__pre": pl.String, "__line": pl.String}
    empty = (None,) * len(names)
    rows: list[tuple] = []  # one tuple per line: the column values, line number, reason, text
    writer: list[pq.ParquetWriter] = []
    checks = [(c.name, c.dtype in ("str", "timestamp"), c.dtype in ("float64", "int64"), c.nullable)
              for c in contract.columns]

    def flush() -> None:
        t = pl.DataFrame(rows, schema=schema, orient="row").to_arrow()
        if not writer:
            writer.append(pq.ParquetWriter(spool, t.schema, compression="lz4"))
        writer[0].write_table(t)
        rows.clear()

    opener = gzip.open if path.endswith(".gz") else open
    limit = contract.max_line_bytes
    try:
        with opener(path, "rb") as fh:  # noqa: SIM115
            for i, line in enumerate(fh, start=1):
                if len(rows) >= block:
                    flush()
                if limit and len(line) > limit:
                    raise FileError(f"line {i}: {len(line):,} bytes, over max_line_bytes {limit:,}")
                try:
                    text = line.decode("utf-8")
                except UnicodeDecodeError:
                    if contract.decode_errors == "fail_file":
                        raise FileError(f"line {i}: invalid UTF-8 (decode_errors: fail_file)") from None
                    if contract.decode_errors == "latin1":  # the export's declared fallback encoding
                        text = line.decode("latin-1")
                    else:
                        field_name = _undecodable_field(line, names)
                        rows.append((*empty, i, f"invalid UTF-8 in {field_name}" if field_name else "invalid UTF-8",
                                     line.decode("latin-1")))
                        continue
                if not text.strip():
                    continue
                text = text.rstrip("\n")
                try:
                    obj = json.loads(text)
                except json.JSONDecodeError:
                    rows.append((*empty, i, "invalid JSON", text))
                    continue
                if not isinstance(obj, dict):
                    rows.append((*empty, i, "invalid JSON: not an object", text))
                    continue
                pre, values = None, []
                for name, is_text, is_number, nullable in checks:
                    v = obj.get(name, _MISSING)
                    if v is None or v is _MISSING:
                        if v is _MISSING:
                            pre = pre or f"missing key {name}"
                        elif not nullable:
                            pre = pre or f"{name} is null"
                        values.append(None)
                        continue
                    ok = (isinstance(v, str) if is_text else
                          isinstance(v, (int, float)) and not isinstance(v, bool) if is_number else isinstance(v, bool))
                    if not ok:
                        pre = pre or f"{name} wrong type ({type(v).__name__})"
                        values.append(None)
                    else:
                        values.append(v if is_text else str(v))
                rows.append((*values, i, pre, text))
        if rows or not writer:  # the last block (an empty file still gets the schema)
            flush()
    finally:
        if writer:
            writer[0].close()
    return pl.scan_parquet(spool), []


_MISSING = object()


def _undecodable_field(line: bytes, names: list[str]) -> str | None:
    """Which field holds the undecodable bytes (decoded as latin-1 only to locate them)."""
    try:
        obj = json.loads(line.decode("latin-1"))
    except json.JSONDecodeError:
        return None
    if not isinstance(obj, dict):
        return None
    for key in names:
        v = obj.get(key)
        if isinstance(v, str) and any(ord(ch) > 127 for ch in v):
            return key
    return None


def scan_dataset(dataset_dir: str | Path) -> pl.LazyFrame:
    parts = sorted(glob.glob(os.path.join(str(dataset_dir), "data", "**", "*.parquet"), recursive=True))
    if not parts:
        raise FileNotFoundError(f"dataset {dataset_dir} has no ingested rows yet")
    return pl.scan_parquet(parts, hive_partitioning=False)  # keys are stored in the files too


def _part_stem(digest: str) -> str:
    """A file's output parts are named by its content digest (a re-run overwrites, never duplicates)."""
    return f"part-{digest[:24]}"


def quarantine_part(dataset_dir: str | Path, digest: str) -> Path:
    """The quarantine part of the file with this digest."""
    return Path(dataset_dir) / "quarantine" / f"{_part_stem(digest)}.parquet"


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


def ingest(sources, dataset_dir, contract: ContractConfig, chunk_rows: int = 250_000,
           on_file: Callable[[FileResult], None] | None = None) -> IngestSummary:
    summary = IngestSummary()
    for plan in plan_ingest(sources, dataset_dir, contract):
        res = ingest_file(plan, dataset_dir, contract, chunk_rows)
        summary.files.append(res)
        if on_file:
            on_file(res)
    return summary
