"""The fine-tune loop: one function that reads top to bottom in a fixed order.

seed → device → freeze → optimizer → schedule → validation split → epochs
(train with optional importance weights and loss-threshold rejection → validate → early stop
→ checkpoint). A checkpoint (``last.pt``) is one plain dict; an interrupted fit resumes from it.
"""

from __future__ import annotations

import copy
import fnmatch
import logging
import math
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from rsft.config import TrainConfig

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    epochs_run: int = 0
    best_epoch: int = 0
    best_val_loss: float = math.inf
    stopped_early: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def freeze(model: nn.Module, patterns: list[str]) -> list[str]:
    """Set requires_grad=False on parameters whose name matches any glob; returns the names."""
    frozen = []
    for name, p in model.named_parameters():
        if any(fnmatch.fnmatchcase(name, pat) for pat in patterns):
            p.requires_grad_(False)
            frozen.append(name)
    return frozen


def make_optimizer(params, cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "momentum":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, nesterov=True, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    raise ValueError(f"unknown optimizer {cfg.optimizer}")


def get_lr(epoch: int, cfg: TrainConfig) -> float:
    """Learning rate for an epoch (pure): constant, cosine to 10 %, or step (÷10 each third)."""
    if cfg.schedule == "cosine":
        return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * epoch / max(cfg.epochs, 1))))
    if cfg.schedule == "step":
        return cfg.lr * (0.1 ** (epoch // max(cfg.epochs // 3, 1)))
    return cfg.lr


def _split(n: int, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    perm = np.random.default_rng(seed).permutation(n)
    n_val = int(round(n * share)) if n >= 20 else 0
    return perm[n_val:], perm[:n_val]


def fit(
    model: nn.Module,
    train: tuple,
    cfg: TrainConfig,
    *,
    checkpoint_dir: str | Path | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> TrainResult:
    """Fit ``model`` in place on ``train`` = (x [n,d], y [n]) or (x, y, sample weights [n])."""
    # ---- seed + data ---------------------------------------------------------------------
    seed_everything(cfg.seed)
    x = torch.as_tensor(np.asarray(train[0]), dtype=torch.float32)
    y = torch.as_tensor(np.asarray(train[1]), dtype=torch.float32)
    w = torch.as_tensor(np.asarray(train[2]), dtype=torch.float32) if len(train) > 2 else torch.ones(len(y))
    if len(y) == 0:
        raise ValueError("no training rows")
    tr, va = _split(len(y), cfg.val_share, cfg.seed)

    # ---- device, freeze, optimizer -------------------------------------------------------
    device = pick_device(cfg.device)
    model.to(device)
    freeze(model, cfg.freeze)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError(f"train.freeze {cfg.freeze} froze every parameter")
    opt = make_optimizer(params, cfg)
    result = TrainResult()
    best_state = copy.deepcopy(model.state_dict())
    start_epoch, bad_epochs = 0, 0

    # ---- resume --------------------------------------------------------------------------
    last = Path(checkpoint_dir) / "last.pt" if checkpoint_dir else None
    if last is not None and last.exists():
        ck = torch.load(last, map_location="cpu", weights_only=True)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        best_state = ck["best_state"]
        result = TrainResult(**ck["result"])
        start_epoch, bad_epochs = ck["epoch"] + 1, ck["bad_epochs"]
        torch.set_rng_state(ck["torch_rng"])
        log.info("resuming fit at epoch %d from %s", start_epoch, last)

    gen = torch.Generator().manual_seed(cfg.seed)
    for epoch in range(start_epoch, cfg.epochs):
        if result.stopped_early:
            break
        # ---- lr ----------------------------------------------------------------------------
        lr = get_lr(epoch, cfg)
        for g in opt.param_groups:
            g["lr"] = lr
        # ---- train ----------------------------------------------------------------------------
        model.train()
        gen.manual_seed(cfg.seed * 1_000_003 + epoch)
        order = torch.as_tensor(tr)[torch.randperm(len(tr), generator=gen)]
        total, count, skipped = 0.0, 0, 0
        for i in range(0, len(order), cfg.batch_size):
            idx = order[i : i + cfg.batch_size]
            xb, yb, wb = x[idx].to(device), y[idx].to(device), w[idx].to(device)
            per = (model(xb) - yb) ** 2
            if cfg.loss_threshold_quantile is not None and len(per) > 4:
                keep = per.detach() <= torch.quantile(per.detach(), cfg.loss_threshold_quantile)
                skipped += int((~keep).sum())
                per, wb = per[keep], wb[keep]
            loss = (per * wb).sum() / wb.sum().clamp_min(1e-12)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            opt.step()
            total += loss.item() * len(idx)
            count += len(idx)
        # ---- validate -------------------------------------------------------------------------
        model.eval()
        with torch.no_grad():
            if len(va):
                val = float(((model(x[va].to(device)) - y[va].to(device)) ** 2 * w[va].to(device)).sum() / w[va].sum())
            else:
                val = total / max(count, 1)
        row = {"epoch": epoch, "lr": lr, "train_loss": total / max(count, 1), "val_loss": val, "skipped": skipped}
        result.history.append(row)
        result.epochs_run = epoch + 1
        if val < result.best_val_loss:
            result.best_val_loss, result.best_epoch, bad_epochs = val, epoch, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            bad_epochs += 1
            if bad_epochs >= cfg.patience:
                result.stopped_early = True
        # ---- checkpoint ------------------------------------------------------------------------
        if last is not None:
            last.parent.mkdir(parents=True, exist_ok=True)
            tmp = last.with_name("last.pt.tmp")
            torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "best_state": best_state,
                        "result": result.to_dict(), "epoch": epoch, "bad_epochs": bad_epochs,
                        "torch_rng": torch.get_rng_state()}, tmp)
            tmp.replace(last)
        # ---- report (after the checkpoint: a callback that raises loses no epoch) ----------------
        if on_epoch:
            on_epoch(row)

    model.load_state_dict(best_state)
    for p in model.parameters():
        p.requires_grad_(True)
    model.to("cpu").eval()
    return result
