"""The fine-tune loop: ``fit`` reads top to bottom over named steps, in a fixed order.

seed → the model (one, or a stack of K) → the data (in-memory tuple or a streamed
``IterableDataset``, and its validation split) → device → freeze → optimizer → the step budget →
resume → for each evaluation period: train (lr per step, importance weights, loss-threshold
rejection) → validate → early stop → checkpoint → report. What differs between one model and a
stack lives in :class:`OneModel` / :class:`ModelStack`, what differs between memory and a stream
in :class:`TrainingData`. A checkpoint (``last.pt``) is one plain dict; an interrupted fit resumes
from it and ends with the weights of the uninterrupted run.

The budget is counted in optimizer steps, not epochs (:class:`Budget`): a fit runs at most
``train.max_steps`` steps (and at most ``train.epochs`` passes when set), validates once per
evaluation period — one epoch, cut into equal pieces of at most ``train.eval_every`` steps — and
stops early after ``train.patience`` periods without a better validation loss, never before
``train.min_steps`` steps; the best period's weights are restored. A 500-row set thus gets many
epochs and a 5 M-row one a fraction of one, for the same budget.

Tasks (``TrainConfig.task``), each with a per-sample loss [n]:
regression (squared error), classification (cross-entropy on int64 class ids; the model
returns logits [n, C]), reconstruction (mean squared error against the model's standardised
input; labels are ignored — autoencoder pretraining on unlabelled rows).
"""

from __future__ import annotations

import contextlib
import fnmatch
import itertools
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
from rsft.fsio import atomic_path

log = logging.getLogger(__name__)

RUNNING_MOMENTUM = 0.9  # running loss quantile: EMA weight of the previous estimate
Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # (x, y, sample weights)


@dataclass
class TrainResult:
    epochs_run: int = 0  # passes over the training rows begun (the last one may be partial)
    best_epoch: int = 0  # the (0-based) epoch of the best validation
    best_val_loss: float = math.inf
    stopped_early: bool = False
    # one row per evaluation period: step (optimizer steps so far), epoch (0-based, the pass the
    # period ended in), lr (at the period's last step), train_loss, val_loss, skipped
    history: list[dict[str, Any]] = field(default_factory=list)
    steps: int = 0  # optimizer steps run (training batches; a batch whose samples were all rejected counts)
    best_step: int = 0  # steps run at the best validation
    planned_steps: int = 0  # the budget: the lr schedule's horizon (the fit may stop sooner)

    @property
    def diverged(self) -> bool:
        """Epochs ran but no validation loss was ever finite: the best state was never updated,
        so the model holds its starting weights (e.g. a learning rate far too high)."""
        return bool(self.history) and not math.isfinite(self.best_val_loss)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "diverged": self.diverged}


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


def get_lr(step: int, total: int, cfg: TrainConfig) -> float:
    """Learning rate at optimizer step ``step`` of a budget of ``total`` steps (pure): constant,
    cosine to 10 %, or step (÷10 each third)."""
    if cfg.schedule == "cosine":
        return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(step, total) / max(total, 1))))
    if cfg.schedule == "step":
        return cfg.lr * (0.1 ** (step // max(total // 3, 1)))
    return cfg.lr


@dataclass(frozen=True)
class Budget:
    """A fit's step budget (:func:`plan_budget`)."""

    steps_per_epoch: int | None  # batches per pass; None = a stream of unknown length (an estimate for some)
    # planned steps, the lr schedule's horizon: train.max_steps, fewer when train.epochs passes end
    # sooner. The fit itself stops at max_steps or after train.epochs passes, whichever comes first
    total: int
    period: int  # steps per evaluation period (one validation, early-stopping check and checkpoint each)
    split: bool  # whether an epoch holds several periods (each epoch's end then ends a period too)
    min_steps: int  # early stopping never ends the fit before this many steps
    patience: int = 4  # periods without a better validation before the fit stops (see plan_budget)


def plan_budget(cfg: TrainConfig, steps_per_epoch: int | None, val_rows: int = 0) -> Budget:
    """The budget of a fit whose epoch is ``steps_per_epoch`` batches (None: unknown) and that
    validates on ``val_rows`` rows.

    total = min(max_steps, epochs × steps_per_epoch) — the epochs bound only when set and the epoch
    length is known. The evaluation period is ``eval_every`` steps, longer when validating would
    otherwise read more rows than the period trains on (``val_rows / batch_size`` steps: a huge
    validation split costs at most about a third of the training time), and aligned with the
    epochs: whole epochs when an epoch is shorter (the nearest number of them), else the epoch cut
    into the fewest equal pieces no longer than that. ``eval_every`` None: one period per epoch.

    A short epoch is its own period (a few hundred target rows: every pass is validated, so the
    best state of a fit that overfits after 100 steps is not lost between checks of 250), and
    patience keeps its length in steps: ``train.patience`` × ``eval_every`` steps without a
    better validation, counted in those short periods.
    """
    total = cfg.max_steps
    if cfg.epochs is not None and steps_per_epoch:
        total = min(total, cfg.epochs * steps_per_epoch)
    if cfg.eval_every is None:  # once per epoch, whatever its length
        return Budget(steps_per_epoch, max(total, 1), steps_per_epoch or 2**62, True, min(cfg.min_steps, total),
                      cfg.patience)
    every = max(cfg.eval_every, math.ceil(val_rows / cfg.batch_size))
    split = bool(steps_per_epoch) and steps_per_epoch > every  # type: ignore[operator]
    if not steps_per_epoch:
        period = every
    elif split:
        period = math.ceil(steps_per_epoch / math.ceil(steps_per_epoch / every))
    else:
        period = steps_per_epoch
    period = max(period, 1)
    # short epochs: the same steps without improvement as eval_every-long periods would allow
    patience = cfg.patience if split or not steps_per_epoch else max(cfg.patience, math.ceil(cfg.patience * every / period))
    return Budget(steps_per_epoch, max(total, 1), period, split, min(cfg.min_steps, total), patience)


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


def _stream_batches(src: Iterable, epoch: int, task: str) -> Iterator[Batch]:
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


# --------------------------------------------------------------------------------------
# the training data: rows in memory or a stream, and the validation rows
# --------------------------------------------------------------------------------------
class TrainingData:
    """The training rows — in memory (x, y[, w]) or a stream — and the validation rows, as
    batches (x, y, w) on the device with the importance weights clipped at ``cfg.weight_clip``.

    In memory: without ``val``, ``cfg.val_share`` of the rows are held out (a seeded permutation;
    none under 20 rows) and each epoch's batches come in a seeded order. A stream: without
    ``val``, its ``holdout()`` (when it has one) validates; ``set_epoch`` reseeds its shuffle.
    ``val`` (x, y[, w]) is one batch. Without validation rows there is nothing to validate on.
    """

    def __init__(self, train: tuple | Iterable, val: tuple | None, cfg: TrainConfig):
        self.task, self.seed, self.batch_size, self.clip = cfg.task, cfg.seed, cfg.batch_size, cfg.weight_clip
        self.val_share = cfg.val_share
        self.streaming, self.train, self.val_stream = _is_stream(train), train, None
        held: Batch | None = None
        if self.streaming:
            if val is None and cfg.val_share > 0 and hasattr(train, "holdout"):
                self.train, self.val_stream = train.holdout(cfg.val_share, cfg.seed)
        else:
            self.x, self.y, self.w = _tensors(train, cfg.task)
            if len(self.y) == 0:
                raise ValueError("no training rows")
            self.rows, va = _split(len(self.y), cfg.val_share, cfg.seed) if val is None else (np.arange(len(self.y)), [])
            if len(va):
                held = (self.x[va], self.y[va], self.w[va])
        self.val = _tensors(val, cfg.task) if val is not None else held
        self.gen = torch.Generator().manual_seed(cfg.seed)

    def batches(self, epoch: int, device: torch.device, skip: int = 0) -> Iterator[Batch]:
        """This epoch's training batches, after its first ``skip`` (a resumed fit, mid-epoch)."""
        src = (itertools.islice(_stream_batches(self.train, epoch, self.task), skip, None) if self.streaming
               else self._in_memory(epoch, skip))
        for b in src:
            yield self._ready(b, device, non_blocking=True)

    def val_rows(self) -> int:
        """Validation rows: exact in memory, estimated for a stream's hold-out (0 without)."""
        if self.val is not None:
            return len(self.val[0])
        ds = getattr(self.val_stream, "dataset", self.val_stream)
        return int(getattr(ds, "num_rows", 0) * self.val_share) if ds is not None else 0

    def steps_per_epoch(self) -> int | None:
        """Batches per epoch: exact in memory; for a stream its ``len()`` when it has one, else an
        estimate from ``num_rows`` and ``batch_size`` (a ``ParquetStream``), else None."""
        if not self.streaming:
            return math.ceil(len(self.rows) / self.batch_size)
        try:
            return len(self.train) or None  # type: ignore[arg-type]
        except TypeError:
            pass
        ds = getattr(self.train, "dataset", self.train)
        rows, size = getattr(ds, "num_rows", None), getattr(ds, "batch_size", None)
        if not rows or not size:
            return None
        share = self.val_share if self.val_stream is not None else 0.0
        return max(1, math.ceil(rows * (1 - share) / size))

    def validation(self, device: torch.device) -> Iterator[Batch] | None:
        """The validation batches, or None without validation rows."""
        if self.val is not None and len(self.val[0]):
            parts: Iterable[Batch] = [self.val]  # one full batch, as before streaming existed
        elif self.val_stream is not None:
            parts = _stream_batches(self.val_stream, 0, self.task)
        else:
            return None
        return (self._ready(b, device) for b in parts)

    def _in_memory(self, epoch: int, skip: int = 0) -> Iterator[Batch]:
        self.gen.manual_seed(self.seed * 1_000_003 + epoch)
        order = torch.as_tensor(self.rows)[torch.randperm(len(self.rows), generator=self.gen)]
        for i in range(skip * self.batch_size, len(order), self.batch_size):
            idx = order[i : i + self.batch_size]
            yield self.x[idx], self.y[idx], self.w[idx]

    def _ready(self, b: Batch, device: torch.device, non_blocking: bool = False) -> Batch:
        xb, yb, wb = (t.to(device, non_blocking=non_blocking) for t in b)
        return xb, yb, (wb.clamp(max=self.clip) if self.clip is not None else wb)


# --------------------------------------------------------------------------------------
# the model: one, or a stack of K trained in one pass
# --------------------------------------------------------------------------------------
@dataclass
class _Progress:
    """The run so far — with the model and optimizer, what ``last.pt`` holds."""

    best_state: dict[str, torch.Tensor]
    result: TrainResult = field(default_factory=TrainResult)
    step: int = 0  # optimizer steps run
    epoch: int = 0  # the epoch in progress (or the next one)
    batch: int = 0  # batches of that epoch already trained on
    since: int = 0  # steps since the last validation (0 in a checkpoint: saved after one)
    bad_periods: int = 0  # evaluation periods without improvement
    running: float | None = None  # running loss quantile (loss_threshold_mode "running")


class OneModel:
    """One model: per-sample losses [n], loss-threshold rejection, one best period and patience."""

    size: int | None = None  # K for a stack

    def __init__(self, model: nn.Module, cfg: TrainConfig):
        self.model, self.cfg = model, cfg

    def per_row(self, out: torch.Tensor, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        return per_sample_loss(self.model, out, xb, yb, self.cfg.task)

    def threshold(self, per: torch.Tensor, running: float | None) -> tuple[float | None, float | None]:
        return loss_threshold(per, self.cfg, running)

    def early_stop(self, run: _Progress, val_losses: torch.Tensor, epoch: int, may_stop: bool, patience: int) -> None:
        """Keep the best period's state (``epoch``: the one it ended in); stop after ``patience`` periods without improvement
        once ``may_stop`` (the fit has run its ``min_steps``)."""
        val_loss, result = float(val_losses.sum()), run.result
        if val_loss < result.best_val_loss:
            result.best_val_loss, result.best_epoch, result.best_step, run.bad_periods = val_loss, epoch, run.step, 0
            run.best_state = _snapshot(self.model)
        else:
            run.bad_periods += 1
            if run.bad_periods >= patience and may_stop:
                result.stopped_early = True


class ModelStack(OneModel):
    """K models in one (``rsft.models.stack_models``; every parameter [K, ...]): per-sample
    losses [n, K] (one column per model), no loss-threshold rejection, the gradient clipped per
    model, and each model keeps its own best period and patience; the stack stops when every
    model has stopped."""

    def __init__(self, model: nn.Module, cfg: TrainConfig):
        super().__init__(model, cfg)
        self.size = model.stack_size
        self.best_k = torch.full((self.size,), math.inf)  # per model: best validation loss
        self.bad_k = torch.zeros(self.size, dtype=torch.int64)  # periods without improvement
        self.stopped_k = torch.zeros(self.size, dtype=torch.bool)  # would have stopped alone
        self.param_names = {n for n, _ in model.named_parameters()}  # the models live in these [K, ...] tensors

    def per_row(self, out: torch.Tensor, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        return (out.float() - yb) ** 2

    def threshold(self, per: torch.Tensor, running: float | None) -> tuple[float | None, float | None]:
        return None, running

    def early_stop(self, run: _Progress, val_losses: torch.Tensor, epoch: int, may_stop: bool, patience: int) -> None:
        active = ~self.stopped_k  # a model that stopped would have stopped alone: its best is final
        better = (val_losses < self.best_k) & active
        if bool(better.any()):
            run.best_state = _merge_best(run.best_state, _snapshot(self.model), better, self.param_names)
            self.best_k = torch.where(better, val_losses, self.best_k)
            # summary for the stack: the sum of the models' best losses, the last period any improved
            run.result.best_val_loss, run.result.best_epoch, run.result.best_step = (
                float(self.best_k.sum()), epoch, run.step)
        self.bad_k = torch.where(better, 0, torch.where(active, self.bad_k + 1, self.bad_k))
        if may_stop:
            self.stopped_k |= self.bad_k >= patience
        run.result.stopped_early = bool(self.stopped_k.all())


def _the_model(model: nn.Module, train: Any, cfg: TrainConfig, checkpoint_dir: Any) -> OneModel:
    """``model`` as a :class:`ModelStack` when it is one (refusing what a stack cannot do), else :class:`OneModel`."""
    if not getattr(model, "stack_size", None):
        return OneModel(model, cfg)
    if (_is_stream(train) or cfg.task != "regression" or cfg.loss_threshold is not None
            or cfg.loss_threshold_quantile is not None or checkpoint_dir is not None):
        raise ValueError("a model stack trains in memory, on regression, without loss-threshold rejection or checkpoints")
    return ModelStack(model, cfg)


# --------------------------------------------------------------------------------------
# the steps of an epoch
# --------------------------------------------------------------------------------------
class _Precision:
    """Autocast on CUDA (bf16, or fp16 with a GradScaler); full precision elsewhere."""

    def __init__(self, device: torch.device, enabled: bool):
        self.dtype = amp_dtype(device, enabled)
        self.scaler = torch.amp.GradScaler("cuda") if self.dtype == torch.float16 else None

    def autocast(self):
        return torch.autocast("cuda", dtype=self.dtype) if self.dtype else contextlib.nullcontext()

    def step(self, loss: torch.Tensor, opt: torch.optim.Optimizer, clip_grads: Callable[[], None] | None) -> None:
        """Backward, the gradient clip (unscaled first under fp16), one optimizer step."""
        opt.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            if clip_grads:
                self.scaler.unscale_(opt)
                clip_grads()
            self.scaler.step(opt)
            self.scaler.update()
        else:
            loss.backward()
            if clip_grads:
                clip_grads()
            opt.step()


def _trainable(model: nn.Module, patterns: list[str]) -> list[torch.Tensor]:
    """Freeze the parameters matching ``patterns``; the rest (there must be some) train."""
    freeze(model, patterns)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError(f"train.freeze {patterns} froze every parameter")
    return params


def _set_lr(opt: torch.optim.Optimizer, lr: float) -> float:
    for g in opt.param_groups:
        g["lr"] = lr
    return lr


@dataclass
class _PeriodSums:
    """What the batches of one evaluation period add up to (it may span several epochs)."""

    loss: torch.Tensor  # Σ per-batch loss × rows ([K] for a stack)
    rows: int = 0
    skipped: int = 0
    lr: float = math.nan  # at the last step

    def mean(self) -> torch.Tensor:
        """Mean training loss — [K] for a stack, the sum of whose entries is the loss."""
        return self.loss / max(self.rows, 1)


def _train_steps(net: OneModel, batches: Iterator[Batch], steps: int, opt: torch.optim.Optimizer,
                 params: list[torch.Tensor], prec: _Precision, run: _Progress, budget: Budget,
                 sums: _PeriodSums) -> int:
    """Up to ``steps`` batches of ``batches`` (fewer when the epoch ends): per step the scheduled
    lr, per-sample losses, loss-threshold rejection, importance-weighted mean, one optimizer step.
    Adds to ``sums``, advances ``run.step`` / ``run.batch`` / ``run.since`` (and ``run.running``);
    returns the batches trained on."""
    net.model.train()
    cfg = net.cfg
    clip = cfg.grad_clip
    clip_grads = (lambda: clip_grad_norm(params, clip, net.size)) if clip else None
    done = 0
    for xb, yb, wb in itertools.islice(batches, steps):
        sums.lr = _set_lr(opt, get_lr(run.step, budget.total, cfg))
        done += 1
        run.step, run.batch, run.since = run.step + 1, run.batch + 1, run.since + 1
        n = len(xb)
        with prec.autocast():
            out = net.model(xb)
        per = net.per_row(out, xb, yb)
        thr, run.running = net.threshold(per.detach(), run.running)
        if thr is not None:
            keep = per.detach() <= thr
            sums.skipped += int((~keep).sum())
            if not bool(keep.any()):  # every sample rejected: no step
                sums.rows += n
                continue
            per, wb = per[keep], wb[keep]
        # weighted mean; for a stack, the sum over models of each model's own weighted mean
        losses = (per * wb).sum(0) / wb.sum(0).clamp_min(1e-12)
        prec.step(losses.sum(), opt, clip_grads)
        sums.loss += losses.detach().double().cpu() * n
        sums.rows += n
    return done


@torch.no_grad()
def _validate(net: OneModel, batches: Iterable[Batch] | None, prec: _Precision, train_losses: torch.Tensor) -> torch.Tensor:
    """Weighted mean validation loss ([K]: one per model of a stack); the training loss without
    validation rows (and for a model whose validation rows all weigh 0, i.e. padding)."""
    net.model.eval()
    if batches is None:
        return train_losses
    num = den = torch.zeros((), dtype=torch.float64)
    for xb, yb, wb in batches:
        with prec.autocast():
            out = net.model(xb)
        # float32 sums per batch (one batch in memory = the pre-streaming value exactly)
        num = num + (net.per_row(out, xb, yb) * wb).sum(0).cpu()  # a stack: one sum per model
        den = den + wb.sum(0).cpu()
    return torch.where(den > 0, num.float() / den.float().clamp_min(1e-30), train_losses.float())


def _save_checkpoint(last: Path, model: nn.Module, opt: torch.optim.Optimizer, prec: _Precision, run: _Progress) -> None:
    """``last.pt``: one plain dict, written atomically, at the end of an evaluation period."""
    with atomic_path(last) as tmp:
        torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "best_state": run.best_state,
                    "result": asdict(run.result), "step": run.step, "epoch": run.epoch, "batch": run.batch,
                    "bad_periods": run.bad_periods, "torch_rng": torch.get_rng_state(),
                    "running_quantile": run.running,
                    "scaler": prec.scaler.state_dict() if prec.scaler is not None else None}, tmp)


def _resume(last: Path, model: nn.Module, opt: torch.optim.Optimizer, prec: _Precision) -> _Progress:
    """Model, optimizer, torch RNG (and fp16 scaler) as ``last.pt`` left them; the run so far."""
    ck = torch.load(last, map_location="cpu", weights_only=True)
    model.load_state_dict(ck["model"])
    opt.load_state_dict(ck["optimizer"])
    torch.set_rng_state(ck["torch_rng"])
    if prec.scaler is not None and ck.get("scaler"):
        prec.scaler.load_state_dict(ck["scaler"])
    log.info("resuming fit at step %d (epoch %d) from %s", ck["step"], ck["epoch"], last)
    return _Progress(ck["best_state"], TrainResult(**ck["result"]), step=ck["step"], epoch=ck["epoch"],
                     batch=ck["batch"], bad_periods=ck["bad_periods"], running=ck.get("running_quantile"))


def _finish(model: nn.Module, best_state: dict[str, torch.Tensor]) -> None:
    """The best state, every parameter trainable again, on the CPU in eval mode."""
    model.load_state_dict(best_state)
    for p in model.parameters():
        p.requires_grad_(True)
    model.to("cpu").eval()


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
    model keeps its own best period and patience (the stack stops when every model has stopped), so
    every model ends where it would end alone on the same batches (batches and validation rows are
    shared; a padded model takes the longest model's steps, so pad only sets of similar size).

    The budget (:func:`plan_budget`) is in optimizer steps; ``on_epoch(row)`` is called once per
    evaluation period (a history row: step, epoch, lr, train_loss, val_loss, skipped).
    """
    seed_everything(cfg.seed)
    net = _the_model(model, train, cfg, checkpoint_dir)  # one model, or a stack of K
    data = TrainingData(train, val, cfg)  # training batches, validation split
    device = pick_device(cfg.device)
    model.to(device)
    prec = _Precision(device, cfg.amp)
    params = _trainable(model, cfg.freeze)
    opt = make_optimizer(params, cfg)
    budget = plan_budget(cfg, data.steps_per_epoch(), data.val_rows())  # steps, evaluation period, minimum
    run = _Progress(best_state=_snapshot(model), result=TrainResult(planned_steps=budget.total))
    last = Path(checkpoint_dir) / "last.pt" if checkpoint_dir else None
    if last is not None and last.exists():
        run = _resume(last, model, opt, prec)
    batches: Iterator[Batch] | None = None  # the epoch in progress
    sums = _PeriodSums(torch.zeros(net.size or (), dtype=torch.float64))
    while not run.result.stopped_early and run.step < cfg.max_steps and (cfg.epochs is None or run.epoch < cfg.epochs):
        if batches is None:
            batches = data.batches(run.epoch, device, skip=run.batch)
        # train to the period's end, the epoch's (in memory: known) or the budget's
        want = min(budget.period - run.since, cfg.max_steps - run.step)
        if budget.steps_per_epoch and not data.streaming:
            want = min(want, budget.steps_per_epoch - run.batch)
        done = _train_steps(net, batches, want, opt, params, prec, run, budget, sums)
        epoch = run.epoch  # the epoch these batches came from
        if done < want or (not data.streaming and run.batch == budget.steps_per_epoch):  # the epoch ended
            if run.batch == 0:
                raise ValueError("no training rows")
            run.epoch, run.batch, batches = run.epoch + 1, 0, None
            ended = True
        else:
            ended = False
        if not (run.since >= budget.period or run.step >= cfg.max_steps or (ended and budget.split)
                or (cfg.epochs is not None and run.epoch >= cfg.epochs)) or run.since == 0:
            continue  # the period goes on (into the next epoch)
        # the period's end: validate, keep the best, checkpoint, report
        train_losses = sums.mean()
        val_losses = _validate(net, data.validation(device), prec, train_losses)
        row = {"step": run.step, "epoch": epoch, "lr": sums.lr, "train_loss": float(train_losses.sum()),
               "val_loss": float(val_losses.sum()), "skipped": sums.skipped}
        run.result.history.append(row)
        run.result.steps, run.result.epochs_run = run.step, epoch + 1
        net.early_stop(run, val_losses, epoch, may_stop=run.step >= budget.min_steps, patience=budget.patience)
        run.since, sums = 0, _PeriodSums(torch.zeros(net.size or (), dtype=torch.float64))
        if last is not None:
            _save_checkpoint(last, model, opt, prec, run)
        if on_epoch:  # after the checkpoint: a callback that raises loses no period
            on_epoch(row)
    _finish(model, run.best_state)
    return run.result


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
