"""Training data and models of a night: the warm start, the fine-tune's rows, evaluation.

Used by the retrain (:mod:`rsft.pipeline.finetune`) and by ``rsft adapt`` (the same pretraining
of a warm start on pool rows), so both train and score models the same way.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Callable

import numpy as np
import polars as pl

from rsft.config import FeaturesConfig, ModelConfig, PipelineConfig, TrainConfig, target_repeats
from rsft.fsio import digest
from rsft.pipeline.data import (holdout_identity, load_target, pool_sample, span_problem, without_holdout,
                                without_holdout_parts)
from rsft.pipeline.layout import pipeline_root
from rsft.pipeline.results import Prefiltered, Selected


# --------------------------------------------------------------------------------------
# features and labels
# --------------------------------------------------------------------------------------
def arrays(df: pl.DataFrame, f: FeaturesConfig) -> tuple[np.ndarray, np.ndarray]:
    """(features [n, d], labels [n]) of a frame."""
    from rsft.features import labels, to_matrix

    return to_matrix(df, f), labels(df, f)


def model_io(f: FeaturesConfig) -> tuple[int, int, list[str]]:
    """(in_features, out_features, input names) of the pipeline's model: features → 1 value,
    or → ``len(classes)`` logits; a text model reads ``text_buckets`` hashed n-gram ids."""
    from rsft.features import feature_names

    out = len(f.classes) or 1
    if f.kind == "text":
        return f.text_buckets, out, [f.text_column]
    names = feature_names(f)
    return len(names), out, names


def resolved(cfg: PipelineConfig) -> dict[str, Any]:
    """The whole resolved config as plain data: saved in every checkpoint."""
    return cfg.model_dump(mode="json", exclude={"base_dir"})


def train_config(cfg: PipelineConfig) -> TrainConfig:
    """train.* with the task implied by the labels (class names → classification)."""
    return cfg.train.model_copy(update={"task": "classification" if cfg.features.classes else "regression"})


def time_order(df: pl.DataFrame, f: FeaturesConfig) -> np.ndarray | None:
    """The rows' indices in time order (``features.time_column``, then ``features.group``), or None
    where the frame has no such column: a hold-out of time series — a few days of each machine's
    readings — whose neighbouring rows err together (:class:`rsft.evaluate.Rows`)."""
    if f.time_column not in df.columns or not (df.schema[f.time_column].is_temporal() or df.schema[f.time_column].is_numeric()):
        return None
    keys = [f.time_column] + ([f.group] if f.group in df.columns and f.group != f.time_column else [])
    return df.select(keys).with_row_index("_i").sort(keys, nulls_last=True, maintain_order=True)["_i"].to_numpy().astype(np.int64)


def evaluate_frame(model, df: pl.DataFrame, cfg: PipelineConfig) -> dict[str, float]:
    """Task metrics of ``model`` on a labelled frame (the same function for champion and challenger),
    with the rows' time order for the paired gate's standard error (:func:`time_order`)."""
    from rsft.evaluate import evaluate_model

    df = df.filter(pl.col(cfg.features.label).is_not_null())
    x, y = arrays(df, cfg.features)
    return evaluate_model(model, x, y, train_config(cfg).task, time_order(df, cfg.features))


def constant_scores(cfg: PipelineConfig, target: pl.DataFrame, holdout: pl.DataFrame) -> dict[str, float] | None:
    """Hold-out metrics of the constant prediction the target sample's labels give (their mean, or
    their class shares): the floor a model must beat (:func:`rsft.evaluate.constant_metrics`)."""
    from rsft.evaluate import constant_metrics
    from rsft.features import labels

    f = cfg.features
    t, h = (df.filter(pl.col(f.label).is_not_null()) for df in (target, holdout))
    return constant_metrics(labels(t, f), labels(h, f), train_config(cfg).task, len(f.classes))


def linear_scores(cfg: PipelineConfig, target: pl.DataFrame, holdout: pl.DataFrame) -> dict[str, float] | None:
    """Hold-out metrics of a linear model fitted on the target sample alone (ridge, or L2-logistic
    for classes: :func:`rsft.evaluate.linear_metrics`): the reference a model trained on the pool
    as well should beat. Its inputs are the model's and a product column for each of
    ``promotion.linear_reference_terms`` (the physics the engineer declares). None with
    ``promotion.linear_reference_by: null``, for text features, or without labelled target rows."""
    from rsft.evaluate import linear_metrics
    from rsft.features import product_terms

    f = cfg.features
    if cfg.promotion.linear_reference_by is None or f.kind == "text":
        return None
    f, products = product_terms(f, cfg.promotion.linear_reference_terms)
    t, h = (df.filter(pl.col(f.label).is_not_null()).with_columns(products) for df in (target, holdout))
    (xt, yt), (xh, yh) = arrays(t, f), arrays(h, f)
    return linear_metrics(xt, yt, xh, yh, train_config(cfg).task, len(f.classes), seed=cfg.train.seed,
                          order=time_order(h, f))


# --------------------------------------------------------------------------------------
# the fine-tune's rows: selected pool rows + the target sample
# --------------------------------------------------------------------------------------
def _input_columns(f: FeaturesConfig) -> list[str]:
    from rsft.features import rolling_names

    inputs = [f.text_column] if f.kind == "text" else [*f.numeric, *rolling_names(f), *f.categorical]
    return list(dict.fromkeys([*inputs, f.label]))


def training_frame(cfg: PipelineConfig, selected_path: str | None) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Selected pool rows (labelled, not hold-out rows nor inside a machine's hold-out span:
    :func:`rsft.pipeline.data.without_holdout`)
    + the target sample repeated ``target_weight`` times."""
    label, cols = cfg.features.label, _input_columns(cfg.features)
    parts, counts = [], {}
    if selected_path:
        sel = pl.scan_parquet(selected_path)
        n_all = sel.select(pl.len()).collect().item()
        identity = holdout_identity(cfg)
        have = sel.collect_schema().names()
        read = list(dict.fromkeys([*cols, *(k for k in identity.columns() if k in have)]))
        sel = sel.filter(pl.col(label).is_not_null()).select(read).collect()
        n_labelled = sel.height
        rows, kept = without_holdout_parts(sel, identity)
        counts["selected_rows"] = n_all
        counts["selected_unlabelled"] = n_all - n_labelled
        counts.update(holdout_counts(cfg, identity, sel.schema, n_labelled, rows.height, kept.height))
        parts.append(kept.select(cols))
    if cfg.train.include_target_sample or not parts:
        tgt = load_target(cfg).select(cols)
        reps = target_repeats(cfg.train.target_weight)
        parts += [tgt] * reps
        counts["target_rows"] = tgt.height * reps
    df = pl.concat(parts, how="vertical_relaxed")
    counts["train_rows"] = df.height
    return df, counts


def holdout_counts(cfg: PipelineConfig, identity, schema, n_labelled: int, n_rows: int, n_kept: int) -> dict[str, Any]:
    """The selected labelled rows left out as hold-out rows: all of them (``holdout_rows_left_out``),
    those left out by the spans alone (``holdout_span_rows_left_out``: the rest are the hold-out's
    own rows), and with ``train.holdout_exclusion: span``, why no spans were applied
    (``holdout_no_spans``, a line for the summary; not an MLflow metric)."""
    why = span_problem(identity, schema) if cfg.train.holdout_exclusion == "span" else ""
    return {"holdout_rows_left_out": n_labelled - n_kept, "holdout_span_rows_left_out": n_rows - n_kept,
            **({"holdout_no_spans": why} if why else {})}


def streams_training(cfg: PipelineConfig, selected_rows: int) -> bool:
    """Whether the fine-tune reads its rows from Parquet (bounded memory) instead of memory."""
    if cfg.features.kind == "text" or cfg.train.stream == "off":
        return False
    return cfg.train.stream == "on" or selected_rows > cfg.train.stream_above_rows


def training_stream(cfg: PipelineConfig, selected_path: str, out_dir: Path):
    """The training rows of :func:`training_frame` written once as Parquet (features already
    computed, one streaming sink) and read back as a shuffled ``ParquetStream``."""
    from rsft.data import ParquetStream
    from rsft.features import feature_exprs, feature_names
    from rsft.fsio import atomic_path

    label = cfg.features.label
    cols = [*feature_exprs(cfg.features), pl.col(label).cast(pl.Float32)]
    sel = pl.scan_parquet(selected_path)
    n_all = sel.select(pl.len()).collect().item()
    labelled = sel.filter(pl.col(label).is_not_null())
    identity = holdout_identity(cfg)
    rows, kept = without_holdout_parts(labelled, identity)
    # one plan for the three counts: the selection is scanned once (polars shares the common subplan)
    n_labelled, n_rows, n_kept = (df.item() for df in pl.collect_all([lf.select(pl.len()) for lf in (labelled, rows, kept)]))
    parts = [kept.select(cols)]
    counts = {"selected_rows": n_all,
              **holdout_counts(cfg, identity, labelled.collect_schema(), n_labelled, n_rows, n_kept)}
    if cfg.train.include_target_sample:
        tgt = load_target(cfg).select(cols)
        reps = target_repeats(cfg.train.target_weight)
        parts += [tgt.lazy()] * reps
        counts["target_rows"] = tgt.height * reps
    path = out_dir / "train.parquet"
    with atomic_path(path) as tmp:
        pl.concat(parts, how="vertical_relaxed").sink_parquet(tmp, row_group_size=65_536)
    stream = ParquetStream(path, feature_names(cfg.features), label, batch_size=cfg.train.batch_size, seed=cfg.train.seed)
    counts["train_rows"] = stream.num_rows
    counts["selected_unlabelled"] = n_all - n_labelled
    counts["streamed"] = 1
    return stream, counts


def fine_tune(cfg: PipelineConfig, start, selected: Selected, run_dir: Path, warm_start: str,
              on_epoch: Callable[[dict], None] | None = None):
    """The warm start fine-tuned on the sampling stage's selection + the target sample
    (``cfg.train``'s include_target_sample / target_weight): the plain retrain's fit.
    Returns (model, FitResult, row counts); the warm start itself is not modified."""
    from rsft.train import fit

    if streams_training(cfg, selected.rows_out):
        train, counts = training_stream(cfg, selected.output, run_dir)
    else:
        df, counts = training_frame(cfg, selected.output)
        train = arrays(df, cfg.features)
    model = copy.deepcopy(start)
    # checkpoints resume an interrupted fit of *this* warm start (and train config) only
    # … and of its rows: the selection less tonight's hold-out (another hold-out, other rows)
    from rsft.pipeline.layout import TARGET_HOLDOUT
    from rsft.pipeline.targets import named_digest

    ckpt_dir = run_dir / f"train-{digest(warm_start, cfg.train.model_dump(mode='json'), named_digest(cfg, TARGET_HOLDOUT))}"
    return model, fit(model, train, train_config(cfg), checkpoint_dir=ckpt_dir, on_epoch=on_epoch), counts


# --------------------------------------------------------------------------------------
# the warm start: a base model pretrained on pool rows
# --------------------------------------------------------------------------------------
# train.* fields that do not change the base model's fit (left out of its cache key)
_NOT_BASE = {"include_target_sample", "target_weight", "stream", "stream_above_rows"}


def pretrain_config(tcfg: TrainConfig) -> TrainConfig:
    """The warm start's fit: to convergence — ``pretrain_max_steps`` optimizer steps at most (and
    ``pretrain_epochs`` passes when set), early stopping on its own ``val_share`` of the pool rows
    (at least 0.15 of them), every parameter trained."""
    return tcfg.model_copy(update={"max_steps": tcfg.pretrain_max_steps, "epochs": tcfg.pretrain_epochs,
                                   "val_share": max(tcfg.val_share, 0.15), "freeze": []})


def fit_facts(result) -> dict[str, Any]:
    """What a fit did, for reports (the warm start's, the night's final fit, rsft adapt's): optimizer steps (and their budget), passes, best
    and final validation loss, whether early stopping ended it, how much it fell at the end."""
    last = result.history[-1]["val_loss"] if result.history else None
    return {"steps": result.steps, "planned_steps": result.planned_steps, "best_step": result.best_step,
            "epochs": result.epochs_run, "best_val_loss": result.best_val_loss, "final_val_loss": last,
            "stopped_early": result.stopped_early, "still_improving": still_improving(result.history),
            "late_fall": round(late_fall(result.history)[0], 5)}


def late_fall(history: list[dict[str, Any]], tail: float = 0.2) -> tuple[float, float]:
    """How far the validation loss fell in the fit's last ``tail`` of evaluation periods (their
    best against the best before them): as a share of the loss before them, and as a share of
    all it fell in the fit. (0, 0) when it did not fall then, or the fit is too short to tell."""
    import math

    v = [r["val_loss"] for r in history if math.isfinite(r.get("val_loss", math.nan))]
    if len(v) < 3:
        return 0.0, 0.0
    best, late = min(v), min(v[: max(1, math.ceil(len(v) * (1 - tail)))])
    total = v[0] - best
    if total <= 0 or late <= best:
        return 0.0, 0.0
    return (late - best) / late if late > 0 else 0.0, (late - best) / total


def still_improving(history: list[dict[str, Any]], tail: float = 0.2, share: float = 0.01,
                    level: float = 0.01) -> bool:
    """The curve had not flattened when the fit ended: in its last ``tail`` of evaluation periods
    the validation loss fell by at least ``level`` of itself, or by at least ``share`` of all it
    fell in the fit. (The share alone missed trial 9's first base model, #12: a steep first fall
    makes a later, steady fall of a few % look flat, and it ran to its 20,000-step cap unsaid.)"""
    of_level, of_fall = late_fall(history, tail)
    return (of_level >= level or of_fall >= share) and (not _within_noise(history, tail) or _falling(history, tail))


def _within_noise(history: list[dict[str, Any]], tail: float) -> bool:
    """The late fall is no bigger than the curve's own jitter: at most twice the median absolute
    second difference of the losses over the last ``2 × tail`` of the fit (a trend — a steady fall
    — has second differences near 0; jitter of sd σ has a median ~1.65σ). A flattened, noisy curve
    finds a new best now and then: the review measured 8 % of such fits flagged at 1 % noise."""
    import math

    import numpy as np

    v = np.array([r["val_loss"] for r in history if math.isfinite(r.get("val_loss", math.nan))])
    if len(v) < 4:
        return False
    k = max(4, math.ceil(len(v) * 2 * tail))
    late = v[: max(1, math.ceil(len(v) * (1 - tail)))].min()
    return bool(late - v.min() <= 2.0 * np.median(np.abs(np.diff(v[-k:], n=2))))


def _falling(history: list[dict[str, Any]], tail: float, z: float = 3.0) -> bool:
    """The losses of the last ``2 × tail`` of the fit still fall as a line: its slope is at least
    ``z`` standard errors below 0, the jitter's sd taken from their second differences (median
    |Δ²| / (0.6745 √6)). A steady fall under jitter makes a new best only now and then, which
    :func:`_within_noise` reads as noise (trial 11's base model: 20,000 of 20,000 steps, best at the
    last, 1.7 % lower in the last fifth — flagged by trial 10's rule, not by the review's); the
    slope of a flattened curve is ~0 however it jitters."""
    import math

    import numpy as np

    v = np.array([r["val_loss"] for r in history if math.isfinite(r.get("val_loss", math.nan))])
    k = max(4, math.ceil(len(v) * 2 * tail))
    if len(v) < k:
        return False
    w, t = v[-k:], np.arange(k) - (k - 1) / 2
    slope = float((t * (w - w.mean())).sum() / (t * t).sum())
    se = float(np.median(np.abs(np.diff(w, n=2)))) / (0.6745 * math.sqrt(6)) / math.sqrt(float((t * t).sum()))
    return slope < 0 and (se == 0 or -slope / se >= z)


def pretrain(model_cfg: ModelConfig, x: np.ndarray, y: np.ndarray, tcfg: TrainConfig, *, n_in: int | None = None,
             n_out: int = 1, standardize_y: bool = True, unlabelled=None, on_epoch=None):
    """A fresh model of ``model_cfg`` (seeded by ``tcfg.seed``, standardised on ``x``/``y``)
    trained on (x, y) to convergence (:func:`pretrain_config`: ``tcfg``'s pretrain budget):
    the first night's base model and ``rsft adapt``'s warm start.
    ``n_in``: the model's input width when it is not ``x``'s (hashed text ids). ``model.kind:
    autoencoder`` first trains its encoder to reconstruct ``unlabelled`` rows (default ``x``),
    then fits the prediction head and encoder on (x, y). Returns (model, FitResult)."""
    from rsft.models import build_autoencoder, build_model, set_standardization
    from rsft.train import fit, pretrain_autoencoder, seed_everything

    tcfg = pretrain_config(tcfg)
    seed_everything(tcfg.seed)  # the initial weights too: the same seed gives the same model
    width = x.shape[1] if n_in is None else n_in
    if model_cfg.kind == "autoencoder" and not model_cfg.import_path:
        rows = x if unlabelled is None else unlabelled
        ae = build_autoencoder(model_cfg, width)
        set_standardization(ae, rows)
        pretrain_autoencoder(ae, rows, tcfg)
        model = ae.with_head(n_out)
    else:
        model = build_model(model_cfg, width, n_out)
    set_standardization(model, x, y if standardize_y else None)
    return model, fit(model, (x, y), tcfg, on_epoch=on_epoch)


def base_model(cfg: PipelineConfig, prefiltered: Prefiltered, on_epoch=None) -> tuple[Any, dict[str, Any]]:
    """The base model pretrained on the (prefiltered, labelled) pool less the target hold-out's
    rows (:func:`rsft.pipeline.data.without_holdout`: a first night's gate judges it on them);
    cached by its inputs, the hold-out files among them."""
    from rsft.features import to_matrix
    from rsft.models import checkpoint, load_checkpoint, model_from_checkpoint, save_checkpoint
    from rsft.pipeline.layout import TARGET_HOLDOUT
    from rsft.pipeline.targets import named_digest

    t = cfg.train
    tcfg = pretrain_config(train_config(cfg))
    key = digest(prefiltered.output, cfg.features.model_dump(mode="json"), cfg.model.model_dump(mode="json"),
                 t.pretrain_rows, tcfg.model_dump(mode="json", exclude=_NOT_BASE), named_digest(cfg, TARGET_HOLDOUT))
    path = pipeline_root(cfg) / "base" / f"{key}.pt"
    if path.exists():
        ck = load_checkpoint(path)
        return model_from_checkpoint(ck), {"base_cached": True, **ck.get("base_fit", {})}
    identity = holdout_identity(cfg)
    x, y = arrays(without_holdout(pool_sample(prefiltered, t.pretrain_rows, t.seed + 1, labelled=cfg.features.label),
                                  identity), cfg.features)
    # model.kind autoencoder: its encoder first learns every kept pool row, labelled or not
    unlabelled = (to_matrix(without_holdout(pool_sample(prefiltered, t.pretrain_rows, t.seed + 1), identity), cfg.features)
                  if cfg.model.kind == "autoencoder" else None)
    n_in, n_out, names = model_io(cfg.features)
    model, result = pretrain(cfg.model, x, y, train_config(cfg), n_in=n_in, n_out=n_out,
                             standardize_y=tcfg.task == "regression", unlabelled=unlabelled, on_epoch=on_epoch)
    # how far it trained (kept in the checkpoint: a cached base model reports it too)
    facts = {"base_rows": int(len(y)), **{f"base_{k}": v for k, v in fit_facts(result).items()}}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(checkpoint(model, cfg.model, n_in, names, {"role": "base", "out_features": n_out,
                                                               "config": resolved(cfg), "base_fit": facts}), path)
    return model, {"base_cached": False, **facts}
