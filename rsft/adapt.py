"""Choose tonight's adaptation recipe by grouped cross-validation on the target sample.

No single recipe wins on every drift: sometimes rejection-sampled pool rows help, sometimes any
pool data hurts, sometimes an affine recalibration of the champion is all that is needed, and
sometimes the champion should stay. So every candidate recipe is trained on the training folds
of the target sample (plus its pool rows) and scored on the held-out fold; folds are grouped
(machine, batch or contiguous time blocks) so neighbouring rows never straddle a fold. The
choice is the lowest mean loss, with a one-standard-error rule toward the cheaper candidate.

Recipes (cheapest first): ``keep_champion``, ``recalibrate`` (affine correction of the output,
folded into the last linear layer), ``head_only`` (fine-tune only the last layer on the target
sample), ``sample_only`` (fine-tune on the target sample), ``random_mix`` (a uniform pool subset
of the RS size + target), ``rsft`` (rejection-sampled pool rows with weights ``w**beta`` + target),
``weighted`` (importance-weighted fine-tune on a pool subset + target).
"""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from rsft.config import AdaptConfig, ScorerConfig, TrainConfig, target_repeats
from rsft.models import stack_models, unstack_model
from rsft.sampling import calibrate_log_m, rejection_accept

log = logging.getLogger(__name__)


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


# --------------------------------------------------------------------------------------
# candidates
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Candidate:
    name: str
    strategy: str
    cost: int  # rank: lower = cheaper / simpler (wins ties under the one-SE rule)
    beta: float | None = None
    m_quantile: float | None = None
    target_share: float = 1.0


def make_candidates(cfg: AdaptConfig) -> list[Candidate]:
    out: list[Candidate] = []
    for strategy in cfg.strategies:
        base_cost = len(out)
        if strategy in ("keep_champion", "recalibrate"):
            out.append(Candidate(strategy, strategy, base_cost))
            continue
        shares = cfg.target_shares
        grid: list[tuple[float | None, float | None]] = [(None, None)]
        if strategy == "rsft":
            grid = [(b, q) for b in cfg.betas for q in cfg.m_quantiles]
        for b, q in grid:
            for s in shares:
                suffix = "".join(
                    [f" β={b:g}" if b is not None else "", f" q={q:g}" if q is not None else "",
                     f" share={s:g}" if len(shares) > 1 else ""]
                )
                out.append(Candidate(f"{strategy}{suffix}", strategy, len(out), b, q, s))
    return out


@dataclass
class CandidateResult:
    name: str
    strategy: str
    cost: int
    fold_losses: list[float] = field(default_factory=list)
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


def choose(results: list[CandidateResult], one_se: bool = True) -> tuple[CandidateResult, str]:
    """Lowest mean CV loss; with ``one_se``, the cheapest candidate within one SE of it."""
    done = [r for r in results if r.fold_losses and math.isfinite(r.mean) and not r.eliminated]
    if not done:
        raise RuntimeError("no candidate finished a cross-validation fold")
    best = min(done, key=lambda r: r.mean)
    if not one_se:
        return best, f"lowest CV loss {best.mean:.4g}"
    bar = best.mean + best.se
    cheap = min((r for r in done if r.mean <= bar), key=lambda r: r.cost)
    if cheap is best:
        return best, f"lowest CV loss {best.mean:.4g} ± {best.se:.2g}"
    return cheap, f"cheapest within one SE of the best ({best.name}: {best.mean:.4g} ± {best.se:.2g}; this {cheap.mean:.4g})"


# --------------------------------------------------------------------------------------
# recipes
# --------------------------------------------------------------------------------------
def last_linear(model: nn.Module) -> tuple[str, nn.Linear]:
    linears = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError("model has no nn.Linear layer to recalibrate or fine-tune as a head")
    return linears[-1]


def head_only_freeze(model: nn.Module) -> list[str]:
    """Freeze patterns (exact parameter names) for everything except the last linear layer."""
    head, _ = last_linear(model)
    return [n for n, _ in model.named_parameters() if not n.startswith(head + ".")]


def rmse(pred: np.ndarray, y: np.ndarray) -> float:
    """The search's loss: root mean squared error of predictions against labels."""
    return float(np.sqrt(np.mean((pred - y) ** 2)))


def affine_fit(f: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(a, b) of the least-squares fit ``y ≈ a·f + b``."""
    f = f.astype(np.float64)
    (a, b), *_ = np.linalg.lstsq(np.stack([f, np.ones_like(f)], 1), y.astype(np.float64), rcond=None)
    return float(a), float(b)


def recalibrate(model: nn.Module, x: np.ndarray, y: np.ndarray, predict: Callable) -> nn.Module:
    """Affine correction ``y ≈ a·f(x) + b`` fitted by least squares, folded into the last layer."""
    f = predict(model, x).astype(np.float64)
    a, b = affine_fit(f, y)
    out = copy.deepcopy(model)
    _, lin = last_linear(out)
    if lin.bias is None:
        raise ValueError("recalibrate needs a last linear layer with a bias")
    with torch.no_grad():
        lin.weight.mul_(a)
        lin.bias.mul_(a)
        # anything the model adds after its last layer (e.g. an output offset) is a constant:
        # measure it and put the remaining shift into the bias, so out(x) = a·f(x) + b exactly
        lin.bias.add_(float(np.mean(a * f + b - predict(out, x))))
    return out


@dataclass
class PoolSample:
    x: np.ndarray  # [n, d] float32 features
    y: np.ndarray  # [n] labels


def rejection_indices(log_w: np.ndarray, beta: float, m_quantile: float, rng: np.random.Generator,
                      log_m: float | None = None) -> np.ndarray:
    """Accept pool rows with probability min(1, w^β / M), M at the quantile of w^β (``log_m``:
    that quantile of ``log_w`` computed by the caller; the quantile of w^β is β times it) — the
    sampling stage's rule (``rsft.sampling.rejection_accept``: one uniform per row in row order;
    log M from ``calibrate_log_m``, which ignores non-finite log w)."""
    if beta == 0:  # w^0 = 1 = M: every scorable row (rows with log w = -inf are never drawn)
        rng.random(len(log_w))  # the uniforms are drawn all the same: the generator advances as for β > 0
        return np.flatnonzero(np.isfinite(log_w) | (log_w > 0))
    if log_m is None:
        log_m = calibrate_log_m(log_w, m_quantile)
    return np.flatnonzero(rejection_accept(beta * log_w, beta * log_m, rng))  # β ≥ 0: the quantile of β·log w is β·log M


# a model stack pads every training set to the longest; below this fill a cell trains alone
STACK_MIN_FILL = 0.8
FREE = ("keep_champion", "recalibrate")  # candidates that train nothing (closed form or as is)
POOL_STRATEGIES = ("rsft", "random_mix", "weighted")  # candidates that draw pool rows (need log w)


@dataclass(frozen=True)
class Unit:
    """Cells (candidate index into ``make_candidates``, fold) trained in one fit: a single cell,
    or several cells as one model stack (``rsft.models.stack_models``; one column per cell);
    ``full`` = at ``train.epochs``."""

    cells: tuple[tuple[int, int], ...]
    full: bool = False


@dataclass
class UnitResult:
    losses: list[float] = field(default_factory=list)  # one per fold of the unit
    pool_rows: list[int] = field(default_factory=list)
    seconds: float = 0.0
    fits: int = 0
    skipped: str = ""


@dataclass
class UnitCall:
    """Everything one unit needs (picklable: a Dask worker gets a copy)."""

    search: "Search"
    unit: Unit
    x: np.ndarray
    y: np.ndarray
    folds: list
    deadline: float | None  # wall-clock time.time() after which trained units are skipped


def run_unit(call: UnitCall) -> UnitResult:
    """Train the unit's cells (a candidate on a fold's training rows + its pool rows) and score
    each on its fold's held-out rows. Training-free candidates always run; trained cells past the
    deadline are skipped."""
    s, u = call.search, call.unit
    cands = make_candidates(s.cfg)
    cells = [(cands[i], f) for i, f in u.cells]
    trained = sum(c.strategy not in FREE for c, _ in cells)
    if trained and call.deadline is not None and time.time() > call.deadline:
        return UnitResult(skipped="time budget exhausted")
    if any(c.strategy == "recalibrate" for c, _ in cells) and s.__dict__.get("_no_recalibrate"):
        return UnitResult(skipped=s._no_recalibrate)
    if any(c.strategy in POOL_STRATEGIES for c, _ in cells) and s.__dict__.get("_no_pool"):
        return UnitResult(skipped=s._no_pool)
    t = time.perf_counter()
    if len(cells) == 1 and cells[0][0].strategy in FREE:
        (c, f), = cells
        scored = [(s.free_loss(c, call.x, call.y, call.folds[f]), 0)]
    elif len(cells) == 1:
        (c, f), = cells
        tr, va = call.folds[f]
        m, n_pool = s.train(c, call.x[tr], call.y[tr], f, final=u.full, count=False)
        scored = [(s.loss(m, call.x[va], call.y[va]), n_pool)]
    else:
        scored = s.stack_cv([(c, f, call.folds[f][0]) for c, f in cells], [call.folds[f][1] for _, f in cells],
                            call.x, call.y, final=u.full)
    return UnitResult([loss for loss, _ in scored], [n for _, n in scored], time.perf_counter() - t, trained)


MapUnits = Callable[[Callable[[UnitCall], UnitResult], list[UnitCall]], list[UnitResult]]


class Search:
    """Runs the candidates over grouped folds. ``fit`` / ``predict`` / ``make_scorer`` are the
    project's training, prediction and scorer functions (injected so the search reuses them)."""

    def __init__(
        self,
        cfg: AdaptConfig,
        train_cfg: TrainConfig,
        scorer_cfg: ScorerConfig,
        feature_names: list[str],
        warm: nn.Module,
        pool: PoolSample,
        fit: Callable,
        predict: Callable,
        make_scorer: Callable,
        seed: int = 0,
    ) -> None:
        self.cfg, self.train_cfg, self.scorer_cfg = cfg, train_cfg, scorer_cfg
        self.names, self.warm, self.pool = feature_names, warm, pool
        self._fit, self._predict, self._make_scorer = fit, predict, make_scorer
        self.seed = seed
        cv_epochs = cfg.epochs or max(2, math.ceil(train_cfg.epochs / 4))
        self.cv_cfg = train_cfg.model_copy(update={"epochs": cv_epochs, "patience": min(train_cfg.patience, cv_epochs)})
        self.fits = 0  # trained fits run (cost accounting)

    # ---- one candidate on one split ----------------------------------------------------
    def train(self, c: Candidate, xt: np.ndarray, yt: np.ndarray, fold: int, final: bool = False,
              count: bool = True) -> tuple[nn.Module, int]:
        """The candidate's model trained on target rows (xt, yt) + its pool rows; returns (model,
        pool rows). CV fits use ``cv_cfg``'s epochs, a ``final`` fit ``train.epochs``."""
        if c.strategy == "keep_champion":
            return self.warm, 0
        if c.strategy == "recalibrate":
            return recalibrate(self.warm, xt, yt, self._predict), 0
        data, n_pool = self.training_set(c, xt, yt, fold)
        if count:  # CV units report their fits in UnitResult (they may run in another process)
            self.fits += 1
        return self._fit_one(c, data, final, fold), n_pool

    def _fit_one(self, c: Candidate, data: tuple, final: bool, fold: int) -> nn.Module:
        """The warm model fine-tuned on one training set (from :meth:`training_set`)."""
        model = copy.deepcopy(self.warm)
        self._fit(model, data, self.fit_config(c, final, self.seed + fold))
        return model

    def fit_config(self, c: Candidate, final: bool, seed: int) -> TrainConfig:
        cfg = (self.train_cfg if final else self.cv_cfg).model_copy(update={"seed": seed})
        if c.strategy == "head_only":
            cfg = cfg.model_copy(update={"freeze": head_only_freeze(self.warm)})
        return cfg

    def training_set(self, c: Candidate, xt: np.ndarray, yt: np.ndarray, fold: int) -> tuple[tuple, int]:
        """A trained candidate's rows on one split: its pool rows + the target rows repeated
        ``target_share`` times, as (x, y, w) — w = 1 except for ``weighted``'s pool rows."""
        rng = np.random.default_rng([self.seed, fold, c.cost])
        reps = target_repeats(c.target_share)
        pool_idx = np.array([], dtype=np.int64)
        weights = None  # per pool row; only ``weighted`` sets them
        if c.strategy in POOL_STRATEGIES:
            log_w = self._log_w(xt, fold)
            q0 = self.cfg.m_quantiles[0]
            n_rs = len(rejection_indices(log_w, 1.0, q0, np.random.default_rng([self.seed, fold]), self._log_m(xt, fold, q0)))
            if c.strategy == "rsft":
                q = c.m_quantile or q0
                pool_idx = rejection_indices(log_w, c.beta if c.beta is not None else 1.0, q, rng, self._log_m(xt, fold, q))
            elif c.strategy == "random_mix":
                pool_idx = rng.choice(len(log_w), size=min(n_rs, len(log_w)), replace=False)
            else:
                # the same budget of pool rows as rsft, drawn uniformly and weighted by w (clipped at M)
                pool_idx = rng.choice(len(log_w), size=min(max(n_rs, 1), len(log_w)), replace=False)
                lw = log_w[pool_idx]
                w = np.exp(np.minimum(lw - self._log_m(xt, fold, q0), 0.0))
                weights = (w / w.mean()).astype(np.float32)
        if weights is None:
            weights = np.ones(len(pool_idx), np.float32)
        x = np.concatenate([self.pool.x[pool_idx]] + [xt] * reps)
        y = np.concatenate([self.pool.y[pool_idx]] + [yt] * reps)
        w = np.concatenate([weights, np.ones(len(yt) * reps, np.float32)])
        return (x, y, w), len(pool_idx)

    def stack_key(self, c: Candidate) -> tuple | None:
        """Cells with the same key may train as one model stack: the same fit settings (head_only
        freezes all but the head) and training sets of about the same size — rows are padded to
        the longest set, so a short set would take more, smaller steps than alone. Pool recipes
        drawing the rejection-sampling budget (random_mix, weighted, rsft at β = 1 and the first
        M quantile) are alike; other β / M values and the target-only recipes each stack only with
        themselves (their other folds). None = this candidate never stacks."""
        t = self.train_cfg
        if (not self.cfg.stack_folds or c.strategy in FREE or t.task != "regression"
                or t.loss_threshold is not None or t.loss_threshold_quantile is not None):
            return None
        if not self._stackable():
            return None
        budget = c.strategy in ("random_mix", "weighted") or (
            c.strategy == "rsft" and (c.beta is None or c.beta == 1.0)
            and (c.m_quantile or self.cfg.m_quantiles[0]) == self.cfg.m_quantiles[0])
        size = "budget" if budget else (c.name if c.strategy == "rsft" else "target")
        return c.strategy == "head_only", c.target_share, size

    def plan(self, cells: list[tuple[int, int]], full: bool) -> list[Unit]:
        """Units for a rung's cells: cells of trained candidates that share a stack key train as
        one stack, the rest one cell per unit (cell order is kept within each unit)."""
        cands = make_candidates(self.cfg)
        groups: dict[tuple, list[tuple[int, int]]] = {}
        units = []
        for i, f in cells:
            key = self.stack_key(cands[i])
            if key is None:
                units.append(Unit(((i, f),), full))
            else:
                groups.setdefault(key, []).append((i, f))
        for group in groups.values():
            units += [Unit(tuple(group), full)] if len(group) > 1 else [Unit((cell,), full) for cell in group]
        return units

    def train_stack(self, cells: list[tuple[Candidate, int, np.ndarray]], x: np.ndarray, y: np.ndarray,
                    final: bool = False) -> list[tuple[nn.Module, int]]:
        """Several cells (candidate, fold, the fold's training rows) at once, one column of a model
        stack each (see :meth:`_fit_cells`). Returns [(model, pool rows)] in ``cells`` order."""
        out: list[tuple[nn.Module, int] | None] = [None] * len(cells)
        for group, model, n_pool in self._fit_cells(cells, x, y, final):
            for k, j in enumerate(group):
                out[j] = (unstack_model(model, self.warm, k) if len(group) > 1 else model, n_pool[k])
        return out  # type: ignore[return-value]

    def stack_cv(self, cells: list[tuple[Candidate, int, np.ndarray]], held_out: list[np.ndarray], x: np.ndarray,
                 y: np.ndarray, final: bool = False) -> list[tuple[float, int]]:
        """:meth:`train_stack`'s cells scored on their held-out rows (``held_out``: one index array
        per cell): [(loss, pool rows)] in ``cells`` order. A stack is scored as one module, every
        column on its own cell's rows (padded like the training sets), so no copy is taken out."""
        out: list[tuple[float, int] | None] = [None] * len(cells)
        for group, model, n_pool in self._fit_cells(cells, x, y, final):
            if len(group) == 1:
                out[group[0]] = (self.loss(model, x[held_out[group[0]]], y[held_out[group[0]]]), n_pool[0])
                continue
            rows = [held_out[j] for j in group]
            n = max(len(r) for r in rows)
            pred = self._predict(model, np.stack([x[r[np.arange(n) % len(r)]] for r in rows], 1))  # [n, K]
            for k, (j, r) in enumerate(zip(group, rows)):
                out[j] = (rmse(pred[: len(r), k], y[r]), n_pool[k])
        return out  # type: ignore[return-value]

    def _fit_cells(self, cells: list[tuple[Candidate, int, np.ndarray]], x: np.ndarray, y: np.ndarray,
                   final: bool) -> list[tuple[list[int], nn.Module, list[int]]]:
        """Train cells (candidate, fold, the fold's training rows), every training set built as
        :meth:`train` builds it, as few model stacks as their sizes allow: shorter sets are padded with
        weight-0 rows, and cells are grouped so that every set fills at least ``STACK_MIN_FILL`` of
        its stack's longest; a group of one (or a model that does not stack) trains alone. The cells
        share one fit config (same stack key); a stack takes the seed of its first cell's fold.
        Returns [(cell indices, stack (column k = cell indices[k]) or a plain model for a group of
        one, pool rows per cell)]."""
        sets = [self.training_set(c, x[tr], y[tr], f) for c, f, tr in cells]
        groups: list[list[int]] = []
        for j in sorted(range(len(cells)), key=lambda j: -len(sets[j][0][1])):  # longest first
            if groups and len(sets[j][0][1]) >= STACK_MIN_FILL * len(sets[groups[-1][0]][0][1]):
                groups[-1].append(j)
            else:
                groups.append([j])
        out = []
        for group in groups:
            group.sort()  # cells' own order: the stack's seed is its first cell's fold
            stack = stack_models(self.warm, len(group), None) if len(group) > 1 and self._stackable() else None
            if stack is None:  # alone, on the set already built
                for j in group:
                    c, f, _ = cells[j]
                    out.append(([j], self._fit_one(c, sets[j][0], final, f), [sets[j][1]]))
                continue
            part = [sets[j][0] for j in group]
            n = max(len(d[1]) for d in part)
            pad = [np.arange(n) % len(d[1]) for d in part]  # padding rows: any real rows, weight 0
            xs = np.stack([d[0][p] for d, p in zip(part, pad)], 1)
            ys = np.stack([d[1][p] for d, p in zip(part, pad)], 1)
            ws = np.stack([np.where(np.arange(n) < len(d[1]), d[2][p], 0.0) for d, p in zip(part, pad)], 1)
            c0, f0, _ = cells[group[0]]
            self._fit(stack, (xs, ys, ws.astype(np.float32)), self.fit_config(c0, final, self.seed + f0))
            out.append((group, stack, [sets[j][1] for j in group]))
        return out

    def _stackable(self) -> bool:
        """Whether the warm model stacks (``stack_models``' probe check, made once per search)."""
        if "_stack_ok" not in self.__dict__:
            probe = torch.as_tensor(np.asarray(self.pool.x[:16]))
            self._stack_ok = probe.is_floating_point() and stack_models(self.warm, 2, probe.float()) is not None
        return self._stack_ok

    def free_loss(self, c: Candidate, x: np.ndarray, y: np.ndarray, fold: tuple[np.ndarray, np.ndarray]) -> float:
        """A training-free candidate's loss on one split of the target sample ``x`` that
        :meth:`prepare` saw, from the warm model's predictions made there once: keep_champion as
        is, recalibrate with the affine correction fitted on the training rows — what the
        recalibrated model predicts (checked in :meth:`prepare`; a model whose output is not affine
        in its last layer's is recalibrated and scored as a model instead)."""
        if "_warm_pred" not in self.__dict__ or len(self._warm_pred) != len(x):
            raise RuntimeError("Search.free_loss: call prepare() on this target sample first")
        tr, va = fold
        if c.strategy == "recalibrate" and not self._affine_exact:
            return self.loss(recalibrate(self.warm, x[tr], y[tr], self._predict), x[va], y[va])
        pred = self._warm_pred[va]
        if c.strategy == "recalibrate":
            a, b = affine_fit(self._warm_pred[tr], y[tr])
            pred = a * pred + b
        return rmse(pred, y[va])

    def _log_w(self, xt: np.ndarray, fold: int) -> np.ndarray:
        key = (fold, len(xt))
        cache = self.__dict__.setdefault("_lw_cache", {})
        if key not in cache:
            cache[key] = self._scorer_for(xt).log_ratio(self.pool.x).double().numpy()
        return cache[key]

    def _scorer_for(self, xt: np.ndarray):
        """The density-ratio scorer of target rows ``xt`` against the pool sample. The pool side
        is the same for every split: the first call fits it, every later one refits only the
        target side (``DensityRatioScorer.with_target``). Like the score stage, it is fitted on
        at most ``scorer.pool_sample_rows`` pool rows (a seeded subsample of a larger pool
        sample); every pool row is then scored."""
        if "_scorer" not in self.__dict__:
            xp, n = self.pool.x, self.scorer_cfg.pool_sample_rows
            if len(xp) > n:
                xp = xp[np.sort(np.random.default_rng([self.seed, 7]).choice(len(xp), n, replace=False))]
            self._fit_pool = xp
            self._scorer = self._make_scorer(self.scorer_cfg, self.names).fit(xt, xp)
            return self._scorer
        return self._scorer.with_target(xt, self._fit_pool)

    def _log_m(self, xt: np.ndarray, fold: int, q: float) -> float:
        """log M: the q-quantile of the split's finite log w (the max for q = 1), computed once per split."""
        cache = self.__dict__.setdefault("_lm_cache", {})
        key = (fold, len(xt), q)
        if key not in cache:
            cache[key] = calibrate_log_m(self._log_w(xt, fold), q)
        return cache[key]

    def loss(self, model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
        return rmse(self._predict(model, x), y)

    # ---- the search ------------------------------------------------------------------------
    def prepare(self, x: np.ndarray, y: np.ndarray, folds: list[tuple[np.ndarray, np.ndarray]]) -> None:
        """Fit each fold's density-ratio scorer once, before any unit runs, so units (in threads
        or other processes) only read the cache and never refit or race; likewise the warm model's
        predictions for the training-free candidates, and whether recalibrating the model is
        exactly the affine map of its predictions (:meth:`free_loss`). A model that cannot be
        recalibrated, or folds too small for the density model, skip those candidates (the report
        says why) instead of failing the search."""
        self._warm_pred = self._predict(self.warm, x).astype(np.float64)
        self._affine_exact, self._no_recalibrate, self._no_pool = True, "", ""
        if any(c.strategy == "recalibrate" for c in make_candidates(self.cfg)):
            try:
                got = self._predict(recalibrate(self.warm, x, y, self._predict), x)
            except ValueError as e:  # no last linear layer with a bias: the candidate is skipped
                self._no_recalibrate = f"cannot recalibrate this model: {e}"
            else:
                a, b = affine_fit(self._warm_pred, y)
                self._affine_exact = bool(np.allclose(got, a * self._warm_pred + b, rtol=1e-4,
                                                      atol=1e-4 * (float(np.std(y)) + 1e-12)))
        if not any(c.strategy in POOL_STRATEGIES for c in make_candidates(self.cfg)):
            return
        cache = self.__dict__.setdefault("_lw_cache", {})
        try:
            scorers = [self._scorer_for(x[tr]) for tr, _ in folds]
        except ValueError as e:  # e.g. too few target rows per fold for the density model
            self._no_pool = f"no density ratio on these folds: {e}"
            return
        # the pool standardised once for every fold's scorer (they all share the first one's)
        for f, ((tr, _), lw) in enumerate(zip(folds, self._scorer.log_ratios(scorers, self.pool.x))):
            cache[(f, len(tr))] = lw.double().numpy()

    def run(self, x: np.ndarray, y: np.ndarray, groups: np.ndarray, map_units: MapUnits | None = None) -> dict[str, Any]:
        """Grouped CV of every candidate, by successive halving when ``cfg.halving``: rung 0 runs
        every candidate on the first ``rung0_folds`` folds at the short CV epochs; rung 1 runs the
        training-free ones (which cost ~nothing) on the rest and only the ``keep`` best trained
        candidates further: with ``rung1="full"`` on every fold again at ``train.epochs`` (the
        short losses only ranked them), with ``"short"`` on the remaining folds at the CV epochs.

        Each rung is a list of independent :class:`Unit` s (one candidate on one fold, or several
        such cells trained as one model stack, see :meth:`plan`);
        ``map_units(run_unit, [UnitCall, ...])`` runs them — in order here by default, as Prefect
        tasks on a thread pool or a Dask cluster from ``tasks/adapt.py`` — and must return the
        results in the order given. The outcome does not depend on the executor.
        """
        t0 = time.perf_counter()
        deadline = None if self.cfg.time_budget_s is None else time.time() + self.cfg.time_budget_s
        folds = grouped_folds(groups, self.cfg.folds, self.seed)
        cands = make_candidates(self.cfg)
        results = [CandidateResult(c.name, c.strategy, c.cost) for c in cands]
        split = min(self.cfg.rung0_folds, len(folds)) if self.cfg.halving else len(folds)
        self.prepare(x, y, folds)
        run_all = map_units or (lambda fn, calls: [fn(call) for call in calls])

        units_run = []

        def rung(units: list[Unit]) -> None:
            calls = [UnitCall(self, u, x, y, folds, deadline) for u in units]
            units_run.extend(units)
            for u, out in zip(units, run_all(run_unit, calls)):
                self.fits += out.fits
                for j, (i, _) in enumerate(u.cells):
                    r = results[i]
                    r.seconds += out.seconds / len(u.cells)  # a stack's time, shared by its cells
                    if out.skipped:
                        r.skipped = r.skipped or out.skipped
                    elif not r.skipped:  # a fold after a skipped one does not count (the budget ran out)
                        r.fold_losses.append(out.losses[j])
                        r.pool_rows.append(out.pool_rows[j])

        rung(self.plan([(i, f) for f in range(split) for i in range(len(cands))], full=False))  # rung 0
        trained = [r for c, r in zip(cands, results) if c.strategy not in FREE and r.fold_losses and not r.skipped]
        keep = {r.name for r in sorted(trained, key=lambda r: r.mean)[: self.cfg.keep]}
        # re-running at train.epochs only matters when the CV fits were shorter
        full = self.cfg.halving and self.cfg.rung1 == "full" and self.cv_cfg.epochs < self.train_cfg.epochs
        free, kept = [], []
        for i, (c, r) in enumerate(zip(cands, results)):  # rung 1
            if r.skipped or (split == len(folds) and not full):
                continue
            rest = list(range(split, len(folds)))
            if c.strategy in FREE:
                free += [(i, f) for f in rest]
            elif r.name in keep:
                if full:  # every fold again, at the epochs the final fit gets
                    r.short_losses, r.fold_losses, r.pool_rows = r.fold_losses, [], []
                    rest = list(range(len(folds)))
                kept += [(i, f) for f in rest]
            elif r.fold_losses:
                r.eliminated = f"rung 0: CV loss {r.mean:.4g} on {split} fold(s), not among the best {self.cfg.keep}"
        rung(self.plan(free, False) + self.plan(kept, full))
        for r in results:
            log.info("adapt: %s cv=%.4g±%.2g (%.1fs)", r.name, r.mean, r.se, r.seconds)
        chosen, why = choose(results, self.cfg.one_se)
        return {
            "candidates": [r.to_dict() for r in results],
            "chosen": chosen.name,
            "why": why,
            "folds": len(folds),
            "groups": int(len(np.unique(groups))),
            "cv_epochs": self.cv_cfg.epochs,
            "full_epochs": self.train_cfg.epochs,
            "halving": {"rung0_folds": split, "kept": sorted(keep), "rung1": self.cfg.rung1,
                        "eliminated": [r.name for r in results if r.eliminated]} if self.cfg.halving else None,
            "fits": self.fits,
            "stacked": any(len(u.cells) > 1 for u in units_run),  # some cells trained as one model stack
            # the units planned, in order: one fit each ("name @ fold k" cells, several = a model
            # stack); a unit skipped by the time budget is listed too (its candidates say "skipped")
            "units": [[f"{cands[i].name} @ fold {f}" for i, f in u.cells] for u in units_run],
            "search_seconds": round(time.perf_counter() - t0, 4),
        }

    def final(self, name: str, x: np.ndarray, y: np.ndarray) -> tuple[nn.Module, int]:
        """Retrain the chosen candidate on the whole target sample."""
        c = next(c for c in make_candidates(self.cfg) if c.name == name)
        return self.train(c, x, y, fold=10_000, final=True)


# --------------------------------------------------------------------------------------
# entry point shared by the retrain stage and `rsft adapt`
# --------------------------------------------------------------------------------------
def run_search(
    cfg: AdaptConfig,
    train_cfg: TrainConfig,
    scorer_cfg: ScorerConfig,
    feature_names: list[str],
    warm: nn.Module,
    target: tuple[np.ndarray, np.ndarray, np.ndarray],
    pool: PoolSample,
    holdout: tuple[np.ndarray, np.ndarray] | None = None,
    seed: int = 0,
    map_units: MapUnits | None = None,
    final_fit: Callable[[Candidate], tuple[nn.Module, dict[str, Any]] | None] | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """Search, then retrain the chosen recipe on the whole target sample.

    ``target`` = (x, y, groups). With a ``holdout`` (x, y), every candidate is also retrained on
    the whole target sample and scored on it, so the report shows CV score beside hold-out RMSE.
    ``map_units``: how the CV units run (see :meth:`Search.run`; default: one after the other).
    ``final_fit(candidate)``: trains the chosen recipe at full scale instead — (model, facts for
    the report's ``final``) — or returns None to leave it to the pool sample (the retrain passes
    one that trains an rsft choice on the sampling stage's selection from the whole pool).
    Returns (chosen model, report).
    """
    from rsft.density import make_scorer
    from rsft.evaluate import predict
    from rsft.train import fit

    search = Search(cfg, train_cfg, scorer_cfg, feature_names, warm, pool, fit, predict, make_scorer, seed)
    x, y, groups = target
    report = search.run(x, y, groups, map_units)
    t = time.perf_counter()
    c = next(c for c in make_candidates(cfg) if c.name == report["chosen"])
    full = final_fit(c) if final_fit is not None and c.strategy not in FREE else None
    if full is not None:
        chosen, report["final"] = full
    else:
        chosen, n_pool = search.final(report["chosen"], x, y)
        what = {"keep_champion": "nothing (the warm start as is)",
                "recalibrate": "an affine output correction fitted on the target sample"}.get(
            c.strategy, f"the target sample ×{target_repeats(c.target_share)}"
            + (f" + {n_pool:,} rows drawn from the adapt pool sample" if n_pool else ""))
        reps = {"keep_champion": 0, "recalibrate": 1}.get(c.strategy, target_repeats(c.target_share))
        report["final"] = {"trained_on": what, "pool_rows": n_pool, "train_rows": n_pool + len(y) * reps}
    report["final_fit_seconds"] = round(time.perf_counter() - t, 4)
    if holdout is not None:
        hx, hy = holdout
        for row in report["candidates"]:
            if row["skipped"]:
                continue
            t = time.perf_counter()
            model = chosen if row["name"] == report["chosen"] else search.final(row["name"], x, y)[0]
            row["final_seconds"] = report["final_fit_seconds"] if model is chosen else round(time.perf_counter() - t, 4)
            row["holdout_rmse"] = search.loss(model, hx, hy)
    return chosen, report


def _cv_fits(r: dict[str, Any], report: dict[str, Any]) -> str:
    """How a candidate's CV figure was obtained — folds × epochs (short fits are not comparable
    with full ones), "out" when rung 0 eliminated it — or why it was skipped."""
    n = len(r["fold_losses"])
    if not n:
        return r["skipped"] or ""
    if r["strategy"] in FREE:  # nothing trained
        return f"{n} fold{'s' if n != 1 else ''}"
    epochs = report.get("full_epochs") if r.get("short_losses") else report.get("cv_epochs")
    return (f"{n}×{epochs} ep" if epochs else f"{n} fold{'s' if n != 1 else ''}") + (
        ", out" if r.get("eliminated") else "") + (", budget" if r["skipped"] else "")


def candidate_table(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows for printing / artifacts: name (→ = chosen), CV loss mean ± SE, how it was obtained
    (folds × epochs; "out" = eliminated in rung 0), pool rows, seconds, hold-out."""
    rows = []
    for r in report["candidates"]:
        rows.append(
            {
                "candidate": ("→ " if r["name"] == report["chosen"] else "") + r["name"],
                "cv_rmse": ("skipped" if not r["fold_losses"] else f"{r['cv_loss_mean']:#.4g}"
                            + (f"±{r['cv_loss_se']:.2g}" if len(r["fold_losses"]) > 1 else "")),
                "cv_fits": _cv_fits(r, report),
                "pool_rows": int(r["pool_rows_mean"]),
                "seconds": round(r["seconds"], 3),
                **({"holdout_rmse": f"{r['holdout_rmse']:#.4g}"} if "holdout_rmse" in r else {}),
            }
        )
    return rows


def plot_candidates(report: dict[str, Any], path: str) -> str:
    """Bar chart of every candidate's CV RMSE (mean ± SE; hold-out RMSE beside it when present),
    the chosen one highlighted, eliminated ones hatched. Returns ``path`` (PNG)."""
    from matplotlib.figure import Figure

    rows = [r for r in report["candidates"] if r["fold_losses"]]
    fig = Figure(figsize=(max(5.0, 1.1 * len(rows) + 2), 3.6), layout="constrained")
    ax = fig.add_subplot()
    idx = np.arange(len(rows))
    cv = [r["cv_loss_mean"] for r in rows]
    se = [r["cv_loss_se"] for r in rows]
    colors = ["tab:green" if r["name"] == report["chosen"] else "tab:blue" for r in rows]
    bars = ax.bar(idx - 0.2, cv, 0.4, yerr=se, color=colors, capsize=3, label="CV RMSE (mean ± SE)")
    for b, r in zip(bars, rows):
        if r.get("eliminated"):
            b.set_hatch("//")
            b.set_alpha(0.6)
    if all("holdout_rmse" in r for r in rows):
        ax.bar(idx + 0.2, [r["holdout_rmse"] for r in rows], 0.4, color="tab:gray", label="hold-out RMSE")
    ax.set_xticks(idx, [r["name"] for r in rows], rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("RMSE")
    ax.set_title(f"adapt: chose {report['chosen']} (green; hatched = eliminated in rung 0)", fontsize=9)
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=110)
    return path
