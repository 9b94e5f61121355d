"""Planning model stacks: which cells (a candidate on a fold) train together as one model stack
(``rsft.models.stack_models``: K copies of the model in one pass, one column per cell), how
their training sets are padded to one, and how a stack is scored column by column.

Cells stack when they share a fit config and their training sets are of about the same size
(:func:`stack_key`); within a key, :func:`size_groups` keeps every set at least
``STACK_MIN_FILL`` of its stack's longest. Everything else trains one cell per fit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn

from rsft.adapt.candidates import FREE, Candidate
from rsft.adapt.cv import rmse
from rsft.config import AdaptConfig, TrainConfig
from rsft.models import stack_models, unstack_model

# a model stack pads every training set to the longest; below this fill a cell trains alone
STACK_MIN_FILL = 0.8


@dataclass(frozen=True)
class Unit:
    """Cells (candidate index into ``make_candidates``, fold) trained in one fit: a single cell,
    or several cells as one model stack (``rsft.models.stack_models``; one column per cell);
    ``full`` = at ``train.epochs``."""

    cells: tuple[tuple[int, int], ...]
    full: bool = False


def model_stacks(warm: nn.Module, pool_x: np.ndarray) -> bool:
    """Whether the warm model stacks (``stack_models``' probe check on a few pool rows)."""
    probe = torch.as_tensor(np.asarray(pool_x[:16]))
    return probe.is_floating_point() and stack_models(warm, 2, probe.float()) is not None


def stack_key(c: Candidate, cfg: AdaptConfig, train_cfg: TrainConfig, stackable: Callable[[], bool]) -> tuple | None:
    """Cells with the same key may train as one model stack: the same fit settings (head_only
    freezes all but the head) and training sets of about the same size — rows are padded to
    the longest set, so a short set would take more, smaller steps than alone. Pool recipes
    drawing the rejection-sampling budget (random_mix, weighted, rsft at β = 1 and the first
    M quantile) are alike; other β / M values and the target-only recipes each stack only with
    themselves (their other folds). None = this candidate never stacks. ``stackable`` (whether
    the model stacks at all) is asked only when the settings allow stacking."""
    t = train_cfg
    if (not cfg.stack_folds or c.strategy in FREE or t.task != "regression"
            or t.loss_threshold is not None or t.loss_threshold_quantile is not None):
        return None
    if not stackable():
        return None
    budget = c.strategy in ("random_mix", "weighted") or (
        c.strategy == "rsft" and (c.beta is None or c.beta == 1.0)
        and (c.m_quantile or cfg.m_quantiles[0]) == cfg.m_quantiles[0])
    size = "budget" if budget else (c.name if c.strategy == "rsft" else "target")
    return c.strategy == "head_only", c.target_share, size


def plan_units(cells: list[tuple[int, int]], key: Callable[[int], tuple | None], full: bool) -> list[Unit]:
    """Units for a rung's cells (candidate index, fold): cells whose candidates share a stack key
    (``key(candidate index)``) train as one stack, the rest one cell per unit (cell order is kept
    within each unit)."""
    groups: dict[tuple, list[tuple[int, int]]] = {}
    units = []
    for i, f in cells:
        k = key(i)
        if k is None:
            units.append(Unit(((i, f),), full))
        else:
            groups.setdefault(k, []).append((i, f))
    for group in groups.values():
        units += [Unit(tuple(group), full)] if len(group) > 1 else [Unit((cell,), full) for cell in group]
    return units


def size_groups(lengths: list[int]) -> list[list[int]]:
    """Training sets (their lengths) grouped into as few stacks as their sizes allow: longest
    first, a set joins the current stack when it fills at least ``STACK_MIN_FILL`` of that stack's
    longest. Each group lists set indices in their own order (a stack's seed is its first cell's)."""
    groups: list[list[int]] = []
    for j in sorted(range(len(lengths)), key=lambda j: -lengths[j]):  # longest first
        if groups and lengths[j] >= STACK_MIN_FILL * lengths[groups[-1][0]]:
            groups[-1].append(j)
        else:
            groups.append([j])
    return [sorted(g) for g in groups]


def new_stack(warm: nn.Module, k: int) -> nn.Module | None:
    """K copies of the warm model as one stack (None if it does not stack)."""
    return stack_models(warm, k, None)


def take_column(stack: nn.Module, warm: nn.Module, k: int) -> nn.Module:
    """Column ``k`` of a trained stack as a plain model."""
    return unstack_model(stack, warm, k)


def pad_sets(sets: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Training sets (x, y, w) as one stack's (x [n, K, d], y [n, K], w [n, K]): every set padded
    to the longest with its own rows repeated at weight 0."""
    n = max(len(d[1]) for d in sets)
    pad = [np.arange(n) % len(d[1]) for d in sets]  # padding rows: any real rows, weight 0
    xs = np.stack([d[0][p] for d, p in zip(sets, pad)], 1)
    ys = np.stack([d[1][p] for d, p in zip(sets, pad)], 1)
    ws = np.stack([np.where(np.arange(n) < len(d[1]), d[2][p], 0.0) for d, p in zip(sets, pad)], 1)
    return xs, ys, ws.astype(np.float32)


def stack_losses(stack: nn.Module, predict: Callable, x: np.ndarray, y: np.ndarray,
                 rows: list[np.ndarray]) -> list[float]:
    """A stack scored as one module, column k on its own held-out ``rows[k]`` (padded like the
    training sets), so no copy is taken out: one loss per column."""
    n = max(len(r) for r in rows)
    pred = predict(stack, np.stack([x[r[np.arange(n) % len(r)]] for r in rows], 1))  # [n, K]
    return [rmse(pred[: len(r), k], y[r]) for k, r in enumerate(rows)]
