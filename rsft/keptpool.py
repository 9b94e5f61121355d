"""The kept pool as ONE partitioned dataset, prefiltered one day at a time and updated in place.

Layout under ``prefiltered/<rules key>/`` (the rules key digests the rules and the derived
columns, so another rule set is another dataset)::

    days/<day>/<result key>.parquet     kept rows of one UTC day (``null`` = rows without a time)
    ctx/<digest>.parquet                small context frames: a day's first/last ``ctx`` readings
                                        per machine, the left/right context handed to a day, the
                                        last kept rows per machine (rolling features)
    versions/<pool key>.json            a manifest: every day's record and its kept file, in order
    journal/<pool key>.json             what that manifest changed: the manifest current before it
                                        (``previous``) and the files (day, excluded, context) it
                                        lists that one did not (``added``) and the reverse
                                        (``replaced``): what a night's ``rsft gc`` reads instead of
                                        the directories (:func:`journal_plan`)
    current.json                        {"version": <pool key>} — the newest manifest (swapped atomically)
    days-index-<time column>.json       ingested part → rows per day (each part is read once)
    samples/pool-<seed>.json            the pool-sample reservoir of a seed: its cap, files and their day files
    samples/pool-<seed>-<digest>.parquet  those day files' rows with row hash < cap: pool samples
                                        (:func:`sample_pool`) read these, not the pool

A day's result depends on its own rows, the left context (each machine's last ``ctx`` readings
before the day, however many days back), the right context (each machine's next ``ctx`` readings
after it) and, with rolling features, each machine's last kept rows before it. Its result key
digests all four and the rules, so a night recomputes a day only when its content or one of its
contexts changed: the new day, and the neighbours whose window context it changes (usually the
day before). Everything is keyed by content: a from-scratch run writes the same files as an
incremental one. Unchanged days cost a dictionary lookup; contexts are recomputed only from the
first changed day on, with small frames.

A night writes new day files and context frames beside the old ones (nothing is rewritten), then
the manifest (atomic rename) and ``current.json``. Readers of an older manifest keep working until
``rsft gc`` removes what no kept manifest lists.

Rules that need the whole pool at once (``text_duplicate``, a ``duplicate`` key without the
group and time) or a pool without a time column fall back to one partition (``all``) computed
by :func:`rsft.prefilter.prefilter`, keyed by the whole dataset.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from rsft import progress
from rsft.config import PrefilterConfig
from rsft.fsio import atomic_path, atomic_write_text, digest, remove_orphans

EMPTY = "empty"
NULL_DAY = "null"
# the kept day files are written with ``prefilter.kept_compression`` (every night's scoring pass
# reads them all: lz4 by default); the dropped rows (``prefilter.write_excluded``), read only to
# inspect, stay zstd


# the dtypes a "dictionary" day file is written with pyarrow for (read back as the same frame);
# any other column (categoricals, nested, decimals, objects) and the file is written by Polars with lz4
_PLAIN_DTYPES = (pl.Boolean, pl.String, pl.Date, pl.Datetime, pl.Float32, pl.Float64,
                 pl.Int8, pl.Int16, pl.Int32, pl.Int64, pl.UInt8, pl.UInt16, pl.UInt32, pl.UInt64)


def write_kept(df: pl.DataFrame, path: str | Path, codec: str) -> None:
    """One kept day file with ``prefilter.kept_compression`` = ``codec``.

    ``dictionary``: pyarrow's writer, no codec, every column dictionary-encoded (a column chunk
    whose dictionary passes 1 MB goes on plain) except ``_row`` (the source's row numbers, never
    repeated: delta-encoded, a few bits a row). Readings of a few significant digits repeat, so
    the dictionary is small and the pages are bit-packed indices: smaller than Polars' LZ4 on real
    sensor tables and decoded without a codec (BENCHMARKS.md, "Fifth session")."""
    if codec != "dictionary":
        df.write_parquet(path, compression=codec)  # type: ignore[arg-type]
        return
    if not all(isinstance(t, _PLAIN_DTYPES) for t in df.schema.dtypes()):
        df.write_parquet(path, compression="lz4")
        return
    import pyarrow.parquet as pq

    table = df.to_arrow()
    delta = [c for c in ("_row",) if c in df.columns and df.schema[c] == pl.Int64]
    # text columns keep a codec: a document column's dictionary overflows and its pages go plain,
    # and text shrinks several times under LZ4 (a text pool uncompressed would be several times lz4's)
    codec_of = {c: ("lz4" if t in (pl.String, pl.Binary) else "none") for c, t in df.schema.items()}
    pq.write_table(table, str(path), compression=codec_of, use_dictionary=[c for c in df.columns if c not in delta],
                   column_encoding={c: "DELTA_BINARY_PACKED" for c in delta} or None)


def frame_digest(df: pl.DataFrame) -> str:
    """Content digest of a (small) frame: its schema and row hashes in order."""
    if df.height == 0:
        return EMPTY
    h = hashlib.sha256(json.dumps([[n, str(t)] for n, t in df.schema.items()]).encode())
    h.update(df.hash_rows(seed=0).to_numpy().tobytes())
    return h.hexdigest()[:16]


# --------------------------------------------------------------------------------------
# reading a kept pool
# --------------------------------------------------------------------------------------
def is_manifest(path: str | Path) -> bool:
    return str(path).endswith(".json")


def manifest_files(path: str | Path) -> list[str]:
    """The kept pool's Parquet files in order (day order), absolute paths."""
    m = json.loads(Path(path).read_text())
    base = Path(path).parent.parent
    return [str(base / r["file"]) for r in m["days"]]


def excluded_files(path: str | Path) -> list[str]:
    """The dropped rows' Parquet files of a manifest (``prefilter.write_excluded``), day order."""
    m = json.loads(Path(path).read_text())
    base = Path(path).parent.parent
    return [str(base / r["excluded"]) for r in m["days"] if r.get("excluded")]


def pool_files(path: str | Path) -> list[str]:
    """Files of a kept pool given as a manifest, or ``[path]`` for a plain Parquet file."""
    return manifest_files(path) if is_manifest(path) else [str(path)]


def scan_pool(path: str | Path) -> pl.LazyFrame:
    """The kept pool as one lazy frame (a manifest's files in day order, or one Parquet file)."""
    return pl.scan_parquet(pool_files(path), hive_partitioning=False)


# a pool sample this large a share (per million) of the pool reads the day files themselves: a
# reservoir of most of the pool would cost disk and save little reading
SAMPLE_FILE_MAX_CAP = 125_000


def _hash(seed: int) -> pl.Expr:
    return pl.struct("_source", "_row").hash(seed) % 1_000_000


def reservoir_index(base: str | Path, seed: int) -> Path:
    """``samples/pool-<seed>.json``: the pool-sample reservoir of one seed (cap, file, day files)."""
    return Path(base) / "samples" / f"pool-{seed}.json"


def sample_pool(path: str | Path, rows: int, rows_total: int, seed: int) -> pl.LazyFrame:
    """The kept pool's rows whose row hash (``seed``) falls under ``rows / rows_total`` — the rows
    and order of :func:`rsft.pipeline.data.hashed_sample` over :func:`scan_pool` — read from one
    small reservoir per seed instead of the pool.

    The reservoir (``samples/pool-<seed>-<digest>.parquet`` files, named by
    ``samples/pool-<seed>.json``) holds, for the day files it lists, their rows with hash < cap
    and that hash (``__h``: no row of it is hashed again). A night reads it, skips the days no
    longer in the pool, and adds the rows of the day files it lacks (the new day and the
    recomputed neighbours: read whole, once) as one more small file; past
    ``RESERVOIR_MAX_PARTS`` files it is written again as one. So a night costs about the sample
    plus its new days, however long the history. ``cap`` is ``CAP_WRITE`` × tonight's threshold
    when written and lowered to that again once the pool has grown so that it exceeds
    ``CAP_MAX`` × what is needed (the reservoir stays 1–1.5 × the sample). While the sample is
    more than ``SAMPLE_FILE_MAX_CAP / 2`` of the pool (a small pool), the day files are read instead."""
    if rows_total <= rows or not is_manifest(path):
        lf = scan_pool(path)
        return lf if rows_total <= rows else lf.filter(_hash(seed) < int(rows / rows_total * 1_000_000) + 1)
    keep = int(rows / rows_total * 1_000_000) + 1
    if 2 * keep > SAMPLE_FILE_MAX_CAP:  # the sample is most of the pool: read the days themselves
        return scan_pool(path).filter(_hash(seed) < keep)
    return _reservoir(Path(path).parent.parent, manifest_files(path), seed, keep)


# a reservoir is at most this many files (one written whole, then one small file per night that
# added days); past it, or when its cap changes, it is written again as one file
RESERVOIR_MAX_PARTS = 4
# its cap (row hashes kept, per million) is CAP_WRITE × the night's threshold when written, and
# written again lower once it exceeds CAP_MAX × it: it holds 1-1.5 × the sample
CAP_WRITE, CAP_MAX = 1.25, 1.5
# whose row hash picked a reservoir's rows (Polars does not promise the same hash across versions)
HASH_VERSION = f"polars-{pl.__version__}"
# the reservoir's file layout: rows with their hash ``__h``, files as row ranges of the index
RESERVOIR_LAYOUT = 2


def reservoir_parts(index: dict[str, Any]) -> list[dict[str, Any]]:
    """A reservoir index's files, each ``{"file", "files", "rows"}``: the day files it holds rows of, in
    its row order, and how many rows each (an index of an older rsft without ``rows`` is rebuilt)."""
    return index.get("parts") or ([{"file": index["file"], "files": index["files"]}] if "file" in index else [])


def _reservoir(base: Path, files: list[str], seed: int, keep: int) -> pl.LazyFrame:
    """The rows with hash < ``keep`` of the day ``files`` in pool order, from the seed's reservoir
    (brought up to date with ``files`` first)."""
    rels = [os.path.relpath(f, base) for f in files]
    pos = {rel: i for i, rel in enumerate(rels)}
    index = reservoir_index(base, seed)
    try:
        idx = json.loads(index.read_text())
        parts = reservoir_parts(idx)
        # rows were kept by Polars' row hash, which a Polars upgrade may change: another version's
        # reservoir holds the wrong rows (its sample would shrink), so it is built again
        if not (idx.get("layout") == RESERVOIR_LAYOUT and idx["cap"] >= keep and parts
                and idx.get("hash") == HASH_VERSION and all("rows" in p for p in parts)
                and all((index.parent / p["file"]).exists() for p in parts)):
            idx, parts = None, []
    except (OSError, ValueError, KeyError):
        idx, parts = None, []
    cap = idx["cap"] if idx is not None and idx["cap"] <= CAP_MAX * keep else max(keep, int(CAP_WRITE * keep))
    # each pool day file the reservoir holds: (position in the pool, part, first row, rows)
    have: set[str] = set()
    held: list[tuple[int, int, int, int]] = []
    for i, p in enumerate(parts):  # a part's rows are its files' rows in its files' order
        start = 0
        for rel, n in zip(p["files"], p["rows"]):
            if rel in pos and rel not in have:
                held.append((pos[rel], i, start, n))
                have.add(rel)
            start += n
    new_rels = [r for r in rels if r not in have]
    frames = [pl.scan_parquet(index.parent / p["file"], hive_partitioning=False) for p in parts]

    def in_order(entries: list[tuple[int, int, int, int]]) -> list[pl.LazyFrame]:
        """The entries' rows in pool order: one slice per run of files contiguous in a part."""
        runs: list[list[int]] = []
        for _, i, st, n in sorted(entries):
            if n and runs and runs[-1][0] == i and runs[-1][1] + runs[-1][2] == st:
                runs[-1][2] += n
            elif n:
                runs.append([i, st, n])
        return [frames[i].slice(st, n) for i, st, n in runs]

    def write(df: pl.DataFrame, names: list[str], counts: list[int]) -> dict[str, Any]:
        name = f"pool-{seed}-{digest(cap, names, counts)}.parquet"
        if not (index.parent / name).exists():
            index.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(index.parent / name) as tmp:
                df.write_parquet(tmp, compression="lz4")
        return {"file": name, "files": names, "rows": counts}

    def done(out: list[pl.LazyFrame]) -> pl.LazyFrame:
        if not out:
            return pl.scan_parquet(files[0], hive_partitioning=False).head(0)
        return pl.concat(out, how="vertical_relaxed").filter(pl.col("__h") < keep).drop("__h")

    def new_rows() -> tuple[list[pl.DataFrame], list[int]]:
        """The day files it lacks, each read whole once: their rows with hash < cap."""
        got = pl.collect_all([pl.scan_parquet(files[pos[r]], hive_partitioning=False)
                              .with_columns(__h=_hash(seed).cast(pl.UInt32)).filter(pl.col("__h") < cap)
                              for r in new_rels]) if new_rels else []
        return got, [df.height for df in got]

    if not new_rels and idx is not None and cap == idx["cap"]:
        return done(in_order(held)).collect().lazy()  # nothing new tonight (or read again)
    if idx is None or cap != idx["cap"] or len(parts) >= RESERVOIR_MAX_PARTS:
        # written again as one file: tonight's days only, under tonight's cap (each part read once)
        mem = pl.collect_all(frames) if frames else []
        got, _ = new_rows()
        pieces = sorted([(p, mem[i].slice(st, n)) for p, i, st, n in held]
                        + [(pos[r], df) for r, df in zip(new_rels, got)], key=lambda x: x[0])
        df = (pl.concat([f.with_columns(__i=pl.lit(p, pl.UInt32)) for p, f in pieces], how="vertical_relaxed")
              .filter(pl.col("__h") < cap)) if pieces else _empty(files[0]).with_columns(__i=pl.lit(0, pl.UInt32))
        counts = dict(df.group_by("__i").len().iter_rows())
        parts = [write(df.drop("__i"), rels, [int(counts.get(i, 0)) for i in range(len(rels))])]
        out = df.lazy().drop("__i").filter(pl.col("__h") < keep).drop("__h")
    else:  # the rows of the day files it lacks, as one more small file
        got, counts = new_rows()
        delta = pl.concat(got, how="vertical_relaxed") if got else _empty(files[0])
        parts = parts + [write(delta, new_rels, counts)]
        frames.append(delta.lazy())
        start, entries = 0, list(held)
        for r, n in zip(new_rels, counts):
            entries.append((pos[r], len(parts) - 1, start, n))
            start += n
        out = done(in_order(entries))
    # files no longer named stay until `rsft gc` (a reader of the older index may still read them)
    atomic_write_text(index, json.dumps({"cap": cap, "parts": parts, "hash": HASH_VERSION, "layout": RESERVOIR_LAYOUT}))
    return out.collect().lazy()


def _empty(file: str) -> pl.DataFrame:
    """A day file's columns and ``__h``, no rows."""
    return pl.scan_parquet(file, hive_partitioning=False).head(0).with_columns(__h=pl.lit(0, pl.UInt32)).collect()


# --------------------------------------------------------------------------------------
# the plan: how a rule set partitions
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Plan:
    by: str | None  # the group of the window rules / rolling features
    order_by: str | None  # the time column; None = one partition
    ctx: int  # raw context rows per machine on each side (the widest window rule)
    kctx: int  # kept context rows per machine on the left (rolling features)
    why: str = ""  # one partition: why the pool cannot be prefiltered day by day (for people)


def plan(cfg: PrefilterConfig, columns: list[str], derive=None, time_column: str | None = None) -> Plan:
    from rsft.prefilter import _GLOBAL_KINDS, WINDOW_KINDS

    windows = [r for r in cfg.rules if r.kind in WINDOW_KINDS]
    if windows:
        by, order_by = windows[0].by, windows[0].order_by
    elif derive is not None:
        by, order_by = derive.by, derive.order_by
    else:
        by, order_by = None, (time_column if time_column in columns else None)
    if any((r.by, r.order_by) != (by, order_by) for r in windows):
        raise ValueError("prefilter: all window rules must share the same 'by' and 'order_by'")
    if derive is not None and (derive.by, derive.order_by) != (by, order_by):
        raise ValueError(f"features.rolling: group/time ({derive.by}, {derive.order_by}) must match the prefilter's window "
                         f"rules ({by}, {order_by})")
    ctx = max((getattr(r, "window", 2) for r in windows), default=0)
    kctx = derive.context if derive is not None else 0
    # a duplicate key holding the time column stays within one day (equal keys, equal day), so the
    # rule can be judged day by day; with window rules or rolling features the key must also hold
    # their group (the blocks carry machines' context across days)
    need = {by, order_by} if windows or derive is not None else {order_by}
    for r in cfg.rules:
        if r.kind in _GLOBAL_KINDS or (r.kind == "duplicate" and not (need <= set(r.columns))):
            if windows or derive is not None:  # day by day, such a rule would miss pairs across days
                raise ValueError(f"prefilter rule '{_rule_name(r)}': with window rules, a duplicate key must include "
                                 f"{by} and {order_by} (blocks hold whole days)")
            return Plan(None, None, 0, 0, f"rule '{_rule_name(r)}' compares rows across days"
                        + (f" (a duplicate key with {order_by} is judged day by day)" if r.kind == "duplicate" and order_by else ""))
    if order_by is None:
        return Plan(None, None, 0, 0, f"the pool has no time column '{time_column}' (features.time_column) to split it by day"
                    if time_column else "no time column to split the pool by day")
    return Plan(by, order_by, ctx, kctx)


def _day_expr(order_by: str) -> pl.Expr:
    return pl.col(order_by).dt.date().cast(pl.String).fill_null(NULL_DAY).alias("__day")


def _order(days) -> list[str]:
    return sorted(days, key=lambda d: (d != NULL_DAY, d))  # time-less rows first, as a sort puts nulls


# --------------------------------------------------------------------------------------
# the incremental update
# --------------------------------------------------------------------------------------
class _Frames:
    """Content-addressed small frames under ``ctx/`` (read back by digest)."""

    def __init__(self, root: Path, schema: dict[str, pl.DataType]):
        self.dir = root / "ctx"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.schema = schema
        self.cache: dict[str, pl.DataFrame] = {}

    def load(self, key: str, schema: dict[str, pl.DataType] | None = None) -> pl.DataFrame:
        if key == EMPTY:
            return pl.DataFrame(schema=schema or self.schema)
        if key not in self.cache:
            self.cache[key] = pl.read_parquet(self.dir / f"{key}.parquet")
        return self.cache[key]

    def save(self, df: pl.DataFrame) -> str:
        key = frame_digest(df)
        if key != EMPTY:
            path = self.dir / f"{key}.parquet"
            if not path.exists():
                with atomic_path(path) as tmp:
                    df.write_parquet(tmp)
            self.cache[key] = df
        return key

    def exists(self, key: str) -> bool:
        return key == EMPTY or (self.dir / f"{key}.parquet").exists()


def _tail(df: pl.DataFrame, by: str, order_by: str, n: int) -> pl.DataFrame:
    return df.sort(by, order_by, maintain_order=True).group_by(by, maintain_order=True).tail(n)


def _head(df: pl.DataFrame, by: str, order_by: str, n: int) -> pl.DataFrame:
    return df.sort(by, order_by, maintain_order=True).group_by(by, maintain_order=True).head(n)


def _cat(a: pl.DataFrame, b: pl.DataFrame) -> pl.DataFrame:
    return b if a.height == 0 else a if b.height == 0 else pl.concat([a, b], how="vertical_relaxed")


def _day_index(src: Path, root: Path, order_by: str) -> dict[str, list[tuple[str, int]]]:
    """day -> [(ingested part, rows of that day)], each part's days read once (cached by its
    path and size: ingested parts are named by the digest of their source file)."""
    parts = sorted(glob.glob(os.path.join(str(src), "data", "**", "*.parquet"), recursive=True))
    if not parts:
        raise FileNotFoundError(f"dataset {src} has no ingested rows yet")
    index_path = root / f"days-index-{order_by}.json"
    old = json.loads(index_path.read_text()) if index_path.exists() else {}
    new: dict[str, Any] = {}
    for p in parts:
        rel = os.path.relpath(p, src)
        size = os.path.getsize(p)
        e = old.get(rel)
        if e is None or e["size"] != size:
            counts = pl.scan_parquet(p, hive_partitioning=False).select(_day_expr(order_by)).group_by("__day").len().collect()
            e = {"size": size, "days": dict(zip(counts["__day"].to_list(), counts["len"].to_list()))}
        new[rel] = e
    if new != old:
        atomic_write_text(index_path, json.dumps(new))
    days: dict[str, list[tuple[str, int]]] = {}
    for rel, e in new.items():
        for d, n in e["days"].items():
            days.setdefault(d, []).append((rel, int(n)))
    return days


def update(src: str | Path, root: str | Path, cfg: PrefilterConfig, *, derive=None, time_column: str | None = None,
           write_excluded: bool = False, rules_key: str = "", map_jobs=None) -> dict[str, Any]:
    """Bring the kept pool under ``root`` up to date with the ingested dataset ``src``; returns the
    manifest written (``path``, counts, ``days_total``, ``days_computed``).

    ``map_jobs(jobs) -> results`` runs the per-day jobs (:class:`EdgeJob`, :class:`FilterJob`;
    each result is :func:`run_job`'s): one after another here by default (:func:`map_inline`),
    or as tasks on an engine (``tasks.select.prefilter_task``: a thread pool or a Dask cluster;
    the state dir must then be on a filesystem the workers share). The result does not depend
    on how they ran."""
    from rsft.prefilter import check_rules

    src, root = Path(src), Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for d in (root, root / "ctx", root / "versions", root / "journal"):
        if d.is_dir():
            remove_orphans(d)
    parts_all = sorted(glob.glob(os.path.join(str(src), "data", "**", "*.parquet"), recursive=True))
    if not parts_all:
        raise FileNotFoundError(f"dataset {src} has no ingested rows yet")
    schema = dict(pl.scan_parquet(parts_all, hive_partitioning=False).collect_schema())
    check_rules(cfg, list(schema))
    p = plan(cfg, list(schema), derive, time_column)
    names = [_rule_name(r) for r in cfg.rules]
    prev = _current(root)
    if p.order_by is None:
        recs = [_whole(src, root, cfg, derive, write_excluded, rules_key, prev.get("all"))]
    else:
        recs = _by_day(src, root, cfg, p, schema, derive, write_excluded, rules_key, prev, map_jobs or map_inline)
    rows_in = sum(r["rows_in"] for r in recs)
    dropped = {n: sum(r["dropped"][i] for r in recs) for i, n in enumerate(names)}
    manifest = {
        "rules_key": rules_key,
        "days": [{k: v for k, v in r.items() if k != "computed"} for r in recs],
        "rows_in": rows_in, "rows_out": rows_in - sum(dropped.values()),
        "dropped": dropped, "alone": {n: sum(r["alone"][i] for r in recs) for i, n in enumerate(names)},
    }
    version = digest(rules_key, [r["key"] for r in recs])
    path = root / "versions" / f"{version}.json"
    if path.exists():
        os.utime(path)  # used tonight: the newest nights' manifests are what `rsft gc` keeps
    else:
        _write_journal(root, version, manifest["days"])  # before the manifest: none is without one
        atomic_write_text(path, json.dumps(manifest, indent=1))
    atomic_write_text(root / "current.json", json.dumps({"version": version}))
    return {**manifest, "path": str(path), "version": version, "days_total": len(recs), "whole_pool_why": p.why,
            "days_computed": sum(bool(r.get("computed")) for r in recs),
            "computed": [r["day"] for r in recs if r.get("computed")]}


def _rule_name(r) -> str:
    from rsft.prefilter import rule_name

    return rule_name(r)


CTX_FIELDS = ("head", "tail", "left", "right", "carry", "rcarry", "kept_in", "kept_tail")


def listed(records: list[dict[str, Any]]) -> set[str]:
    """The files a manifest's day records name, relative to the pool dir: each day's kept file,
    its excluded rows, its context frames (``ctx/<key>.parquet``)."""
    out: set[str] = set()
    for r in records:
        out.add(os.path.normpath(r["file"]))
        if r.get("excluded"):
            out.add(os.path.normpath(r["excluded"]))
        out.update(f"ctx/{r[k]}.parquet" for k in CTX_FIELDS if r.get(k) and r[k] != EMPTY)
    return out


def journal_path(root: str | Path, version: str) -> Path:
    return Path(root) / "journal" / f"{version}.json"


def _write_journal(root: Path, version: str, records: list[dict[str, Any]]) -> None:
    """``journal/<version>.json``: the manifest current before this one and the files this one
    lists that it did not (``added``) and the reverse (``replaced``) — a night's few changed days."""
    try:
        previous = json.loads((root / "current.json").read_text())["version"]
        old = listed(json.loads((root / "versions" / f"{previous}.json").read_text())["days"])
    except (OSError, ValueError, KeyError):
        previous, old = None, set()
    new = listed(records)
    j = {"previous": previous, "added": sorted(new - old) if previous else [], "replaced": sorted(old - new)}
    (root / "journal").mkdir(exist_ok=True)
    atomic_write_text(journal_path(root, version), json.dumps(j))


def journal_plan(root: str | Path, alive: list[str], kept: set[str]) -> dict[str, Any] | None:
    """What removing the manifests ``alive`` − ``kept`` (versions) frees, from the journals alone:
    ``{"remove": files no kept manifest lists, relative to ``root``, "journals": {version: new
    journal}}`` — the kept manifests' journals rewritten relative to their nearest kept ancestor,
    so the chain stays whole. ``None`` when the journals cannot tell (a manifest without one, or
    more than one chain): the caller lists the directories instead.

    Each journal is the exact difference to its ``previous``, so a file no journal of the alive
    manifests (but the oldest's) names is listed by all of them or by none; for the others, each
    manifest's membership follows from the diffs along the chain. Reads one small file per alive
    manifest: the cost of a night's few changed days, not of the history."""
    root = Path(root)
    js: dict[str, dict[str, Any]] = {}
    for v in alive:
        try:
            j = json.loads(journal_path(root, v).read_text())
            js[v] = {"previous": j["previous"], "added": set(j["added"]), "replaced": set(j["replaced"])}
        except (OSError, ValueError, KeyError):
            return None
    roots = [v for v in alive if js[v]["previous"] not in js or js[v]["previous"] == v]
    if len(roots) != 1:
        return None
    children: dict[str, list[str]] = {}
    for v in alive:
        if v != roots[0]:
            children.setdefault(js[v]["previous"], []).append(v)
    touched = set().union(*(js[v]["added"] | js[v]["replaced"] for v in alive if v != roots[0]))
    # the root's membership of each touched file: the first diff naming it on a path from the root
    base: dict[str, bool] = {}
    order, member, stack = [], {}, [(roots[0], frozenset())]
    while stack:
        v, seen = stack.pop()
        order.append(v)
        if v != roots[0]:
            diff = js[v]["added"] | js[v]["replaced"]
            for f in diff - seen:
                base.setdefault(f, f in js[v]["replaced"])
            seen = seen | diff
        stack += [(c, seen) for c in children.get(v, [])]
    if len(order) != len(alive):  # a cycle: not a chain
        return None
    parent = {v: js[v]["previous"] for v in alive if v != roots[0]}
    for v in order:  # parents before children
        member[v] = ({f for f in touched if base.get(f)} if v == roots[0]
                     else (member[parent[v]] - js[v]["replaced"]) | js[v]["added"])
    in_kept = set().union(*(member[v] for v in kept if v in member))
    gone = set().union(*(member[v] for v in alive if v not in kept)) - in_kept if set(alive) - kept else set()
    new_journals: dict[str, dict[str, Any]] = {}
    for v in order:
        if v not in kept or v == roots[0] or parent[v] in kept:
            continue
        a = parent[v]
        while a != roots[0] and a not in kept:
            a = parent[a]
        if a in kept:  # relative to the nearest kept ancestor
            new_journals[v] = {"previous": a, "added": sorted(member[v] - member[a]),
                               "replaced": sorted(member[a] - member[v])}
        # else v becomes the root: its diff to a removed manifest is not read again
    return {"remove": sorted(gone), "journals": new_journals}


def _current(root: Path) -> dict[str, dict[str, Any]]:
    """The newest manifest's day records (what tonight may reuse), by day."""
    try:
        version = json.loads((root / "current.json").read_text())["version"]
        m = json.loads((root / "versions" / f"{version}.json").read_text())
    except (OSError, ValueError, KeyError):
        return {}
    return {r["day"]: r for r in m["days"] if (root / r["file"]).exists()}


def _counts_list(counts: dict[str, int], n: int) -> tuple[int, list[int], list[int]]:
    return (int(counts["__rows"]), [int(counts[f"__first_{i}"]) for i in range(n)],
            [int(counts[f"__alone_{i}"]) for i in range(n)])


def _whole(src, root, cfg, derive, write_excluded, rules_key, old) -> dict[str, Any]:
    """One partition: the whole pool through :func:`rsft.prefilter.prefilter`."""
    from rsft.ingest import scan_dataset
    from rsft.ingest.manifest import dataset_digest
    from rsft.prefilter import prefilter

    key = digest(rules_key, "all", dataset_digest(src))
    if old and old["key"] == key:
        return old
    out = root / "days" / "all" / f"{key}.parquet"
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_orphans(out.parent)
    excl = out.with_name(f"{key}.excluded.parquet") if write_excluded else None
    s = prefilter(scan_dataset(src), out, cfg, excluded_path=excl, derive=derive)
    names = list(s.dropped)
    return {"day": "all", "key": key, "file": os.path.relpath(out, root),
            "excluded": os.path.relpath(excl, root) if excl else None, "rows_in": s.rows_in, "rows_out": s.rows_out,
            "dropped": [s.dropped[n] for n in names], "alone": [s.alone[n] for n in names], "computed": True}


# --------------------------------------------------------------------------------------
# per-day jobs: what a night fans out (rsft never imports an engine: the caller maps them)
# --------------------------------------------------------------------------------------
def _read_files(files: tuple[str, ...], order_by: str, day: str) -> pl.DataFrame:
    return pl.scan_parquet(list(files), hive_partitioning=False).filter(_day_expr(order_by) == day).collect()


@dataclass(frozen=True)
class EdgeJob:
    """A day's edges: each machine's first and last ``ctx`` readings, saved as context frames."""

    day: str
    files: tuple[str, ...]  # the ingested parts holding the day's rows
    root: str
    by: str
    order_by: str
    ctx: int

    def run(self) -> tuple[str, str]:
        df = _read_files(self.files, self.order_by, self.day)
        frames = _Frames(Path(self.root), dict(df.schema))
        return (frames.save(_head(df, self.by, self.order_by, self.ctx)),
                frames.save(_tail(df, self.by, self.order_by, self.ctx)))


@dataclass(frozen=True)
class FilterJob:
    """One day through the rules with its left and right context frames: writes the kept rows
    to ``out`` (and the dropped ones to ``excluded``) and returns the counts."""

    day: str
    files: tuple[str, ...]
    root: str
    order_by: str
    left: str  # context frame keys (EMPTY = none)
    right: str
    cfg: PrefilterConfig
    out: str
    excluded: str | None = None

    def run(self) -> tuple[int, list[int], list[int]]:
        from rsft.prefilter import _count_aggs, flagged

        frames = _Frames(Path(self.root), {})
        block = _read_files(self.files, self.order_by, self.day).with_columns(__mid=pl.lit(True))
        parts = [frames.load(self.left).with_columns(__mid=pl.lit(False))] if self.left != EMPTY else []
        parts.append(block)
        if self.right != EMPTY:
            parts.append(frames.load(self.right).with_columns(__mid=pl.lit(False)))
        whole = pl.concat(parts, how="vertical_relaxed") if len(parts) > 1 else block
        lf, flags = flagged(whole.lazy(), self.cfg)
        judged = lf.filter(pl.col("__mid")).drop("__mid").collect()
        counts = _counts_list(judged.select(_count_aggs(flags)).row(0, named=True), len(self.cfg.rules))
        keep = pl.all_horizontal([pl.col(f) for f in flags]) if flags else pl.lit(True)
        out = Path(self.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        if not out.exists():
            with atomic_path(out) as tmp:
                write_kept(judged.filter(keep).drop(flags), tmp, self.cfg.kept_compression)
        if self.excluded:
            names = [_rule_name(r) for r in self.cfg.rules]
            rule_col = pl.coalesce([pl.when(~pl.col(f)).then(pl.lit(n)) for f, n in zip(flags, names)]).alias("rule")
            with atomic_path(self.excluded) as tmp:
                judged.filter(~keep).with_columns(rule_col).drop(flags).write_parquet(tmp, compression="zstd")
        progress.emit("prefilter.day", day=self.day, rows=counts[0])
        return counts


def run_job(job: EdgeJob | FilterJob) -> Any:
    """Run one per-day job (what an engine's task calls)."""
    return job.run()


def map_inline(jobs: list) -> list:
    """The default ``map_jobs``: one job after another, in this process."""
    return [run_job(j) for j in jobs]


def _by_day(src, root, cfg, p: Plan, schema, derive, write_excluded, rules_key, prev, map_jobs) -> list[dict[str, Any]]:
    from rsft.prefilter import _derive

    index = _day_index(src, root, p.order_by)
    days = _order(index)
    content = {d: digest(d, sorted(index[d])) for d in days}
    frames = _Frames(root, schema)
    files = {d: tuple(str(src / rel) for rel, _ in sorted(index[d])) for d in days}

    # 1. each day's edges (first / last ctx readings per machine), keyed by its content; the
    #    days whose content is new or changed are read (fanned out)
    edges: dict[str, tuple[str, str]] = {}
    if p.ctx:
        todo = []
        for d in days:
            rec = prev.get(d)
            if rec and rec["content"] == content[d] and frames.exists(rec["head"]) and frames.exists(rec["tail"]):
                edges[d] = (rec["head"], rec["tail"])
            else:
                todo.append(EdgeJob(d, files[d], str(root), p.by, p.order_by, p.ctx))
        for job, e in zip(todo, map_jobs(todo) if todo else []):
            edges[job.day] = tuple(e)
    # 2. left context of each day: every machine's last ctx readings before it (forward)
    left: dict[str, str] = {}
    right: dict[str, str] = {}
    carry: dict[str, str] = {}
    rcarry: dict[str, str] = {}
    if p.ctx:
        cur = EMPTY
        for d in days:
            rec, left[d] = prev.get(d), cur
            if rec and rec["content"] == content[d] and rec["left"] == cur and frames.exists(rec["carry"]):
                cur = rec["carry"]
            else:
                cur = frames.save(_tail(_cat(frames.load(cur), frames.load(edges[d][1])), p.by, p.order_by, p.ctx))
            carry[d] = cur
        # 3. right context: every machine's next ctx readings after it (backward)
        cur = EMPTY
        for d in reversed(days):
            rec, right[d] = prev.get(d), cur
            if rec and rec["content"] == content[d] and rec["right"] == cur and frames.exists(rec["rcarry"]):
                cur = rec["rcarry"]
            else:
                cur = frames.save(_head(_cat(frames.load(edges[d][0]), frames.load(cur)), p.by, p.order_by, p.ctx))
            rcarry[d] = cur

    # 4. the rules on the days whose own rows or raw context changed (fanned out). A day's filter
    #    key is its result key without the kept context: without rolling features they are equal
    #    and the job writes the day's file; with them it writes the judged kept rows beside it
    #    (``<filter key>.judged.parquet``) and step 5 adds the rolling features
    def fkey(d: str, rec: dict[str, Any] | None = None) -> str:
        r = rec or {"content": content[d], "left": left.get(d, EMPTY), "right": right.get(d, EMPTY)}
        return digest(rules_key, r["content"], r["left"], r["right"], EMPTY)

    def job(d: str) -> FilterJob:
        k = fkey(d)
        out = root / "days" / d / (f"{k}.judged.parquet" if derive is not None else f"{k}.parquet")
        out.parent.mkdir(parents=True, exist_ok=True)
        remove_orphans(out.parent)
        return FilterJob(d, files[d], str(root), p.order_by, left.get(d, EMPTY), right.get(d, EMPTY), cfg, str(out),
                         str(out.parent / f"{k}.excluded.parquet") if write_excluded else None)

    todo = [job(d) for d in days if not (prev.get(d) and fkey(d, prev[d]) == fkey(d)
                                         and (derive is not None or frames.exists(prev[d]["kept_tail"])))]
    counts = {j.day: (j, c) for j, c in zip(todo, map_jobs(todo) if todo else [])}

    # 5. every day's record in order: the kept context of rolling features follows the days
    recs, kin = [], EMPTY
    for d in days:
        rec = prev.get(d)
        key = digest(rules_key, content[d], left.get(d, EMPTY), right.get(d, EMPTY), kin)
        if d not in counts and rec and rec["key"] == key and frames.exists(rec["kept_tail"]):
            recs.append({**rec, "carry": carry.get(d, EMPTY), "rcarry": rcarry.get(d, EMPTY)})
            kin = rec["kept_tail"]
            continue
        if d not in counts:  # same rows and raw context, new kept context: judged again here
            j = job(d)
            counts[d] = (j, j.run())
        j, (rows_in, dropped, alone) = counts[d]
        out, kept_tail = Path(j.out), EMPTY
        if derive is not None:
            kept = pl.read_parquet(j.out)
            prev_kept = frames.load(kin, kept.schema) if kin != EMPTY else None
            kept, tail = _derive(kept, prev_kept, derive)
            kept_tail = frames.save(tail)
            out = root / "days" / d / f"{key}.parquet"
            if not out.exists():
                with atomic_path(out) as tmp:
                    write_kept(kept, tmp, cfg.kept_compression)
            Path(j.out).unlink(missing_ok=True)
        recs.append({"day": d, "key": key, "content": content[d], "file": os.path.relpath(out, root),
                     "excluded": os.path.relpath(j.excluded, root) if j.excluded else None,
                     "rows_in": rows_in, "rows_out": rows_in - sum(dropped), "dropped": dropped, "alone": alone,
                     "head": edges[d][0] if p.ctx else EMPTY, "tail": edges[d][1] if p.ctx else EMPTY,
                     "left": left.get(d, EMPTY), "right": right.get(d, EMPTY), "carry": carry.get(d, EMPTY),
                     "rcarry": rcarry.get(d, EMPTY), "kept_in": kin, "kept_tail": kept_tail, "computed": True})
        kin = kept_tail
    return recs
