"""Chunked rejection sampling and fixed-budget sampling over a Parquet pool.

Rejection mode (exact when M >= sup w): accept row x when ``log u < β·log w(x) - log M`` with
u ~ U(0, 1). Budget mode: exactly k rows with probability ∝ w^β without replacement, via
Gumbel keys ``β·log w + G`` and a top-k merged across chunks.

Chunk i draws its uniforms/Gumbels from a generator seeded by ``(run seed, i)``, so the selected
rows do not depend on chunk order, worker count or resumption. Each finished chunk writes its
rows (temp name, then rename) and a small JSON marker; a re-run returns the marker's summary.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow.parquet as pq

from rsft.config import FeaturesConfig, SamplingConfig
from rsft.features import to_matrix

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChunkSpec:
    chunk_id: int
    path: str
    offset: int
    length: int


@dataclass
class ChunkSummary:
    chunk_id: int
    rows_in: int
    rows_out: int
    clipped: int  # rows with β·log w > log M (their acceptance is capped at 1: biased)
    sum_accept_prob: float  # Σ min(1, w/M): expected accepted rows
    output: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SelectionSummary:
    mode: str
    rows_in: int
    rows_out: int
    acceptance_rate: float
    ideal_acceptance: float  # E[min(w, M)] / M, estimated over the pool
    log_m: float | None
    clipped_share: float
    chunks: int
    output: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def chunk_seed(seed: int, chunk_id: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), int(chunk_id)])


def _files(source: str | Path) -> list[str]:
    s = str(source)
    if os.path.isdir(s):
        return sorted(glob.glob(os.path.join(s, "**", "*.parquet"), recursive=True))
    if any(ch in s for ch in "*?["):
        return sorted(glob.glob(s, recursive=True))
    return [s]


def plan_chunks(source: str | Path, chunk_rows: int) -> list[ChunkSpec]:
    """Split the Parquet files of ``source`` into chunks of at most ``chunk_rows`` rows."""
    specs: list[ChunkSpec] = []
    for path in _files(source):
        n = pq.ParquetFile(path).metadata.num_rows
        for off in range(0, n, chunk_rows):
            specs.append(ChunkSpec(len(specs), path, off, min(chunk_rows, n - off)))
    return specs


def calibrate_log_m(log_w_sample: np.ndarray, quantile: float = 1.0) -> float:
    """log M as the max (quantile=1, exact on the sample) or a quantile of log w."""
    lw = np.asarray(log_w_sample, dtype=np.float64)
    if len(lw) == 0:
        raise ValueError("cannot calibrate M on an empty pool sample")
    return float(lw.max()) if quantile >= 1.0 else float(np.quantile(lw, quantile))


_SCORERS: dict[str, Any] = {}
_LOCK = threading.Lock()


def _scorer(path: str):
    from rsft.density import load_scorer

    with _LOCK:
        if path not in _SCORERS:
            _SCORERS[path] = load_scorer(path)
        return _SCORERS[path]


def _read_chunk(spec: ChunkSpec) -> pl.DataFrame:
    return pl.scan_parquet(spec.path).slice(spec.offset, spec.length).collect()


def score_chunk(spec: ChunkSpec, scorer_path: str, feature_cfg: FeaturesConfig) -> tuple[pl.DataFrame, np.ndarray]:
    df = _read_chunk(spec)
    return df, _scorer(scorer_path).log_ratio(to_matrix(df, feature_cfg)).numpy()


def _write_atomic(df: pl.DataFrame, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    df.write_parquet(tmp)
    os.replace(tmp, path)


def sample_chunk(
    spec: ChunkSpec, scorer_path: str, feature_cfg: FeaturesConfig, cfg: SamplingConfig, log_m: float | None, out_dir: str
) -> ChunkSummary:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    marker = out / f"chunk-{spec.chunk_id:06d}.json"
    if marker.exists():
        return ChunkSummary(**json.loads(marker.read_text()))
    df, log_w = score_chunk(spec, scorer_path, feature_cfg)
    lw = cfg.temper * log_w
    rng = chunk_seed(cfg.seed, spec.chunk_id)
    path = out / f"chunk-{spec.chunk_id:06d}.parquet"
    if cfg.mode == "rejection":
        if log_m is None:
            raise ValueError("rejection mode needs a calibrated log M")
        log_accept = np.minimum(lw - log_m, 0.0)
        accept = np.log(rng.uniform(size=len(lw))) < log_accept
        clipped, sum_p = int((lw > log_m).sum()), float(np.exp(log_accept).sum())
        sel = df.with_columns(log_w=pl.Series(log_w), accept_prob=pl.Series(np.exp(log_accept))).filter(pl.Series(accept))
    else:
        keys = lw + rng.gumbel(size=len(lw))
        k = min(int(cfg.budget or 0), len(keys))
        top = np.argpartition(-keys, k - 1)[:k] if k else np.zeros(0, dtype=np.int64)
        sel = df.with_columns(log_w=pl.Series(log_w), key=pl.Series(keys))[np.sort(top).tolist()]
        sel = sel.with_columns(accept_prob=pl.lit(None, dtype=pl.Float64))
        clipped, sum_p = 0, float("nan")
    _write_atomic(sel, path)
    summary = ChunkSummary(spec.chunk_id, df.height, sel.height, clipped, sum_p, str(path))
    tmp = marker.with_name(marker.name + ".tmp")
    tmp.write_text(json.dumps(summary.to_dict()))
    os.replace(tmp, marker)
    return summary


def merge_selection(summaries: list[ChunkSummary | dict], out_path: str, cfg: SamplingConfig, log_m: float | None = None) -> SelectionSummary:
    sums = sorted((s if isinstance(s, ChunkSummary) else ChunkSummary(**s) for s in summaries), key=lambda s: s.chunk_id)
    rows_in = sum(s.rows_in for s in sums)
    lf = pl.concat([pl.scan_parquet(s.output) for s in sums], how="vertical_relaxed") if sums else None
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    if cfg.mode == "budget" and lf is not None:
        lf = lf.sort("key", descending=True).head(int(cfg.budget or 0)).sort("_source", "_row") if "_source" in lf.collect_schema() else lf.sort("key", descending=True).head(int(cfg.budget or 0))
    if lf is not None:
        lf.sink_parquet(tmp)
        os.replace(tmp, out)
    rows_out = pl.scan_parquet(out).select(pl.len()).collect().item() if out.exists() else 0
    return SelectionSummary(
        mode=cfg.mode,
        rows_in=rows_in,
        rows_out=rows_out,
        acceptance_rate=rows_out / rows_in if rows_in else 0.0,
        ideal_acceptance=(sum(s.sum_accept_prob for s in sums) / rows_in) if rows_in and cfg.mode == "rejection" else float("nan"),
        log_m=log_m,
        clipped_share=(sum(s.clipped for s in sums) / rows_in) if rows_in else 0.0,
        chunks=len(sums),
        output=str(out),
    )


def select(
    source: str | Path,
    scorer_path: str,
    feature_cfg: FeaturesConfig,
    cfg: SamplingConfig,
    out_dir: str,
    log_m: float | None = None,
    out_path: str | None = None,
) -> SelectionSummary:
    """Plan, (calibrate,) sample every chunk, merge: the sequential composition."""
    specs = plan_chunks(source, cfg.chunk_rows)
    if cfg.mode == "rejection" and log_m is None:  # exact: M over the whole pool (one extra pass)
        log_m = calibrate_log_m(np.concatenate([cfg.temper * score_chunk(s, scorer_path, feature_cfg)[1] for s in specs]),
                                cfg.m_quantile)
    sums = [sample_chunk(s, scorer_path, feature_cfg, cfg, log_m, out_dir) for s in specs]
    return merge_selection(sums, out_path or str(Path(out_dir) / "selected.parquet"), cfg, log_m)
