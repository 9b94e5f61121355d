"""One streaming pass over a file's rows: in batches, the cheap pass on every row, the full check
on the flagged ones only, exact duplicates marked, typed rows to the data writers and the rest
to the quarantine part.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import polars as pl
import pyarrow.parquet as pq

from rsft import progress as _progress
from rsft.config import ContractConfig
from rsft.ingest.contract import _fast, _validate, typed_names
from rsft.ingest.dedup import _SeenHashes
from rsft.ingest.results import FileError
from rsft.ingest.writers import _Parts, partition_columns


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
            tmp_bad: Path, chunk_rows: int, sliced: bool = False) -> tuple[int, int]:
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
    finally:
        data.close()
        if bad_w:
            bad_w.close()
    if not data.files and not contract.partition_by:  # an empty dataset part still records the schema
        empty = raw.with_columns(exprs).head(0).with_columns(_row=pl.lit(None, pl.Int64)).select(typed).collect()
        data.write(empty)
        data.close()
    return data.rows, rows_bad
