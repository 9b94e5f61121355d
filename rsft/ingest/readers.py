"""Readers: one file as a lazy frame of text columns (plus ``_row`` where the reader numbers the
rows) for the contract check, and the unknown columns it keeps.

* CSV (:func:`_scan_text_table`): a lazy all-string scan; the header checked against the
  contract; opt-in quote-aware structure pass; a record cut off at the end of the file named.
* Parquet (:func:`_scan_parquet`): the column types checked against the contract, values
  rendered as text so they go through the same checks.
* JSONL (:func:`_read_jsonl`): blocks of lines parsed in bulk with a schema that checks each
  value's JSON type; line by line only what the bulk parse cannot vouch for; frames (:class:`_Blocks`).
  A key is read under its column's ``aliases`` too (a line with two of them is quarantined); a
  key outside the contract quarantines its line under ``unknown_columns: reject``. A file that
  is not JSON Lines at all (UTF-16, a JSON array, pretty-printed JSON, binary) fails in one line
  (:func:`_jsonl_shape`).

An empty export (a zero-byte CSV, JSONL or Parquet file, a CSV or JSONL of blank lines) fails the
file under ``empty_file: error`` (the default; JSONL's is ``zero_rows``, config.JSONL_DEFAULTS) and
reads as no rows under ``zero_rows``; a header-only CSV is a file of 0 rows under either.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import polars as pl

from rsft.config import ColumnContract, ContractConfig
from rsft.ingest.contract import POLARS_TYPES, _check_columns, header_renames
from rsft.ingest.results import FileError
from rsft.tables import SEPARATORS

log = logging.getLogger("rsft.ingest")  # one logger name for the whole ingest (the CLI prints it)


def _no_rows(contract: ContractConfig) -> pl.LazyFrame:
    """An empty export under ``empty_file: zero_rows``: the contract's columns as text, no rows."""
    return pl.LazyFrame(schema={c.name: pl.String for c in contract.columns})


def _is_blank(path: str) -> bool:
    """Nothing but whitespace (and a BOM): a zero-byte file, or blank lines only (a ``.gz``
    file: its decompressed text; a corrupt gzip stream is not blank: the reader names it)."""
    try:
        with (gzip.open if path.endswith(".gz") else open)(path, "rb") as fh:
            first = True
            for block in iter(lambda: fh.read(1 << 20), b""):
                if first and block.startswith(b"\xef\xbb\xbf"):
                    block = block[3:]
                first = False
                if block.strip():
                    return False
    except (OSError, EOFError):
        return False
    return True


_MAGIC = [(b"PAR1", "Parquet"), (b"\x1f\x8b", "gzip"), (b"PK\x03\x04", "zip"), (b"PK\x05\x06", "zip"),
          (b"\x28\xb5\x2f\xfd", "zstd"), (b"BZh", "bzip2"), (b"\xfd7zXZ\x00", "xz"), (b"ORC", "ORC"), (b"Obj\x01", "Avro"),
          (b"ARROW1", "Arrow IPC"), (b"\x89HDF", "HDF5"), (b"SQLite format 3\x00", "SQLite"), (b"%PDF", "PDF"),
          (b"\xd0\xcf\x11\xe0", "an old Excel/Office file")]


def _head(path: str, n: int = 8192) -> bytes:
    """The first ``n`` bytes of a file (decompressed for ``.gz``; b"" for a corrupt gzip stream,
    which the reader names)."""
    try:
        with (gzip.open if path.endswith(".gz") else open)(path, "rb") as fh:
            return fh.read(n)
    except (OSError, EOFError):
        return b""


def _not_text(head: bytes, what: str, gz: str) -> str | None:
    """Why a file that should be UTF-8 text (``what``: "CSV", "JSON Lines") is not, in one line,
    from its first bytes: UTF-16/32 text, or a binary file (by its magic number: "looks like
    Parquet"); None for text. ``gz``: the name a gzip file should have."""
    enc = _wide_text(head)
    if enc:
        return f"{enc} text, not UTF-8 — {what} must be UTF-8 (convert it: iconv -f {enc} -t UTF-8)"
    kind = _binary_kind(head)
    if kind:
        return f"binary file, not {what} text — looks like {f'gzip (name it {gz})' if kind == 'gzip' else kind}"
    return None


def _binary_kind(head: bytes) -> str | None:
    """What a file is instead of text, from its first bytes (magic numbers, or NUL bytes for any
    other binary file); None for text, UTF-16/32 text included (:func:`_wide_text`)."""
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return kind
    if b"\x00" in head and not _wide_text(head):
        return "binary data"
    return None


def _wide_text(head: bytes) -> str | None:
    """The encoding of UTF-16 or UTF-32 text, from its BOM or, without one, its NUL bytes (ASCII
    characters are a byte and one or three NULs, in a fixed place); None otherwise."""
    for bom, enc in ((b"\xff\xfe\x00\x00", "UTF-32LE"), (b"\x00\x00\xfe\xff", "UTF-32BE"),
                     (b"\xff\xfe", "UTF-16LE"), (b"\xfe\xff", "UTF-16BE")):
        if head.startswith(bom):
            return enc
    h = head[:len(head) - len(head) % 4]
    if len(h) < 4 or b"\x00" not in h:
        return None

    def nuls(k: int, step: int) -> float:  # the share of NULs among every step-th byte from k
        return h[k::step].count(0) / len(h[k::step])

    # ASCII text (JSON's keys and punctuation, a CSV's header) has a NUL in each such place; a
    # few non-ASCII characters (CJK in UTF-16) do not, hence shares, not "every"
    if min(nuls(1, 4), nuls(2, 4), nuls(3, 4)) > 0.9 and nuls(0, 4) < 0.1:
        return "UTF-32LE"
    if min(nuls(0, 4), nuls(1, 4), nuls(2, 4)) > 0.9 and nuls(3, 4) < 0.1:
        return "UTF-32BE"
    if nuls(1, 2) > 0.9 and nuls(0, 2) < 0.1:
        return "UTF-16LE"
    if nuls(0, 2) > 0.9 and nuls(1, 2) < 0.1:
        return "UTF-16BE"
    return None


def _jsonl_shape(head: bytes) -> str | None:
    """Why a file is not JSON Lines at all, in one line (rather than each of its lines quarantined
    as invalid JSON): not UTF-8 text (:func:`_not_text`), a JSON array, pretty-printed JSON (an
    object over several lines); None for a file to read line by line. From ``head``, the first MiB
    (decompressed for ``.gz``): an array or object longer than that is recognised only by a first
    line of ``[`` or ``{`` alone."""
    why = _not_text(head, "JSON Lines", ".jsonl.gz")
    text = head.removeprefix(b"\xef\xbb\xbf").lstrip()
    if why or not text.startswith((b"[", b"{")):
        return why
    first, _, rest = text.partition(b"\n")
    try:
        one_line = json.loads(first)
    except (json.JSONDecodeError, UnicodeDecodeError):
        one_line = None
    if text.startswith(b"["):
        # a first line that is a whole array followed by more lines is a JSONL line of the wrong
        # kind (quarantined); an array over several lines, or the file's one line, is a JSON file
        if isinstance(one_line, list) and rest.strip():
            return None
        return "a JSON array, not JSON Lines (one object per line) — convert it: jq -c '.[]' FILE > FILE.jsonl"
    if one_line is None and (first.strip() == b"{" or _spans_lines(text)):
        return ("pretty-printed JSON (an object over several lines), not JSON Lines (one object per line) — "
                "convert it: jq -c . FILE > FILE.jsonl")
    return None


HEAD_BYTES = 1 << 20  # a JSONL file's head: its shape (_jsonl_shape) and keys (_ignored_keys) are judged from it
IGNORED_KEYS_LINES = 1_000  # lines of a JSONL file's head looked at for keys unknown_columns: drop ignores


def _ignored_keys(head: bytes, known: set[str]) -> tuple[list[str], int]:
    """(keys outside the contract, lines looked at) in the first :data:`IGNORED_KEYS_LINES` whole
    lines of ``head``: what ``unknown_columns: drop`` ignores, to be said once per file as the CSV
    reader says the columns it drops (a renamed key — a missing column's values under a new name —
    shows here before its rows fail on the missing one). Lines that are not JSON objects are the
    parsers' business."""
    lines = head.removeprefix(b"\xef\xbb\xbf").split(b"\n")
    # the last piece is a line cut by the head's end — unless the head is the whole file
    lines = (lines[:-1] if len(head) >= HEAD_BYTES else [x for x in lines if x.strip()])[:IGNORED_KEYS_LINES]
    seen: dict[str, None] = {}
    for line in lines:
        try:
            obj = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        if isinstance(obj, dict):
            seen.update(dict.fromkeys(_unknown_keys(obj, known)))
    return list(seen), len(lines)


def _spans_lines(text: bytes) -> bool:
    """``text`` starts with a JSON value that goes on past its first line."""
    decoded = text.decode("utf-8", errors="replace")
    try:
        _, end = json.JSONDecoder().raw_decode(decoded)
    except json.JSONDecodeError:
        return False
    return "\n" in decoded[:end]


def _header(path: str) -> str | None:
    """First line of a (plain) CSV, BOM stripped; None for a blank first line (or an empty file)."""
    with open(path, "rb") as fh:
        line = fh.readline(1 << 20)
    if line.startswith(b"\xef\xbb\xbf"):
        line = line[3:]
    if not line.strip():
        return None
    return line.decode("utf-8", errors="replace").rstrip("\r\n")


def _scan_text_table(path: str, contract: ContractConfig, ragged: bool = False) -> tuple[pl.LazyFrame, list[str], str | None]:
    """CSV as a lazy all-string frame with a 1-based ``_row`` (streamed by the sinks), its extra
    columns, and the structural reason for a cut-off last record (:func:`_short_last_record`).
    A file without a header is an error, or, if it is blank and ``empty_file: zero_rows``, no rows.

    ``ragged``: the file has records with more fields than the header (Polars' fast scan fails
    the whole file on one); the slower fallback finds them (:func:`_long_records`) and gives
    each a structural reason (``__pre``) and its full text (``__line``), so it is quarantined
    with nothing lost while the rest of the file is ingested."""
    why = _not_text(_head(path), "CSV", ".csv.gz")
    if why:
        raise FileError(why)
    header = _header(path)
    if header is None:
        if contract.empty_file == "zero_rows" and _is_blank(path):
            return _no_rows(contract).with_row_index("_row", offset=1).with_columns(pl.col("_row").cast(pl.Int64)), [], None
        raise FileError(f"empty file (no header) — {contract.setting('empty_file')}: zero_rows would accept it as no rows")
    sep = _separator(header, contract)
    cols = [c.strip().strip('"') for c in header.split(sep)]
    renames = header_renames(cols, contract)
    cols = [renames.get(c, c) for c in cols]
    extra = _check_columns(cols, contract)
    if contract.structural_errors == "fail_file":
        _check_structure(path, sep, len(cols), contract.setting("structural_errors"))
    lf = pl.scan_csv(path, infer_schema=False, separator=sep, truncate_ragged_lines=ragged)
    if renames:
        lf = lf.rename(renames)
    lf = lf.with_row_index("_row", offset=1).with_columns(pl.col("_row").cast(pl.Int64))
    if ragged:
        lf = _mark_long_records(lf, _long_records(path, sep, len(cols)), len(cols))
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


def is_ragged_error(e: BaseException) -> bool:
    """Polars' scan failing a CSV on a record with more fields than the header."""
    return "more fields than defined" in str(e)


def _long_records(path: str, sep: str, expected: int) -> dict[int, tuple[int, str]]:
    """Records with more fields than the header: ``{row: (fields, record text)}``, rows 1-based
    as the scan numbers them (a blank line is a row there too). Quote-aware (Python's csv
    module); reads the file once more, so only the fallback for a file that has such records."""
    import csv

    csv.field_size_limit(2**31 - 1)
    text: list[str] = []

    def lines(fh):
        for line in fh:
            text.append(line)
            yield line

    out: dict[int, tuple[int, str]] = {}
    with open(path, encoding="utf-8-sig", errors="replace", newline="") as fh:
        reader = csv.reader(lines(fh), delimiter=sep)
        next(reader, None)
        text.clear()
        for row, rec in enumerate(reader, start=1):
            if len(rec) > expected:
                out[row] = (len(rec), "".join(text).rstrip("\r\n"))
            text.clear()
    return out


def _mark_long_records(lf: pl.LazyFrame, long: dict[int, tuple[int, str]], expected: int) -> pl.LazyFrame:
    """The structural reason and the full text of each record with too many fields."""
    def by_row(values: dict[int, str]) -> pl.Expr:
        return pl.col("_row").replace_strict(values, default=None, return_dtype=pl.String) if values else pl.lit(None, pl.String)

    return lf.with_columns(__pre=by_row({r: f"wrong number of fields ({n}, expected {expected})" for r, (n, _) in long.items()}),
                           __line=by_row({r: t for r, (_, t) in long.items()}))


def _name_short_last_record(tmp_bad: Path, last_row: int, reason: str, name: str) -> None:
    """Give the truncated last record its structural reason in the quarantine part."""
    if tmp_bad.exists():
        q = pl.read_parquet(tmp_bad)
        if (q["_row"] == last_row).any():
            q.with_columns(reason=pl.when(pl.col("_row") == last_row).then(pl.lit(reason)).otherwise(pl.col("reason"))
                           ).write_parquet(tmp_bad, compression="zstd")
            return
    log.warning("%s: last record (row %d) has %s but passed the value checks; it was ingested", name, last_row, reason)


def _separator(header: str, contract: ContractConfig) -> str:
    """The file's field separator: the contract's, or with ``sniff_delimiter`` the one its header
    holds most of."""
    return max(SEPARATORS, key=header.count) if contract.sniff_delimiter else contract.delimiter


def _drop_blank_lines(tmp_bad: Path, path: str, contract: ContractConfig) -> int:
    """Empty lines of a CSV (an Excel export's trailing one) carry no data: Polars reads each as a
    row of nulls, which the contract quarantines ("missing <first column>"). Such rows are taken out
    of the quarantine part again when their record is an empty line (a quote-aware pass over the
    file, only for a file with all-null quarantined rows; a record of separators only, ``;;;``, is
    a row of empty fields and stays). Returns how many were taken out."""
    if not tmp_bad.exists():
        return 0
    q = pl.read_parquet(tmp_bad)
    text = [c for c in q.columns if c not in ("_source", "_row", "reason", "__line")]
    candidates = q.filter(pl.all_horizontal(pl.col(c).is_null() for c in text))["_row"] if text else []
    if not len(candidates):
        return 0
    blank = _empty_records(path, _separator(_header(path) or "", contract), set(candidates.to_list()))
    if blank:
        q.filter(~pl.col("_row").is_in(sorted(blank))).write_parquet(tmp_bad, compression="zstd")
    return len(blank)


def _empty_records(path: str, sep: str, rows: set[int]) -> set[int]:
    """Which of ``rows`` (1-based records after the header, as the scan numbers them) are empty lines."""
    import csv

    csv.field_size_limit(2**31 - 1)
    out, last = set(), max(rows)

    def lines(fh: BinaryIO) -> Iterator[str]:
        # records end at "\n" (or "\r\n"), as Polars reads them: a bare "\r" is a character of its
        # field there, while Python's csv ends a record at it (every later record would be numbered
        # one too far, and a real row could be taken for an empty line)
        for i, raw in enumerate(fh):
            line = raw.replace(b"\r\n", b"\n").replace(b"\r", b" ").decode("utf-8", errors="replace")
            yield line.removeprefix("\ufeff") if i == 0 else line

    with open(path, "rb") as fh:
        reader = csv.reader(lines(fh), delimiter=sep)
        next(reader, None)
        for row, rec in enumerate(reader, start=1):
            if row in rows and not rec:
                out.add(row)
            if row >= last:
                break
    return out


def _check_structure(path: str, sep: str, expected: int, setting: str = "structural_errors") -> None:
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
                                f"{setting}: fail_file")




def _scan_parquet(path: str, contract: ContractConfig) -> tuple[pl.LazyFrame, list[str]]:
    """Parquet checked against the contract types, then values through the same text path. A
    zero-byte file has no footer: an error, or no rows under ``empty_file: zero_rows``."""
    if contract.empty_file == "zero_rows" and os.path.getsize(path) == 0:
        return _no_rows(contract), []
    try:
        lf = pl.scan_parquet(path)
        schema = lf.collect_schema()
    except Exception as e:
        raise FileError(f"corrupt or invalid Parquet footer/metadata: {str(e).splitlines()[0]}") from None
    renames = header_renames(schema.names(), contract)
    if renames:
        lf = lf.rename(renames)
        schema = lf.collect_schema()
    extra = _check_columns(schema.names(), contract)
    pre = []  # per-row reasons of the casts that are exact only for some values
    for c in contract.columns:
        dt = schema[c.name]
        # a timestamp exported as ISO text (``2026-01-01T00:00:00Z``) is the CSV's text: parsed by the
        # same checks (same shapes, a bad value quarantined, naive_timestamps / utc_only), so a CSV
        # and a Parquet export of the same strings agree under any parquet_types
        ok = (isinstance(dt, pl.Datetime) or dt == pl.String) if c.dtype == "timestamp" else (
            dt == POLARS_TYPES[c.dtype] or dt == pl.Null)
        if ok:
            continue
        cast = _lossless_cast(c, dt)
        if contract.parquet_types == "strict" or cast is None:
            want = {"float64": "float64 (double)", "str": "string"}.get(c.dtype, c.dtype)
            raise FileError(f"column {c.name}: expected {want}, found {str(dt).lower()}"
                            f" — {_parquet_type_hint(c, dt, cast is not None, contract)}")
        if cast is not False:
            pre.append(cast)

    def as_text(c: ColumnContract) -> pl.Expr:
        e, dt = pl.col(c.name), schema[c.name]
        if c.dtype == "timestamp" and isinstance(dt, pl.Datetime):
            # an aware timestamp keeps its instant; a naive one stays naive (policy decides)
            e = e.dt.convert_time_zone("UTC").dt.strftime("%Y-%m-%dT%H:%M:%S%.fZ") if dt.time_zone else e.dt.strftime("%Y-%m-%dT%H:%M:%S%.f")
        return e.cast(pl.String).alias(c.name)

    # no row index here: it would stop Polars pushing each batch's slice into the scan (7x slower
    # measured); the sliced batch reader numbers the rows (_batches)
    out = [as_text(c) for c in contract.columns] + [pl.col(c) for c in extra]
    if pre:  # quarantined with this reason by the full check (as a reader's structural problem)
        out.append(pl.coalesce(pre).alias("__pre"))
    return lf.select(out), extra


_EXACT_FLOAT = 2**53  # every integer up to this magnitude is exactly a float64
_SMALL_INTS = (pl.Int8, pl.Int16, pl.Int32, pl.UInt8, pl.UInt16, pl.UInt32)


def _lossless_cast(c: ColumnContract, dt: pl.DataType) -> pl.Expr | bool | None:
    """What ``parquet_types: cast_if_lossless`` does with a Parquet column of type ``dt`` for the
    contract column ``c``: None = no exact cast exists (the file fails); False = exact for every
    value (text parsed by the contract checks, integers of fewer bits); else the expression giving
    a row's quarantine reason where its value is not exact (a 64-bit integer beyond ±2^53 as float64,
    a uint64 beyond int64)."""
    if dt == pl.String:
        return False  # text that parses exactly (checked per value by the contract)
    if dt == pl.Float32 and c.dtype == "float64":
        # every float32 value is kept: read as the shortest decimal that identifies it (what the
        # export showed, e.g. 0.1), which rounds back to the same float32
        return False
    if not dt.is_integer() or c.dtype not in ("float64", "int64"):
        return None
    if dt in _SMALL_INTS or (c.dtype == "int64" and dt == pl.Int64):
        return False
    if c.dtype == "float64":
        big = pl.col(c.name).abs() > _EXACT_FLOAT if dt == pl.Int64 else pl.col(c.name) > _EXACT_FLOAT
        return pl.when(big).then(pl.lit(f"{c.name}: integer beyond ±2^53, not exact as float64"))
    return pl.when(pl.col(c.name) > 2**63 - 1).then(pl.lit(f"{c.name}: integer beyond int64"))  # uint64


def _parquet_type_hint(c: ColumnContract, dt: pl.DataType, castable: bool, contract: ContractConfig) -> str:
    """Which contract setting (by its full key path) would accept a Parquet column of another
    type, or that none does."""
    setting = contract.setting("parquet_types")
    if castable:
        how = "each value parsed as the contract's text is" if dt == pl.String else f"each value exact as {c.dtype}"
        return f"{setting}: cast_if_lossless would accept it ({how}; a value that is not: quarantined)"
    found = ("float64" if dt.is_float() else "int64" if dt.is_integer() else "bool" if dt == pl.Boolean
             else "timestamp" if isinstance(dt, pl.Datetime) else None)
    return (f"no value of {setting} accepts it (no exact cast)"
            + (f"; dtype: {found} on column {c.name} of {contract.where} would" if found and found != c.dtype else ""))


JSONL_SPOOL_ROWS = 100_000  # lines per block (the name is historical: blocks are not spooled any more)
JSONL_READ_BYTES = 16 << 20  # bytes read from the file at a time


def _read_jsonl(path: str, contract: ContractConfig, chunk_rows: int = JSONL_SPOOL_ROWS) -> tuple["_Blocks", list[str]]:
    """JSON lines as text columns, in blocks of ``min(chunk_rows, JSONL_SPOOL_ROWS)`` lines (memory
    is bounded by the block, not the file). Each block is parsed in bulk by Polars' NDJSON reader
    with a schema that errors on a value of the wrong JSON type (:class:`_JsonlBlock`); a block it
    cannot vouch for (not UTF-8, a line that is not a JSON object, a wrong type, a line over
    ``max_line_bytes``) is parsed line by line (:class:`_JsonlLines`), and so is each line of a
    good block with a null or missing contract key or a text value that could be another JSON
    type rendered as text, a value under an alias the block's bytes leave in doubt
    (:meth:`_JsonlBlock._aliases`), or, under ``unknown_columns: reject``, a key the parse did not
    read (:meth:`_JsonlBlock._all_keys_read`). A key that occurs twice keeps its first value in
    both parsers. A file that is not JSON Lines (:func:`_jsonl_shape`), or blank under
    ``empty_file: error``, fails before reading. Either
    way a row is ``(column values as text,
    _row = line number, __pre = reason or null, __line = the line's text)``; a row of the bulk
    parse has ``__line`` null and its line's byte range in the block (``__lo``, ``__hi``) instead:
    only the rows the stream quarantines need the text (:meth:`_Blocks.fill_lines`)."""
    head = _head(path, HEAD_BYTES)
    why = _jsonl_shape(head)
    if why:
        raise FileError(why)
    if contract.empty_file == "error" and _is_blank(path):
        raise FileError(f"empty file (no lines) — {contract.setting('empty_file')}: zero_rows would accept it as no rows")
    lines = _JsonlLines(contract)
    if contract.unknown_columns == "drop":
        ignored, looked = _ignored_keys(head, lines.known)
        if ignored:
            log.warning("ignoring unknown key(s): %s (in the first %s lines; %s: reject would quarantine their lines)",
                        ", ".join(ignored), f"{looked:,}", contract.setting("unknown_columns"))
    schema = {**{n: pl.String for n in lines.names}, "_row": pl.Int64, "__pre": pl.String, "__line": pl.String,
              "__lo": pl.Int64, "__hi": pl.Int64}
    block = max(1, min(chunk_rows, JSONL_SPOOL_ROWS))
    parse = _JsonlBlock(contract, lines, schema)

    def blocks():
        """(block, first line number, its newline offsets) for each block of the file; the
        parsing happens on the workers (:meth:`_Blocks.batches`), in order of the blocks."""
        opener = gzip.open if path.endswith(".gz") else open
        first = 1
        with opener(path, "rb") as fh:  # noqa: SIM115
            if fh.peek(3)[:3] == b"\xef\xbb\xbf":  # a UTF-8 BOM (Windows exports): not the first line's
                fh.read(3)
            for blk, ends in _line_block_ends(fh, block):
                yield blk, first, ends
                first += len(ends) + (0 if blk.endswith(b"\n") else 1)

    return _Blocks(schema, blocks, parse.block, recheck=parse.recheck), []


def _line_block_ends(fh, lines_per_block: int):
    """The file's bytes in blocks of ``lines_per_block`` whole lines (the last may lack its
    newline), each with the offsets of its newlines (found once, so the block parser does not
    scan the block again). The file is read into one buffer that is reused (a line cut by a read
    moved to its front), and each byte is compared with a newline once, into a reused array: a
    block is the one copy of its bytes. (Reading into new bytes per read, joining the carried
    part and slicing the blocks out wrote each byte ~3 times into fresh memory, whose page faults
    cost more than the copies: 0.45 s of CPU per 0.33 GB, half of it in the kernel.)"""
    import numpy as np

    buf = bytearray(2 * JSONL_READ_BYTES)
    eq = np.empty(JSONL_READ_BYTES, dtype=bool)
    n, start = 0, 0  # buf[start:n]: bytes read and not yet handed on
    ends = np.zeros(0, dtype=np.int64)  # offsets in buf of the newlines in buf[start:n]
    while True:
        if n + JSONL_READ_BYTES > len(buf):
            if start:  # the part not handed on to the front (a memmove within the buffer)
                buf[:n - start] = memoryview(buf)[start:n]
                n, ends, start = n - start, ends - start, 0
            if n + JSONL_READ_BYTES > len(buf):  # a line (or block) longer than the buffer: grow it
                buf.extend(bytes(max(len(buf), n + JSONL_READ_BYTES - len(buf))))
        got = fh.readinto(memoryview(buf)[n:n + JSONL_READ_BYTES])
        if not got:
            break
        np.equal(np.frombuffer(buf, np.uint8, count=got, offset=n), 10, out=eq[:got])
        ends = np.concatenate([ends, np.flatnonzero(eq[:got]) + n]) if len(ends) else np.flatnonzero(eq[:got]) + n
        n += got
        k = 0
        while len(ends) - k >= lines_per_block:
            cut = int(ends[k + lines_per_block - 1]) + 1
            yield bytes(memoryview(buf)[start:cut]), ends[k:k + lines_per_block] - start
            start, k = cut, k + lines_per_block
        if n - start > (1 << 27) and len(ends) > k:  # many long lines short of a block: hand them on
            cut = int(ends[-1]) + 1
            yield bytes(memoryview(buf)[start:cut]), ends[k:] - start
            start, k = cut, len(ends)
        ends = ends[k:]
    if n > start:
        yield bytes(memoryview(buf)[start:n]), ends - start


class _Blocks:
    """A JSONL file as a stream of frames, with the few LazyFrame methods the ingest stream uses:
    ``collect_schema``, ``with_columns`` (applied to each frame as it comes), ``head(0)``.
    ``blocks()`` yields ``(bytes, first line number, newline offsets)``; ``parse`` turns one into
    a frame of text columns."""

    WORKERS = 2  # blocks parsed at once (Polars, numpy and the file reads release the GIL)

    def __init__(self, schema: dict, blocks, parse, exprs: tuple = (), recheck=None):
        self.schema, self._blocks, self._parse, self._exprs = schema, blocks, parse, exprs
        self._recheck = recheck  # (frame after the cheap pass, block bytes, cheap pass) -> frame
        self._block = b""  # the bytes of the block whose frame batches() yielded last (fill_lines)

    def _empty(self) -> pl.LazyFrame:
        lf = pl.LazyFrame(schema=self.schema)
        for args, kw in self._exprs:
            lf = lf.with_columns(*args, **kw)
        return lf

    def collect_schema(self) -> pl.Schema:
        return self._empty().collect_schema()

    def with_columns(self, *args, **kw) -> "_Blocks":
        return _Blocks(self.schema, self._blocks, self._parse, self._exprs + ((args, kw),), self._recheck)

    def head(self, n: int) -> pl.LazyFrame:
        return self._empty().head(n)

    def _checked(self, df: pl.DataFrame) -> pl.DataFrame:
        lf = df.lazy()
        for args, kw in self._exprs:
            lf = lf.with_columns(*args, **kw)
        # a lazy collect: the cheap pass's flags reuse its casts (common subexpressions);
        # eager with_columns computes each cast again per flag (measured ~3x the cost)
        return lf.collect()

    def _job(self, blk: bytes, first: int, ends) -> tuple[pl.DataFrame, bytes]:
        df = self._checked(self._parse(blk, first, ends))
        if self._recheck is not None and "__flag" in df.columns:
            df = self._recheck(df, blk, self._checked)
        return df, blk

    def fill_lines(self, rows: pl.DataFrame) -> pl.DataFrame:
        """``rows`` (some rows of the frame :meth:`batches` yielded last, in its order) with the
        text of each bulk-parsed row's line in ``__line`` (from its byte range in the block), and
        without ``__lo`` / ``__hi``. Only the rows that need it (flagged, duplicates) get a text:
        building it for every line cost ~0.1 s of CPU per 0.33 GB, a copy of every byte."""
        import numpy as np
        import pyarrow as pa

        have = rows["__lo"].is_not_null()
        if not have.any():
            return rows.drop("__lo", "__hi")
        part = rows.filter(have)
        lo, hi = part["__lo"].to_list(), part["__hi"].to_list()
        # the lines' bytes, one after the other, as a string array (the bulk parse checked the block
        # is UTF-8, and each range is a whole line). Not pyarrow's take: it imports pyarrow.compute,
        # which imports pandas (~0.15 s of CPU)
        offsets = np.zeros(len(lo) + 1, dtype=np.int64)
        np.cumsum(np.subtract(hi, lo), out=offsets[1:])
        data = b"".join([self._block[a:b] for a, b in zip(lo, hi)])
        text = pl.from_arrow(pa.LargeStringArray.from_buffers(len(lo), pa.py_buffer(offsets), pa.py_buffer(data)))
        if part.height == rows.height:
            return rows.with_columns(__line=text).drop("__lo", "__hi")
        full = pl.repeat(None, rows.height, dtype=pl.String, eager=True).scatter(np.flatnonzero(have.to_numpy()), text)
        return rows.with_columns(__line=pl.coalesce(pl.col("__line"), full)).drop("__lo", "__hi")

    def batches(self):
        """The frames in the file's order, each block parsed and given the cheap pass on a worker
        (``WORKERS`` blocks at once) while the caller writes the previous ones; a reader thread
        hands the blocks to the workers and at most ``WORKERS + 1`` blocks wait, so memory stays
        bounded by a few blocks. A frame without rows is left out (the first one is kept: it
        carries the schema of a file without rows). A worker's or the reader's error is raised here."""
        import queue
        import threading
        from concurrent.futures import ThreadPoolExecutor

        q: queue.Queue = queue.Queue(maxsize=self.WORKERS)
        stop = threading.Event()
        done = object()
        pool = ThreadPoolExecutor(max_workers=self.WORKERS, thread_name_prefix="rsft-jsonl-parse")

        def put(item) -> bool:  # False once the caller has stopped reading
            while not stop.is_set():
                try:
                    q.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def read() -> None:
            try:
                for blk, first, ends in self._blocks():
                    if not put(pool.submit(self._job, blk, first, ends)):
                        return
                put(done)
            except BaseException as e:  # noqa: BLE001 - handed to the caller
                put(e)

        t = threading.Thread(target=read, name="rsft-jsonl-reader", daemon=True)
        t.start()
        yielded = False
        try:
            while (item := q.get()) is not done:
                if isinstance(item, BaseException):
                    raise item
                df, self._block = item.result()
                if df.height or not yielded:
                    yielded = True
                    yield df
            if not yielded:  # a file without lines: its (empty) schema once
                self._block = b""
                yield self._checked(pl.DataFrame(schema=self.schema))
        finally:
            stop.set()
            t.join()
            pool.shutdown(wait=True, cancel_futures=True)


# Polars' NDJSON reader fails a block on a value of another JSON type for Float64 (numbers only),
# Int64 (integers only) and Boolean; String accepts anything (a number, a list, an object rendered
# as text), so a text value that could be such a rendering is re-read per line (_NOT_A_STRING).
# (Categorical accepts JSON strings only, but measured 3x slower than String.)
_JSON_TYPES = {"str": pl.String, "timestamp": pl.String, "float64": pl.Float64, "int64": pl.Int64, "bool": pl.Boolean}
_NOT_A_STRING = r"^(?:-?[0-9][0-9.eE+-]*|true|false|\[[\s\S]*|\{[\s\S]*)$"


def _plain_key(key: str) -> bool:
    """A key written in JSON as its characters between quotes, by any writer that does not escape
    ASCII (printable ASCII, no quote or backslash): its bytes can be searched for."""
    return key.isascii() and key.isprintable() and '"' not in key and "\\" not in key


def _starts_with_a_letter(pattern: str) -> bool:
    """Every match of ``pattern`` (matched in full) starts with one fixed ASCII letter other than t
    and f: no rendering of a number, a boolean, a list or an object (``_NOT_A_STRING``: they start
    with -, a digit, t, f, [ or {) matches it. Conservative: anything but a plain letter first
    (not made optional or repeatable from zero) and no alternation is taken as could-match."""
    p = pattern.removeprefix("^")
    return ("|" not in pattern and p[:1].isascii() and p[:1].isalpha() and p[:1] not in "tf"
            and p[1:2] not in ("?", "*", "{"))


class _JsonlBlock:
    """A block of JSONL bytes -> a frame of text columns: in bulk where Polars can vouch for
    the block, per line (:class:`_JsonlLines`) for what it cannot."""

    def __init__(self, contract: ContractConfig, lines: "_JsonlLines", schema: dict):
        self.contract, self.lines, self.schema = contract, lines, schema
        # each column under its name and its aliases (which one a line's value is read from: _aliases)
        self.read_schema = {k: _JSON_TYPES[c.dtype] for c in contract.columns for k in (c.name, *c.aliases)}
        self.aliased = [c for c in contract.columns if c.aliases]
        self.reject = contract.unknown_columns == "reject"
        text = [c for c in contract.columns if c.dtype in ("str", "timestamp")]
        # the text columns where a value rendered from another JSON type is always flagged by the
        # cheap pass (contract._fast): a timestamp (its one fast shape has a T, colons and a Z,
        # which no number, true/false, list or object rendering has), a str of an allowed set
        # none of whose members looks like one, a str whose pattern only matches text starting
        # with a letter no rendering starts with. Only the flagged rows' values are tested there
        # (recheck): the regex on every value cost ~0.13 s of CPU per 2.2 M lines for the demo's
        # three such columns.
        self.safe = [c.name for c in text if c.dtype == "timestamp"
                     or (c.allowed is not None and not any(re.match(_NOT_A_STRING, a) for a in c.allowed))
                     or (c.pattern and _starts_with_a_letter(c.pattern))]
        self.unsafe = [c.name for c in text if c.name not in self.safe]

    def recheck(self, df: pl.DataFrame, blk: bytes, checked) -> pl.DataFrame:
        """A block's frame after the cheap pass (``checked``: the cheap pass, for frames of the
        parser's rows): its bulk-parsed rows that the cheap pass flagged and whose value in a
        ``safe`` column may be another JSON type rendered as text, parsed again by the line
        parser (which names a wrong type), in place."""
        if not self.safe or not df.height:
            return df
        cand = df.filter(pl.col("__flag") & pl.col("__lo").is_not_null())
        again = cand.filter(pl.any_horizontal([pl.col(c).str.contains(_NOT_A_STRING) for c in self.safe]))
        if not again.height:
            return df
        rows = [r for r in (self.lines.row(int(i), blk[a:b])
                            for i, a, b in zip(again["_row"], again["__lo"], again["__hi"])) if r is not None]
        fixed = checked(self._frame(rows)).select(df.columns)
        return pl.concat([df.filter(~pl.col("_row").is_in(again["_row"].implode())), fixed]).sort("_row")

    def block(self, blk: bytes, first: int, ends=None) -> pl.DataFrame:
        """``ends``: the block's newline offsets where the caller has them (found here otherwise)."""
        import numpy as np

        if ends is None:
            ends = np.flatnonzero(np.frombuffer(blk, np.uint8) == 10)
        n = len(ends) + (0 if blk.endswith(b"\n") else 1)
        limit = self.contract.max_line_bytes
        starts = np.concatenate([[0], ends + 1])[:n].astype(np.int64)
        offsets = np.concatenate([starts, [len(blk)]]).astype(np.int64)
        try:
            if limit and int(np.diff(offsets).max()) > limit:
                raise ValueError("a line over max_line_bytes")  # the line parser fails the file, naming it
            if not blk.isascii():  # ASCII is UTF-8 (isascii is a fast scan; decode builds a str)
                blk.decode("utf-8")
            # an empty line has no row in Polars' reader (nor in the line parser); a line of blanks
            # shows as a row count that differs, and the block goes line by line
            content = np.diff(offsets) > (np.arange(n) < len(ends))
            df = pl.read_ndjson(blk, schema=self.read_schema)
            if df.height != int(content.sum()):
                raise ValueError("row count differs from line count")
        except Exception:  # noqa: BLE001 - anything Polars cannot vouch for is parsed line by line
            return self._per_line(blk, first)
        idx = np.flatnonzero(content)
        doubt = []  # rows the line parser decides: a key outside the contract, an alias to choose
        if self.reject:
            df = df.with_columns(__keys=self._all_keys_read(blk, offsets, idx))
            doubt.append(~pl.col("__keys"))
        if self.aliased:
            picks, unsure = self._aliases(blk)
            df = df.with_columns(picks) if picks else df
            doubt += unsure
        # each line's byte range, its newline kept (a quarantined row's __line drops it:
        # contract._validate); its text only for the rows that need it (_Blocks.fill_lines)
        df = df.with_columns([self._as_text(c) for c in self.contract.columns]).with_columns(
            _row=pl.Series(idx + first, dtype=pl.Int64), __pre=pl.lit(None, pl.String), __line=pl.lit(None, pl.String),
            __lo=pl.Series(offsets[idx], dtype=pl.Int64), __hi=pl.Series(offsets[idx + 1], dtype=pl.Int64))
        # per line: a null (missing key or JSON null: the line parser tells them apart) or a text
        # value that may have been another JSON type. (A key that occurs twice: both keep the first.)
        # (Columns whose every such rendering the cheap pass flags are looked at later, on the
        # flagged rows only: recheck.)
        redo = pl.any_horizontal([pl.col(c.name).is_null() for c in self.contract.columns]
                                 + [pl.col(c).str.contains(_NOT_A_STRING) for c in self.unsafe] + doubt)
        df = df.with_columns(__redo=redo)
        if not df["__redo"].any():
            return df.drop("__redo").select(list(self.schema))
        again = df.filter("__redo")
        rows = [r for r in (self.lines.row(int(i), blk[a:b])
                            for i, a, b in zip(again["_row"], again["__lo"], again["__hi"])) if r is not None]
        fixed = self._frame(rows)
        return pl.concat([df.filter(~pl.col("__redo")).drop("__redo").select(list(self.schema)), fixed]).sort("_row")

    def _all_keys_read(self, blk: bytes, offsets, idx) -> pl.Expr:
        """``unknown_columns: reject``: per row, whether its line has no key but the contract's
        (names and aliases) that the bulk parse read with a value. Counted, not listed: a key's
        colon follows its closing quote or whitespace; a line with no more such colons than the
        keys the bulk parse read a value for has no other key (nor a null one, nor one twice). A
        line with more — those keys, an object in a text value, a colon after an escaped quote or
        a blank inside a text — is decided by the line parser, which names the keys. Only under
        ``reject``; ~20 ms of CPU per 100k-line block (counting every colon in the text values
        too, with Polars, cost ~55 ms)."""
        import numpy as np

        arr = np.frombuffer(blk, np.uint8)
        colons = np.flatnonzero(arr == 58)
        before = arr[np.maximum(colons - 1, 0)]
        keyish = colons[(before == 34) | (before == 32) | (before == 9) | (before == 13)]  # " space tab CR
        per_line = np.searchsorted(keyish, offsets[idx + 1]) - np.searchsorted(keyish, offsets[idx])
        read = pl.sum_horizontal([pl.col(k).is_not_null() for k in self.read_schema])
        return pl.lit(pl.Series(per_line, dtype=pl.Int64)) == read

    def _aliases(self, blk: bytes) -> tuple[list[pl.Expr], list[pl.Expr]]:
        """(each aliased column's value, rows the line parser must decide). The line parser reads a
        column from its name when the line has that key (a null value too), else from the first
        alias it has; the bulk parse sees a missing key and a null alike. So where only one of a
        column's keys occurs in the block's bytes at all (a renamed export: each line has the old
        name), that key's values are the column's (a null: decided per line, as any null); where
        several occur, the line parser decides each row with a value under an alias (a row with
        the name null is decided per line anyway). A key written with escapes (``"\\u0074ext"``,
        read as ``text`` by both parsers) would hide from the byte search: a block with an escaped
        ASCII character anywhere takes the second way."""
        picks, unsure = [], []
        escaped = None
        for c in self.aliased:
            keys = (c.name, *c.aliases)
            here = [k for k in keys if _plain_key(k) and f'"{k}"'.encode() in blk]
            if len(here) == 1 and all(_plain_key(k) for k in keys):
                escaped = re.search(rb"\\u00[2-7]", blk) is not None if escaped is None else escaped
                if not escaped:
                    if here[0] != c.name:
                        picks.append(pl.col(here[0]).alias(c.name))
                    continue
            unsure.append(pl.any_horizontal([pl.col(a).is_not_null() for a in c.aliases]))
        return picks, unsure

    @staticmethod
    def _as_text(c: ColumnContract) -> pl.Expr:
        """A bulk-parsed value as the line parser renders it (``str(v)``; booleans ``True``/``False``)."""
        e = pl.col(c.name)
        if c.dtype == "bool":
            return pl.when(e).then(pl.lit("True")).when(~e).then(pl.lit("False")).alias(c.name)
        return e.cast(pl.String).alias(c.name)

    def _per_line(self, blk: bytes, first: int) -> pl.DataFrame:
        parts = blk.split(b"\n")
        if blk.endswith(b"\n"):
            parts.pop()
        last = len(parts) - 1
        parse = self.lines.row
        rows = [r for r in (parse(first + k, line + b"\n" if k < last or blk.endswith(b"\n") else line)
                            for k, line in enumerate(parts)) if r is not None]
        return self._frame(rows)

    def _frame(self, rows: list[tuple]) -> pl.DataFrame:
        """Rows of the line parser (their text in ``__line``, no byte range) as a block's frame."""
        schema = {k: v for k, v in self.schema.items() if k not in ("__lo", "__hi")}
        return pl.DataFrame(rows, schema=schema, orient="row").with_columns(
            __lo=pl.lit(None, pl.Int64), __hi=pl.lit(None, pl.Int64))


class _JsonlLines:
    """One JSONL line -> a row ``(*column values as text, line number, reason or None, line
    text)``, or None for a blank line. A line over ``max_line_bytes``, or not UTF-8 under
    ``decode_errors: fail_file``, fails the file."""

    def __init__(self, contract: ContractConfig):
        self.names = [c.name for c in contract.columns]
        self.empty = (None,) * len(self.names)
        self.checks = [(c.name, c.dtype in ("str", "timestamp"), c.dtype in ("float64", "int64"), c.nullable)
                       for c in contract.columns]
        self.aliases = {c.name: c.aliases for c in contract.columns if c.aliases}
        self.known = {*self.names, *(a for c in contract.columns for a in c.aliases)}  # keys the contract reads
        self.reject = contract.unknown_columns == "reject"
        self.limit = contract.max_line_bytes
        self.decode_errors = contract.decode_errors
        self.limit_key, self.decode_key = contract.setting("max_line_bytes"), contract.setting("decode_errors")
        self.columns_key, self.unknown_key = contract.setting("columns"), contract.setting("unknown_columns")

    def row(self, i: int, line: bytes) -> tuple | None:
        if self.limit and len(line) > self.limit:
            raise FileError(f"line {i}: {len(line):,} bytes, over {self.limit_key} {self.limit:,}")
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            if self.decode_errors != "latin1":
                return self._undecodable(i, line)
            text = line.decode("latin-1")  # the export's declared fallback encoding
        if not text.strip():
            return None
        text = text.rstrip("\n")
        try:
            obj = json.loads(text, object_pairs_hook=_first_wins)
        except json.JSONDecodeError:
            return (*self.empty, i, "invalid JSON", text)
        if not isinstance(obj, dict):
            return (*self.empty, i, "invalid JSON: not an object", text)
        # each contract key (or one of its aliases): present, null only where nullable, of its JSON
        # type; then the keys outside the contract; the first problem is the reason
        pre, values, used = None, [], []
        for name, is_text, is_number, nullable in self.checks:
            key = self._key(name, obj) if self.aliases else name
            if key is None:  # two of its aliases: which one is the column is not the line's to say
                pre = pre or self._two_aliases(name, obj)
                values.append(None)
                continue
            used.append(key)
            v = obj.get(key, _MISSING)
            if v is None or v is _MISSING:
                if v is _MISSING:
                    pre = pre or self._missing(name, obj)
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
        if self.reject and not pre:
            unknown = _unknown_keys(obj, used)
            if unknown:
                pre = f"unknown key(s) {', '.join(unknown)} ({self.unknown_key}: drop would accept the line)"
        return (*values, i, pre, text)

    def _key(self, name: str, obj: dict) -> str | None:
        """The line's key for column ``name``: the name, else the first of its aliases the line
        has; None when the line has two of them (:meth:`_two_aliases`)."""
        if name in obj or name not in self.aliases:
            return name
        found = [a for a in self.aliases[name] if a in obj]
        if len(found) > 1:
            return None
        return found[0] if found else name

    def _two_aliases(self, name: str, obj: dict) -> str:
        """The reason of a line with two (or more) of column ``name``'s aliases and not the name: the
        line is quarantined, its text kept. A CSV/Parquet header with two fails its file
        (:func:`contract.header_renames`), but a JSONL file's keys differ per line, and one such
        line must not drop a night's file (a null under an alias counts: the key is there)."""
        found = [a for a in self.aliases[name] if a in obj]
        return (f"{len(found)} aliases of column {name} in the line ({', '.join(found)}): keep the exports' one "
                f"in the aliases of column {name} in {self.columns_key}")

    def _missing(self, name: str, obj: dict) -> str:
        """The reason of a line without key ``name``; the keys outside the contract it has, which
        may be that column under another name, are named with the aliases that would read them."""
        unknown = _unknown_keys(obj, self.known)
        if not unknown:
            return f"missing key {name}"
        return (f"missing key {name} (the line has unknown key(s) {', '.join(unknown)}: if one is {name} under another "
                f"name, list it in aliases: [...] of column {name} in {self.columns_key})")

    def _undecodable(self, i: int, line: bytes) -> tuple:
        """A line that is not UTF-8: fails the file (``fail_file``) or is quarantined, naming the field."""
        if self.decode_errors == "fail_file":
            raise FileError(f"line {i}: invalid UTF-8 ({self.decode_key}: fail_file)") from None
        field_name = _undecodable_field(line, self.names)
        return (*self.empty, i, f"invalid UTF-8 in {field_name}" if field_name else "invalid UTF-8", line.decode("latin-1"))


_MISSING = object()


def _unknown_keys(obj: dict, known) -> list[str]:
    """A line's keys outside ``known`` (a key starting with ``_`` is not judged: as a CSV column's,
    contract._check_columns)."""
    return [k for k in obj if k not in known and not k.startswith("_")]


def _first_wins(pairs: list[tuple[str, object]]) -> dict:
    """A JSON object whose key occurs twice keeps the first value, as Polars' NDJSON reader does
    (Python's default keeps the last), so the bulk and the per-line parse agree."""
    out: dict = {}
    for k, v in pairs:
        out.setdefault(k, v)
    return out


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
