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
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import polars as pl

from rsft.config import ColumnContract, ContractConfig

log = logging.getLogger(__name__)

_TZ = r"(Z|[+-]\d{2}:?\d{2})$"


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
def list_sources(sources: str | Sequence[str]) -> list[str]:
    items = [sources] if isinstance(sources, (str, Path)) else list(sources)
    out: list[str] = []
    for s in map(str, items):
        if os.path.isdir(s):
            out += [p for p in glob.glob(os.path.join(s, "**", "*"), recursive=True) if os.path.isfile(p)]
        elif any(ch in s for ch in "*?["):
            out += glob.glob(s, recursive=True)
        else:
            out.append(s)
    return sorted(set(out), key=lambda p: (os.path.basename(p), p))


def file_digest(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _manifest(dataset_dir: str | Path) -> dict[str, dict]:
    d = Path(dataset_dir) / "_manifest"
    return {p.stem: json.loads(p.read_text()) for p in d.glob("*.json")} if d.exists() else {}


def plan_ingest(sources: str | Sequence[str], dataset_dir: str | Path, contract: ContractConfig) -> list[FilePlan]:
    done = _manifest(dataset_dir)
    seen: dict[str, str] = {}
    plans = []
    for path in list_sources(sources):
        name = os.path.basename(path)
        try:
            dig = file_digest(path)
        except OSError as e:
            plans.append(FilePlan(path, name, "", "ingest"))  # ingest_file reports the error
            continue
        if dig in done and done[dig]["path"] == path:
            plans.append(FilePlan(path, name, dig, "skip"))
        elif contract.file_dedupe == "skip_identical" and (dig in seen or dig in done):
            plans.append(FilePlan(path, name, dig, "duplicate", seen.get(dig) or os.path.basename(done[dig]["path"])))
        else:
            plans.append(FilePlan(path, name, dig, "ingest"))
        seen.setdefault(dig, name)
    return plans


# --------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------
def _read_text_table(path: str, contract: ContractConfig) -> pl.DataFrame:
    """CSV (optionally gzip) as all-string columns with a 1-based ``_row``."""
    if os.path.getsize(path) == 0:
        raise FileError("empty file (no header)")
    try:
        if path.endswith(".gz"):
            with gzip.open(path, "rb") as fh:
                data = fh.read()
        else:
            data = Path(path).read_bytes()
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise FileError(f"truncated or corrupt gzip stream: {e}") from None
    except OSError as e:
        raise FileError(f"cannot read: {e}") from None
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    if not data.strip():
        raise FileError("empty file (no header)")
    try:
        return pl.read_csv(data, infer_schema=False, separator=contract.delimiter)
    except Exception as e:  # polars raises ComputeError etc. with multi-line messages
        raise FileError(f"unreadable CSV: {str(e).splitlines()[0]}") from None


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


def _typed(col: ColumnContract, naive_policy: str = "reject", utc_only: bool = False) -> tuple[pl.Expr, pl.Expr]:
    """(typed value, reason or null) for one contract column read as text."""
    raw = pl.col(col.name)
    present = raw.is_not_null() & (raw.str.strip_chars() != "")
    missing = pl.when(~present & (not col.nullable)).then(pl.lit(f"missing {col.name}"))
    if col.dtype == "float64":
        val = pl.when(present).then(raw.str.strip_chars().cast(pl.Float64, strict=False))
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
        val = pl.when(present).then(raw.str.strip_chars().cast(pl.Int64, strict=False))
        return val, pl.coalesce(missing, pl.when(present & val.is_null()).then(pl.lit(f"{col.name} not an integer")))
    if col.dtype == "bool":
        low = raw.str.strip_chars().str.to_lowercase()
        val = pl.when(low.is_in(["true", "1"])).then(True).when(low.is_in(["false", "0"])).then(False)
        return val, pl.coalesce(missing, pl.when(present & val.is_null()).then(pl.lit(f"{col.name} not a boolean")))
    if col.dtype == "timestamp":
        s = raw.str.strip_chars()
        has_tz = s.str.contains(_TZ)
        aware = s.str.replace(r"Z$", "+00:00").str.to_datetime("%Y-%m-%dT%H:%M:%S%:z", strict=False, time_unit="us", time_zone="UTC")
        naive = s.str.to_datetime("%Y-%m-%dT%H:%M:%S", strict=False, time_unit="us").dt.replace_time_zone("UTC")
        utc_form = s.str.contains(r"(Z|\+00:?00)$")
        if naive_policy == "assume_utc":
            val = pl.when(has_tz).then(aware).otherwise(naive)
            naive_reason = pl.lit(None, dtype=pl.String)
        else:
            val = pl.when(has_tz).then(aware)
            naive_reason = pl.when(present & ~has_tz & naive.is_not_null()).then(pl.lit(f"{col.name}: timestamp without time zone"))
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


def _validate(raw: pl.DataFrame, contract: ContractConfig, keep_extra: list[str]) -> tuple[pl.DataFrame, pl.DataFrame]:
    typed, reasons = zip(*[_typed(c, contract.naive_timestamps, contract.utc_only) for c in contract.columns])
    reason = pl.coalesce(*reasons)
    if "__pre" in raw.columns:  # structural problems found while reading (JSONL)
        reason = pl.coalesce(pl.col("__pre"), reason)
    if contract.duplicate_rows == "quarantine":
        cols = [c.name for c in contract.columns]
        reason = pl.coalesce(reason, pl.when(~pl.struct(cols).is_first_distinct()).then(pl.lit("duplicate row")))
    df = raw.with_columns(reason.alias("__reason"))
    good = df.filter(pl.col("__reason").is_null()).select(
        [t.alias(c.name) for t, c in zip(typed, contract.columns)] + [pl.col(c) for c in keep_extra] + [pl.col("_source"), pl.col("_row")]
    )
    bad = df.filter(pl.col("__reason").is_not_null()).rename({"__reason": "reason"})
    return good, bad


def _read_parquet(path: str, contract: ContractConfig) -> tuple[pl.DataFrame, list[str]]:
    try:
        df = pl.read_parquet(path)
    except Exception as e:
        raise FileError(f"corrupt or invalid Parquet footer/metadata: {str(e).splitlines()[0]}") from None
    extra = _check_columns(df.columns, contract)
    expect = {"float64": pl.Float64, "int64": pl.Int64, "bool": pl.Boolean, "str": pl.String}
    for c in contract.columns:
        dt = df.schema[c.name]
        if c.dtype == "timestamp":
            if not isinstance(dt, pl.Datetime):
                if contract.parquet_types == "strict" or dt != pl.String:
                    raise FileError(f"column {c.name}: expected timestamp, found {dt}")
        elif dt != expect[c.dtype] and not (dt == pl.Null and c.nullable):
            if contract.parquet_types == "strict":
                name = {"float64": "float64 (double)", "str": "string"}.get(c.dtype, c.dtype)
                raise FileError(f"column {c.name}: expected {name}, found {str(dt).lower().replace('string', 'string')}")
    # validate values through the same text path (exact: floats print round-trip)
    def as_text(c: ColumnContract) -> pl.Expr:
        e = pl.col(c.name)
        if c.dtype == "timestamp" and isinstance(df.schema[c.name], pl.Datetime):
            tz = df.schema[c.name].time_zone
            e = (e.dt.convert_time_zone("UTC") if tz else e).dt.strftime("%Y-%m-%dT%H:%M:%S%.fZ") if tz else e.dt.strftime("%Y-%m-%dT%H:%M:%S%.f")
        return e.cast(pl.String).alias(c.name)

    text = df.select([as_text(c) for c in contract.columns] + [pl.col(c) for c in extra])
    return text, extra


# --------------------------------------------------------------------------------------
# one file
# --------------------------------------------------------------------------------------
def _write(df: pl.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    df.write_parquet(tmp)
    os.replace(tmp, path)


def _forget_path(dataset_dir: Path, path: str, keep_digest: str) -> None:
    """A changed file (same path, new content) replaces its earlier parts."""
    for dig, entry in _manifest(dataset_dir).items():
        if entry["path"] == path and dig != keep_digest:
            for p in entry.get("outputs", []):
                Path(p).unlink(missing_ok=True)
            (dataset_dir / "_manifest" / f"{dig}.json").unlink(missing_ok=True)


def ingest_file(plan: FilePlan, dataset_dir: str | Path, contract: ContractConfig, chunk_rows: int = 250_000) -> FileResult:
    dataset_dir = Path(dataset_dir)
    if plan.action == "skip":
        entry = _manifest(dataset_dir).get(plan.digest, {})
        return FileResult(plan.name, plan.digest, "skipped", rows_total=entry.get("rows_total"), rows_ok=0, rows_quarantined=0)
    if plan.action == "duplicate":
        return FileResult(plan.name, plan.digest, "duplicate", rows_total=None, rows_ok=0, rows_quarantined=0,
                          duplicate_of=plan.duplicate_of)
    try:
        if not plan.digest:
            raise FileError("cannot read file")
        if contract.format == "jsonl":
            raw, extra = _read_jsonl(plan.path, contract)
        elif plan.path.endswith((".parquet", ".pq")):
            raw, extra = _read_parquet(plan.path, contract)
        else:
            raw = _read_text_table(plan.path, contract)
            extra = _check_columns(raw.columns, contract)
        if "_row" not in raw.columns:
            raw = raw.with_columns(_row=pl.int_range(1, raw.height + 1, dtype=pl.Int64))
        raw = raw.with_columns(_source=pl.lit(plan.name))
        good, bad = _validate(raw, contract, extra)
    except FileError as e:
        return FileResult(plan.name, plan.digest, "failed", error=f"{plan.name}: {e}")
    except Exception as e:  # anything else is still one line, never a traceback
        return FileResult(plan.name, plan.digest, "failed", error=f"{plan.name}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
    _forget_path(dataset_dir, plan.path, plan.digest)
    outputs = []
    part = dataset_dir / "data" / f"part-{plan.digest[:24]}.parquet"
    _write(good, part)
    outputs.append(str(part))
    if bad.height:
        q = dataset_dir / "quarantine" / f"part-{plan.digest[:24]}.parquet"
        _write(bad.select([pl.col(c).cast(pl.String) for c in bad.columns if c not in ("_row",)] + [pl.col("_row")]), q)
        outputs.append(str(q))
    entry = {"path": plan.path, "name": plan.name, "digest": plan.digest, "rows_total": raw.height, "rows_ok": good.height,
             "rows_quarantined": bad.height, "outputs": outputs}
    m = dataset_dir / "_manifest" / f"{plan.digest}.json"
    m.parent.mkdir(parents=True, exist_ok=True)
    tmp = m.with_name(m.name + ".tmp")
    tmp.write_text(json.dumps(entry))
    os.replace(tmp, m)
    return FileResult(plan.name, plan.digest, "ok", rows_total=raw.height, rows_ok=good.height, rows_quarantined=bad.height)


def _read_jsonl(path: str, contract: ContractConfig) -> tuple[pl.DataFrame, list[str]]:
    """JSON lines as text columns; lines that are not UTF-8, not JSON or have wrong types get a reason."""
    names = [c.name for c in contract.columns]
    rows: list[dict[str, Any]] = []
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as fh:
        for i, line in enumerate(fh, start=1):
            rec: dict[str, Any] = {n: None for n in names}
            rec.update(_row=i, __pre=None, __line=None)
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError:
                field_name = _undecodable_field(line, names)
                rec.update(__pre=f"invalid UTF-8 in {field_name}" if field_name else "invalid UTF-8", __line=line.decode("latin-1"))
                rows.append(rec)
                continue
            if not text.strip():
                continue
            rec["__line"] = text.rstrip("\n")
            try:
                obj = json.loads(text)
            except json.JSONDecodeError:
                rec["__pre"] = "invalid JSON"
                rows.append(rec)
                continue
            if not isinstance(obj, dict):
                rec["__pre"] = "invalid JSON: not an object"
            else:
                for c in contract.columns:
                    if c.name not in obj:
                        rec["__pre"] = rec["__pre"] or f"missing key {c.name}"
                        continue
                    v = obj[c.name]
                    ok = v is None or (isinstance(v, str) if c.dtype in ("str", "timestamp") else
                                       isinstance(v, (int, float)) and not isinstance(v, bool) if c.dtype in ("float64", "int64") else
                                       isinstance(v, bool))
                    if not ok:
                        rec["__pre"] = rec["__pre"] or f"{c.name} wrong type ({type(v).__name__})"
                    elif v is None and not c.nullable:
                        rec["__pre"] = rec["__pre"] or f"{c.name} is null"
                    else:
                        rec[c.name] = None if v is None else str(v)
            rows.append(rec)
    schema = {**{n: pl.String for n in names}, "_row": pl.Int64, "__pre": pl.String, "__line": pl.String}
    df = pl.DataFrame(rows, schema=schema)
    return df, []


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
    parts = sorted(glob.glob(os.path.join(str(dataset_dir), "data", "*.parquet")))
    if not parts:
        raise FileNotFoundError(f"dataset {dataset_dir} has no ingested rows yet")
    return pl.scan_parquet(parts)


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
