"""A contract's unique key (``unique: [machine_id, ts]``), enforced over the whole dataset: the
file's own rows, the other files of the night and every earlier night's rows.

Two rows *conflict* when they share the key (typed values: ``…T01:00:00+01:00`` and ``…T00:00:00Z``
are one key) and differ in any other contract column; rows that share the key with the same values
are *duplicates* (``duplicate_rows`` decides: quarantined as ``duplicate row``, or ``duplicate row
(already in the dataset)`` for a row an earlier file brought, or kept).
``unique_conflicts`` decides a conflict:

* ``quarantine`` — every member of a conflicting group in this file goes to quarantine (reason
  ``unique key (…): rows with different values``); rows of the group that are already in the
  dataset (an earlier file) stay there: published rows are never rewritten by another file.
* ``keep_first`` — the earliest row wins (the dataset's, else the file's first in row order); the
  others go to quarantine (``unique key (…): an earlier row has other values``).
* ``keep_all`` — every row is written; the conflicts are counted.

How: while a file streams, each row written gets a 64-bit hash of its key and one of its values
(:class:`KeyLog`, 24 bytes per row with its row number). When the file is through, under a lock
on the dataset (so concurrent files of a night see each other in the order they finish), the keys
are checked against the keys of every other file in the manifest (``_keys/part-<digest>.parquet``,
one per file, written beside its data and listed in its manifest entry, removed with it) and
among themselves (:func:`resolve`); the rows that lose are moved from the staged parts to the
quarantine part (:func:`move_to_quarantine`) before anything is published, so rows in = written
+ quarantined still holds. The hashes depend on the Polars version and the columns (the scheme is
in each manifest entry): a file without an index of this scheme (ingested before ``unique`` was
set, or under another Polars) gets one built from its data parts, once, when a later file needs it.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import polars as pl
import pyarrow.parquet as pq

from rsft.config import ContractConfig
from rsft.fsio import file_lock, temp_path

_K_SEED, _V_SEED = 0x5EED_0001, 0x5EED_0002
DUP_EARLIER = "duplicate row (already in the dataset)"  # same key, same values as a row of an earlier file


def scheme(contract: ContractConfig) -> str:
    """What the stored hashes depend on: Polars' hash, the key columns, the value columns."""
    return json.dumps({"polars": pl.__version__, "unique": contract.unique, "values": [c.name for c in contract.columns]})


def _hashes(contract: ContractConfig) -> list[pl.Expr]:
    cols = [c.name for c in contract.columns]
    return [pl.struct(contract.unique).hash(_K_SEED).alias("__k"), pl.struct(cols).hash(_V_SEED).alias("__v")]


class KeyLog:
    """The key and value hashes of every row of a file written to its data parts, with the row."""

    def __init__(self, contract: ContractConfig):
        self.exprs = _hashes(contract)
        self.frames: list[pl.DataFrame] = []

    def add(self, typed: pl.DataFrame) -> None:
        if typed.height:
            self.frames.append(typed.select([pl.col("_row"), *self.exprs]))

    def frame(self) -> pl.DataFrame:
        if not self.frames:
            return pl.DataFrame(schema={"_row": pl.Int64, "__k": pl.UInt64, "__v": pl.UInt64})
        return pl.concat(self.frames).sort("_row")


@contextmanager
def dataset_lock(dataset_dir: Path) -> Iterator[None]:
    """One file at a time publishes its parts and manifest entry — with a unique key, after
    resolving its keys — or cleans up after a failed re-ingest (threads and processes alike)."""
    with file_lock(Path(dataset_dir) / ".lock"):
        yield


def index_path(dataset_dir: Path, stem: str) -> Path:
    return Path(dataset_dir) / "_keys" / f"{stem}.parquet"


def write_index(path: Path, keys: pl.DataFrame) -> None:
    """A file's kept keys (``__k``, ``__v``); temp, then renamed. The hash scheme is recorded in
    the file's manifest entry (``keys_scheme``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    keys.select("__k", "__v").write_parquet(tmp, compression="zstd")
    tmp.replace(path)


def earlier_keys(dataset_dir: Path, entries: dict[str, dict], contract: ContractConfig, wanted: pl.Series) -> pl.DataFrame:
    """(``__k``, ``__v``) of the rows of these manifest entries (by digest) whose key is among
    ``wanted``, from each entry's key index. An entry without one of this scheme (ingested before
    ``unique`` was set, another Polars version, other columns) gets one now, built from its data
    parts and recorded in its manifest entry (the caller holds the dataset lock)."""
    want = scheme(contract)
    frames = []
    for digest, entry in entries.items():
        idx = entry.get("keys")
        if not (idx and entry.get("keys_scheme") == want and Path(idx).exists()):
            idx = _rebuild_index(Path(dataset_dir), digest, entry, contract)
            if idx is None:
                continue
        frames.append(pl.scan_parquet(idx).filter(pl.col("__k").is_in(wanted.implode())).collect())
    if not frames:
        return pl.DataFrame(schema={"__k": pl.UInt64, "__v": pl.UInt64})
    return pl.concat(frames).unique()


def _rebuild_index(dataset_dir: Path, digest: str, entry: dict, contract: ContractConfig) -> str | None:
    """An earlier file's key index from its data parts (streamed), recorded in its manifest entry."""
    from rsft.ingest.manifest import _part_stem, _write_entry
    from rsft.ingest.results import FileError

    data_dir = (dataset_dir / "data").resolve()
    parts = [p for p in entry.get("outputs", []) if Path(p).resolve().is_relative_to(data_dir) and Path(p).exists()]
    if not parts:
        return None
    path = index_path(dataset_dir, _part_stem(digest))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        (pl.scan_parquet(parts, hive_partitioning=False).select([c.name for c in contract.columns])
         .select(_hashes(contract)).sink_parquet(tmp, compression="zstd"))
    except Exception as e:  # noqa: BLE001 - one line naming the earlier file
        tmp.unlink(missing_ok=True)
        raise FileError(f"unique key: cannot read the keys of the earlier file {entry.get('name', digest)}: "
                        f"{str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}") from None
    tmp.replace(path)
    outputs = [o for o in entry.get("outputs", []) if o != str(path)] + [str(path)]
    _write_entry(dataset_dir, digest, {**entry, "outputs": outputs, "keys": str(path), "keys_scheme": scheme(contract)})
    return str(path)


def resolve(rows: pl.DataFrame, earlier: pl.DataFrame, contract: ContractConfig) -> tuple[pl.DataFrame, pl.DataFrame, dict]:
    """The file's rows (``_row``, ``__k``, ``__v``, in row order) against the dataset's: (rows to move
    to quarantine with ``reason``, the kept rows' keys for the index, counts for the manifest)."""
    cols = ", ".join(contract.unique)
    policy = contract.unique_conflicts
    ek = earlier.group_by("__k").len("__n_earlier")
    ekv = earlier.unique().with_columns(__in_ekv=pl.lit(True))
    df = (rows.with_columns(__first_kv=pl.struct("__k", "__v").is_first_distinct(),
                            __fv=pl.col("__v").first().over("__k"),
                            __nv=pl.col("__v").n_unique().over("__k"))
          .join(ek, on="__k", how="left", maintain_order="left")
          .join(ekv, on=["__k", "__v"], how="left", maintain_order="left")
          .with_columns(__in_ek=pl.col("__n_earlier").is_not_null(), __in_ekv=pl.col("__in_ekv").fill_null(False)))
    vs_dataset = pl.col("__in_ek") & ~pl.col("__in_ekv")  # the key is in the dataset with other values
    group = ((pl.col("__nv") > 1) | vs_dataset.any().over("__k")).alias("__conflict")
    df = df.with_columns(group, vs_dataset.alias("__vs_dataset"))
    if policy == "quarantine":
        out = pl.col("__conflict")
        why = f"unique key ({cols}): rows with different values"
    elif policy == "keep_first":
        out = pl.col("__vs_dataset") | (~pl.col("__in_ek") & (pl.col("__v") != pl.col("__fv")))
        why = f"unique key ({cols}): an earlier row has other values"
    else:
        out, why = pl.lit(False), None
    dup = (pl.col("__in_ekv") | ~pl.col("__first_kv")) if contract.duplicate_rows == "quarantine" else pl.lit(False)
    df = df.with_columns(reason=pl.when(out).then(pl.lit(why)).when(dup & pl.col("__in_ekv")).then(pl.lit(DUP_EARLIER))
                         .when(dup).then(pl.lit("duplicate row")))
    conflicts = df.filter("__conflict")
    counts = {"policy": policy, "conflict_rows": conflicts.height, "conflict_keys": conflicts["__k"].n_unique(),
              "conflict_rows_with_earlier_files": int(df["__vs_dataset"].sum()),
              "quarantined_conflicts": int(df["reason"].eq(why).sum()) if why else 0,
              "quarantined_duplicates": int(df["reason"].is_in(["duplicate row", DUP_EARLIER]).sum())}
    moved = df.filter(pl.col("reason").is_not_null()).select("_row", "reason")
    kept = df.filter(pl.col("reason").is_null()).select("__k", "__v")
    return moved, kept, counts


def _as_text(df: pl.DataFrame) -> pl.DataFrame:
    """Typed rows back to text, as the quarantine holds them (timestamps in ISO form)."""
    out = []
    for name, dt in df.schema.items():
        e = pl.col(name)
        if name in ("_row", "_source", "reason"):
            out.append(e)
        elif isinstance(dt, pl.Datetime):
            out.append(e.dt.convert_time_zone("UTC").dt.strftime("%Y-%m-%dT%H:%M:%S%.fZ").alias(name))
        else:
            out.append(e.cast(pl.String).alias(name))
    return df.select(out)


def move_to_quarantine(moved: pl.DataFrame, staged: list[Path], tmp_bad: Path, keep: list[str]) -> int:
    """Take the ``moved`` rows (by ``_row``) out of the staged data parts and append them, as text
    with their reason, to the quarantine part; a part left without rows is removed from disk and
    from ``staged`` (unless it is the file's only part: it keeps the schema). Returns how many
    rows moved."""
    if not moved.height:
        return 0
    rows = moved["_row"].implode()
    taken = []
    for part in list(staged):
        df = pl.read_parquet(part, hive_partitioning=False)
        hit = df["_row"].is_in(rows)
        if not hit.any():
            continue
        taken.append(df.filter(hit).select(keep).join(moved, on="_row", how="left"))
        rest = df.filter(~hit)
        if not rest.height and len(staged) > 1:
            part.unlink()
            staged.remove(part)
            continue
        tmp = temp_path(part)
        pq.write_table(rest.to_arrow(), tmp, compression="zstd", row_group_size=250_000)
        tmp.replace(part)
    bad = _as_text(pl.concat(taken, how="vertical_relaxed")).select("_source", "_row", "reason", *[c for c in keep if c not in ("_source", "_row")])
    if tmp_bad.exists():
        bad = pl.concat([pl.read_parquet(tmp_bad), bad], how="diagonal_relaxed").sort("_row")
    tmp = temp_path(tmp_bad)
    pq.write_table(bad.to_arrow(), tmp, compression="zstd")
    tmp.replace(tmp_bad)
    return sum(t.height for t in taken)

