"""The contract, as Polars expressions over columns read as text: the header check (missing /
unknown columns), the cheap first pass on every row (:func:`_fast`: a typed value and a
needs-a-closer-look flag) and the full check on the flagged rows (:func:`_typed` per column,
:func:`_validate` per frame), which names the column and rule that a quarantined row broke.
"""

from __future__ import annotations

import logging
import math

import polars as pl

from rsft.config import ColumnContract, ContractConfig
from rsft.ingest.results import FileError
from rsft.tables import other_separator

# the Polars type of an ingested column of each contract dtype (timestamps: Datetime, any unit/zone)
POLARS_TYPES = {"float64": pl.Float64, "int64": pl.Int64, "bool": pl.Boolean, "str": pl.String}

log = logging.getLogger("rsft.ingest")  # one logger name for the whole ingest (the CLI prints it)


_TZ = r"(Z|[+-]\d{2}:?\d{2})$"
_ISO_AWARE = "%Y-%m-%dT%H:%M:%S%.f%#z"  # Z, +01:00 or +0100, optional fraction
_ISO_NAIVE = "%Y-%m-%dT%H:%M:%S%.f"
_ISO_Z = "%Y-%m-%dT%H:%M:%SZ"  # the fast path's one shape


def header_renames(cols: list[str], contract: ContractConfig) -> dict[str, str]:
    """``{file column: contract column}`` for a contract column the header lacks under its name but
    has under one of its ``aliases``; two of its aliases in one header fail the file."""
    out = {}
    for c in contract.columns:
        if c.aliases and c.name not in cols:
            found = [a for a in c.aliases if a in cols]
            if len(found) > 1:
                raise FileError(f"column {c.name}: the file has {len(found)} of its aliases ({', '.join(found)}); "
                                f"keep one of them in the aliases of column {c.name} in {contract.setting('columns')}")
            if found:
                out[found[0]] = c.name
    return out


def _check_columns(cols: list[str], contract: ContractConfig) -> list[str]:
    """A header (its ``aliases`` already read as their columns, :func:`header_renames`) against the
    contract: a missing column, or an unknown one under ``unknown_columns: reject``, fails the file;
    returns the unknown columns to keep (``keep``), else none."""
    expected = [c.name for c in contract.columns]
    missing = [c for c in expected if c not in cols]
    extra = [c for c in cols if c not in expected and not c.startswith("_")]
    if missing:
        sep = other_separator(cols)
        shown = '"\\t"' if sep == "\t" else repr(sep)  # as YAML reads it back (a tab in double quotes)
        if sep:
            hint = (f" — the header looks {shown}-separated: set {contract.setting('delimiter')}: {shown} "
                    f"(or {contract.setting('sniff_delimiter')}: true)")
        elif extra:  # one of them may be the missing column under another name
            hint = (f" — the file has unknown column(s) {', '.join(extra)}: if one is a missing column under "
                    f"another name, list it in that column's aliases: [...] in {contract.setting('columns')}")
        else:
            hint = ""
        raise FileError(f"missing column(s): {', '.join(missing)} (every contract column must be in the header, "
                        f"a nullable one too){hint}")
    if extra and contract.unknown_columns == "reject":
        raise FileError(f"unknown column(s): {', '.join(extra)} ({contract.setting('unknown_columns')}: drop or keep "
                        "would accept the file)")
    if extra and contract.unknown_columns == "drop":
        log.warning("dropping unknown column(s): %s", ", ".join(extra))
    return extra if contract.unknown_columns == "keep" else []


def _typed(
    col: ColumnContract, naive_policy: str = "reject", utc_only: bool = False, decimal_comma: bool = False,
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
        return _typed_float(col, raw, present, missing, value, decimal_comma)
    if col.dtype == "int64":
        return _typed_int(col, raw, present, missing, value)
    if col.dtype == "bool":
        return _typed_bool(col, raw, present, missing)
    if col.dtype == "timestamp":
        return _typed_timestamp(col, raw, present, missing, value, naive_policy, utc_only)
    return _typed_str(col, raw, present, missing)


def _typed_float(col: ColumnContract, raw: pl.Expr, present: pl.Expr, missing: pl.Expr,
                 value: pl.Expr | None, decimal_comma: bool = False) -> tuple[pl.Expr, pl.Expr]:
    """float64: trimmed text cast (``decimal_comma``: a comma read as the decimal point, ``3,14``);
    not a number, non-finite (``finite``), out of ``[min, max]``."""
    text = raw.str.strip_chars()
    if decimal_comma:  # the fast pass flags such values (its cast fails): they all come here
        text = text.str.replace(",", ".", literal=True)
    val = pl.when(present).then(text.cast(pl.Float64, strict=False)) if value is None else value
    bad = pl.when(present & val.is_null()).then(pl.lit(f"{col.name} not a number"))
    nonfinite = pl.when(col.finite & val.is_not_null() & ~val.is_finite()).then(pl.lit(f"{col.name} non-finite"))
    rng = pl.lit(False)
    if col.min is not None:
        rng = rng | (val < col.min)
    if col.max is not None:
        rng = rng | (val > col.max)
    out = pl.when(val.is_finite() & rng).then(pl.lit(f"{col.name} out of range [{col.min}, {col.max}]"))
    return val, pl.coalesce(missing, bad, nonfinite, out)


def _typed_int(col: ColumnContract, raw: pl.Expr, present: pl.Expr, missing: pl.Expr,
               value: pl.Expr | None) -> tuple[pl.Expr, pl.Expr]:
    """int64: trimmed text cast; not an integer."""
    val = pl.when(present).then(raw.str.strip_chars().cast(pl.Int64, strict=False)) if value is None else value
    return val, pl.coalesce(missing, pl.when(present & val.is_null()).then(pl.lit(f"{col.name} not an integer")))


def _typed_bool(col: ColumnContract, raw: pl.Expr, present: pl.Expr, missing: pl.Expr) -> tuple[pl.Expr, pl.Expr]:
    """bool: true/1 or false/0, trimmed, any case; not a boolean."""
    low = raw.str.strip_chars().str.to_lowercase()
    val = pl.when(low.is_in(["true", "1"])).then(True).when(low.is_in(["false", "0"])).then(False)
    return val, pl.coalesce(missing, pl.when(present & val.is_null()).then(pl.lit(f"{col.name} not a boolean")))


def _typed_timestamp(col: ColumnContract, raw: pl.Expr, present: pl.Expr, missing: pl.Expr, value: pl.Expr | None,
                     naive_policy: str, utc_only: bool) -> tuple[pl.Expr, pl.Expr]:
    """timestamp: ISO 8601 converted to UTC; a naive time rejected or assumed UTC (``naive_policy``),
    a non-UTC offset rejected under ``utc_only``, anything else unparseable. Date and time may be
    separated by a space, as RFC 3339 allows and pandas' ``to_csv`` writes (``2013-10-07
    00:00:00-04:00``)."""
    s = raw.str.strip_chars().str.replace(r"^(\d{4}-\d{2}-\d{2}) (\d{2}:)", "${1}T${2}")
    has_tz = s.str.contains(_TZ)
    aware = s.str.to_datetime(_ISO_AWARE, strict=False, time_unit="us", time_zone="UTC")
    naive = s.str.to_datetime(_ISO_NAIVE, strict=False, time_unit="us").dt.replace_time_zone("UTC")
    utc_form = s.str.contains(r"(Z|\+00:?00)$")
    if naive_policy == "assume_utc":
        val = pl.when(has_tz).then(aware).otherwise(naive) if value is None else value
        naive_reason = pl.lit(None, dtype=pl.String)
    elif naive_policy.startswith("local:"):  # wall-clock time of a zone (naive_timestamps: assume_local)
        tz = naive_policy.removeprefix("local:")
        wall = s.str.to_datetime(_ISO_NAIVE, strict=False, time_unit="us")
        local = wall.dt.replace_time_zone(tz, ambiguous="null", non_existent="null").dt.convert_time_zone("UTC")
        val = pl.when(has_tz).then(aware).otherwise(local) if value is None else value
        # a wall time the DST change skips or repeats: parsed, but not one instant
        naive_reason = pl.when(present & ~has_tz & wall.is_not_null() & val.is_null()).then(
            pl.lit(f"{col.name}: local time skipped or repeated by a DST change in {tz}"))
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


def _typed_str(col: ColumnContract, raw: pl.Expr, present: pl.Expr, missing: pl.Expr) -> tuple[pl.Expr, pl.Expr]:
    """str: the text as is; a ``pattern`` to match in full, an ``allowed`` set."""
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
    if (col.dtype == "float64" and col.finite and not col.nullable and col.min is not None and col.max is not None
            and math.isfinite(col.min) and math.isfinite(col.max)):  # an infinite bound would let ±inf in
        # one comparison pair instead of five flags: outside [min, max], NaN and ±inf are out of
        # range and a null (missing or not a number) is not in it — the same rows as below
        val = raw.cast(pl.Float64, strict=False)
        return val, ~val.is_between(col.min, col.max).fill_null(False)
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
        # No cache of converted values: hashing every text cost more than parsing it (0.38 against
        # 0.43 s of CPU for the scan + parse of 2.7 M demo timestamps, 24 rows per distinct value)
        val = raw.str.to_datetime(_ISO_Z, strict=False, time_unit="us", time_zone="UTC", cache=False)
        flags.append(present & val.is_null())
    else:
        val = raw
        # blank text (missing in the full check): flagged, unless an allowed set without a
        # blank member flags it anyway (one regex less per row)
        if not col.nullable and (col.allowed is None or not all(a.strip() for a in col.allowed)):
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
    return _validator(contract, raw.collect_schema().names(), keep_extra)(raw)


def _validator(contract: ContractConfig, names: list[str], keep_extra: list[str]):
    """:func:`_validate` for frames with the columns ``names``, its expressions built once: a
    stream's batches all have the same columns, and building them took ~3 ms of a batch's ~15 ms
    full check (16 columns)."""
    # stage 1: parse every column once into helper columns; stage 2: reasons read the parsed values
    pol = (contract.naive_timestamps if contract.naive_timestamps != "assume_local" else f"local:{contract.local_timezone}",
           contract.utc_only, contract.decimal_comma)
    parsed = [_typed(c, *pol)[0].alias(f"__v_{c.name}") for c in contract.columns]
    flags = [(pl.col(c.name).is_not_null() & (pl.col(c.name).str.strip_chars() != "")).alias(f"__p_{c.name}") for c in contract.columns]
    typed, reasons = zip(*[
        (pl.col(f"__v_{c.name}"), _typed(c, *pol, value=pl.col(f"__v_{c.name}"), present=pl.col(f"__p_{c.name}"))[1])
        for c in contract.columns
    ])
    reason = pl.coalesce(*reasons)
    if "__pre" in names:
        reason = pl.coalesce(pl.col("__pre"), reason)
    if "__dup" in names:
        reason = pl.coalesce(reason, pl.when(pl.col("__dup")).then(pl.lit("duplicate row")))
    good_cols = [t.alias(c.name) for t, c in zip(typed, contract.columns)] + [pl.col(c) for c in keep_extra] + [pl.col("_source"), pl.col("_row")]
    text_cols = [c for c in names if c not in ("_row", "_source", "__pre", "__dup")]
    bad_cols = ([pl.col("_source"), pl.col("_row"), pl.col("__reason").alias("reason")]
                + [(pl.col(c).str.strip_suffix("\n") if c == "__line" else pl.col(c).cast(pl.String)) for c in text_cols])

    def check(raw: pl.LazyFrame) -> tuple[pl.LazyFrame, pl.LazyFrame]:
        df = raw.with_columns(parsed + flags).with_columns(reason.alias("__reason"))
        return (df.filter(pl.col("__reason").is_null()).select(good_cols),
                df.filter(pl.col("__reason").is_not_null()).select(bad_cols))

    return check


def typed_names(contract: ContractConfig, extra: list[str]) -> list[str]:
    return [c.name for c in contract.columns] + list(extra) + ["_source", "_row"]
