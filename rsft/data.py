"""Streaming training data: the selected Parquet set as a Torch ``IterableDataset``.

``ParquetStream`` reads (file, row group) units with bounded memory, converts each record batch
as one float32 frame (``DataFrame.select(cols).to_numpy()``, never column by column), shuffles
through a buffer of ``shuffle_buffer`` rows seeded by (seed, epoch), and yields (x, y, w) tensor
batches, so ``rsft.train.fit`` can train on a selected set that does not fit in memory.

Memory ≈ shuffle_buffer + one record batch (``read_rows``) + one row group's column chunks,
whatever the number of rows. Row-group units are shuffled per epoch and sharded across DataLoader
workers by unit index (worker k takes units k, k + W, ...). ``holdout(share)`` splits off a
validation stream by a fixed rule on the global row index, identical in every epoch.
"""

from __future__ import annotations

import copy
import glob
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import torch
from torch.utils.data import IterableDataset, get_worker_info

_PHI = (math.sqrt(5) - 1) / 2  # golden-ratio step: a low-discrepancy, evenly spread hold-out rule


def resolve_parquet(source: str | Path | Sequence[str | Path]) -> list[Path]:
    """Files, directories (all ``*.parquet`` below, sorted) or globs -> sorted unique files."""
    items = [source] if isinstance(source, (str, Path)) else list(source)
    out: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            out += sorted(p.rglob("*.parquet"))
        elif any(ch in str(item) for ch in "*?["):
            out += sorted(Path(m) for m in glob.glob(str(item), recursive=True))
        elif p.exists():
            out.append(p)
        else:
            raise FileNotFoundError(f"no parquet at {item}")
    files = list(dict.fromkeys(out))
    if not files:
        raise FileNotFoundError(f"no parquet files in {source}")
    return files


def holdout_mask(row_index: np.ndarray, share: float, seed: int) -> np.ndarray:
    """True for validation rows: frac(i·φ + seed·φ²) < share — fixed per row, ≈ ``share`` of any run of rows."""
    offset = (seed * _PHI * _PHI) % 1.0
    return ((row_index * _PHI + offset) % 1.0) < share


@dataclass(frozen=True)
class _Unit:
    path: Path
    row_group: int
    rows: int
    offset: int  # global index of the unit's first row


class ParquetStream(IterableDataset):
    """Batches (x float32 [b, d], y [b], w float32 [b]) over Parquet file(s), a directory or a glob.

    ``label=None`` yields y = zeros (unlabelled pretraining); ``weight=None`` yields w = ones.
    Integer labels stay int64 (class ids), others become float32. Rows with a null/NaN label
    are dropped. Call ``set_epoch(e)`` before each epoch (``fit`` does): the shuffle is a pure
    function of (seed, epoch), so a resumed fit sees the same batches.
    """

    def __init__(
        self,
        source: str | Path | Sequence[str | Path],
        features: Sequence[str],
        label: str | None = None,
        weight: str | None = None,
        *,
        batch_size: int = 256,
        shuffle_buffer: int = 65_536,  # rows mixed at once; memory ≈ this × (d + 2) × 4 bytes
        shuffle: bool = True,
        seed: int = 0,
        read_rows: int = 65_536,  # rows decoded per record batch
        weight_clip: float | None = None,  # clip weights at this value
        drop_last: bool = False,
    ) -> None:
        super().__init__()
        self.files = resolve_parquet(source)
        self.features, self.label, self.weight = list(features), label, weight
        self.batch_size, self.shuffle_buffer, self.shuffle = int(batch_size), int(shuffle_buffer), shuffle
        self.seed, self.read_rows, self.weight_clip, self.drop_last = seed, int(read_rows), weight_clip, drop_last
        self.epoch = 0
        self._holdout: tuple[float, int, bool] | None = None  # (share, seed, keep validation rows)
        self.units: list[_Unit] = []
        offset = 0
        for path in self.files:
            meta = pq.ParquetFile(path).metadata
            for rg in range(meta.num_row_groups):
                n = meta.row_group(rg).num_rows
                if n:
                    self.units.append(_Unit(path, rg, n, offset))
                    offset += n
        self.num_rows = offset  # rows in the files (before hold-out and null labels)

    # ---- configuration ---------------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def holdout(self, share: float, seed: int = 0) -> tuple["ParquetStream", "ParquetStream"]:
        """(train stream, validation stream): a fixed ``share`` of rows, the same every epoch."""
        train, val = copy.copy(self), copy.copy(self)
        train._holdout, val._holdout = (share, seed, False), (share, seed, True)
        val.shuffle = False
        return train, val

    # ---- reading ---------------------------------------------------------------------------
    def _columns(self) -> list[str]:
        return list(dict.fromkeys([*self.features, *(c for c in (self.label, self.weight) if c)]))

    def _chunks(self, units: list[_Unit]) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """(x, y, w) numpy arrays per record batch of the given units, hold-out and null labels applied."""
        cols = self._columns()
        files: dict[Path, pq.ParquetFile] = {}
        for u in units:
            pf = files.setdefault(u.path, pq.ParquetFile(u.path))
            start = u.offset
            for rb in pf.iter_batches(batch_size=self.read_rows, row_groups=[u.row_group], columns=cols):
                n = rb.num_rows
                df = pl.from_arrow(rb)
                keep = np.ones(n, dtype=bool)
                if self._holdout is not None:
                    share, hseed, is_val = self._holdout
                    m = holdout_mask(np.arange(start, start + n, dtype=np.float64), share, hseed)
                    keep &= m if is_val else ~m
                start += n
                if self.label:
                    y = df.get_column(self.label).to_numpy()
                    if y.dtype.kind == "f":
                        keep &= np.isfinite(y)
                    y = y.astype(np.int64 if y.dtype.kind in "iu" else np.float32, copy=False)
                else:
                    y = np.zeros(n, dtype=np.float32)
                # one conversion for the whole frame, C-ordered so row gathers are contiguous
                x = np.ascontiguousarray(df.select(pl.col(self.features).cast(pl.Float32)).to_numpy())
                w = (df.get_column(self.weight).cast(pl.Float32).to_numpy() if self.weight
                     else np.ones(n, dtype=np.float32))
                if not keep.all():
                    x, y, w = x[keep], y[keep], w[keep]
                if len(y):
                    yield x, y, w

    def _emit(self, x: np.ndarray, y: np.ndarray, w: np.ndarray) -> Iterator[tuple[torch.Tensor, ...]]:
        for i in range(0, len(y), self.batch_size):
            xb, yb, wb = x[i : i + self.batch_size], y[i : i + self.batch_size], w[i : i + self.batch_size]
            if self.weight_clip is not None:
                wb = np.minimum(wb, self.weight_clip)
            yield torch.from_numpy(np.ascontiguousarray(xb)), torch.from_numpy(np.ascontiguousarray(yb)), torch.from_numpy(np.ascontiguousarray(wb))

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        info = get_worker_info()
        wid, nw = (info.id, info.num_workers) if info is not None else (0, 1)
        # the unit order is common to all workers (seed, epoch); the buffer stream is per worker
        order = (np.random.default_rng([self.seed, self.epoch]).permutation(len(self.units)) if self.shuffle
                 else np.arange(len(self.units)))
        mine = [self.units[i] for k, i in enumerate(order) if k % nw == wid]
        rng = np.random.default_rng([self.seed, self.epoch, wid, 1])
        bs = self.batch_size
        buf: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        buffered = 0
        cap = max(self.shuffle_buffer, 2 * bs) if self.shuffle else bs
        for chunk in self._chunks(mine):
            buf.append(chunk)
            buffered += len(chunk[1])
            if buffered < cap:
                continue
            x, y, w = (np.concatenate(p) for p in zip(*buf))
            if self.shuffle:
                perm = rng.permutation(len(y))
                # emit whole batches until half a buffer is left to mix with the next rows
                n_emit = max((len(y) - cap // 2) // bs, 1) * bs
                head, tail = perm[:n_emit], perm[n_emit:]
                yield from self._emit(x[head], y[head], w[head])
                buf = [(x[tail], y[tail], w[tail])] if len(tail) else []
            else:
                n_emit = len(y) // bs * bs
                yield from self._emit(x[:n_emit], y[:n_emit], w[:n_emit])
                buf = [(x[n_emit:], y[n_emit:], w[n_emit:])] if n_emit < len(y) else []
            buffered = sum(len(p[1]) for p in buf)
        if buf:
            x, y, w = (np.concatenate(p) for p in zip(*buf))
            if self.shuffle:
                perm = rng.permutation(len(y))
                x, y, w = x[perm], y[perm], w[perm]
            if self.drop_last:
                n = len(y) // bs * bs
                x, y, w = x[:n], y[:n], w[:n]
            yield from self._emit(x, y, w)
