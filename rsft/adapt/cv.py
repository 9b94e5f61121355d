"""Cross-validation bookkeeping: grouped folds over the target sample, the loss, each
candidate's fold losses, and the one-standard-error choice among them."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

TRAINING_FREE = ("keep_champion", "recalibrate", "ridge_head")  # = candidates.FREE: one simplicity tier


# --------------------------------------------------------------------------------------
# folds
# --------------------------------------------------------------------------------------
def time_blocks(n: int, blocks: int) -> np.ndarray:
    """Group ids of ``blocks`` contiguous blocks over ``n`` time-ordered rows."""
    return np.minimum((np.arange(n) * blocks) // max(n, 1), blocks - 1)


def grouped_folds(groups: np.ndarray, k: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """K folds over whole groups: no group is on both sides of a fold.

    Groups are shuffled (seeded) and assigned greedily to the currently smallest fold, so fold
    sizes stay balanced even with unequal groups.
    """
    uniq = np.unique(groups)
    if k < 2:
        raise ValueError(f"adapt.folds must be >= 2, got {k}")
    if len(uniq) < k:
        raise ValueError(f"adapt.folds={k} but the target sample has only {len(uniq)} groups; use fewer folds")
    rng = np.random.default_rng(seed)
    order = rng.permutation(uniq)
    sizes = {g: int((groups == g).sum()) for g in order}
    fold_of: dict[Any, int] = {}
    load = np.zeros(k)
    for g in sorted(order, key=lambda g: -sizes[g]):
        f = int(np.argmin(load))
        fold_of[g] = f
        load[f] += sizes[g]
    assign = np.array([fold_of[g] for g in groups])
    return [(np.flatnonzero(assign != f), np.flatnonzero(assign == f)) for f in range(k)]


def forward_folds(groups: np.ndarray, k: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """K forward-chaining folds over time-ordered groups: the groups, in the order they first
    appear in the sample (its rows are in time order), are cut into ``2k`` contiguous blocks of
    about equal rows; fold i validates on block ``k + i`` and trains on every block before it.
    Each fold predicts later rows than it learns from — as tonight's model will — so a recipe that
    fits the sample's own period and extrapolates badly past it is scored as it will do; every
    fold still trains on at least half the sample (the density model and the fine-tunes need
    rows). Folds are listed latest first (fold 0 = the most training rows, the latest block): the
    halving's ranking rung runs the first folds."""
    if k < 2:
        raise ValueError(f"adapt.folds must be >= 2, got {k}")
    uniq, first = np.unique(groups, return_index=True)
    n_blocks = 2 * k
    if len(uniq) < n_blocks:
        raise ValueError(f"adapt.cv=forward with adapt.folds={k} needs {n_blocks} groups, the target sample has "
                         f"{len(uniq)}; use fewer folds")
    order = uniq[np.argsort(first, kind="stable")]
    sizes = np.array([int((groups == g).sum()) for g in order])
    before = np.concatenate([[0], np.cumsum(sizes)[:-1]])  # rows in earlier groups
    block = np.minimum((before * n_blocks) // max(len(groups), 1), n_blocks - 1)
    # every block non-empty: with very unequal groups, fall back to cutting by group count
    if len(np.unique(block)) < n_blocks:
        block = (np.arange(len(order)) * n_blocks) // len(order)
    block_of = dict(zip(order.tolist(), block.tolist()))
    b = np.array([block_of[g] for g in groups.tolist()])
    return [(np.flatnonzero(b < i), np.flatnonzero(b == i)) for i in range(n_blocks - 1, k - 1, -1)]


def contiguous(groups: np.ndarray) -> bool:
    """Whether every group's rows form one contiguous run of the sample (days, weeks, time
    blocks of a time-ordered sample — not machines interleaved in time)."""
    uniq, first, counts = np.unique(groups, return_index=True, return_counts=True)
    last = len(groups) - 1 - np.unique(groups[::-1], return_index=True)[1]
    return bool(np.all(last - first + 1 == counts))


def cv_kind(groups: np.ndarray, k: int, kind: str = "auto") -> str:
    """``auto``: ``forward`` when the groups are contiguous runs of the (time-ordered) sample and
    there are at least ``2k`` of them, else ``grouped``."""
    if kind != "auto":
        return kind
    return "forward" if contiguous(groups) and len(np.unique(groups)) >= 2 * k else "grouped"


def make_folds(groups: np.ndarray, k: int, kind: str = "auto", seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """The search's folds: ``grouped`` K-fold (:func:`grouped_folds`), ``forward`` chaining
    (:func:`forward_folds`), or ``auto`` (:func:`cv_kind`)."""
    return forward_folds(groups, k) if cv_kind(groups, k, kind) == "forward" else grouped_folds(groups, k, seed)


def _setting(name: str, value: Any) -> str:
    """``adapt.folds=4`` (a config key) or ``--folds 4`` (a command-line option)."""
    return f"{name} {value}" if name.startswith("--") else f"{name}={value}"


def check_folds(groups: np.ndarray, k: int, kind: str = "auto", seed: int = 0, *, what: str = "",
                folds_name: str = "adapt.folds", cv_name: str = "adapt.cv", fix_name: str | None = None) -> None:
    """Fail in one line (``ValueError``) when the target sample's ``groups`` cannot make the
    search's ``k`` folds of ``kind`` (:func:`make_folds`) — cheap: the target sample is small, so
    callers check before they touch the pool. The line names the setting as the user gave it
    (``folds_name``: ``adapt.folds`` in a config, ``--folds`` on the command line), the most folds
    the groups allow and how many rows each of those folds really trains on. ``what`` follows
    "groups" (" of machine_id"); ``fix_name``: how the fix names the setting, when not as
    ``folds_name`` (a config's ``adapt.folds=4`` fixed by ``rsft adapt --folds 2``)."""
    if k < 2:
        raise ValueError(f"{_setting(folds_name, k)}: at least 2 folds")
    n, g = len(groups), len(np.unique(groups))
    forward = cv_kind(groups, k, kind) == "forward"  # auto: forward only when there are 2k groups
    if g >= (2 * k if forward else k):
        return
    if forward:
        msg = f"{_setting(cv_name, 'forward')} with {_setting(folds_name, k)} needs {2 * k} groups, the target sample has {g}{what}"
        most = g // 2
    else:
        msg = f"{_setting(folds_name, k)} but the target sample has only {g} group{'s' * (g != 1)}{what}"
        most = g
    if most < 2:
        raise ValueError(msg + f"; cross-validation needs at least {4 if forward else 2} groups")
    folds = forward_folds(groups, most) if forward else grouped_folds(groups, most, seed)
    train = round(sum(len(tr) for tr, _ in folds) / len(folds))
    raise ValueError(msg + f"; use {_setting(fix_name or folds_name, most)} or fewer (each CV fold then trains on about "
                           f"{train:,} of the {n:,} target rows)")


def rmse(pred: np.ndarray, y: np.ndarray) -> float:
    """The search's loss: root mean squared error of predictions against labels."""
    return float(np.sqrt(np.mean((pred - y) ** 2)))


# --------------------------------------------------------------------------------------
# results and the choice
# --------------------------------------------------------------------------------------
@dataclass
class CandidateResult:
    name: str
    strategy: str
    cost: int
    fold_losses: list[float] = field(default_factory=list)
    folds: list[int] = field(default_factory=list)  # the fold of each loss (pairs candidates fold by fold)
    pool_rows: list[int] = field(default_factory=list)
    seconds: float = 0.0
    skipped: str = ""
    eliminated: str = ""  # successive halving: why it was not run on every fold
    short_losses: list[float] = field(default_factory=list)  # rung-0 losses at the CV epochs (rung1 = "full")
    final_seconds: float | None = None  # retrained on the whole target sample (with a hold-out)

    @property
    def mean(self) -> float:
        return float(np.mean(self.fold_losses)) if self.fold_losses else math.inf

    @property
    def se(self) -> float:
        n = len(self.fold_losses)
        return float(np.std(self.fold_losses, ddof=1) / math.sqrt(n)) if n > 1 else 0.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(cv_loss_mean=self.mean, cv_loss_se=self.se, pool_rows_mean=float(np.mean(self.pool_rows or [0])))
        return d


def paired_gap(r: CandidateResult, best: CandidateResult) -> tuple[float, float] | None:
    """(mean, SE) of ``r``'s loss minus ``best``'s over the folds both ran, fold by fold; None
    when fewer than two folds pair up. Pairing removes what the folds share — one fold's groups
    are simply harder for every candidate — which an unpaired SE counts as noise: with 4–8 folds
    of 10–50 target rows that between-fold spread is often larger than the gaps between
    recipes, and the unpaired rule then picks the cheapest candidate almost regardless."""
    if r.folds and best.folds:
        mine = dict(zip(r.folds, r.fold_losses))
        d = [mine[f] - b for f, b in zip(best.folds, best.fold_losses) if f in mine]
    elif len(r.fold_losses) == len(best.fold_losses):  # recorded in fold order
        d = [a - b for a, b in zip(r.fold_losses, best.fold_losses)]
    else:
        return None
    if len(d) < 2:
        return None
    return float(np.mean(d)), float(np.std(d, ddof=1) / math.sqrt(len(d)))


def choose(results: list[CandidateResult], one_se: bool = True, min_gain: float = 0.0) -> tuple[CandidateResult, str]:
    """Lowest mean CV loss; with ``one_se``, the simplest candidate (training-free ones first, as
    one tier, then trained ones by cost; within a tier the lower CV loss, but of the training-free
    ones within ``min_gain`` of the best the cheapest: keep_champion before recalibrate) whose loss is within one
    standard error of it, the SE of the fold-by-fold difference (:func:`paired_gap`; the best's
    own SE where folds do not pair), or within ``min_gain`` (a share of the best's loss) of it: a
    gain smaller than that is not worth a costlier recipe however consistent it is — two models
    that predict almost alike (a fine-tune that early-stopped next to its warm start) have a tiny
    paired SE, and without the floor any consistent 0.1 % would count."""
    done = [r for r in results if r.fold_losses and math.isfinite(r.mean) and not r.eliminated]
    if not done:
        raise RuntimeError("no candidate finished a cross-validation fold")
    best = min(done, key=lambda r: r.mean)
    if not one_se:
        return best, f"lowest CV loss {best.mean:.4g}"

    def close(r: CandidateResult) -> bool:
        if r.mean <= best.mean * (1 + min_gain):
            return True
        gap = paired_gap(r, best)
        return r.mean <= best.mean + best.se if gap is None else gap[0] <= gap[1]

    # simplest first: every training-free candidate is one tier (closed form, a few parameters at
    # most: nothing for CV noise to pick), below every trained one; within a tier, lowest CV loss —
    # except that a gain under min_gain pays for no costlier recipe there either: of the training-free
    # candidates within min_gain of the best, the cheapest (trial 7: recalibrate 0.4 % below
    # keep_champion on CV was chosen, and lost on the hold-out)
    def tier(r: CandidateResult) -> tuple:
        if r.strategy in TRAINING_FREE:
            return (0, 0, r.cost) if r.mean <= best.mean * (1 + min_gain) else (0, 1, r.mean)
        return (1 + r.cost, 0, r.mean)

    cheap = min((r for r in done if r is best or close(r)), key=tier)
    if cheap is best:
        return best, f"lowest CV loss {best.mean:.4g} ± {best.se:.2g}"
    gap = paired_gap(cheap, best)
    how = (f"fold by fold {gap[0]:+.2g} ± {gap[1]:.2g}" if gap else f"within {best.mean:.4g} ± {best.se:.2g}")
    one_se = cheap.mean <= best.mean + best.se if gap is None else gap[0] <= gap[1]
    if cheap.mean <= best.mean * (1 + min_gain):
        how += f"; within the {min_gain:.0%} minimum gain"
        if not one_se:  # consistently a little better, by less than adapt.min_gain: not worth the costlier recipe
            return cheap, (f"simplest within the {min_gain:.0%} minimum gain of the best ({best.name}: {best.mean:.4g}, "
                           f"{(cheap.mean - best.mean) / best.mean:.1%} lower; this {cheap.mean:.4g}, {how.split(';')[0]})")
    return cheap, f"simplest within one SE of the best ({best.name}: {best.mean:.4g}; this {cheap.mean:.4g}, {how})"
