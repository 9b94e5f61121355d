"""Chunked rejection sampling and fixed-budget sampling over a Parquet pool.

    specs = plan_chunks(source, cfg.chunk_rows)                  # small, JSON-able chunk specs
    log_m = calibrate_log_m(beta * log_w_pool_sample, cfg.m_quantile)
    sums  = [sample_chunk(s, scorer_path, feature_cfg, cfg, log_m, out_dir) for s in specs]   # or a Prefect map
    summary = merge_selection(sums, out_path, cfg, log_m)         # or: select(...) does all of it

Rejection mode (exact when M ≥ sup w^β): accept row x when ``log u < β·log w(x) − log M``,
u ~ U(0, 1). Rows with ``β·log w > log M`` are accepted with probability 1 instead of w^β/M
(their share, "clipped", is biased and always reported). Budget mode: exactly k rows, drawn
without replacement with probability ∝ w^β (successive sampling), in one streaming pass: each
chunk keeps its top-k Gumbel keys ``β·log w + G``, the merge keeps the global top-k. (For
k = 1 the inclusion probability is exactly w^β / Σ w^β; for k > 1 it is that of successive
sampling, which flattens toward uniform as k grows.)

Determinism: chunk i draws its uniforms/Gumbels from ``default_rng(chunk_seed(seed, i))`` in
row order, so for a given plan (source + ``chunk_rows``) the selected rows do not depend on the
chunk order, worker count or resumption. Each finished chunk writes its rows (temporary name,
then rename) and then a JSON marker holding its summary and a fingerprint of everything that
decides its rows; a re-run with the same fingerprint returns the marker's summary unrecomputed.
"""

from __future__ import annotations

import functools
import glob
import hashlib
import json
import logging
import math
import os
import threading
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import polars as pl
import pyarrow.parquet as pq

from rsft.config import FeaturesConfig, SamplingConfig
from rsft.features import byte_slices
from rsft.fsio import atomic_path, atomic_write_text

log = logging.getLogger(__name__)

LINEAGE = ("_source", "_row")  # kept on every output row; added (path, 1-based row) when missing
CALIBRATION_ROWS = 1_000_000  # max log w values held when select() calibrates a quantile M itself


# --------------------------------------------------------------------------------------
# chunk plan
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ChunkPart:
    path: str
    offset: int  # first row in the file (0-based)
    length: int  # rows
    hive: tuple[tuple[str, str], ...] = ()  # key=value directory segments (partition columns)


@dataclass(frozen=True)
class ChunkSpec:
    """Rows ``[offset, offset + length)`` of one or more files; small files are packed together."""

    chunk_id: int
    parts: tuple[ChunkPart, ...]

    @property
    def rows(self) -> int:
        return sum(p.length for p in self.parts)

    def to_dict(self) -> dict[str, Any]:
        return {"chunk_id": self.chunk_id, "parts": [{**asdict(p), "hive": [list(h) for h in p.hive]} for p in self.parts]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ChunkSpec:
        parts = tuple(ChunkPart(p["path"], int(p["offset"]), int(p["length"]), tuple(tuple(h) for h in p.get("hive", ())))
                      for p in d["parts"])
        return cls(int(d["chunk_id"]), parts)


def _files(source: str | Path) -> tuple[list[str], str | None]:
    """Sorted Parquet files of a file, directory (recursive) or glob; and the root for hive keys.
    A kept pool's manifest (``.json``, :mod:`rsft.keptpool`) gives its day files in day order."""
    s = str(source)
    if s.endswith(".json"):
        from rsft.keptpool import manifest_files

        return manifest_files(s), None
    if os.path.isdir(s):
        found = glob.glob(os.path.join(s, "**", "*.parquet"), recursive=True)
        root: str | None = s
    elif any(ch in s for ch in "*?["):
        found, root = glob.glob(s, recursive=True), None
    else:
        if not os.path.exists(s):
            raise ValueError(f"pool source not found: {s}")
        return [s], None
    # temp files (".name.tmp-…", "_tmp") are never data
    files = sorted(f for f in found if not os.path.basename(f).startswith((".", "_")))
    if not files:
        raise ValueError(f"no Parquet files under {s}")
    return files, root


def _hive(path: str, root: str | None) -> tuple[tuple[str, str], ...]:
    if root is None:
        return ()
    segs = Path(os.path.relpath(os.path.dirname(path), root)).parts
    return tuple(tuple(seg.split("=", 1)) for seg in segs if "=" in seg)  # type: ignore[misc]


@functools.lru_cache(maxsize=4096)
def _row_groups(path: str, mtime_ns: int, size: int, ino: int, ctime_ns: int) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """(rows, uncompressed bytes) of each row group of a Parquet file and its column names, from
    its footer: read once per file version and process (the plan and every chunk over the file
    use it; a night's scoring pass opened each day file's footer twice more than it read the file)."""
    md = pq.ParquetFile(path).metadata
    groups = [md.row_group(i) for i in range(md.num_row_groups)]
    return (np.array([g.num_rows for g in groups], dtype=np.int64),
            np.array([g.total_byte_size for g in groups], dtype=np.int64), tuple(md.schema.names))


def row_groups(path: str) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    st = os.stat(path)  # a rewrite changes the inode (atomic rename) or ctime, even where size and mtime stay
    return _row_groups(os.path.abspath(path), st.st_mtime_ns, st.st_size, st.st_ino, st.st_ctime_ns)


def plan_chunks(source: str | Path, chunk_rows: int) -> list[ChunkSpec]:
    """Chunks of at most ``chunk_rows`` rows over the sorted files of ``source`` (file, dir or glob).

    Files are read in sorted order; a large file is split, small files are packed into one chunk.
    The plan depends only on the file list, their row counts and ``chunk_rows``.
    """
    if chunk_rows < 1:
        raise ValueError("sampling.chunk_rows must be >= 1")
    files, root = _files(source)
    specs: list[ChunkSpec] = []
    parts: list[ChunkPart] = []
    room = chunk_rows
    for path in files:
        n, off = int(row_groups(path)[0].sum()), 0
        while off < n:
            take = min(room, n - off)
            parts.append(ChunkPart(path, off, take, _hive(path, root)))
            off, room = off + take, room - take
            if room == 0:
                specs.append(ChunkSpec(len(specs), tuple(parts)))
                parts, room = [], chunk_rows
    if parts:
        specs.append(ChunkSpec(len(specs), tuple(parts)))
    return specs


def _read_part(part: ChunkPart) -> pl.DataFrame:
    """Only the row groups overlapping the part are read (memory ~ chunk + one row group): Polars'
    reader with the slice pushed down (~30 % less CPU than pyarrow's ``read_row_groups`` and the
    Arrow → Polars conversion, same frame)."""
    df = pl.scan_parquet(part.path, hive_partitioning=False).slice(part.offset, part.length).collect()
    return _with_lineage(df, part, part.offset)


def read_chunk(spec: ChunkSpec) -> pl.DataFrame:
    """The chunk's rows, all input columns (+ hive partition and lineage columns)."""
    frames = [_read_part(p) for p in spec.parts]
    return frames[0] if len(frames) == 1 else pl.concat(frames, how="diagonal_relaxed")


def _lineage(part: ChunkPart, first: int, columns: Sequence[str]) -> list[pl.Expr]:
    """The hive and lineage columns a frame of ``part``'s file rows ``first + 1, …`` (1-based)
    lacks among ``columns``: each partition key, ``_source`` (the file) and ``_row``."""
    extra = [pl.lit(v).alias(k) for k, v in part.hive if k not in columns]
    if "_source" not in columns:
        extra.append(pl.lit(part.path).alias("_source"))
    if "_row" not in columns:
        extra.append(pl.int_range(first + 1, first + pl.len() + 1, dtype=pl.Int64).alias("_row"))
    return extra


def _with_lineage(df: pl.DataFrame, part: ChunkPart, first: int) -> pl.DataFrame:
    """Hive and lineage columns of the rows ``[first, first + height)`` of ``part``'s file."""
    extra = _lineage(part, first, df.columns)
    return df.with_columns(extra) if extra else df


# a part whose rows decode to at most this many times chunk_bytes is read in one go (Polars), not
# streamed in batches: what decides memory is the text pools' parts, hundreds of MB decoded
READ_WHOLE_UP_TO = 8


def iter_chunk(spec: ChunkSpec, chunk_bytes: int) -> Iterator[pl.DataFrame]:
    """The chunk's rows in row order (as :func:`read_chunk`), streamed in frames of about
    ``chunk_bytes`` decoded bytes: a large part is streamed by Polars' reader batch by batch (a
    row group never decoded whole), only the part's rows are decoded (its slice pushed down). The rows per
    batch come from each row group's uncompressed size in the file's metadata (its mean row)."""
    run: list[ChunkPart] = []  # consecutive small parts, read together
    run_bytes = 0.0
    for part in spec.parts:
        sizes, group_bytes, _ = row_groups(part.path)
        starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        end = part.offset + part.length
        groups = [i for i in range(len(sizes)) if starts[i] < end and starts[i + 1] > part.offset]
        if not groups:
            continue
        row_bytes = max(group_bytes[i] / max(1, sizes[i]) for i in groups)
        if row_bytes * part.length <= READ_WHOLE_UP_TO * chunk_bytes:
            # small decoded (numeric pools: a 200k-row chunk of 12 sensors is ~20 MB): read with
            # Polars' reader (~30 % less CPU than pyarrow's batches + the Arrow → Polars
            # conversion), and small parts together — a chunk of a kept pool's day files is one
            # query and one frame to score, not one per day (per-file costs were a third of the pass)
            if run and run_bytes + row_bytes * part.length > READ_WHOLE_UP_TO * chunk_bytes:
                yield _read_parts(run)
                run, run_bytes = [], 0.0
            run.append(part)
            run_bytes += row_bytes * part.length
            continue
        if run:
            yield _read_parts(run)
            run, run_bytes = [], 0.0
        # Polars' streaming reader, batch by batch: rows before the part's offset are skipped, not
        # decoded (pyarrow's batches decode a row group from its start: a chunk starting mid-group
        # decoded the rows before it again, ~40 % more decoding CPU at 50k-row chunks of 82k-row groups)
        # (collect_batches is marked unstable in Polars 2.1, the pinned version: recheck on upgrades)
        batch = int(max(1, min(part.length, chunk_bytes // max(1.0, row_bytes))))
        pos = part.offset
        lf = pl.scan_parquet(part.path, hive_partitioning=False).slice(part.offset, part.length)
        for df in lf.collect_batches(chunk_size=batch):
            if df.height:
                yield _with_lineage(df, part, pos)
                pos += df.height
    if run:
        yield _read_parts(run)


def _read_parts(parts: list[ChunkPart]) -> pl.DataFrame:
    """Consecutive parts as one frame in their order (one Polars query over their files: each
    file's slice pushed down, the hive and lineage columns each part needs added to its rows)."""
    if len(parts) == 1:
        return _read_part(parts[0])

    def scan(part: ChunkPart) -> pl.LazyFrame:
        lf = pl.scan_parquet(part.path, hive_partitioning=False).slice(part.offset, part.length)
        extra = _lineage(part, part.offset, row_groups(part.path)[2])
        return lf.with_columns(extra) if extra else lf

    return pl.concat([scan(p) for p in parts], how="diagonal_relaxed").collect()


def score_frame(scorer: Any, df: pl.DataFrame, feature_cfg: FeaturesConfig, chunk_bytes: int) -> np.ndarray:
    """float64 log w of ``df``'s rows. A text (n-gram) scorer scores consecutive slices of at most
    ``chunk_bytes`` UTF-8 bytes of text (a longer document alone): its working set (token strings,
    n-gram ids, per-n-gram gathers: tens of bytes per text byte) stays bounded whatever the
    documents' lengths. A document's log w is the same sum over its n-grams either way."""
    col = feature_cfg.text_column
    if getattr(scorer, "kind", None) != "ngram" or col not in df.columns or df.height <= 1:
        return np.asarray(scorer.log_ratio_frame(df, feature_cfg), dtype=np.float64)
    cuts = byte_slices(df.get_column(col).str.len_bytes().fill_null(0).to_numpy(), chunk_bytes)
    parts = [scorer.log_ratio_frame(df.slice(a, b - a), feature_cfg) for a, b in zip(cuts[:-1], cuts[1:])]
    return np.concatenate(parts).astype(np.float64, copy=False) if parts else np.zeros(0)


# --------------------------------------------------------------------------------------
# maths helpers
# --------------------------------------------------------------------------------------
def chunk_seed(seed: int, chunk_id: int) -> int:
    """The integer seed of chunk ``chunk_id``'s random stream, derived from (run seed, chunk id)."""
    ss = np.random.SeedSequence([int(seed) % 2**64, int(chunk_id)])
    return int(ss.generate_state(1, np.uint64)[0])


def calibrate_log_m(log_w_sample: np.ndarray, quantile: float = 1.0) -> float:
    """log M: the max (``quantile`` = 1, exact on the sample) or a quantile of the pool-sample log w.

    Pass tempered values (β·log w) when tempering. Non-finite values (rows with bad features) are
    ignored.
    """
    if not 0.0 < quantile <= 1.0:
        raise ValueError(f"M quantile must be in (0, 1], got {quantile}")
    lw = np.asarray(log_w_sample, dtype=np.float64).ravel()
    lw = lw[np.isfinite(lw)]
    if len(lw) == 0:
        raise ValueError("cannot calibrate M: the pool sample has no finite log w")
    return float(lw.max()) if quantile >= 1.0 else float(np.quantile(lw, quantile))


def rejection_accept(blw: np.ndarray, log_m: float, rng: np.random.Generator) -> np.ndarray:
    """Accept mask: ``log u < min(β·log w − log M, 0)``, one uniform per row in row order."""
    with np.errstate(divide="ignore"):
        return np.log(rng.random(len(blw))) < np.minimum(blw - log_m, 0.0)


def gumbel_keys(blw: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Budget keys ``β·log w + Gumbel``, one per row in row order; the top-k keys are a sample of
    k rows without replacement with probability ∝ w^β (successive sampling)."""
    return blw + rng.gumbel(size=len(blw))


def _logsumexp(x: np.ndarray) -> float:
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return -math.inf
    m = float(x.max())
    return m + math.log(float(np.exp(x - m).sum()))


# --------------------------------------------------------------------------------------
# scoring one chunk
# --------------------------------------------------------------------------------------
_SCORERS: dict[tuple, tuple[Any, str]] = {}
_LOCK = threading.Lock()


def _load_scorer(path: str) -> Any:
    """An n-gram scorer (hash scheme >= 2) as its NumPy scoring side, read without Torch
    (``rsft.scorer_file``: a text selection does not import Torch, ~1 s of CPU); any other scorer
    by ``load_scorer``."""
    from rsft.scorer_file import load_ngram_weights

    light = load_ngram_weights(path)
    if light is not None:
        return light
    from rsft.density import load_scorer

    return load_scorer(path)


def _scorer(path: str) -> tuple[Any, str]:
    """(scorer, sha256 of its file), cached per process by (path, mtime, size)."""
    st = os.stat(path)
    key = (os.path.abspath(path), st.st_mtime_ns, st.st_size)
    with _LOCK:
        if key not in _SCORERS:
            if len(_SCORERS) >= 4:
                _SCORERS.pop(next(iter(_SCORERS)))
            digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
            _SCORERS[key] = (_load_scorer(path), digest)
        return _SCORERS[key]


def chunk_log_w(spec: ChunkSpec, scorer_path: str, feature_cfg: FeaturesConfig, chunk_bytes: int) -> np.ndarray:
    """float64 log w [rows] of the chunk, streamed (:func:`iter_chunk`): only log w is kept."""
    scorer = _scorer(scorer_path)[0]
    parts = [score_frame(scorer, df, feature_cfg, chunk_bytes) for df in iter_chunk(spec, chunk_bytes)]
    return np.concatenate(parts) if parts else np.zeros(0)


@dataclass
class ChunkSummary:
    chunk_id: int
    rows_in: int
    rows_out: int
    output: str
    mode: str = "rejection"
    rows_nonfinite: int = 0  # rows with a NaN/inf feature: weight 0, never selected
    clipped: int = 0  # rows with β·log w > log M (accepted with prob. 1 instead of w^β/M: biased)
    sum_accept_prob: float | None = None  # Σ min(1, w^β/M): expected accepted rows
    max_log_w: float | None = None  # max β·log w in the chunk
    lse_log_w: float | None = None  # log Σ w^β over the chunk (for E[w^β])
    log_m: float | None = None
    fingerprint: str = ""
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return _json_safe(asdict(self))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ChunkSummary:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def _fingerprint(spec: ChunkSpec, scorer_digest: str, feature_cfg: FeaturesConfig, cfg: SamplingConfig, log_m: float | None) -> str:
    """Everything that decides a chunk's rows; a marker with another fingerprint is stale."""
    decide = {
        "spec": spec.to_dict(),
        "scorer": scorer_digest,
        "features": feature_cfg.model_dump(mode="json"),
        "mode": cfg.mode,
        "budget": cfg.budget if cfg.mode == "budget" else None,
        "temper": cfg.temper,
        "seed": cfg.seed,
        "log_m": None if log_m is None else float(log_m).hex(),
    }
    return hashlib.sha256(json.dumps(decide, sort_keys=True).encode()).hexdigest()[:32]


def _top_k(df: pl.DataFrame, k: int) -> pl.DataFrame:
    """The ``k`` rows with the largest ``key`` (all rows when fewer)."""
    if df.height <= k:
        return df
    keys = df.get_column("key").to_numpy()
    return df.select(pl.all().gather(np.sort(np.argpartition(-keys, k - 1)[:k])))


def sample_chunk(
    spec: ChunkSpec | dict[str, Any],
    scorer_path: str,
    feature_cfg: FeaturesConfig,
    cfg: SamplingConfig,
    log_m: float | None,
    out_dir: str,
) -> ChunkSummary:
    """Score one chunk and keep its accepted rows (rejection) or its top-k key candidates (budget).

    Writes ``out_dir/chunk-<id>.parquet`` (all input columns + ``log_w``, ``accept_prob``
    [+ ``key``]) and then ``out_dir/chunk-<id>.json`` (the summary: the completion marker).
    """
    spec = ChunkSpec.from_dict(spec) if isinstance(spec, dict) else spec
    if cfg.mode == "rejection" and log_m is None:
        raise ValueError("rejection mode needs log M: calibrate_log_m on a pool sample, or use select()")
    if cfg.mode == "budget" and not cfg.budget:
        raise ValueError("budget mode needs sampling.budget > 0")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"chunk-{spec.chunk_id:06d}"
    path, marker = out / f"{stem}.parquet", out / f"{stem}.json"
    scorer, digest = _scorer(scorer_path)
    fp = _fingerprint(spec, digest, feature_cfg, cfg, log_m)
    if marker.exists():
        done = ChunkSummary.from_dict(json.loads(marker.read_text()))
        if done.fingerprint == fp and Path(done.output).exists():
            return done
        log.warning("chunk %d: marker %s is from another run (config, scorer or M changed); recomputing", spec.chunk_id, marker)

    t0 = time.perf_counter()
    # streamed: the chunk is read and scored in batches of about cfg.chunk_bytes (iter_chunk,
    # score_frame) and only the selected rows are kept: the accepted rows (rejection) or the running
    # top-k keys (budget). The uniforms / Gumbels are drawn batch after batch from the chunk's one
    # stream, one per row in row order: the same numbers as one draw over the whole chunk.
    rng = np.random.default_rng(chunk_seed(cfg.seed, spec.chunk_id))
    k = int(cfg.budget or 0)
    kept: list[pl.DataFrame] = []
    blws: list[np.ndarray] = []
    sum_accept = 0.0
    untrimmed = 0  # decoded bytes scored since the last release_memory
    n = 0
    text = getattr(scorer, "kind", None) == "ngram"
    for df in iter_chunk(spec, cfg.chunk_bytes):
        lw = score_frame(scorer, df, feature_cfg, cfg.chunk_bytes)
        fin = np.isfinite(lw)
        b = np.where(fin, cfg.temper * np.where(fin, lw, 0.0), -np.inf)  # β·log w; -inf = never
        cols = [pl.Series("log_w", lw)]
        if log_m is not None:
            accept_prob = np.exp(np.minimum(b - log_m, 0.0))
            sum_accept += float(accept_prob.sum())
            cols.append(pl.Series("accept_prob", accept_prob))
        else:
            cols.append(pl.lit(None, dtype=pl.Float64).alias("accept_prob"))
        if cfg.mode == "rejection":
            kept.append(df.with_columns(cols).filter(pl.Series(rejection_accept(b, log_m, rng))))
        else:
            keys = gumbel_keys(b, rng)
            cand = np.flatnonzero(fin)
            if len(cand) > k:
                cand = np.sort(cand[np.argpartition(-keys[cand], k - 1)[:k]])
            kept.append(df.with_columns([*cols, pl.Series("key", keys), pl.int_range(n, n + df.height, dtype=pl.Int64)
                                         .alias("__pos")]).select(pl.all().gather(cand)))
            if sum(f.height for f in kept) > 2 * k:  # keep the running top-k only
                kept = [_top_k(pl.concat(kept, how="diagonal_relaxed"), k)]
        blws.append(b)
        n += df.height
        untrimmed += df.estimated_size()
        del df
        # a text batch's n-gram arrays are hundreds of MB: hand them back every few batches (each
        # trim faults the next batches' working set in again); a numeric batch's few MB are reused
        if text and untrimmed >= TRIM_EVERY_BATCHES * cfg.chunk_bytes:
            release_memory()
            untrimmed = 0
    blw = np.concatenate(blws) if blws else np.zeros(0)
    finite = np.isfinite(blw)
    if not kept:
        sel = read_chunk(spec).head(0).with_columns(log_w=pl.lit(None, pl.Float64), accept_prob=pl.lit(None, pl.Float64))
        if cfg.mode == "budget":
            sel = sel.with_columns(key=pl.lit(None, pl.Float64))
    else:
        sel = pl.concat(kept, how="diagonal_relaxed") if len(kept) > 1 else kept[0]
        if cfg.mode == "budget":
            sel = _top_k(sel, k).sort("__pos").drop("__pos")

    with atomic_path(path) as tmp:  # read once, by the merge: written for reading (LZ4, ~1/3 less CPU than zstd)
        sel.write_parquet(tmp, compression="lz4")
    summary = ChunkSummary(
        chunk_id=spec.chunk_id,
        rows_in=n,
        rows_out=sel.height,
        output=str(path),
        mode=cfg.mode,
        rows_nonfinite=int(n - finite.sum()),
        clipped=int((blw > log_m).sum()) if log_m is not None else 0,
        sum_accept_prob=sum_accept if log_m is not None else None,
        max_log_w=float(blw[finite].max()) if finite.any() else None,
        lse_log_w=_logsumexp(blw) if finite.any() else None,
        log_m=log_m,
        fingerprint=fp,
        seconds=round(time.perf_counter() - t0, 4),
    )
    atomic_write_text(marker, json.dumps(summary.to_dict()))  # the completion marker, last
    del sel, kept
    release_memory()
    return summary


# a chunk's batches hand freed C-heap pages back (release_memory) after about this many batches'
# worth of decoded bytes, and at the chunk's end: trimming after every batch made every batch fault
# its working set in again (page faults: ~15 % of a text selection's CPU), while between trims a
# thread's next batch reuses the pages its last one freed
TRIM_EVERY_BATCHES = 4


def release_memory() -> None:
    """Hand the C heap's free pages back to the OS (glibc ``malloc_trim``): NumPy / Torch arrays of
    a chunk's n-grams are freed into glibc's arenas, which otherwise keep them for the next chunk
    of another thread and peak RSS grows with the number of chunks. A no-op off glibc."""
    global _TRIM
    if _TRIM is None:
        try:
            import ctypes

            _TRIM = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _TRIM = False
    if _TRIM:
        _TRIM(0)


_TRIM: Any = None


# --------------------------------------------------------------------------------------
# merge
# --------------------------------------------------------------------------------------
@dataclass
class SelectionSummary:
    mode: str
    rows_in: int
    rows_out: int
    acceptance_rate: float  # rows_out / rows_in
    ideal_acceptance: float | None  # rejection: mean min(1, w^β/M) over the pool = E[min(w^β, M)]/M
    log_m: float | None
    clipped_share: float  # share of pool rows with w^β > M
    chunks: int
    output: str
    inv_m: float | None = None  # 1/M: the ideal acceptance when the scorer's w is normalised (E_q[w] = 1); None if it overflows
    mean_w: float | None = None  # E_pool[w^β] as scored (≈ 1 for a well-normalised β = 1 scorer); None if it overflows
    log_mean_w: float | None = None  # log E_pool[w^β]: the statistic itself, always finite (weights stay in log space)
    notes: list[str] = field(default_factory=list)  # why a plain-number statistic is None (it would overflow)
    max_log_w: float | None = None  # max β·log w over the whole pool (> log M means clipping)
    beta: float = 1.0
    dropped: dict[str, int] = field(default_factory=dict)  # rows_in = rows_out + Σ dropped

    def to_dict(self) -> dict[str, Any]:
        return _json_safe(asdict(self))


def _json_safe(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_safe(x) for x in v]
    if isinstance(v, (float, np.floating)):
        return float(v) if math.isfinite(v) else None
    if isinstance(v, np.integer):
        return int(v)
    return v


_LOG_FLOAT_MAX = math.log(np.finfo(np.float64).max)  # ≈ 709.78: exp of more overflows


def _exp_or_none(log_x: float | None, name: str, log_name: str, notes: list[str]) -> float | None:
    """exp(log_x) when it fits a float; else None, with a note naming the log-space value kept."""
    if log_x is None or not math.isfinite(log_x):
        return None
    if log_x > _LOG_FLOAT_MAX:
        notes.append(f"{name} = exp({log_x:,.1f}) overflows a float; see {log_name}")
        return None
    return math.exp(log_x)


def _merge_top_k(paths: list[str], k: int) -> pl.DataFrame:
    """The ``k`` rows with the largest ``key`` over the chunk files, in chunk then row order. Only
    the key column of every chunk is read at once; a chunk's rows are read one chunk at a time, so
    memory is ~k rows, not chunks × k candidates (their text) as a lazy top-k over all files held."""
    # Polars' reader: pyarrow's read_table / ChunkedArray.to_numpy import pyarrow.dataset and pandas (~0.2 s CPU)
    keys = [pl.read_parquet(p, columns=["key"]).get_column("key").to_numpy() for p in paths]
    sizes = np.array([len(x) for x in keys], dtype=np.int64)
    flat = np.concatenate(keys) if keys else np.zeros(0)
    top = np.sort(np.argpartition(-flat, k - 1)[:k]) if len(flat) > k else np.arange(len(flat))
    starts = np.concatenate([[0], np.cumsum(sizes)])
    frames = []
    for i, p in enumerate(paths):
        rows = top[(top >= starts[i]) & (top < starts[i + 1])] - starts[i]
        df = pl.read_parquet(p)
        frames.append(df.select(pl.all().gather(rows)) if len(rows) < df.height else df)
    return pl.concat(frames, how="diagonal_relaxed") if len(frames) > 1 else frames[0]


def merge_selection(
    summaries: list[ChunkSummary | dict[str, Any]], out_path: str, cfg: SamplingConfig, log_m: float | None = None
) -> SelectionSummary:
    """One Parquet of the selection: rejection = accepted rows of every chunk in chunk order;
    budget = the global top-k keys across chunks (exactly min(k, finite rows) rows, pool order)."""
    sums = sorted((s if isinstance(s, ChunkSummary) else ChunkSummary.from_dict(s) for s in summaries), key=lambda s: s.chunk_id)
    ids = [s.chunk_id for s in sums]
    if len(set(ids)) != len(ids):
        raise ValueError("merge_selection: duplicate chunk ids in the summaries")
    if any(s.mode != cfg.mode for s in sums):
        raise ValueError(f"merge_selection: chunks were sampled in another mode than '{cfg.mode}'")
    if log_m is None:
        known = {s.log_m for s in sums if s.log_m is not None}
        log_m = known.pop() if len(known) == 1 else None
    out = Path(out_path)
    with atomic_path(out) as tmp:
        if sums and cfg.mode == "budget":
            _merge_top_k([s.output for s in sums], int(cfg.budget or 0)).write_parquet(tmp)
        elif sums:
            pl.concat([pl.scan_parquet(s.output) for s in sums], how="diagonal_relaxed").sink_parquet(tmp)
        else:
            pl.DataFrame().write_parquet(tmp)
    rows_out = pq.ParquetFile(out).metadata.num_rows

    rows_in = sum(s.rows_in for s in sums)
    nonfinite = sum(s.rows_nonfinite for s in sums)
    lses = [s.lse_log_w for s in sums if s.lse_log_w is not None]
    maxes = [s.max_log_w for s in sums if s.max_log_w is not None]
    scored = rows_in - nonfinite
    # weights stay in log space: real scorers give β·log w in the thousands (long documents), whose
    # exp overflows a float; the plain numbers are shown only where they fit
    log_mean_w = _logsumexp(np.array(lses)) - math.log(scored) if lses and scored else None
    notes: list[str] = []
    mean_w = _exp_or_none(log_mean_w, "mean_w", "log_mean_w", notes)
    inv_m = _exp_or_none(-log_m if log_m is not None else None, "inv_m", "-log_m", notes)
    exp_acc = [s.sum_accept_prob for s in sums]
    ideal = (sum(exp_acc) / rows_in if cfg.mode == "rejection" and rows_in and log_m is not None
             and all(a is not None for a in exp_acc) else None)  # budget mode draws k rows: no M
    return SelectionSummary(
        mode=cfg.mode,
        rows_in=rows_in,
        rows_out=rows_out,
        acceptance_rate=rows_out / rows_in if rows_in else 0.0,
        ideal_acceptance=ideal,
        log_m=log_m,
        clipped_share=sum(s.clipped for s in sums) / rows_in if rows_in else 0.0,
        chunks=len(sums),
        output=str(out),
        inv_m=inv_m,
        mean_w=mean_w,
        log_mean_w=log_mean_w if log_mean_w is not None and math.isfinite(log_mean_w) else None,
        notes=notes,
        max_log_w=max(maxes) if maxes else None,
        beta=cfg.temper,
        dropped={"rejected" if cfg.mode == "rejection" else "not_selected": rows_in - rows_out - nonfinite,
                 "nonfinite_features": nonfinite},
    )


# --------------------------------------------------------------------------------------
# the sequential composition
# --------------------------------------------------------------------------------------
def pool_log_m(specs: list[ChunkSpec], scorer_path: str, feature_cfg: FeaturesConfig, cfg: SamplingConfig) -> float:
    """log M over the whole pool (one scoring pass): the max of β·log w, or its ``cfg.m_quantile``
    estimated on an evenly strided subsample of at most ``CALIBRATION_ROWS`` rows."""
    total = sum(s.rows for s in specs)
    stride = max(1, math.ceil(total / CALIBRATION_ROWS))
    best, kept = -math.inf, []
    for s in specs:
        lw = cfg.temper * chunk_log_w(s, scorer_path, feature_cfg, cfg.chunk_bytes)
        lw = lw[np.isfinite(lw)]
        if len(lw):
            best = max(best, float(lw.max()))
            kept.append(lw[::stride])
    if not kept:
        raise ValueError("cannot calibrate M: no pool row has a finite log w")
    return best if cfg.m_quantile >= 1.0 else calibrate_log_m(np.concatenate(kept), cfg.m_quantile)


def select(
    source: str | Path,
    scorer_path: str,
    feature_cfg: FeaturesConfig,
    cfg: SamplingConfig,
    out_dir: str,
    log_m: float | None = None,
    out_path: str | None = None,
    workers: int = 1,
) -> SelectionSummary:
    """Plan → (calibrate M over the pool if rejection and ``log_m`` is None) → sample each chunk → merge.

    Output: ``out_path`` or ``out_dir/selected.parquet``; chunk files and markers in ``out_dir``.
    ``workers`` > 1 samples chunks on a thread pool (Torch, NumPy and Polars release the GIL);
    the rows selected do not depend on it (per-chunk seeds).
    """
    specs = plan_chunks(source, cfg.chunk_rows)
    if cfg.mode == "rejection" and log_m is None:
        log_m = pool_log_m(specs, scorer_path, feature_cfg, cfg)
        log.info("calibrated log M = %.4f over %d pool rows (quantile %s)", log_m, sum(s.rows for s in specs), cfg.m_quantile)
    if workers > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(workers) as pool:
            sums = list(pool.map(lambda s: sample_chunk(s, scorer_path, feature_cfg, cfg, log_m, out_dir), specs))
    else:
        sums = [sample_chunk(s, scorer_path, feature_cfg, cfg, log_m, out_dir) for s in specs]
    summary = merge_selection(sums, out_path or str(Path(out_dir) / "selected.parquet"), cfg, log_m)
    log.info("selected %d of %d rows (%s mode, %d chunks)", summary.rows_out, summary.rows_in, cfg.mode, summary.chunks)
    return summary
