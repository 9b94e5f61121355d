"""One streaming pass over a file's rows: in batches, the cheap pass on every row, the full check
on the flagged ones only, exact duplicates marked, typed rows to the data writers and the rest
to the quarantine part.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import polars as pl

from rsft import progress as _progress
from rsft.config import ContractConfig
from rsft.ingest.contract import _fast, _validator, typed_names
from rsft.ingest.dedup import _SeenHashes
from rsft.ingest.readers import _Blocks
from rsft.ingest.results import FileError
from rsft.ingest.unique import KeyLog
from rsft.ingest.writers import _Parts, _QuarantinePart, partition_columns


# the data parts' numeric columns: LZ4 (pyarrow's LZ4_RAW), not zstd — after the dictionary
# encoding they are mostly dictionary indices, which zstd shrinks little: on the demo's sensors
# 83.4 MB against 78.8 MB (+6 %; raw Polars' zstd-3 writes 105 MB), for ~0.1 s less encode CPU on
# 2.7 M rows, and faster to decode for every later read (the kept pool's day files are LZ4 for the
# same reason). Text columns stay zstd (writers._compression).
NUMERIC_COMPRESSION = "lz4"


def _batches(lf: pl.LazyFrame, chunk_rows: int, sliced: bool) -> Iterator[pl.DataFrame]:
    """``lf`` in frames of ``chunk_rows``. ``sliced``: one slice query per batch — for Parquet
    sources, whose ``collect_batches`` decodes every row group ahead of the consumer (measured:
    peak RSS grew with the file); a slice reads only the row groups it covers. A frame without
    ``_row`` gets 1-based row numbers here."""
    if isinstance(lf, _Blocks):  # JSONL: frames of parsed lines, already numbered
        yield from lf.batches()
        return
    if not sliced:
        yield from lf.collect_batches(chunk_size=chunk_rows)
        return
    number = "_row" not in lf.collect_schema().names()  # 1-based row numbers from the slice offset
    n = lf.select(pl.len()).collect().item()
    for off in range(0, n, chunk_rows):
        df = lf.slice(off, chunk_rows).collect()
        yield df.with_columns(_row=pl.int_range(off + 1, off + 1 + df.height, dtype=pl.Int64)) if number else df


def _stream(raw: pl.LazyFrame, contract: ContractConfig, extra: list[str], staging: Path, stem: str,
            tmp_bad: Path, chunk_rows: int, sliced: bool = False, keys: KeyLog | None = None) -> tuple[int, int]:
    """One streaming read in batches of ``chunk_rows``: the cheap checks on every row, the full
    check on flagged rows only, typed rows to ``staging`` (partitioned), the rest to quarantine.
    Memory is bounded by the batch size (plus 8 bytes per row with duplicate detection, 24 with a
    unique key); ``sliced`` for Parquet-backed sources (see :func:`_batches`); ``keys`` records
    each written row's key (``unique``)."""
    names, limit = _source_columns(raw, contract, sliced)
    checked = raw.with_columns(_first_pass(contract, names))
    cols = [c.name for c in contract.columns]
    typed = [pl.col(f"__v_{c}").alias(c) for c in cols] + [pl.col(c) for c in extra] + [pl.col("_source"), pl.col("_row")]
    delta = ("_row", contract.timestamp_column) if contract.timestamp_column else ("_row",)
    data, bad = (_Parts(staging, stem, partition_columns(contract), chunk_rows, delta=delta,
                        numeric_compression=NUMERIC_COMPRESSION),
                 _QuarantinePart(tmp_bad))
    seen = _SeenHashes() if contract.duplicate_rows == "quarantine" else None
    check = _validator(contract, [*names, "__dup"], extra)  # the flagged rows' columns (below)
    # JSONL: a bulk-parsed line's byte range (__lo, __hi) becomes its text (__line) only for the
    # rows the full check sees (_Blocks.fill_lines)
    fill = getattr(checked, "fill_lines", None)
    ranges = ["__lo", "__hi"] if fill is not None else []
    try:
        for df in _batches(checked, chunk_rows, sliced):
            _check_record_bytes(df, limit, contract.setting("max_line_bytes"))
            dup, flagged = _mark_duplicates(df, seen)
            good = df.select(typed)  # select first: the filter copies only what is written
            good = good.filter(~flagged) if flagged.any() else good
            data.write(good)
            if keys is not None:
                keys.add(good)
            # __dup joins the flagged rows only: a column added to the whole batch (its chunks
            # unlike the batch's) made the select and filter above realign every column (measured
            # 0.4 s of CPU on 2.7 M rows)
            rows = df.select(names + ranges).filter(flagged)
            rows = fill(rows) if fill is not None else rows
            _full_check(rows.with_columns(__dup=dup.filter(flagged) if dup is not None else pl.lit(False)),
                        check, contract, extra, data, bad, keys)
            _progress.emit("ingest.rows", rows=df.height)
        if not data.files and not data.buffers and not contract.partition_by:  # no rows at all: an empty
            # dataset part still records the schema (written before close: a closed _Parts has no writer thread)
            data.write(checked.head(0).with_columns(_row=pl.lit(None, pl.Int64)).select(typed).collect())
    finally:
        data.close()
        bad.close()
    return data.rows, bad.rows


def _source_columns(raw: pl.LazyFrame, contract: ContractConfig, sliced: bool) -> tuple[list[str], int | None]:
    """The source's columns as the full check sees them (``_row`` included, the reader's record
    length ``__len`` not), and ``max_line_bytes`` where the reader measured records."""
    names = raw.collect_schema().names()
    if "_row" not in names:  # numbered per batch (see _batches)
        if not sliced:
            raise ValueError("a source without _row needs the sliced batch reader")
        names.append("_row")
    limit = contract.max_line_bytes if "__len" in names else None
    return [n for n in names if n not in ("__len", "__lo", "__hi")], limit


def _first_pass(contract: ContractConfig, names: list[str]) -> list[pl.Expr]:
    """The cheap pass as columns: each contract column's value (``__v_<name>``), ``__flag`` (the
    full check must decide the row) and, with ``duplicate_rows: quarantine``, the row hash ``__h``."""
    vals, flags = zip(*[_fast(c) for c in contract.columns])
    flag = pl.any_horizontal(flags)
    if "__pre" in names:  # structural problems found while reading (JSONL)
        flag = flag | pl.col("__pre").is_not_null()
    cols = [c.name for c in contract.columns]
    exprs = [v.alias(f"__v_{c}") for v, c in zip(vals, cols)] + [flag.alias("__flag")]
    if contract.duplicate_rows == "quarantine":
        exprs.append(_row_hash(cols).alias("__h"))
    return exprs


_MIX = 0x9E3779B97F4A7C15  # odd (2^64 / golden ratio): multiplying by it mod 2^64 is a bijection


def _row_hash(cols: list[str]) -> pl.Expr:
    """A 64-bit hash of a row's text (null and "" apart): each column hashed, folded in column
    order as ``h * _MIX ^ next`` (wrapping; each step a bijection of either input, so rows that
    differ in one column differ in the hash). The same duplicates as ``pl.struct(cols).hash``
    (64 bits: a collision is as unlikely). Built as a plain expression tree: in the CSV's streaming
    query it cost +0.1–0.2 s of CPU on 2.7 M rows of 16 text columns, against +0.3–0.4 s for
    ``pl.struct(cols).hash`` and +0.6 s for ``pl.reduce`` (a Python callback per morsel)."""
    h = pl.col(cols[0]).hash(17)
    for c in cols[1:]:
        h = h * _MIX ^ pl.col(c).hash(17)
    return h


def _check_record_bytes(df: pl.DataFrame, limit: int | None, setting: str = "max_line_bytes") -> None:
    """``max_line_bytes``: a longer record fails the file, naming its row."""
    if limit and df["__len"].max() > limit:
        bad_row = df.filter(pl.col("__len") > limit).row(0, named=True)
        raise FileError(f"row {bad_row['_row']}: record of {bad_row['__len']:,} bytes, over {setting} {limit:,}")


def _mark_duplicates(df: pl.DataFrame, seen: _SeenHashes | None) -> tuple[pl.Series | None, pl.Series]:
    """``__dup`` (each row an exact repeat of an earlier row of the file; None without duplicate
    detection), and the rows the full check must decide: flagged by the cheap pass, or duplicates."""
    fl = df["__flag"]
    if seen is None:
        return None, fl
    dup = pl.Series("__dup", seen.check_add(df["__h"].to_numpy()))
    return dup, fl | dup


def _full_check(flagged: pl.DataFrame, check, contract: ContractConfig, extra: list[str], data: _Parts,
                bad: _QuarantinePart, keys: KeyLog | None = None) -> None:
    """The full check (``check``: contract._validator's, for ``flagged``'s columns) decides each
    flagged row: rescued rows to the data, the rest to quarantine."""
    if flagged.height:
        rescued, rejected = pl.collect_all(check(flagged.lazy()))
        rescued = rescued.select([c for c in typed_names(contract, extra)])
        data.write(rescued)
        if keys is not None:
            keys.add(rescued)
        bad.write(rejected)
