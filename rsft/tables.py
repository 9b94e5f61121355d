"""Reading a user's own table files (``rsft adapt``): a CSV or Parquet file, or a directory of
them, as one lazy frame, with its schema and a bounded seeded sample.

Unlike the nightly pipeline, these files were never ingested (no contract, no ``_source`` /
``_row`` lineage columns), so the pool sample hashes row numbers. Errors are one line naming the
file (:class:`TableError`).
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import polars as pl

TABLE_SUFFIXES = (".csv", ".csv.gz", ".parquet", ".pq")


SEPARATORS = (",", ";", "\t", "|")  # the CSV field separators rsft recognises (ingest's sniff_delimiter)


def other_separator(fields: list[str]) -> str | None:
    """The separator a header read as ',' CSV was really written with, when it came out as one
    field holding the others (``"a;b;c"``); None otherwise."""
    return next((d for d in SEPARATORS[1:] if d in fields[0]), None) if len(fields) == 1 else None


class TableError(ValueError):
    """A table file that cannot be read as asked; the message is one line naming the file."""


def table_files(path: str) -> list[str]:
    """The file itself, or every CSV / Parquet file under a directory (recursively, no dot-files)."""
    p = Path(path)
    if not (p.exists() or "://" in str(path)):
        raise TableError(f"{path}: no such file or directory")
    if not p.is_dir():
        if not str(path).endswith(TABLE_SUFFIXES):
            raise TableError(f"{path}: expected a .csv, .csv.gz or .parquet file (or a directory of them)")
        return [str(path)]
    files = sorted(str(f) for f in p.rglob("*") if f.is_file() and f.name.endswith(TABLE_SUFFIXES)
                   and not any(part.startswith(".") for part in f.relative_to(p).parts))
    if not files:
        raise TableError(f"{path}: no .csv, .csv.gz or .parquet files in this directory")
    return files


def scan_file(path: str, columns: list[str] | None = None) -> pl.LazyFrame:
    """One CSV or Parquet file as a lazy frame; a gzipped CSV is decompressed into memory (Polars
    cannot scan it), only ``columns`` of it when given."""
    if path.endswith((".parquet", ".pq")):
        return pl.scan_parquet(path)
    if path.endswith(".csv.gz"):
        return pl.read_csv(path, columns=columns, infer_schema_length=10_000).lazy()
    return pl.scan_csv(path, infer_schema_length=10_000)


def file_schema(path: str) -> dict:
    """Column -> dtype of one file (a CSV's from its first 10,000 rows, where a column with no
    value at all reads as text: it counts as a number column with missing values)."""
    with polars_errors(path):
        if path.endswith((".parquet", ".pq")):
            return dict(pl.scan_parquet(path).collect_schema())
        head = pl.read_csv(path, n_rows=10_000, infer_schema_length=10_000, ignore_errors=True)  # types only
    return {c: (pl.Float64 if dt == pl.String and head[c].null_count() == head.height else dt)
            for c, dt in head.schema.items()}


def table_schema(path: str, text_in: dict[str, str] | None = None) -> dict:
    """Column -> dtype over every file of ``path`` (a column numeric in every file that has it
    counts as numeric; files that disagree otherwise make it a string). ``text_in`` collects, per
    non-numeric column, the first file where it is text."""
    return merge_schemas({f: file_schema(f) for f in table_files(path)}, text_in)


def file_schemas(path: str) -> tuple[dict[str, dict], list[tuple[str, str]]]:
    """Each file's schema (:func:`file_schema`), and the files that cannot be read, with why —
    for a directory of exports, where one bad file is left out rather than stopping the others
    (a single file that cannot be read raises :class:`TableError`)."""
    files = table_files(path)
    if len(files) == 1 and not Path(path).is_dir():
        return {files[0]: file_schema(files[0])}, []
    schemas: dict[str, dict] = {}
    skipped: list[tuple[str, str]] = []
    for f in files:
        try:
            schemas[f] = file_schema(f)
        except TableError as e:
            skipped.append((f, str(e).removeprefix(f"{f}: ")))
    return schemas, skipped


def merge_schemas(schemas: dict[str, dict], text_in: dict[str, str] | None = None) -> dict:
    """Column -> dtype over the files' schemas, as :func:`table_schema`."""
    out: dict = {}
    for f, schema in schemas.items():
        for name, dt in schema.items():
            if not dt.is_numeric() and text_in is not None:
                text_in.setdefault(name, os.path.basename(f))
            if name not in out:
                out[name] = dt
            elif out[name] != dt:
                out[name] = pl.Float64 if out[name].is_numeric() and dt.is_numeric() else pl.String
    return out


def lacks(path: str, schema: dict, columns: list[str]) -> str | None:
    """Why one file cannot give ``columns`` as numbers (a column it lacks, one that is text), or None."""
    have = list(schema)
    missing = [c for c in columns if c not in schema]
    if missing:
        sep = other_separator(have)
        return (f"no column(s) {', '.join(missing)}"
                + (f" — its header reads as one field: the file is '{sep}'-separated, not ','" if sep
                   else f" (it has: {', '.join(have[:12])}{', …' if len(have) > 12 else ''})"))
    text = [f"{c} ({schema[c]})" for c in columns if not schema[c].is_numeric()]
    return f"not numeric: {', '.join(text)}" if text else None


def scan_table(path: str | list[str], columns: list[str] | None = None) -> pl.LazyFrame:
    """A CSV or Parquet file, or a directory of them (CSV and Parquet mixed, e.g. a plant's daily
    exports), or a list of such files, as one lazy frame; with ``columns``, only those, cast to
    Float64 (numbers)."""
    files = path if isinstance(path, list) else table_files(path)
    parts = [scan_file(f, columns) for f in files]
    if columns is not None:
        for f, lf in zip(files, parts):  # name the file that lacks a column (Polars' error names none)
            with polars_errors(f):
                have = lf.collect_schema().names()
            missing = [c for c in columns if c not in have]
            if missing:
                raise TableError(f"{f}: {lacks(f, dict.fromkeys(have, pl.Float64), columns)}")
        parts = [lf.select([pl.col(c).cast(pl.Float64) for c in columns]) for lf in parts]
    return parts[0] if len(parts) == 1 else pl.concat(parts, how="diagonal_relaxed")


@contextmanager
def polars_errors(path: str) -> Iterator[None]:
    """A Polars error reading ``path`` (e.g. a value that does not parse as its column's type,
    multi-line) as one line naming the file."""
    try:
        yield
    except pl.exceptions.PolarsError as e:
        why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise TableError(f"{path}: {_plain(path, why)}") from None
    except (OSError, EOFError) as e:  # e.g. a gzip stream cut short
        gz = " (a truncated or corrupt gzip stream)" if path.endswith(".gz") else ""
        raise TableError(f"{path}: cannot read{gz}: {e}") from None


# Polars' wording of a CSV error, as a person reads it (trial 7: "found more fields than defined in 'Schema'")
_PLAIN = {"found more fields than defined in 'Schema'": "a row has more fields than the header"}


def _plain(path: str, why: str) -> str:
    """``why`` (Polars' first line) in plain words where it has its own; for a CSV whose header
    reads as one field holding another separator, the separator it was written with (and its
    decimal commas)."""
    import gzip

    why = _PLAIN.get(why, why)
    if not path.endswith((".csv", ".csv.gz")):
        return why
    try:
        with (gzip.open if path.endswith(".gz") else open)(path, "rt", encoding="utf-8-sig", errors="replace") as fh:
            header, first = fh.readline().rstrip("\r\n"), fh.readline()
    except (OSError, EOFError):
        return why
    sep = other_separator(header.split(","))
    if sep:
        why += (f" — its header reads as one field: the file is {sep!r}-separated, not ','"
                + (" (with decimal commas)" if sep == ";" and "," in first else ""))
    return why


def read_table(path: str) -> pl.DataFrame:
    with polars_errors(path):
        return scan_table(path).collect()


def sample_table(path: str | list[str], columns: list[str], rows: int, seed: int,
                 skipped: list[tuple[str, str]] | None = None) -> tuple[pl.DataFrame, int]:
    """At most ``rows`` complete rows of ``columns`` from a table (a file, a directory, a list of
    files), read in two streaming passes (a count, then a filter on a hash of the row number that
    keeps ~``rows`` + 5 σ, then an exact seeded sample): the file is never held in memory (gzipped
    CSV: its selected columns). Row numbers, not row contents, are hashed: repeated rows are
    sampled independently. With ``skipped`` (a list), a file whose values cannot be read as
    numbers is left out and appended to it with why (the count pass reads each file on its own);
    without, it raises :class:`TableError`. Returns (sample, complete rows in the table)."""
    if skipped is not None:
        files, total = [], 0
        for f in (path if isinstance(path, list) else table_files(path)):
            try:
                with polars_errors(f):
                    total += scan_table([f], columns).drop_nulls().select(pl.len()).collect(engine="streaming").item()
                files.append(f)
            except TableError as e:
                skipped.append((f, str(e).removeprefix(f"{f}: ")))
        if not files:
            raise TableError(f"{path if isinstance(path, str) else 'the pool'}: no file could be read "
                             f"({skipped[0][0]}: {skipped[0][1]})")
        path = files
    lf = scan_table(path, columns).drop_nulls()
    with polars_errors(str(path) if isinstance(path, str) else "the pool"):
        if skipped is None:
            total = lf.select(pl.len()).collect(engine="streaming").item()
        if total > rows:  # the margin makes a short sample a 5-sigma event; the exact sample trims it
            keep = min(1_000_000, int((rows + 5 * rows**0.5 + 10) / total * 1_000_000) + 1)
            lf = lf.with_row_index("_i").filter(pl.col("_i").hash(seed) % 1_000_000 < keep).drop("_i")
        df = lf.collect(engine="streaming")
    return (df.sample(rows, seed=seed) if df.height > rows else df), total
