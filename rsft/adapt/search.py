"""The search: every candidate cross-validated on grouped folds of the target sample, by
successive halving, then the one-SE choice and the chosen recipe's fit on the whole sample.

A :class:`Search` goes: ``prepare`` (once per target sample: the warm model's predictions, each
fold's density ratio) → ``run`` (rung 0: every candidate on the first folds at the short CV
budget, a quarter of the full one in optimizer steps; rung 1: the training-free candidates on the rest and the best trained ones again;
each rung a list of :class:`~rsft.adapt.stacking.Unit` s run by :func:`run_unit`, possibly on
other workers) → ``choose`` → ``final``. :func:`run_search` is the entry point shared by the
retrain stage and ``rsft adapt``.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from torch import nn

from rsft.adapt.candidates import FREE, POOL_STRATEGIES, Candidate, make_candidates
from rsft.adapt.cv import CandidateResult, choose, cv_kind, make_folds, rmse
from rsft.adapt.pool import PoolRatios, PoolSample
from rsft.adapt.recipes import (
    TrainingSet,
    affine_fit,
    final_facts,
    head_only_freeze,
    last_linear,
    penultimate,
    recalibrate,
    ridge_head,
    ridge_head_fit,
    training_set,
)
from rsft.adapt.stacking import (
    Unit,
    model_stacks,
    new_stack,
    pad_sets,
    plan_units,
    size_groups,
    stack_key,
    stack_losses,
    take_column,
)
from rsft.config import AdaptConfig, ScorerConfig, TrainConfig

log = logging.getLogger(__name__)


CV_SHARE = 0.25  # the ranking rung's budget as a share of the full one (steps; epochs when bounded)


def cv_config(cfg: AdaptConfig, train_cfg: TrainConfig) -> TrainConfig:
    """The ranking rung's fit config: ``adapt.max_steps`` (default a quarter of
    ``train.max_steps``) optimizer steps at most, ``train.min_steps`` scaled by the same fraction
    at least; ``adapt.epochs`` passes at most (default: a quarter of ``train.epochs``, at least
    2, when that is set; else unbounded, as in the full fit)."""
    steps = cfg.max_steps or max(1, math.ceil(train_cfg.max_steps * CV_SHARE))
    min_steps = min(train_cfg.min_steps, math.ceil(train_cfg.min_steps * steps / train_cfg.max_steps))
    epochs = cfg.epochs or (max(2, math.ceil(train_cfg.epochs * CV_SHARE)) if train_cfg.epochs else None)
    patience = min(train_cfg.patience, epochs) if epochs else train_cfg.patience
    return train_cfg.model_copy(update={"max_steps": steps, "min_steps": min_steps, "epochs": epochs,
                                        "patience": patience})


def shorter(cv_cfg: TrainConfig, train_cfg: TrainConfig) -> bool:
    """Whether the ranking rung's budget is below the full fit's (in steps, or in passes)."""
    return cv_cfg.max_steps < train_cfg.max_steps or (
        cv_cfg.epochs is not None and (train_cfg.epochs is None or cv_cfg.epochs < train_cfg.epochs))


# --------------------------------------------------------------------------------------
# one unit of work: what a worker gets and returns
# --------------------------------------------------------------------------------------
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
    if any(c.strategy == "recalibrate" for c, _ in cells) and s._no_recalibrate:
        return UnitResult(skipped=s._no_recalibrate)
    if any(c.strategy == "ridge_head" for c, _ in cells) and s._no_ridge:
        return UnitResult(skipped=s._no_ridge)
    if any(c.strategy in POOL_STRATEGIES for c, _ in cells) and s._no_pool:
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


def _val(val: tuple | None) -> dict[str, Any]:
    """``fit``'s keyword for held-out validation rows (none: the fit splits its own)."""
    return {} if val is None else {"val": val}


MapUnits = Callable[[Callable[[UnitCall], UnitResult], list[UnitCall]], list[UnitResult]]


def _in_order(fn: Callable[[UnitCall], UnitResult], calls: list[UnitCall]) -> list[UnitResult]:
    return [fn(call) for call in calls]


# --------------------------------------------------------------------------------------
# the search
# --------------------------------------------------------------------------------------
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
        self.cv_cfg = cv_config(cfg, train_cfg)  # the ranking rung's shorter fits
        self.fits = 0  # trained fits run (cost accounting)
        # log w / log M of the pool rows per split (filled by prepare, read by every unit)
        self.ratios = PoolRatios(pool, scorer_cfg, feature_names, make_scorer, seed)
        # set by prepare, once per target sample:
        self._warm_pred: np.ndarray | None = None  # the warm model's predictions on it (free candidates)
        self._affine_exact = True  # recalibrating = the affine map of those predictions (free_loss's shortcut)
        self._no_recalibrate = ""  # why recalibrate is skipped ("" = it runs)
        self._no_ridge = ""  # why ridge_head is skipped ("" = it runs)
        self._warm_h: tuple[np.ndarray, float, np.ndarray, float] | None = None  # (H, c, w0, b0) on the sample
        self._no_pool = ""  # why the pool recipes are skipped ("" = they run)
        self._stack_ok: bool | None = None  # whether the warm model stacks (probed once, when first asked)

    # ---- 1. prepare: once per target sample, before any unit runs --------------------------
    def prepare(self, x: np.ndarray, y: np.ndarray, folds: list[tuple[np.ndarray, np.ndarray]]) -> None:
        """Fit each fold's density-ratio scorer once, before any unit runs, so units (in threads
        or other processes) only read the cache and never refit or race; likewise the warm model's
        predictions for the training-free candidates, and whether recalibrating the model is
        exactly the affine map of its predictions (:meth:`free_loss`). A model that cannot be
        recalibrated, or folds too small for the density model, skip those candidates (the report
        says why) instead of failing the search."""
        self._warm_pred = self._predict(self.warm, x).astype(np.float64)
        self._affine_exact, self._no_recalibrate, self._no_pool, self._no_ridge = True, "", "", ""
        if any(c.strategy == "recalibrate" for c in make_candidates(self.cfg)):
            self._check_recalibrate(x, y)
        if any(c.strategy == "ridge_head" for c in make_candidates(self.cfg)):
            try:
                h, c0 = penultimate(self.warm, x, self._predict)
                _, lin = last_linear(self.warm)
                self._warm_h = (h, c0, lin.weight.detach().double().numpy()[0], float(lin.bias.detach()[0]))
            except ValueError as e:
                self._no_ridge = f"cannot refit this model's head: {e}"
        if any(c.strategy in POOL_STRATEGIES for c in make_candidates(self.cfg)):
            try:
                scorers = [self.ratios.scorer_for(x[tr]) for tr, _ in folds]
            except ValueError as e:  # e.g. too few target rows per fold for the density model
                self._no_pool = f"no density ratio on these folds: {e}"
                return
            self.ratios.score_folds(scorers, folds)

    def _check_recalibrate(self, x: np.ndarray, y: np.ndarray) -> None:
        """Whether the model can be recalibrated, and whether the result predicts exactly the
        affine map of the warm predictions (then :meth:`free_loss` need not build the models)."""
        try:
            got = self._predict(recalibrate(self.warm, x, y, self._predict), x)
        except ValueError as e:  # no last linear layer with a bias: the candidate is skipped
            self._no_recalibrate = f"cannot recalibrate this model: {e}"
            return
        a, b = affine_fit(self._warm_pred, y)
        self._affine_exact = bool(np.allclose(got, a * self._warm_pred + b, rtol=1e-4,
                                              atol=1e-4 * (float(np.std(y)) + 1e-12)))

    # ---- 2. the rungs ----------------------------------------------------------------------
    def run(self, x: np.ndarray, y: np.ndarray, groups: np.ndarray, map_units: MapUnits | None = None) -> dict[str, Any]:
        """Grouped CV of every candidate, by successive halving when ``cfg.halving``: rung 0 runs
        every candidate on the first ``rung0_folds`` folds at the short CV budget (:func:`cv_config`);
        rung 1 runs the training-free ones (which cost ~nothing) on the rest and only the ``keep``
        best trained candidates further: with ``rung1="full"`` on every fold again at the full
        budget (``train.max_steps``; the short losses only ranked them), with ``"short"`` on the
        remaining folds at the CV budget.

        Each rung is a list of independent :class:`Unit` s (one candidate on one fold, or several
        such cells trained as one model stack, see :meth:`plan`);
        ``map_units(run_unit, [UnitCall, ...])`` runs them — in order here by default, as Prefect
        tasks on a thread pool or a Dask cluster from ``tasks/adapt.py`` — and must return the
        results in the order given. The outcome does not depend on the executor.
        """
        t0 = time.perf_counter()
        deadline = None if self.cfg.time_budget_s is None else time.time() + self.cfg.time_budget_s
        kind = cv_kind(groups, self.cfg.folds, self.cfg.cv)  # what auto means for these groups
        folds = make_folds(groups, self.cfg.folds, kind, self.seed)
        cands = make_candidates(self.cfg)
        results = [CandidateResult(c.name, c.strategy, c.cost) for c in cands]
        split = min(self.cfg.rung0_folds, len(folds)) if self.cfg.halving else len(folds)
        self.prepare(x, y, folds)
        run_all = map_units or _in_order
        units_run: list[Unit] = []

        def rung(units: list[Unit]) -> None:
            units_run.extend(units)
            self._record(units, run_all(run_unit, [UnitCall(self, u, x, y, folds, deadline) for u in units]), results)

        rung(self.plan([(i, f) for f in range(split) for i in range(len(cands))], full=False))  # rung 0
        keep = self._survivors(cands, results)
        # re-running at the full budget only matters when the CV fits were shorter
        full = self.cfg.halving and self.cfg.rung1 == "full" and shorter(self.cv_cfg, self.train_cfg)
        free, kept = self._rung1_cells(cands, results, keep, split, len(folds), full)
        rung(self.plan(free, False) + self.plan(kept, full))  # rung 1
        for r in results:
            log.info("adapt: %s cv=%.4g±%.2g (%.1fs)", r.name, r.mean, r.se, r.seconds)
        chosen, why = choose(results, self.cfg.one_se, self.cfg.min_gain)
        return {
            "candidates": [r.to_dict() for r in results],
            "chosen": chosen.name,
            "why": why,
            "folds": len(folds),
            "cv": kind,  # grouped or forward
            "groups": int(len(np.unique(groups))),
            # the budgets of a ranking-rung (cv) and a full fit: optimizer steps at most, at least
            # (early stopping), and passes at most (None = unbounded)
            "cv_steps": self.cv_cfg.max_steps,
            "full_steps": self.train_cfg.max_steps,
            "cv_min_steps": self.cv_cfg.min_steps,
            "full_min_steps": self.train_cfg.min_steps,
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

    def _record(self, units: list[Unit], outs: list[UnitResult], results: list[CandidateResult]) -> None:
        """A rung's unit results into each cell's candidate (and the fit count)."""
        for u, out in zip(units, outs):
            self.fits += out.fits
            for j, (i, _) in enumerate(u.cells):
                r = results[i]
                r.seconds += out.seconds / len(u.cells)  # a stack's time, shared by its cells
                if out.skipped:
                    r.skipped = r.skipped or out.skipped
                elif not r.skipped:  # a fold after a skipped one does not count (the budget ran out)
                    r.fold_losses.append(out.losses[j])
                    r.folds.append(u.cells[j][1])
                    r.pool_rows.append(out.pool_rows[j])

    def _survivors(self, cands: list[Candidate], results: list[CandidateResult]) -> set[str]:
        """The ``keep`` trained candidates with the lowest rung-0 loss."""
        trained = [r for c, r in zip(cands, results) if c.strategy not in FREE and r.fold_losses and not r.skipped]
        return {r.name for r in sorted(trained, key=lambda r: r.mean)[: self.cfg.keep]}

    def _rung1_cells(self, cands: list[Candidate], results: list[CandidateResult], keep: set[str], split: int,
                     n_folds: int, full: bool) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """Rung 1's cells: (training-free ones on the remaining folds, the survivors'). With
        ``full`` a survivor runs every fold again (its rung-0 losses move to ``short_losses``); a
        trained candidate that did not survive is marked eliminated."""
        free, kept = [], []
        for i, (c, r) in enumerate(zip(cands, results)):
            if r.skipped or (split == n_folds and not full):
                continue
            rest = list(range(split, n_folds))
            if c.strategy in FREE:
                free += [(i, f) for f in rest]
            elif r.name in keep:
                if full:  # every fold again, at the budget the final fit gets
                    r.short_losses, r.fold_losses, r.pool_rows, r.folds = r.fold_losses, [], [], []
                    rest = list(range(n_folds))
                kept += [(i, f) for f in rest]
            elif r.fold_losses:
                r.eliminated = f"rung 0: CV loss {r.mean:.4g} on {split} fold(s), not among the best {self.cfg.keep}"
        return free, kept

    # ---- 3. one cell: a candidate on one split ---------------------------------------------
    def free_loss(self, c: Candidate, x: np.ndarray, y: np.ndarray, fold: tuple[np.ndarray, np.ndarray]) -> float:
        """A training-free candidate's loss on one split of the target sample ``x`` that
        :meth:`prepare` saw, from the warm model's predictions made there once: keep_champion as
        is, recalibrate with the affine correction fitted on the training rows — what the
        recalibrated model predicts (checked in :meth:`prepare`; a model whose output is not affine
        in its last layer's is recalibrated and scored as a model instead)."""
        if self._warm_pred is None or len(self._warm_pred) != len(x):
            raise RuntimeError("Search.free_loss: call prepare() on this target sample first")
        tr, va = fold
        if c.strategy == "ridge_head":
            h, c0, w0, b0 = self._warm_h  # type: ignore[misc]
            w, b, _ = ridge_head_fit(h[tr], y[tr], w0, b0, c0)
            return rmse(h[va] @ w + b + c0, y[va])
        if c.strategy == "recalibrate" and not self._affine_exact:
            return self.loss(recalibrate(self.warm, x[tr], y[tr], self._predict), x[va], y[va])
        pred = self._warm_pred[va]
        if c.strategy == "recalibrate":
            a, b = affine_fit(self._warm_pred[tr], y[tr])
            pred = a * pred + b
        return rmse(pred, y[va])

    def train(self, c: Candidate, xt: np.ndarray, yt: np.ndarray, fold: int, final: bool = False,
              count: bool = True) -> tuple[nn.Module, int]:
        """The candidate's model trained on target rows (xt, yt) + its pool rows; returns (model,
        pool rows). CV fits use ``cv_cfg``'s budget, a ``final`` fit ``train``'s."""
        if c.strategy == "keep_champion":
            return self.warm, 0
        if c.strategy == "recalibrate":
            return recalibrate(self.warm, xt, yt, self._predict), 0
        if c.strategy == "ridge_head":
            return ridge_head(self.warm, xt, yt, self._predict), 0
        ts = self.training_set(c, xt, yt, fold)
        if count:  # CV units report their fits in UnitResult (they may run in another process)
            self.fits += 1
        return self._fit_one(c, ts, final, fold), ts.pool_rows

    def training_set(self, c: Candidate, xt: np.ndarray, yt: np.ndarray, fold: int) -> TrainingSet:
        """A trained candidate's rows on one split (``rsft.adapt.recipes.training_set``): the
        latest ``train.val_share`` of its target rows validate the fit."""
        return training_set(c, xt, yt, fold, self.ratios, self.cfg.m_quantiles[0], self.seed, self.train_cfg.val_share)

    def fit_config(self, c: Candidate, final: bool, seed: int) -> TrainConfig:
        cfg = (self.train_cfg if final else self.cv_cfg).model_copy(update={"seed": seed})
        if c.strategy == "head_only":
            cfg = cfg.model_copy(update={"freeze": head_only_freeze(self.warm)})
        return cfg

    def _fit_one(self, c: Candidate, ts: TrainingSet, final: bool, fold: int) -> nn.Module:
        """The warm model fine-tuned on one training set (from :meth:`training_set`)."""
        model = copy.deepcopy(self.warm)
        self._fit(model, ts.train, self.fit_config(c, final, self.seed + fold), **_val(ts.val))
        return model

    def loss(self, model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
        return rmse(self._predict(model, x), y)

    # ---- 4. several cells as one model stack -----------------------------------------------
    def stack_key(self, c: Candidate) -> tuple | None:
        """Which cells may train as one stack (``rsft.adapt.stacking.stack_key``)."""
        return stack_key(c, self.cfg, self.train_cfg, self._stackable)

    def plan(self, cells: list[tuple[int, int]], full: bool) -> list[Unit]:
        """Units for a rung's cells: cells of trained candidates that share a stack key train as
        one stack, the rest one cell per unit (cell order is kept within each unit)."""
        cands = make_candidates(self.cfg)
        return plan_units(cells, lambda i: self.stack_key(cands[i]), full)

    def train_stack(self, cells: list[tuple[Candidate, int, np.ndarray]], x: np.ndarray, y: np.ndarray,
                    final: bool = False) -> list[tuple[nn.Module, int]]:
        """Several cells (candidate, fold, the fold's training rows) at once, one column of a model
        stack each (see :meth:`_fit_cells`). Returns [(model, pool rows)] in ``cells`` order."""
        out: list[tuple[nn.Module, int] | None] = [None] * len(cells)
        for group, model, n_pool in self._fit_cells(cells, x, y, final):
            for k, j in enumerate(group):
                out[j] = (take_column(model, self.warm, k) if len(group) > 1 else model, n_pool[k])
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
            losses = stack_losses(model, self._predict, x, y, [held_out[j] for j in group])
            for k, j in enumerate(group):
                out[j] = (losses[k], n_pool[k])
        return out  # type: ignore[return-value]

    def _fit_cells(self, cells: list[tuple[Candidate, int, np.ndarray]], x: np.ndarray, y: np.ndarray,
                   final: bool) -> list[tuple[list[int], nn.Module, list[int]]]:
        """Train cells (candidate, fold, the fold's training rows), every training set built as
        :meth:`train` builds it, as few model stacks as their sizes allow (``size_groups``: every
        set fills at least ``STACK_MIN_FILL`` of its stack's longest; shorter sets are padded with
        weight-0 rows); a group of one (or a model that does not stack) trains alone. The cells
        share one fit config (same stack key); a stack takes the seed of its first cell's fold.
        Returns [(cell indices, stack (column k = cell indices[k]) or a plain model for a group of
        one, pool rows per cell)]."""
        sets = [self.training_set(c, x[tr], y[tr], f) for c, f, tr in cells]
        out = []
        for group in size_groups([len(ts.train[1]) for ts in sets]):
            stack = new_stack(self.warm, len(group)) if len(group) > 1 and self._stackable() else None
            if stack is None:  # alone, on the set already built
                for j in group:
                    c, f, _ = cells[j]
                    out.append(([j], self._fit_one(c, sets[j], final, f), [sets[j].pool_rows]))
                continue
            c0, f0, _ = cells[group[0]]
            vals = [sets[j].val for j in group]
            val = pad_sets(vals) if all(v is not None for v in vals) else None  # type: ignore[arg-type]
            self._fit(stack, pad_sets([sets[j].train for j in group]), self.fit_config(c0, final, self.seed + f0),
                      **_val(val))
            out.append((group, stack, [sets[j].pool_rows for j in group]))
        return out

    def _stackable(self) -> bool:
        """Whether the warm model stacks (``stack_models``' probe check, made once per search)."""
        if self._stack_ok is None:
            self._stack_ok = model_stacks(self.warm, self.pool.x)
        return self._stack_ok

    # ---- 5. the chosen recipe on the whole target sample -----------------------------------
    def final(self, name: str, x: np.ndarray, y: np.ndarray) -> tuple[nn.Module, int]:
        """Retrain the chosen candidate on the whole target sample."""
        c = next(c for c in make_candidates(self.cfg) if c.name == name)
        return self.train(c, x, y, fold=10_000, final=True)

    # ---- the pool-ratio cache under the names callers and tests read -----------------------
    @property
    def _scorer(self):
        return self.ratios.scorer

    @property
    def _fit_pool(self) -> np.ndarray | None:
        return self.ratios.fit_pool

    def _scorer_for(self, xt: np.ndarray):
        return self.ratios.scorer_for(xt)

    def _log_w(self, xt: np.ndarray, fold: int) -> np.ndarray:
        return self.ratios.log_w(xt, fold)


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
        report["final"] = final_facts(c, n_pool, len(y))
    report["final_fit_seconds"] = round(time.perf_counter() - t, 4)
    if holdout is not None:
        _score_holdout(search, report, chosen, x, y, holdout)
    return chosen, report


def _score_holdout(search: Search, report: dict[str, Any], chosen: nn.Module, x: np.ndarray, y: np.ndarray,
                   holdout: tuple[np.ndarray, np.ndarray]) -> None:
    """Every candidate that ran retrained on the whole target sample (the chosen one: its final
    model) and scored on the hold-out: ``holdout_rmse`` and ``final_seconds`` in its report row."""
    hx, hy = holdout
    for row in report["candidates"]:
        if row["skipped"]:
            continue
        t = time.perf_counter()
        model = chosen if row["name"] == report["chosen"] else search.final(row["name"], x, y)[0]
        row["final_seconds"] = report["final_fit_seconds"] if model is chosen else round(time.perf_counter() - t, 4)
        row["holdout_rmse"] = search.loss(model, hx, hy)
