"""The fine-tune loop: one function that reads top to bottom in a fixed order.

seed → data (in-memory tuple or a streamed ``IterableDataset``) → device → freeze → optimizer
→ resume → epochs (lr → train with importance weights and loss-threshold rejection → validate
→ early stop → checkpoint → report). A checkpoint (``last.pt``) is one plain dict; an
interrupted fit resumes from it and ends with the weights of the uninterrupted run.

Tasks (``TrainConfig.task``), each with a per-sample loss [n]:
regression (squared error), classification (cross-entropy on int64 class ids; the model
returns logits [n, C]), reconstruction (mean squared error against the model's standardised
input; labels are ignored — autoencoder pretraining on unlabelled rows).
"""

from __future__ import annotations

import contextlib
import fnmatch
import logging
import math
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rsft.config import TrainConfig

log = logging.getLogger(__name__)

RUNNING_MOMENTUM = 0.9  # running loss quantile: EMA weight of the previous estimate


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
    """Seed Python, NumPy and torch (CPU, and CUDA when present). Not ``torch.manual_seed``: on a
    machine without an initialised accelerator it queues lazy seeding calls for CUDA, XPU and
    MTIA, each capturing a formatted stack (~0.4 ms per call; ``fit`` seeds on every call)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.default_generator.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def amp_dtype(device: torch.device, enabled: bool) -> torch.dtype | None:
    """Autocast dtype on CUDA (bf16 where supported, else fp16); None = full precision (CPU)."""
    if device.type != "cuda" or not enabled:
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


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


# --------------------------------------------------------------------------------------
# per-sample loss and loss-threshold rejection (pure, tested directly)
# --------------------------------------------------------------------------------------
def per_sample_loss(model: nn.Module, out: torch.Tensor, xb: torch.Tensor, yb: torch.Tensor, task: str) -> torch.Tensor:
    """Loss per sample [n] of model output ``out`` for ``task``."""
    if task == "classification":
        return F.cross_entropy(out.float(), yb.long(), reduction="none")
    if task == "reconstruction":
        target = model.reconstruction_target(xb) if hasattr(model, "reconstruction_target") else xb
        return ((out.float() - target.float()) ** 2).mean(-1)
    per = (out.float() - yb) ** 2
    return per.mean(-1) if per.dim() > 1 else per


def loss_threshold(per: torch.Tensor, cfg: TrainConfig, running: float | None) -> tuple[float | None, float | None]:
    """(threshold for this batch, updated running quantile); samples with loss > threshold are skipped.

    The threshold is the smaller of ``cfg.loss_threshold`` (absolute) and the quantile rule:
    mode "batch" = quantile ``q`` of this batch's losses (batches of > 4 samples);
    mode "running" = an EMA of the previous batches' ``q``-quantiles (this batch's own
    quantile for the first batch), so one batch full of outliers cannot hide them.
    """
    thr = cfg.loss_threshold
    q = cfg.loss_threshold_quantile
    if q is not None and len(per) > 4:
        batch_q = float(torch.quantile(per.float(), q))
        if cfg.loss_threshold_mode == "running":
            rule = batch_q if running is None else running
            running = batch_q if running is None else RUNNING_MOMENTUM * running + (1 - RUNNING_MOMENTUM) * batch_q
        else:
            rule = batch_q
        thr = rule if thr is None else min(thr, rule)
    elif q is not None and cfg.loss_threshold_mode == "running" and running is not None:
        thr = running if thr is None else min(thr, running)
    return thr, running


def clip_grad_norm(params: list[torch.Tensor], max_norm: float, stack: int | None = None) -> None:
    """``nn.utils.clip_grad_norm_``; for a model stack (every parameter [K, ...]) per model."""
    if not stack:
        nn.utils.clip_grad_norm_(params, max_norm)
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    norms = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.reshape(stack, -1), dim=1) for g in grads]), dim=0)
    coef = (max_norm / (norms + 1e-6)).clamp_(max=1.0)  # [K]
    for g in grads:
        g.mul_(coef.view(-1, *[1] * (g.dim() - 1)))


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    """A copy of the model's state (what ``copy.deepcopy(state_dict())`` gives, without its
    per-object machinery: this runs at every improving epoch)."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _merge_best(best: dict[str, torch.Tensor], now: dict[str, torch.Tensor], better: torch.Tensor,
                params: set[str]) -> dict[str, torch.Tensor]:
    """A stack's best state: copy j's slices of every parameter (all [K, ...]) from ``now`` where
    ``better[j]``, else from ``best``; buffers are not trained and come from ``now``."""
    out = dict(now)
    for name in params:
        t = now[name]
        out[name] = torch.where(better.view(-1, *[1] * (t.dim() - 1)).to(t.device), t, best[name])
    return out


def _split(n: int, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    perm = np.random.default_rng(seed).permutation(n)
    n_val = int(round(n * share)) if n >= 20 else 0
    return perm[n_val:], perm[:n_val]


def _tensors(data: tuple, task: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x, y[, w]) arrays -> tensors: integer x (hashed text ids) stays int64, else float32."""
    xa = np.asarray(data[0])
    x = torch.as_tensor(xa, dtype=torch.int64 if np.issubdtype(xa.dtype, np.integer) else torch.float32)
    y = torch.as_tensor(np.asarray(data[1]), dtype=torch.int64 if task == "classification" else torch.float32)
    w = torch.as_tensor(np.asarray(data[2]), dtype=torch.float32) if len(data) > 2 else torch.ones(len(y))
    return x, y, w


def _is_stream(train: Any) -> bool:
    return not isinstance(train, (tuple, list))


def _stream_batches(src: Iterable, epoch: int, task: str) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Batches (x, y, w) of a stream for one epoch; ``set_epoch`` reseeds its shuffle."""
    ds = getattr(src, "dataset", src)  # a DataLoader over the stream
    if hasattr(ds, "set_epoch"):
        ds.set_epoch(epoch)
    for b in src:
        xb, yb = b[0], b[1]
        wb = b[2] if len(b) > 2 and b[2] is not None else torch.ones(len(xb))
        if task == "classification":
            yb = yb.long()
        yield xb, yb, wb


def fit(
    model: nn.Module,
    train: tuple | Iterable,
    cfg: TrainConfig,
    *,
    val: tuple | None = None,
    checkpoint_dir: str | Path | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> TrainResult:
    """Fit ``model`` in place.

    ``train``: (x [n,d], y [n]) or (x, y, sample weights [n]) in memory, or a stream
    (``rsft.data.ParquetStream`` or any iterable of (x, y[, w]) batches, e.g. a DataLoader
    over one). ``val``: optional in-memory (x, y[, w]) validation set; without it, a tuple
    holds out ``cfg.val_share`` of its rows and a stream with ``holdout()`` a deterministic
    ``cfg.val_share`` of its rows (any other stream validates on its training loss).

    A stack of K models (``rsft.models.stack_models``, regression, in memory) trains on
    (x [n, K, d], y [n, K], w [n, K]): column k is model k's rows (w = 0 pads a shorter set). The
    loss is the sum of each model's own weighted mean, the gradient clip is per model, and each
    model keeps its own best epoch and patience (the stack stops when every model has stopped), so
    every model ends where it would end alone on the same batches (batches and validation rows are
    shared; a padded model takes the longest model's steps, so pad only sets of similar size).
    """
    # ---- seed + data ---------------------------------------------------------------------
    seed_everything(cfg.seed)
    task = cfg.task
    streaming = _is_stream(train)
    stack = getattr(model, "stack_size", None)
    if stack and (streaming or task != "regression" or cfg.loss_threshold is not None
                  or cfg.loss_threshold_quantile is not None or checkpoint_dir is not None):
        raise ValueError("a model stack trains in memory, on regression, without loss-threshold rejection or checkpoints")
    val_stream = None
    if streaming:
        if val is None and cfg.val_share > 0 and hasattr(train, "holdout"):
            train, val_stream = train.holdout(cfg.val_share, cfg.seed)
    else:
        x, y, w = _tensors(train, task)
        if len(y) == 0:
            raise ValueError("no training rows")
        if val is None:
            tr, va = _split(len(y), cfg.val_share, cfg.seed)
        else:
            tr, va = np.arange(len(y)), np.zeros(0, dtype=np.int64)
    vx = vy = vw = None
    if val is not None:
        vx, vy, vw = _tensors(val, task)
    elif not streaming and len(va):
        vx, vy, vw = x[va], y[va], w[va]
    clip = cfg.weight_clip

    # ---- device, precision, freeze, optimizer ---------------------------------------------
    device = pick_device(cfg.device)
    model.to(device)
    autocast_dtype = amp_dtype(device, cfg.amp)
    scaler = torch.amp.GradScaler("cuda") if autocast_dtype == torch.float16 else None

    def autocast():
        return torch.autocast("cuda", dtype=autocast_dtype) if autocast_dtype else contextlib.nullcontext()

    freeze(model, cfg.freeze)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError(f"train.freeze {cfg.freeze} froze every parameter")
    opt = make_optimizer(params, cfg)
    result = TrainResult()
    best_state = _snapshot(model)
    start_epoch, bad_epochs, running = 0, 0, None
    if stack:  # per-copy best validation loss and epochs without improvement
        best_k, bad_k = torch.full((stack,), math.inf), torch.zeros(stack, dtype=torch.int64)
    param_names = {n for n, _ in model.named_parameters()}  # a stack's copies live in these [K, ...] tensors

    def per_row(out: torch.Tensor, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        """Per-sample losses; a stack's [b, K] squared errors keep one column per copy."""
        return (out.float() - yb) ** 2 if stack else per_sample_loss(model, out, xb, yb, task)

    # ---- resume --------------------------------------------------------------------------
    last = Path(checkpoint_dir) / "last.pt" if checkpoint_dir else None
    if last is not None and last.exists():
        ck = torch.load(last, map_location="cpu", weights_only=True)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        best_state = ck["best_state"]
        result = TrainResult(**ck["result"])
        start_epoch, bad_epochs = ck["epoch"] + 1, ck["bad_epochs"]
        running = ck.get("running_quantile")
        torch.set_rng_state(ck["torch_rng"])
        if scaler is not None and ck.get("scaler"):
            scaler.load_state_dict(ck["scaler"])
        log.info("resuming fit at epoch %d from %s", start_epoch, last)

    def batches(epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        if streaming:
            yield from _stream_batches(train, epoch, task)
            return
        gen.manual_seed(cfg.seed * 1_000_003 + epoch)
        order = torch.as_tensor(tr)[torch.randperm(len(tr), generator=gen)]
        for i in range(0, len(order), cfg.batch_size):
            idx = order[i : i + cfg.batch_size]
            yield x[idx], y[idx], w[idx]

    @torch.no_grad()
    def validate(epoch: int, fallback: torch.Tensor) -> torch.Tensor:
        """Weighted mean validation loss ([K]: one per copy of a stack); ``fallback`` without validation rows."""
        if vx is not None and len(vx):
            parts: Iterable = [(vx, vy, vw)]  # one full batch, as before streaming existed
        elif val_stream is not None:
            parts = _stream_batches(val_stream, 0, task)
        else:
            return fallback
        num = den = torch.zeros((), dtype=torch.float64)
        for xb, yb, wb in parts:
            xb, yb, wb = xb.to(device), yb.to(device), wb.to(device)
            if clip is not None:
                wb = wb.clamp(max=clip)
            with autocast():
                out = model(xb)
            # float32 sums per batch (one batch in memory = the pre-streaming value exactly)
            num = num + (per_row(out, xb, yb) * wb).sum(0).cpu()  # a stack: one sum per model
            den = den + wb.sum(0).cpu()
        # a copy without validation weight (all its validation rows were padding) uses its train loss
        return torch.where(den > 0, num.float() / den.float().clamp_min(1e-30), fallback.float())

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
        total, count, skipped = torch.zeros(stack or (), dtype=torch.float64), 0, 0  # per copy for a stack
        for xb, yb, wb in batches(epoch):
            n = len(xb)
            xb, yb, wb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True), wb.to(device, non_blocking=True)
            if clip is not None:
                wb = wb.clamp(max=clip)
            with autocast():
                out = model(xb)
            per = per_row(out, xb, yb)
            thr, running = loss_threshold(per.detach(), cfg, running) if not stack else (None, running)
            if thr is not None:
                keep = per.detach() <= thr
                skipped += int((~keep).sum())
                if not bool(keep.any()):  # every sample rejected: no step
                    count += n
                    continue
                per, wb = per[keep], wb[keep]
            # weighted mean; for a stack, the sum over copies of each copy's own weighted mean
            losses = (per * wb).sum(0) / wb.sum(0).clamp_min(1e-12)
            loss = losses.sum()
            opt.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                if cfg.grad_clip:
                    scaler.unscale_(opt)
                    clip_grad_norm(params, cfg.grad_clip, stack)
                scaler.step(opt)
                scaler.update()
            else:
                loss.backward()
                if cfg.grad_clip:
                    clip_grad_norm(params, cfg.grad_clip, stack)
                opt.step()
            total += losses.detach().double().cpu() * n
            count += n
        if count == 0:
            raise ValueError("no training rows")
        # ---- validate -------------------------------------------------------------------------
        model.eval()
        train_losses = total / max(count, 1)
        val_losses = validate(epoch, train_losses)
        val_loss = float(val_losses.sum())
        row = {"epoch": epoch, "lr": lr, "train_loss": float(train_losses.sum()), "val_loss": val_loss, "skipped": skipped}
        result.history.append(row)
        result.epochs_run = epoch + 1
        if stack:  # every copy keeps its own best epoch and stops on its own patience
            active = bad_k < cfg.patience  # a copy that ran out of patience would have stopped alone
            better = (val_losses < best_k) & active
            if bool(better.any()):
                best_state = _merge_best(best_state, _snapshot(model), better, param_names)
                best_k = torch.where(better, val_losses, best_k)
                # summary for the stack: the sum of the copies' best losses, the last epoch any improved
                result.best_val_loss, result.best_epoch = float(best_k.sum()), epoch
            bad_k = torch.where(better, 0, torch.where(active, bad_k + 1, bad_k))
            result.stopped_early = bool((bad_k >= cfg.patience).all())
        elif val_loss < result.best_val_loss:
            result.best_val_loss, result.best_epoch, bad_epochs = val_loss, epoch, 0
            best_state = _snapshot(model)
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
                        "torch_rng": torch.get_rng_state(), "running_quantile": running,
                        "scaler": scaler.state_dict() if scaler is not None else None}, tmp)
            tmp.replace(last)
        # ---- report (after the checkpoint: a callback that raises loses no epoch) ----------------
        if on_epoch:
            on_epoch(row)

    model.load_state_dict(best_state)
    for p in model.parameters():
        p.requires_grad_(True)
    model.to("cpu").eval()
    return result


def pretrain_autoencoder(
    model: nn.Module,
    data: np.ndarray | Iterable,
    cfg: TrainConfig,
    *,
    checkpoint_dir: str | Path | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> TrainResult:
    """Minimise reconstruction MSE on unlabelled rows: ``data`` = x [n, d] or a stream (labels ignored)."""
    rcfg = cfg.model_copy(update={"task": "reconstruction", "freeze": []})
    if isinstance(data, (np.ndarray, torch.Tensor)):
        x = np.asarray(data, dtype=np.float32)
        data = (x, np.zeros(len(x), dtype=np.float32))
    return fit(model, data, rcfg, checkpoint_dir=checkpoint_dir, on_epoch=on_epoch)
