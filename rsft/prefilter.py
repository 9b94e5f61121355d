"""Declarative prefilter: each rule compiles to one keep-``pl.Expr`` (no UDFs), applied lazily.

Counts: ``dropped[rule]`` = rows whose *first* failing rule (config order) is that rule;
``alone[rule]`` = rows that rule alone would drop. Accounting: rows_in = rows_out + Σ dropped.

Nulls: a rule other than ``not_null`` keeps a row whose value it cannot judge (null), so a
null never makes a row vanish under a rule that did not ask about nulls.
Window rules (stuck, spike, rate_of_change) evaluate per machine in time order: the input is
sorted by (by, order_by) before the rules run; the spike rule's centred rolling statistics are
columns :func:`with_window_stats` adds first (a merge network over the windows inside a machine,
nulls included, Polars' kernels near ±∞/NaN: exact), read by its expression.
"""

from __future__ import annotations

import functools
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import polars as pl
import pyarrow.parquet as pq

from rsft.config import PrefilterConfig
from rsft.fsio import atomic_path

WINDOW_KINDS = {"stuck", "spike", "rate_of_change"}


def rule_name(rule: Any) -> str:
    if rule.name:
        return rule.name
    cols = getattr(rule, "columns", None) or [getattr(rule, "column", "")]
    return f"{rule.kind}:{cols[0]}..{cols[-1]}" if len(cols) > 3 else f"{rule.kind}:{','.join(cols)}"


def _all(exprs: list[pl.Expr]) -> pl.Expr:
    return pl.all_horizontal(exprs) if len(exprs) > 1 else exprs[0]


def not_null(rule) -> pl.Expr:
    """Keep rows where every listed column is non-null."""
    return _all([pl.col(c).is_not_null() for c in rule.columns])


def finite(rule) -> pl.Expr:
    """Keep rows where every listed float column is finite (NaN/inf dropped; null kept)."""
    return _all([pl.col(c).is_finite().fill_null(True) for c in rule.columns])


def in_range(rule) -> pl.Expr:
    """Keep rows with min <= value <= max (inclusive; a missing bound is open)."""
    e = pl.lit(True)
    if rule.min is not None:
        e = e & (pl.col(rule.column) >= rule.min)
    if rule.max is not None:
        e = e & (pl.col(rule.column) <= rule.max)
    return e.fill_null(True)


def allowed(rule) -> pl.Expr:
    """Keep rows whose value is one of ``values``."""
    return pl.col(rule.column).is_in(rule.values).fill_null(True)


def duplicate(rule) -> pl.Expr:
    """Keep the first row of each key (exact duplicates on ``columns``)."""
    return pl.struct(rule.columns).is_first_distinct()


def stuck(rule) -> pl.Expr:
    """Drop rows inside a run of >= ``window`` identical consecutive readings of one machine."""
    out = []
    for c in rule.columns:
        # the frame is sorted by (by, order_by): a run of (machine, value) is a run of one machine
        run = pl.struct(rule.by, c).rle_id()
        out.append((pl.len().over(run) < rule.window) | pl.col(c).is_null())
    return _all(out)


def spike(rule) -> pl.Expr:
    """Drop rows where |x - rolling median| > k · σ̂, σ̂ = rolling IQR / 1.349 (centred window, per machine).

    The IQR of the window is a robust spread (a spike does not inflate it); σ̂ has a floor of
    1e-9 so a perfectly flat window flags only real departures. The centred statistics are
    columns :func:`with_window_stats` adds (:func:`flagged` does); this expression reads them.
    """
    out = []
    for c in rule.columns:
        x = pl.col(c)
        med, q25, q75 = (pl.col(_stat_name(c, rule.window, st)) for st in ("med", "q25", "q75"))
        sigma = ((q75 - q25) / 1.349).clip(lower_bound=1e-9)
        is_spike = (x - med).abs() > rule.k * sigma
        out.append((~is_spike).fill_null(True))
    return _all(out)


_STATS = {"med": lambda x, w, **k: x.rolling_median(w, min_samples=1, **k),
          "q25": lambda x, w, **k: x.rolling_quantile(0.25, "linear", w, min_samples=1, **k),
          "q75": lambda x, w, **k: x.rolling_quantile(0.75, "linear", w, min_samples=1, **k)}
_P = {"med": 0.5, "q25": 0.25, "q75": 0.75}
_NETWORK_MAX = 24  # widest window for the merge network (56 array ops a row at 11, 155 at 24)
_NETWORK_DTYPES = (pl.Float64, pl.Int64, pl.Int32, pl.Int16, pl.Int8, pl.UInt64, pl.UInt32, pl.UInt16, pl.UInt8)
_CHUNK = 32_768  # windows per pass of the merge network (its ~14 work buffers stay in cache)
_PATCH_SHARE = 0.2  # a column with ±∞ / NaN near more rows than this share gets Polars' kernels outright


def _stat_name(column: str, window: int, stat: str) -> str:
    return f"__{stat}{window}_{column}"


def _merge_layers(m: int, n: int) -> list[list[tuple[int, int]]]:
    """Batcher's odd-even merge of two sorted halves (wires 0…m−1 and m…2m−1, m a power of two)
    as layers of disjoint compare-exchanges ``(a, b)``, a < b (afterwards wire ``a`` holds the
    smaller value), for the first ``n`` wires only: the second half's missing top wires are +∞,
    which a comparator never moves."""
    size, p, comparators = 2 * m, m, []
    k = p
    while k >= 1:
        for j in range(k % p, size - k, 2 * k):
            for i in range(min(k, size - j - k)):
                a, b = i + j, i + j + k
                if a // (2 * p) == b // (2 * p) and b < n:
                    comparators.append((a, b))
        k //= 2
    layers: list[list[tuple[int, int]]] = []
    depth: dict[int, int] = {}
    for a, b in comparators:
        d = max(depth.get(a, -1), depth.get(b, -1)) + 1
        depth[a] = depth[b] = d
        layers += [[] for _ in range(d + 1 - len(layers))]
        layers[d].append((a, b))
    return layers


def _below(n: int) -> int:
    """The largest power of two below ``n`` (n ≥ 2)."""
    return 1 << ((n - 1).bit_length() - 1)


@functools.cache
def _window_plan(window: int, ranks: bool = False) -> tuple[tuple[tuple, ...], int]:
    """The ops computing Polars' centred median, q25 and q75 over ``window`` readings for every
    row at once, and the number of work buffers they use.

    Sorting work is shared between neighbouring rows: sorted runs of 2 rows start at every row
    (one compare-exchange), runs of 4 merge a run of 2 with the run of 2 two rows later (3), runs
    of 8 two runs of 4 (9) … (Batcher's odd-even merge); a window of P + R rows (P the largest
    power of two below it) is the run of P at its first row and the run of R P rows later, of
    which only the order statistics the quantiles read are selected: the r-th smallest of sorted
    A and B is min(A[r], max(A[r−1], B[0]), max(A[r−2], B[1]), …, B[r]). At w = 11: 58 min/max
    a row, against 76 for a sorting network per row. A run's later start is a view of its arrays
    (no copy).

    With ``ranks``: the two runs are merged whole instead (Batcher's merge, truncated), and every
    order statistic a window with fewer readings reads (ranks 0 … the w-reading q75's upper one)
    is kept to the end, for windows holding nulls (sorted as +∞, so a window's k readings are its
    ranks 0 … k−1). Ops whose result nothing reads (the merged run's top ranks) are dropped: at
    w = 11 56 min/max, fewer than the selection; :func:`_plan_for` takes the shorter of the two
    for a column without nulls (the merge at 3, 4, 6–8, 10–12, 14–16, 22, 24).

    Ops: ``("min" | "max", dst, a, b, n)`` — elementwise into buffer ``dst`` over the first
    len(x) − n + 1 rows of ``a`` and ``b``, each ``(buffer, offset)`` (buffer −1: the input);
    ``("pick", stat, lo, hi, f)`` — lo + f·(hi − lo) (Polars' linear interpolation), or lo;
    ``("rank", r, at, None, 0)`` (with ``ranks``) — where the r-th smallest of each window is."""
    ops: list[tuple] = []
    count = [1]

    def new() -> int:
        count[0] += 1
        return count[0] - 1

    runs: dict[int, list[tuple[int, int]]] = {1: [(0, 0)]}  # virtual buffer 0: the input

    def run(n: int) -> list[tuple[int, int]]:
        if n not in runs:
            p = _below(n)
            wires = run(p) + [(b, o + p) for b, o in run(n - p)]
            for layer in _merge_layers(p, n):
                for a, b in layer:
                    lo, hi = new(), new()
                    ops.extend([("min", lo, wires[a], wires[b], n), ("max", hi, wires[a], wires[b], n)])
                    wires[a], wires[b] = (lo, 0), (hi, 0)
            runs[n] = wires
        return runs[n]

    top = _positions(_P["q75"], window)[-1]  # the highest rank any window's quantiles read
    kth = dict(enumerate(run(window)[:top + 1])) if ranks else _select(window, run, new, ops)
    for st in _STATS:
        pos, at = _P[st] * (window - 1), _positions(_P[st], window)
        ops.append(("pick", st, kth[at[0]], kth[at[1]] if len(at) > 1 else None, pos - int(pos)))
    if ranks:
        assert all(v != 0 for v, _ in kth.values())  # every rank is a work buffer (see _rank_stats)
        ops.extend(("rank", r, kth[r], None, 0) for r in range(top + 1))
    return _allocate(_live(ops))


def _select(window: int, run: Callable, new: Callable, ops: list[tuple]) -> dict[int, tuple[int, int]]:
    """The order statistics the quantiles of ``window`` readings read, selected from the sorted
    run of P at a window's first row and the run of R = window − P after it (ops appended)."""
    p = _below(window)
    a, b = run(p), [(v, o + p) for v, o in run(window - p)]
    kth = {}
    for r in sorted({r for st in _STATS for r in _positions(_P[st], window)}):
        terms = [a[r]] if r < p else []
        for j in range(len(b)):
            i = r - 1 - j
            if i == -1:
                terms.append(b[j])
            elif 0 <= i < p:
                m = new()
                ops.append(("max", m, a[i], b[j], window))
                terms.append((m, 0))
        kth[r] = terms[0]
        if len(terms) > 1:
            k = new()
            ops.append(("min", k, terms[0], terms[1], window))
            ops.extend(("min", k, (k, 0), t, window) for t in terms[2:])
            kth[r] = (k, 0)
    return kth


def _live(ops: list[tuple]) -> list[tuple]:
    """``ops`` without those whose result no pick or rank reads (a merged run's top wires)."""
    need, keep = set(), []
    for op in reversed(ops):
        if op[0] in ("pick", "rank") or op[1] in need:
            keep.append(op)
            need |= {w[0] for w in op[2:4] if w is not None}
    return keep[::-1]


def _allocate(ops: list[tuple]) -> tuple[tuple[tuple, ...], int]:
    """``ops`` with virtual buffers mapped onto reused work buffers (a slot is free again after
    its last read), and the number of work buffers."""
    last = {v: i for i, op in enumerate(ops) for v, _ in (w for w in op[2:4] if w is not None)}
    slot, free, plan, buffers = {0: -1}, [], [], 0
    for i, op in enumerate(ops):
        out = op[0] in ("pick", "rank")  # writes no work buffer
        if not out and op[1] not in slot:
            if not free:
                free, buffers = [buffers], buffers + 1
            slot[op[1]] = free.pop()
        where = lambda w: None if w is None else (slot[w[0]], w[1])  # noqa: E731
        plan.append((op[0], op[1] if out else slot[op[1]], where(op[2]), where(op[3]), op[4]))
        free += [slot[v] for v in {w[0] for w in op[2:4] if w is not None}
                 if last[v] == i and v != 0 and (out or v != op[1])]
    return tuple(plan), buffers


@functools.cache
def _plan_for(window: int, nulls: bool) -> tuple[tuple[tuple, ...], int]:
    """The plan for a column with or without nulls: with them the ranks plan (its windows with
    nulls read other ranks); without, whichever of the two has fewer min/max ops (both exact)."""
    plans = [_window_plan(window, True)] + ([] if nulls else [_window_plan(window)])
    return min(plans, key=lambda p: sum(op[0] in ("min", "max") for op in p[0]))


def _positions(p: float, n: int) -> list[int]:
    """The sorted positions the ``p`` quantile of ``n`` readings reads."""
    pos = p * (n - 1)
    return [int(pos)] if pos == int(pos) else [int(pos), int(pos) + 1]


def _quantiles(n: np.ndarray, kth: Callable[[int, np.ndarray], np.ndarray], out: dict[str, np.ndarray],
               at: np.ndarray) -> None:
    """Median, q25, q75 of windows of ``n`` readings each into ``out[st][at]``, ``kth(r, sel)``
    the r-th smallest reading of windows ``sel``: Polars' positions and interpolation, the windows
    taken by their count (one position a count, no per-window positions); NaN where n = 0."""
    order = np.argsort(n.astype(np.uint8), kind="stable")  # counts ≤ _NETWORK_MAX: a radix sort
    counts = np.bincount(n)
    ends = np.cumsum(counts)
    with np.errstate(invalid="ignore"):  # ±∞ nearby may give NaN: such rows are patched
        for c in np.flatnonzero(counts):
            sel = order[ends[c] - counts[c]:ends[c]]
            rows = at[sel]
            for st in _STATS:
                pos = _P[st] * (c - 1)
                lo, f = int(pos), pos - int(pos)
                v = kth(lo, sel) if c else np.full(len(sel), np.nan)
                if f and c:
                    v = v + f * (kth(lo + 1, sel) - v)  # Polars' order of operations
                out[st][rows] = v


def _window_stats(x: np.ndarray, window: int, work: np.ndarray | None = None,
                  short: tuple[np.ndarray, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Median, q25, q75 of each window of ``window`` consecutive readings of ``x`` (no NaN
    needed where the result is read; len(x) − window + 1 windows, the first starting at row 0)
    by :func:`_window_plan`: NumPy, ``_CHUNK`` windows at a time into ``work`` (buffers ×
    (``_CHUNK`` + window − 1) or fewer columns; allocated here when not given).

    ``short``: where ``x`` holds nulls as +∞, the windows with fewer than ``window`` readings
    (sorted) and their counts of readings (:func:`_short_windows`); their statistics are read
    at the ranks their count gives (:func:`_rank_stats`). None: no nulls."""
    plan, buffers = _plan_for(window, short is not None)
    m = max(len(x) - window + 1, 0)
    out = {st: np.empty(m) for st in _STATS}
    if work is None:
        work = np.empty((buffers, min(_CHUNK, m) + window - 1))
    step = work.shape[1] - window + 1
    for s in range(0, m, step):
        k = min(step, m - s)
        part = x[s:s + k + window - 1]
        view = lambda w, n: (part if w[0] < 0 else work[w[0]])[w[1]:w[1] + n]  # noqa: E731
        ranks = []
        for kind, dst, a, b, f in plan:
            if kind == "rank":
                ranks.append(a)
            elif kind == "pick":  # ±∞ in a window may give NaN here: such rows are patched
                o, lo = out[dst][s:s + k], view(a, k)
                if b is None:
                    o[:] = lo
                    continue
                with np.errstate(invalid="ignore"):
                    np.subtract(view(b, k), lo, out=o)  # lo + f·(hi − lo), Polars' order of operations
                    o *= f
                    o += lo
            else:
                n = k + window - f
                (np.minimum if kind == "min" else np.maximum)(view(a, n), view(b, n), out=work[dst][:n])
        if short is not None:
            i, j = np.searchsorted(short[0], (s, s + k))
            if i < j:
                _rank_stats(out, short[0][i:j], short[1][i:j], s, work, ranks)
    return out


def _short_windows(null: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """The rows whose centred window of ``window`` rows holds a row of ``null`` (sorted), and the
    count of non-null rows in each window (rows past the frame's ends count as readings: such
    windows are cut, their statistics computed apart). A few nulls: the rows around each, counted
    by bisection; many: a running count of nulls (a pass over the column)."""
    h = (window - 1) // 2
    at = np.flatnonzero(null)
    if len(at) * window < len(null) // 8:
        rows = _near(at, window, len(null))
        gaps = np.searchsorted(at, rows + h, "right") - np.searchsorted(at, rows - (window - 1 - h))
        return rows, window - gaps
    gaps = np.zeros(len(null) + window, np.int32)  # gaps[q]: nulls before row q − (window − 1 − h)
    np.cumsum(null, dtype=np.int32, out=gaps[window - h:len(null) + window - h])
    gaps[len(null) + window - h:] = gaps[len(null) + window - h - 1]
    count = window - (gaps[window:] - gaps[:-window])
    rows = np.flatnonzero(count < window)
    return rows, count[rows]


def _rank_stats(out: dict[str, np.ndarray], rows: np.ndarray, count: np.ndarray, s: int, work: np.ndarray,
                ranks: list[tuple[int, int]]) -> None:
    """Into ``out`` at ``rows`` (windows of this pass, which starts at row ``s``) holding
    ``count`` readings each: their statistics read from the pass's sorted ranks (``ranks[r]``:
    (buffer, offset) in ``work``) at each count's positions — a gather a rank read, no sort."""
    j = rows - s
    _quantiles(count, lambda r, sel: work[ranks[r][0]].take(ranks[r][1] + j[sel]), out, rows)


def _exact_rows(vals: np.ndarray, null: np.ndarray, start: np.ndarray, end: np.ndarray, rows: np.ndarray,
                window: int, out: dict[str, np.ndarray]) -> None:
    """Polars' centred median, q25, q75 into ``out`` at ``rows`` of a column (``vals`` with
    ``null`` marks; row i's group spans ``start[i]`` … ``end[i]`` − 1) whose windows hold no
    ±∞/NaN: the window's readings inside the group, sorted (NumPy), read at the positions their
    count gives, with Polars' interpolation; NaN where a window has no reading."""
    h = (window - 1) // 2
    idx = rows[:, None] + np.arange(h + 1 - window, h + 1)
    ok = (idx >= start[rows, None]) & (idx < end[rows, None])
    idx = np.clip(idx, 0, len(vals) - 1)
    ok &= ~null[idx]
    v = np.sort(np.where(ok, vals[idx], np.inf), axis=1)
    _quantiles(ok.sum(axis=1), lambda r, sel: v[sel, r], out, rows)


def _kernel_stats(by: str | list[str], cols: dict[tuple[str, int], dict[str, str]]) -> list[pl.Expr]:
    """Polars' centred rolling kernels for ``cols`` ((column, window) → {stat: name}) per ``by``."""
    return [_STATS[st](pl.col(c), w, center=True).over(by).alias(n) for (c, w), names in cols.items()
            for st, n in names.items()]


def _patch(base: pl.DataFrame, by: str, rows: np.ndarray, cols: dict[tuple[str, int], dict[str, str]]) -> pl.DataFrame:
    """Polars' centred kernels at ``rows`` only (``__ri`` and the statistics' columns): computed on
    a small frame of those rows' windows — each contiguous run of one machine's rows followed by
    ``w`` null rows, so no window reaches into the next run (the kernels skip nulls) and a window
    inside its run is the row's window in the whole frame; no per-run grouping."""
    w = max(w for _, w in cols)
    h = (w - 1) // 2
    mark, rows = np.zeros(base.height, bool), rows.astype(np.int64)
    for o in range(h + 1 - w, h + 1):
        mark[np.clip(rows + o, 0, base.height - 1)] = True
    near = np.flatnonzero(mark)
    small = base.select(by, *{c for c, _ in cols})[near]
    brk = np.ones(len(near), bool)
    brk[1:] = np.diff(near) != 1
    brk[1:] |= small[by].ne_missing(small[by].shift(1)).to_numpy()[1:]
    pos = np.arange(len(near)) + w * np.cumsum(brk)  # a gap of w rows before each run
    padded = pl.DataFrame({c: pl.Series(c, [None], small.schema[c]).extend_constant(None, int(pos[-1])).scatter(pos, small[c])
                           for c in small.columns if c != by})
    out = padded.select([_STATS[st](pl.col(c), w_, center=True).alias(n) for (c, w_), names in cols.items()
                         for st, n in names.items()])
    at = np.searchsorted(near, rows)
    return out[pos[at]].with_columns(pl.Series("__ri", rows)).select("__ri", *out.columns)


def with_window_stats(lf: pl.LazyFrame, rules: list[Any]) -> tuple[pl.LazyFrame, list[str]]:
    """``lf`` (sorted by machine and time) with the spike rules' centred statistics (median, q25,
    q75 of each column over its window, per machine) as columns, and their names (to drop): the
    values of Polars' centred rolling kernels (equal values; a zero's sign may differ).

    For a numeric column (Float64 or integer): a merge network whose sorted runs neighbouring rows
    share (:func:`_window_plan`: NumPy array ops over the column, ``_CHUNK`` rows a pass; no
    per-row Python) where the window is inside the machine and holds no ±∞/NaN — nulls sort as
    +∞ in it, and a window holding k of them reads its statistics at the ranks its w − k readings
    give (:func:`_short_windows`, :func:`_rank_stats`: scattered gaps cost about as little as
    none); the window's readings sorted row by row (NumPy) on the rows whose window a machine's
    edge cuts (:func:`_exact_rows`); Polars' own kernels on a small frame of the windows of rows
    with ±∞ or NaN nearby (:func:`_patch`). A column with such rows in more than
    ``_PATCH_SHARE`` of the frame, a window wider than ``_NETWORK_MAX`` or narrower than 3, or
    another dtype (Float32, non-numeric) gets Polars' trailing kernels shifted back (the centred
    window but on each machine's last (w−1)//2 rows, patched); a frame whose machines' rows are not
    contiguous, Polars' centred kernels."""
    spikes = [r for r in rules if r.kind == "spike"]
    if not spikes:
        return lf, []
    by = spikes[0].by
    if any(r.by != by for r in spikes):  # one patch frame per `by` grouping: one grouping for all
        raise ValueError(f"spike rules group by different columns ({sorted({str(r.by) for r in spikes})}): use one")
    wanted: dict[tuple[str, int], dict[str, str]] = {}
    for r in spikes:
        for c in r.columns:
            wanted.setdefault((c, r.window), {st: _stat_name(c, r.window, st) for st in _STATS})
    # window rules hold the sorted frame in memory anyway: materialise it, add columns by position
    base = lf.collect()
    height = base.height
    run = base[by].rle_id().to_numpy()
    grouped = height == 0 or int(run[-1]) + 1 == base[by].n_unique()
    net = [k for k in wanted if grouped and height and 3 <= k[1] <= _NETWORK_MAX and base.schema[k[0]] in _NETWORK_DTYPES]
    stats: dict[str, pl.Series] = {}
    own: dict[tuple[str, int], np.ndarray] = {}
    if net:
        first = np.flatnonzero(np.r_[True, run[1:] != run[:-1]])  # each machine's first row
        start = first[run]
        end = np.r_[first[1:], height][run]
        pos = np.arange(height)
    for w in sorted({w for _, w in net}):
        h = (w - 1) // 2
        cut = np.flatnonzero((pos - start < w - 1 - h) | (end - pos <= h))  # the window passes the machine's edge
        work = np.empty((max(_plan_for(w, n)[1] for n in (False, True)), min(_CHUNK, height) + w - 1))
        padded = np.zeros(height + w - 1)  # row i's window: padded[i] … padded[i + w − 1]
        for c in [c for c, w_ in net if w_ == w]:
            x = base[c].cast(pl.Float64)
            null = x.is_null().to_numpy()
            vals = x.to_numpy()
            # ±∞ or NaN in a window: Polars' kernels (this column's own patch rows)
            bad = _near(np.flatnonzero(~np.isfinite(vals) & ~null), w, height)
            if len(bad) > _PATCH_SHARE * height:
                continue
            padded[w - 1 - h:height + w - 1 - h] = vals
            short = None
            if x.null_count():  # nulls sort as +∞; the windows holding them read their own ranks
                padded[w - 1 - h:height + w - 1 - h][null] = np.inf
                short = _short_windows(null, w)
            out = _window_stats(padded, w, work, short)
            # windows a machine's edge cuts: their readings (inside the machine) sorted one by one
            rows = np.setdiff1d(cut, bad, assume_unique=True)
            _exact_rows(vals, null, start, end, rows, w, out)
            for st in _STATS:
                stats[wanted[(c, w)][st]] = pl.Series(out[st], nan_to_null=True)  # NaN: no reading
            if len(bad):
                own[(c, w)] = bad
    for (c, w), names in wanted.items():
        if names["med"] in stats:
            continue
        if not grouped:  # Polars' centred kernels per machine, wherever its rows are
            stats.update(base.select(_kernel_stats(by, {(c, w): names})).to_dict())
            continue
        # Polars' trailing kernels (~3× cheaper than its centred ones), shifted back by (w−1)//2:
        # the centred window, except on each machine's last (w−1)//2 rows, patched
        h = (w - 1) // 2
        stats.update(base.select([_STATS[st](pl.col(c), w).shift(-h).over(by).alias(n) for st, n in names.items()]).to_dict())
        if h:
            own[(c, w)] = base.select(pl.int_range(pl.len()).over(by) >= pl.len().over(by).cast(pl.Int64) - h
                                      ).to_series().arg_true().to_numpy()
    for k, rows in own.items():
        if not len(rows):
            continue
        small = _patch(base, by, rows, {k: wanted[k]})
        for n in small.columns[1:]:
            stats[n] = stats[n].scatter(small["__ri"], small[n])
    names = [n for v in wanted.values() for n in v.values()]
    return base.with_columns([stats[n].alias(n) for n in names]).lazy(), names


def _near(at: np.ndarray, window: int, height: int) -> np.ndarray:
    """The rows (sorted, unique) whose centred window of ``window`` rows holds a row of ``at``."""
    if not len(at):
        return at
    h = (window - 1) // 2
    return np.unique(np.clip((at[:, None] + np.arange(-h, window - h)).ravel(), 0, height - 1))


def rate_of_change(rule) -> pl.Expr:
    """Drop rows whose change from the machine's previous reading exceeds ``max_delta``."""
    return ((pl.col(rule.column) - pl.col(rule.column).shift(1)).abs().over(rule.by) <= rule.max_delta).fill_null(True)


def text_length(rule) -> pl.Expr:
    """Keep texts within char / word bounds (inclusive)."""
    t = pl.col(rule.column)
    chars, words = t.str.len_chars(), t.str.extract_all(r"\S+").list.len()
    e = pl.lit(True)
    for val, lo, hi in ((chars, rule.min_chars, rule.max_chars), (words, rule.min_words, rule.max_words)):
        if lo is not None:
            e = e & (val >= lo)
        if hi is not None:
            e = e & (val <= hi)
    return e.fill_null(True)


def text_chars(rule) -> pl.Expr:
    """Keep texts with enough alphanumeric and few non-printable characters: control and format
    characters (NUL, escape codes, zero-width marks …) — not the tab and line breaks of a
    multi-line text, which are its layout."""
    t = pl.col(rule.column)
    n = t.str.len_chars().cast(pl.Float64).clip(lower_bound=1)
    e = pl.lit(True)
    if rule.min_alnum_share is not None:
        e = e & (t.str.count_matches(r"[\p{L}\p{N}]") / n >= rule.min_alnum_share)
    if rule.max_nonprintable_share is not None:
        e = e & (t.str.count_matches(r"[\p{Cc}\p{Cf}--[\t\n\r]]") / n <= rule.max_nonprintable_share)
    return e.fill_null(True)


def text_repetition(rule) -> pl.Expr:
    """Keep texts whose repeated-word share (1 - unique/words) is at most the bound."""
    words = pl.col(rule.column).str.to_lowercase().str.extract_all(r"\w+")
    share = 1 - words.list.n_unique() / words.list.len().clip(lower_bound=1)
    return (share <= rule.max_repeated_word_share).fill_null(True)


def text_duplicate(rule) -> pl.Expr:
    """Keep the first of texts equal after lowercasing and whitespace normalisation."""
    norm = pl.col(rule.column).str.to_lowercase().str.replace_all(r"\s+", " ").str.strip_chars()
    return norm.is_first_distinct() | norm.is_null()


COMPILERS: dict[str, Callable[[Any], pl.Expr]] = {
    "not_null": not_null, "finite": finite, "range": in_range, "allowed": allowed, "duplicate": duplicate,
    "stuck": stuck, "spike": spike, "rate_of_change": rate_of_change, "text_length": text_length,
    "text_chars": text_chars, "text_repetition": text_repetition, "text_duplicate": text_duplicate,
}


def compile_rule(rule: Any) -> pl.Expr:
    return COMPILERS[rule.kind](rule)


@dataclass
class PrefilterSummary:
    rows_in: int
    rows_out: int
    dropped: dict[str, int] = field(default_factory=dict)
    alone: dict[str, int] = field(default_factory=dict)
    output: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _source(source: pl.LazyFrame | str | Path) -> pl.LazyFrame:
    if isinstance(source, pl.LazyFrame):
        return source
    s = str(source)
    return pl.scan_parquet(os.path.join(s, "**", "*.parquet") if os.path.isdir(s) else s, hive_partitioning=False)


def rule_columns(rule: Any) -> list[str]:
    """Every column a rule reads."""
    cols = list(getattr(rule, "columns", None) or [getattr(rule, "column", None)])
    cols += [getattr(rule, k) for k in ("by", "order_by") if getattr(rule, k, None)]
    return [c for c in cols if c]


def check_rules(cfg: PrefilterConfig, columns: list[str]) -> None:
    """One line naming the rule and the column when a rule reads a column the data lacks."""
    have = set(columns)
    for r in cfg.rules:
        missing = [c for c in rule_columns(r) if c not in have]
        if missing:
            raise ValueError(f"prefilter rule '{rule_name(r)}': unknown column(s) {', '.join(missing)} "
                             f"(the data has: {', '.join(sorted(have))})")


def flagged(lf: pl.LazyFrame, cfg: PrefilterConfig) -> tuple[pl.LazyFrame, list[str]]:
    """The frame (sorted for window rules) with one boolean keep column per rule."""
    windows = [r for r in cfg.rules if r.kind in WINDOW_KINDS]
    if windows:
        lf = lf.sort(windows[0].by, windows[0].order_by, maintain_order=True)
    flags = [f"__keep_{i}" for i in range(len(cfg.rules))]
    lf, stats = with_window_stats(lf, cfg.rules)
    rules = [compile_rule(r).alias(f) for r, f in zip(cfg.rules, flags)]
    if not windows:
        return lf.with_columns(rules), flags
    # window rules hold the sorted frame in memory: the flags by Polars' in-memory engine (a lazy
    # plan's default engine took ~5× the CPU for the stuck rule's `len().over(run)`)
    return lf.collect().with_columns(rules).drop(stats).lazy(), flags


ROW_KINDS = {"not_null", "finite", "range", "allowed", "text_length", "text_chars", "text_repetition"}


def target_rules(cfg: PrefilterConfig) -> PrefilterConfig:
    """The rules ``prefilter.targets`` applies to the target sample and hold-out."""
    if cfg.targets == "all":
        return cfg
    keep = [r for r in cfg.rules if r.kind in ROW_KINDS] if cfg.targets == "row_rules" else []
    return cfg.model_copy(update={"rules": keep})


def apply_rules(df: pl.DataFrame, cfg: PrefilterConfig) -> tuple[pl.DataFrame, dict[str, int]]:
    """A small frame's rows every rule keeps (the order kept), and the rows each rule dropped
    (counted under the first rule that drops a row, as for the pool)."""
    if not cfg.rules:
        return df, {}
    check_rules(cfg, df.columns)
    lf, flags = flagged(df.lazy().with_row_index("__order"), cfg)
    out = lf.with_columns(__first=pl.coalesce([pl.when(~pl.col(f)).then(pl.lit(i)) for i, f in enumerate(flags)])
                          ).sort("__order").collect()
    firsts = out.get_column("__first")
    counts = {rule_name(r): int((firsts == i).sum()) for i, r in enumerate(cfg.rules)}
    return out.filter(firsts.is_null()).drop("__order", "__first", *flags), counts


def _count_aggs(flags: list[str]) -> list[pl.Expr]:
    aggs = [pl.len().alias("__rows")]
    for i, f in enumerate(flags):
        prior = [pl.col(p) for p in flags[:i]]
        first_fail = (~pl.col(f)) & (pl.all_horizontal(prior) if prior else pl.lit(True))
        aggs += [first_fail.sum().alias(f"__first_{i}"), (~pl.col(f)).sum().alias(f"__alone_{i}")]
    return aggs


@dataclass(frozen=True)
class Derive:
    """Columns computed on the kept rows per ``by`` group in ``order_by`` order (trailing rolling
    features): each block sees its groups' last ``context`` kept rows of earlier blocks, so the
    values equal those computed on the whole kept pool at once."""

    exprs: tuple[pl.Expr, ...]
    by: str
    order_by: str
    context: int


def prefilter(source: pl.LazyFrame | str | Path, out_path: str | Path, cfg: PrefilterConfig, *, excluded_path=None,
              derive: Derive | None = None) -> PrefilterSummary:
    """Apply the rules; write the kept rows (and optionally the dropped ones with ``rule``).

    Without window rules: one streaming plan. With window rules, or columns to ``derive`` on the
    kept rows: :func:`_prefilter_blocks` (time-ordered blocks of whole days with context rows),
    so memory does not grow with the pool.
    """
    lf = _source(source)
    check_rules(cfg, lf.collect_schema().names())
    names = [rule_name(r) for r in cfg.rules]
    out = Path(out_path)
    with atomic_path(out) as tmp:
        if derive is not None or any(r.kind in WINDOW_KINDS for r in cfg.rules):
            counts = _prefilter_blocks(lf, tmp, cfg, excluded_path, derive)
        else:
            lf, flags = flagged(lf, cfg)
            keep = pl.all_horizontal([pl.col(f) for f in flags]) if flags else pl.lit(True)
            # one plan: the flags are computed once (shared sub-plan) for the counts, the kept rows
            # and (optionally) the excluded rows
            plans = [lf.select(_count_aggs(flags)), lf.filter(keep).drop(flags).sink_parquet(tmp, lazy=True)]
            if excluded_path is not None:
                rule_col = pl.coalesce([pl.when(~pl.col(f)).then(pl.lit(n)) for f, n in zip(flags, names)]).alias("rule")
                plans.append(lf.filter(~keep).with_columns(rule_col).drop(flags).sink_parquet(str(excluded_path), lazy=True))
            counts = pl.collect_all(plans)[0].row(0, named=True)
    rows_in = int(counts["__rows"])
    dropped = {n: int(counts[f"__first_{i}"]) for i, n in enumerate(names)}
    return PrefilterSummary(rows_in, rows_in - sum(dropped.values()), dropped,
                            {n: int(counts[f"__alone_{i}"]) for i, n in enumerate(names)}, str(out))


_GLOBAL_KINDS = {"text_duplicate"}


def _prefilter_blocks(lf: pl.LazyFrame, tmp: Path, cfg: PrefilterConfig, excluded_path,
                      derive: Derive | None = None) -> dict[str, int]:
    """Window rules in bounded memory.

    1. One streaming pass splits the pool by UTC day of ``order_by`` (``__day=YYYY-MM-DD``).
    2. Consecutive days are grouped into blocks of about ``cfg.block_rows`` rows. Each block is
       evaluated with the rules' own expressions on ``prev ∪ block ∪ next``, where ``prev`` holds
       each machine's last ``ctx`` rows before the block and ``next`` its first ``ctx`` rows of
       the following block, and only the block's rows count. ``ctx`` = the widest window: a run of identical readings, a
       centred median or a first difference that crosses a block edge is judged exactly as on
       the whole pool (a machine with no rows in the next block sees no right-hand context).
    3. A ``duplicate`` rule must key on (by, order_by) — duplicates then share a day, hence a
       block; a key without them would need the whole pool at once and is refused here.
    """
    from rsft.ingest import _Parts

    windows = [r for r in cfg.rules if r.kind in WINDOW_KINDS]
    by, order_by = (windows[0].by, windows[0].order_by) if windows else (derive.by, derive.order_by)
    if any((r.by, r.order_by) != (by, order_by) for r in windows):
        raise ValueError("prefilter: all window rules must share the same 'by' and 'order_by'")
    if derive is not None and (derive.by, derive.order_by) != (by, order_by):
        raise ValueError(f"features.rolling: group/time ({derive.by}, {derive.order_by}) must match the prefilter's window "
                         f"rules ({by}, {order_by})")
    for r in cfg.rules:
        if r.kind in _GLOBAL_KINDS or (r.kind == "duplicate" and not {by, order_by} <= set(r.columns)):
            raise ValueError(f"prefilter rule '{rule_name(r)}': with window rules, a duplicate key must include "
                             f"{by} and {order_by} (blocks hold whole days)")
    ctx = max((getattr(r, "window", 2) for r in windows), default=0)
    names = [rule_name(r) for r in cfg.rules]
    split = tmp.with_name(f".split-{os.getpid()}-{tmp.stem}")
    shutil.rmtree(split, ignore_errors=True)
    day = pl.col(order_by).dt.date().alias("__day")
    parts = _Parts(split, "part", {"__day": day}, cfg.block_rows)
    try:
        for batch in lf.collect_batches(chunk_size=250_000):
            parts.write(batch)
        parts.close()
        days = sorted(split.iterdir(), key=lambda p: (p.name != "__day=__null__", p.name))  # nulls first, as a sort puts them
        blocks, cur, n = [], [], 0
        for d in days:
            files = sorted(d.glob("*.parquet"))
            cur += files
            n += sum(pq.ParquetFile(f).metadata.num_rows for f in files)
            if n >= cfg.block_rows or d.name == "__day=__null__":
                blocks.append(cur)
                cur, n = [], 0
        if cur:
            blocks.append(cur)
        counts = {"__rows": 0, **{f"__{k}_{i}": 0 for i in range(len(names)) for k in ("first", "alone")}}
        writers: dict[str, pq.ParquetWriter] = {}
        read = lambda files: pl.read_parquet(files).drop("__day")  # noqa: E731
        prev = prev_kept = None
        nxt = read(blocks[0]) if blocks else None
        for i in range(len(blocks)):
            block, nxt = nxt, (read(blocks[i + 1]) if i + 1 < len(blocks) else None)
            frames = [block.with_columns(__mid=pl.lit(True))]
            if prev is not None:
                frames.insert(0, prev.with_columns(__mid=pl.lit(False)))
            if nxt is not None:  # each machine's first ctx rows after the block
                head = nxt.sort(by, order_by, maintain_order=True).group_by(by, maintain_order=True).head(ctx)
                frames.append(head.with_columns(__mid=pl.lit(False)))
            whole, flags = flagged(pl.concat(frames, how="vertical_relaxed").lazy(), cfg)
            whole = whole.filter(pl.col("__mid")).drop("__mid").collect()
            for k, v in whole.select(_count_aggs(flags)).row(0, named=True).items():
                counts[k] += int(v)
            keep = pl.all_horizontal([pl.col(f) for f in flags]) if flags else pl.lit(True)
            kept = whole.filter(keep).drop(flags)
            if derive is not None:
                kept, prev_kept = _derive(kept, prev_kept, derive)
            _append(writers, "kept", tmp, kept)
            if excluded_path is not None:
                rule_col = pl.coalesce([pl.when(~pl.col(f)).then(pl.lit(n)) for f, n in zip(flags, names)]).alias("rule")
                _append(writers, "excluded", Path(excluded_path), whole.filter(~keep).with_columns(rule_col).drop(flags))
            prev = _carry_tail(prev, block, by, order_by, ctx)
        if "kept" not in writers:  # no rows at all: an empty file with the input's schema
            lf.head(0).collect().write_parquet(tmp)
        for w in writers.values():
            w.close()
        if excluded_path is not None and "excluded" not in writers:
            lf.head(0).with_columns(rule=pl.lit(None, dtype=pl.String)).collect().write_parquet(excluded_path)
    finally:
        shutil.rmtree(split, ignore_errors=True)
    return counts


def _derive(kept: pl.DataFrame, prev_kept: pl.DataFrame | None, d: Derive) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``kept`` with the derived columns, computed with each group's last ``d.context`` kept rows
    of earlier blocks in front; and the context for the next block."""
    frame = kept.with_columns(__mid=pl.lit(True))
    if prev_kept is not None and prev_kept.height:
        frame = pl.concat([prev_kept.with_columns(__mid=pl.lit(False)), frame], how="vertical_relaxed")
    out = frame.with_columns(list(d.exprs)).filter(pl.col("__mid")).drop("__mid")
    return out, _carry_tail(prev_kept, kept, d.by, d.order_by, d.context)


def _carry_tail(prev: pl.DataFrame | None, block: pl.DataFrame, by: str, order_by: str, n: int) -> pl.DataFrame:
    """Each group's last ``n`` rows of ``prev`` followed by ``block``, in ``order_by`` order (the
    context carried to the next block: a group with fewer than ``n`` rows in ``block``, or none,
    keeps its earlier rows in front)."""
    frame = block if prev is None or prev.height == 0 else pl.concat([prev, block], how="vertical_relaxed")
    return frame.sort(by, order_by, maintain_order=True).group_by(by, maintain_order=True).tail(n)


def _append(writers: dict[str, pq.ParquetWriter], key: str, path: Path, df: pl.DataFrame) -> None:
    table = df.to_arrow()
    if key not in writers:
        writers[key] = pq.ParquetWriter(path, table.schema, compression="zstd")
    writers[key].write_table(table.cast(writers[key].schema))
