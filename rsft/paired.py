"""Two models judged on the same rows: their metric difference and its standard error.

A night's hold-out is a few days of rows, drawn anew each night; its metric moves a lot between
nights with no change to the model (the pvlib trial's champion: hold-out RMSE 2–9). What both
models get wrong on the same rows cancels in their per-row difference, so the gate asks how many
standard errors of that *paired* difference the challenger wins by (``promotion.min_z``).

Means of a per-row loss (mae: absolute error, log_loss, accuracy: 0/1 error, r2: squared error
over the labels' fixed spread) get the analytic standard error of a mean; rmse, the root of a
mean, the delta method; macro_f1 and auroc, which are no per-row means, a paired bootstrap over
rows with a fixed seed and number of resamples (the same figure every run; O(resamples × rows)).

A hold-out of time series (rows with a time order, :class:`rsft.evaluate.Rows`) is not rows
drawn independently: a cloudy hour or a drifting sensor moves many neighbouring readings' errors
together, and the per-row formula then understates the SE (a real PV plant's 15-minute hold-out:
1.8× by area × hour blocks). There the SE is that of batch means — the per-row gains summed over
blocks of ``L`` consecutive rows in time order, for ``L`` = 1, 2, 4, … while at least
:data:`MIN_BLOCKS` blocks remain — and the largest of those is used: ``L`` = 1 is the per-row SE,
so the gate is never looser than for exchangeable rows, and a longer block counts what correlates
within it. The bootstrap metrics resample whole blocks of the length that gave the log-loss gain
its largest SE.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from rsft.evaluate import Rows, true_class_proba

BOOTSTRAP_RESAMPLES = 200  # macro_f1 / auroc: the SE's own relative error is ~1/sqrt(2 × 200) = 5 %
BOOTSTRAP_SEED = 0
MIN_BLOCKS = 16  # batch means: an SE from k blocks is itself ~1/sqrt(2k) uncertain (18 % at 16)


@dataclass(frozen=True)
class Paired:
    """How much better the challenger is than its reference on the same rows."""

    difference: float  # > 0: the challenger is better (lower error, higher score), in the metric's units
    se: float  # standard error of ``difference``
    rows: int
    method: str  # how the SE was computed

    @property
    def z(self) -> float:
        """``difference`` in standard errors (±inf when every row moves the same way: SE 0)."""
        if self.se > 0:
            return self.difference / self.se
        return math.copysign(math.inf, self.difference) if self.difference else 0.0

    def to_dict(self) -> dict[str, float | int | str]:
        return {"difference": self.difference, "difference_se": self.se, "z": self.z, "paired_rows": self.rows,
                "se_method": self.method}


def paired_difference(metric: str, challenger: Rows | None, reference: Rows | None) -> Paired | None:
    """The challenger's gain over ``reference`` in ``metric`` with its standard error, or None when
    they were not scored on the same labelled rows, the metric has no paired form here, or the
    figures are not finite (labels without spread for r2; a bootstrap with no finite resample)."""
    if challenger is None or reference is None or not _same_rows(challenger, reference):
        return None
    if challenger.order is None and reference.order is not None:  # one side's time order is the rows'
        challenger = dataclasses.replace(challenger, order=reference.order)
    if len(challenger.y) < 2 or metric not in _PAIRED or challenger.task != _TASK[metric]:
        return None
    paired = _PAIRED[metric](challenger, reference)
    return paired if math.isfinite(paired.difference) and math.isfinite(paired.se) else None


def paired_z(metric: str, challenger, reference) -> float | None:
    """:func:`paired_difference`'s z for two metric dicts that carry their per-row outputs
    (:class:`rsft.evaluate.RowMetrics`); None without them or where the z is not finite."""
    p = paired_difference(metric, getattr(challenger, "rows", None), getattr(reference, "rows", None))
    return p.z if p is not None and math.isfinite(p.z) else None


def _same_rows(a: Rows, b: Rows) -> bool:
    """The same labels in the same row order, and no two different time orders of them."""
    orders_agree = a.order is None or b.order is None or bool(np.array_equal(a.order, b.order))
    return a.task == b.task and a.y.shape == b.y.shape and bool(np.array_equal(a.y, b.y)) and orders_agree


def block_se(values: np.ndarray, order: np.ndarray | None) -> tuple[float, int]:
    """The standard error of ``values.mean()`` and the block length it was found at: per row
    (length 1) without a time order; with one, the largest batch-means SE over blocks of 1, 2, 4, …
    consecutive rows in time order while ≥ :data:`MIN_BLOCKS` blocks remain (a short last block
    counts; k/(k−1) as for the per-row SE)."""
    n = len(values)
    best = (float(values.std(ddof=1) / math.sqrt(n)), 1)
    if order is None:
        return best
    centred = (values - values.mean())[order]
    length = 2
    while n // length >= MIN_BLOCKS:
        sums = np.add.reduceat(centred, np.arange(0, n, length))
        k = len(sums)
        se = math.sqrt(float((sums**2).sum()) * k / (k - 1)) / n
        if se > best[0]:
            best = (se, length)
        length *= 2
    return best


def _method(name: str, length: int, order: np.ndarray | None) -> str:
    if order is None:
        return name
    return f"{name}, blocks of {length} rows in time order" if length > 1 else f"{name}, per row (no longer block in time order gave a larger SE)"


# --------------------------------------------------------------------------------------
# per-row losses (lower is better) and the analytic standard errors
# --------------------------------------------------------------------------------------
def _squared(r: Rows) -> np.ndarray:
    return (r.out - r.y) ** 2


def _absolute(r: Rows) -> np.ndarray:
    return np.abs(r.out - r.y)


def _log_loss(r: Rows) -> np.ndarray:
    return -np.log(np.clip(true_class_proba(r.y, r.out), 1e-15, 1.0))  # as classification_metrics clips


def _zero_one(r: Rows) -> np.ndarray:
    return (r.out.argmax(1) != r.y).astype(np.float64)


def _mean_gain(gain: np.ndarray, order: np.ndarray | None, method: str = "per-row mean") -> Paired:
    """The mean of a per-row gain and the standard error of that mean (:func:`block_se`)."""
    se, length = block_se(gain, order)
    return Paired(float(gain.mean()), se, len(gain), _method(method, length, order))


def _loss_mean(loss):
    """A metric that is the mean of ``loss`` per row: gain = the reference's loss − the challenger's."""
    return lambda ch, ref: _mean_gain(loss(ref) - loss(ch), ch.order)


def _rmse(ch: Rows, ref: Rows) -> Paired:
    """sqrt(mean s_ref) − sqrt(mean s_ch); delta method: each row's influence on it is
    s_ref / (2 rmse_ref) − s_ch / (2 rmse_ch), whose mean's SE is the difference's."""
    s_ch, s_ref = _squared(ch), _squared(ref)
    r_ch, r_ref = math.sqrt(s_ch.mean()), math.sqrt(s_ref.mean())
    influence = _half_over(s_ref, r_ref) - _half_over(s_ch, r_ch)
    se, length = block_se(influence, ch.order)
    return Paired(r_ref - r_ch, se, len(influence), _method("delta method", length, ch.order))


def _half_over(s: np.ndarray, r: float) -> np.ndarray:
    return s / (2 * r) if r > 0 else np.zeros_like(s)  # a perfect model's rmse moves with no row


def _r2(ch: Rows, ref: Rows) -> Paired:
    """R² = 1 − SSE / SST with SST the same labels' for both: the gain is Σ(s_ref − s_ch) / SST."""
    sst = float(((ch.y - ch.y.mean()) ** 2).sum())
    if not sst:
        return Paired(math.nan, math.nan, len(ch.y), "per-row squared error / SST")
    p = _mean_gain(_squared(ref) - _squared(ch), ch.order, "per-row squared error / SST")
    return Paired(p.difference * p.rows / sst, p.se * p.rows / sst, p.rows, p.method)


# --------------------------------------------------------------------------------------
# macro_f1 and auroc: a paired bootstrap (both models see the same resampled rows)
# --------------------------------------------------------------------------------------
def _bootstrap(score):
    """``score(rows, weights)`` is the metric on rows counted ``weights`` times (higher is better)."""

    def paired(ch: Rows, ref: Rows) -> Paired:
        n = len(ch.y)
        a, b = score(ch), score(ref)
        blocks, length = _bootstrap_blocks(ch, ref)
        k = int(blocks.max()) + 1
        rng = np.random.default_rng(BOOTSTRAP_SEED)
        gains = np.array([a(w) - b(w) for w in (np.bincount(rng.integers(0, k, k), minlength=k)[blocks].astype(np.float64)
                                                 for _ in range(BOOTSTRAP_RESAMPLES))])
        gains = gains[np.isfinite(gains)]
        se = float(gains.std(ddof=1)) if len(gains) > 1 else math.nan
        name = f"paired bootstrap ({BOOTSTRAP_RESAMPLES} resamples, seed {BOOTSTRAP_SEED})"
        return Paired(a(np.ones(n)) - b(np.ones(n)), se, n, _method(name, length, ch.order))

    return paired


def _bootstrap_blocks(ch: Rows, ref: Rows) -> tuple[np.ndarray, int]:
    """Each row's resampling block [n] and the blocks' length: rows alone without a time order;
    with one, runs of consecutive rows in time order as long as the blocks at which the per-row
    log-loss gain has its largest SE (:func:`block_se`)."""
    n = len(ch.y)
    if ch.order is None:
        return np.arange(n), 1
    _, length = block_se(_log_loss(ref) - _log_loss(ch), ch.order)
    blocks = np.empty(n, dtype=np.int64)
    blocks[ch.order] = np.arange(n) // length
    return blocks, length


def _macro_f1(r: Rows):
    """Weighted macro-F1 over the classes present in the labels or predicted (as classification_metrics)."""
    pred, k = r.out.argmax(1), max(r.out.shape[1], int(r.y.max()) + 1)
    hit = pred == r.y

    def f1(w: np.ndarray) -> float:
        tp = np.bincount(r.y[hit], w[hit], minlength=k)
        denom = np.bincount(pred, w, minlength=k) + np.bincount(r.y, w, minlength=k)
        seen = denom > 0
        return float((2 * tp[seen] / denom[seen]).mean())

    return f1


def _auroc(r: Rows):
    """Weighted macro one-vs-rest AUROC over the classes present in the labels (ties count ½, as
    :func:`rsft.evaluate.binary_auroc`): each class's scores are sorted once, a resample costs O(n)."""
    per_class = [_ranked(r.out[:, c], r.y == c) for c in np.unique(r.y) if 0 <= c < r.out.shape[1]]

    def auroc(w: np.ndarray) -> float:
        aucs = [a for a in (one(w) for one in per_class) if math.isfinite(a)]
        return float(np.mean(aucs)) if aucs else math.nan

    return auroc


def _ranked(score: np.ndarray, positive: np.ndarray):
    order = np.argsort(score, kind="mergesort")
    s, pos = score[order], positive[order]
    tie = np.r_[0, np.cumsum(np.diff(s) != 0)]  # the tie group of each sorted row

    def auc(w: np.ndarray) -> float:
        wo = w[order]
        neg_w, pos_w = np.bincount(tie, wo * ~pos), np.bincount(tie, wo * pos)
        n_neg, n_pos = neg_w.sum(), pos_w.sum()
        if not (n_neg and n_pos):
            return math.nan
        below = np.cumsum(neg_w) - neg_w
        return float((pos_w * (below + 0.5 * neg_w)).sum() / (n_pos * n_neg))

    return auc


_PAIRED = {
    "rmse": _rmse,
    "mae": _loss_mean(_absolute),
    "log_loss": _loss_mean(_log_loss),
    "accuracy": _loss_mean(_zero_one),  # gain in accuracy = the reference's 0/1 error − the challenger's
    "r2": _r2,
    "macro_f1": _bootstrap(_macro_f1),
    "auroc": _bootstrap(_auroc),
}
_TASK = {m: "classification" for m in ("log_loss", "accuracy", "macro_f1", "auroc")} | {
    m: "regression" for m in ("rmse", "mae", "r2")}
