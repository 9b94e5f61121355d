"""The retrain stages as plain functions: config + paths in, a small JSON-able summary out.

Prefect tasks (``tasks/``) wrap these one to one; a notebook can call them directly with no
orchestrator running. Big data never passes through here as values: every stage reads and
writes Parquet under the state directory and returns paths, counts and digests.

Layout under ``<state>/data/<pipeline name>/``::

    sensors/ logs/ target_sample/ target_holdout/   ingested datasets (+ quarantine, manifest)
    prefiltered/<key>.parquet                       kept pool rows, keyed by inputs + rules
    runs/<key>/scorer.pt                            fitted density-ratio scorer
    runs/<key>/chunks/                              per-chunk selections + completion markers
    runs/<key>/selected.parquet                     the selected pool rows
    runs/<key>/report/                              selection report JSON + PNG
    base/<key>.pt                                   base model pretrained on the pool (first run)
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from rsft.config import ContractConfig, PipelineConfig, target_repeats
from rsft.state import StatePaths, state_paths

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------
# paths and keys
# --------------------------------------------------------------------------------------
def pipeline_root(cfg: PipelineConfig) -> Path:
    return state_paths(cfg.state.dir).run_dir(cfg.name)


def tracking_uri(cfg: PipelineConfig) -> str:
    return cfg.state.tracking_uri or state_paths(cfg.state.dir).tracking_uri


def digest(*parts: Any) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(json.dumps(p, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def dataset_digest(dataset_dir: str | Path) -> str:
    """Digest of an ingested dataset = digest of its manifest entries (file digests)."""
    entries = sorted(p.name for p in (Path(dataset_dir) / "_manifest").glob("*.json"))
    return digest(entries)


def _contract(cfg: PipelineConfig, which: str) -> ContractConfig:
    contract = getattr(cfg.ingest, which)
    if contract is None:
        raise ValueError(f"ingest.{which} contract is not configured")
    return contract


# --------------------------------------------------------------------------------------
# ingest
# --------------------------------------------------------------------------------------
def pool_dataset(cfg: PipelineConfig) -> str:
    """The ingested dataset the pipeline selects from: ``sensors``, or ``logs`` for text."""
    return "logs" if cfg.features.kind == "text" else "sensors"


def ingest_sources(cfg: PipelineConfig) -> dict[str, tuple[list[str], str]]:
    """dataset name -> (raw sources, contract name in cfg.ingest). The target sample and hold-out
    follow the pool's contract (sensor rows, or maintenance-log lines for a text pipeline)."""
    pool = pool_dataset(cfg)
    out: dict[str, tuple[list[str], str]] = {}
    if cfg.data.pool:
        out["sensors"] = ([cfg.resolve(p) for p in cfg.data.pool], "sensors")
    if cfg.data.logs and cfg.ingest.logs is not None:
        out["logs"] = ([cfg.resolve(p) for p in cfg.data.logs], "logs")
    out["target_sample"] = ([cfg.resolve(cfg.data.target_sample)], pool)
    out["target_holdout"] = ([cfg.resolve(cfg.data.target_holdout)], pool)
    return out


def ingest_stage(cfg: PipelineConfig) -> dict[str, Any]:
    """Sequential ingest of every dataset (the flow maps files as tasks instead)."""
    from rsft.ingest import ingest

    root = pipeline_root(cfg)
    out: dict[str, Any] = {}
    for name, (sources, contract_name) in ingest_sources(cfg).items():
        files = [f.to_dict() for f in ingest(sources, root / name, _contract(cfg, contract_name), chunk_rows=cfg.ingest.chunk_rows).files]
        out[name] = {**ingest_totals(files, root / name), "dataset": str(root / name), "file_results": files}
    return out


def ingest_totals(files: list[dict[str, Any]], dataset_dir: str | Path | None = None) -> dict[str, Any]:
    """Sum per-file ingest results into a dataset summary (with ``dataset_dir``, also the rows
    quarantined by this run's files per reason: ``quarantine_reasons``)."""
    from rsft.ingest import quarantine_reasons

    keys = ("rows_total", "rows_ok", "rows_quarantined")
    out: dict[str, Any] = {k: sum(int(f.get(k) or 0) for f in files) for k in keys}
    if dataset_dir is not None:
        out["quarantine_reasons"] = quarantine_reasons(
            dataset_dir, [f["digest"] for f in files if f.get("status") == "ok" and f.get("rows_quarantined")])
    out["files"] = len(files)
    out["files_failed"] = [f["error"] for f in files if f.get("status") == "failed"]  # "<file>: <why>"
    out["files_skipped"] = sum(f.get("status") in ("skipped", "duplicate") for f in files)
    return out


def require_targets(ingested: dict[str, Any]) -> None:
    """Stop a retrain whose target sample or hold-out export failed to ingest while no other file
    of it did: the dataset still holds only earlier nights' rows, and training or judging on those
    would promote silently. (A target directory whose old bad file fails every night does not
    stop a night whose new file ingested.)"""
    for name in ("target_sample", "target_holdout"):
        summary = ingested.get(name, {})
        failed = summary.get("files_failed") or []
        fresh = any(f.get("status") == "ok" for f in summary.get("file_results", []))
        if failed and not fresh:
            raise ValueError(f"the {name.replace('_', ' ')} did not ingest ({failed[0]}); the retrain stops rather "
                             "than train or judge on an earlier night's target rows")


def target_groups(cfg: PipelineConfig, target: pl.DataFrame) -> np.ndarray:
    """The adapt search's CV group of every target row: ``adapt.group_by``'s value, or its
    contiguous time block (rows in the frame's order)."""
    from rsft.adapt import time_blocks

    a = cfg.adapt
    if not a.group_by:
        return time_blocks(target.height, a.time_blocks)
    if a.group_by not in target.columns:
        raise ValueError(f"adapt.group_by: the target sample has no column '{a.group_by}'")
    return target.get_column(a.group_by).to_numpy()


def check_adapt(cfg: PipelineConfig) -> None:
    """With ``adapt.enabled``, fail before the pool is touched when the target sample cannot make
    ``adapt.folds`` grouped folds (a missing group column, fewer groups than folds)."""
    if not cfg.adapt.enabled:
        return
    target = load_target(cfg)
    a = cfg.adapt
    n = len(np.unique(target_groups(cfg, target)))
    if n < a.folds:
        raise ValueError(f"adapt.folds={a.folds} but the target sample has only {n} groups"
                         + (f" of {a.group_by}" if a.group_by else f" ({target.height} rows in adapt.time_blocks={a.time_blocks})")
                         + "; use fewer folds")


# --------------------------------------------------------------------------------------
# prefilter
# --------------------------------------------------------------------------------------
def prefilter_stage(cfg: PipelineConfig) -> dict[str, Any]:
    from rsft.ingest import scan_dataset
    from rsft.prefilter import prefilter

    root = pipeline_root(cfg)
    src = root / pool_dataset(cfg)
    derive = rolling_derive(cfg)
    key = digest(dataset_digest(src), cfg.prefilter.model_dump(mode="json"),
                 *([[r.model_dump(mode="json") for r in cfg.features.rolling], cfg.features.group, cfg.features.time_column]
                   if derive else []))
    out = root / "prefiltered" / f"{key}.parquet"
    stats = out.with_suffix(".json")
    if out.exists() and stats.exists():
        log.info("prefilter: reusing %s", out)
        return json.loads(stats.read_text())
    out.parent.mkdir(parents=True, exist_ok=True)
    summary = prefilter(scan_dataset(src), out, cfg.prefilter, derive=derive).to_dict()
    summary["output"] = str(out)
    stats.write_text(json.dumps(summary, indent=2))
    return summary


# --------------------------------------------------------------------------------------
# scorer
# --------------------------------------------------------------------------------------
def hashed_sample(lf: pl.LazyFrame, rows_total: int, rows: int, seed: int) -> pl.LazyFrame:
    """A deterministic ~``rows`` sample of a lazy frame, in one streaming pass (row-hash filter)."""
    if rows_total <= rows:
        return lf
    keep = int(rows / rows_total * 1_000_000) + 1
    return lf.filter(pl.struct("_source", "_row").hash(seed) % 1_000_000 < keep)


def rolling_derive(cfg: PipelineConfig):
    """``features.rolling`` as the prefilter's derived columns (computed on the kept pool rows)."""
    from rsft.features import rolling_feature_exprs
    from rsft.prefilter import Derive

    f = cfg.features
    if not f.rolling:
        return None
    return Derive(tuple(rolling_feature_exprs(f)), f.group, f.time_column, max(r.window for r in f.rolling) - 1)


def load_target(cfg: PipelineConfig, which: str = "target_sample") -> pl.DataFrame:
    """The (small) target sample or hold-out, labelled rows only; with ``features.rolling``, the
    rolling aggregates are computed over all of its readings first (it must be a time series of
    the same machines, like the pool)."""
    from rsft.features import add_rolling_features
    from rsft.ingest import scan_dataset

    lf = scan_dataset(pipeline_root(cfg) / which)
    if cfg.features.rolling:
        have = lf.collect_schema().names()
        missing = [c for c in (cfg.features.group, cfg.features.time_column) if c not in have]
        if missing:
            raise ValueError(f"features.rolling: the {which} has no column(s) {', '.join(missing)}")
        lf = add_rolling_features(lf, cfg.features)
    return lf.filter(pl.col(cfg.features.label).is_not_null()).collect()


def run_key(cfg: PipelineConfig, prefiltered: dict[str, Any]) -> str:
    root = pipeline_root(cfg)
    return digest(
        prefiltered["output"],
        dataset_digest(root / "target_sample"),
        cfg.features.model_dump(mode="json"),
        cfg.scorer.model_dump(mode="json"),
        cfg.sampling.model_dump(mode="json"),
    )


def fit_scorer_stage(cfg: PipelineConfig, prefiltered: dict[str, Any]) -> dict[str, Any]:
    from rsft.density import load_scorer, make_scorer
    from rsft.features import feature_names
    from rsft.sampling import calibrate_log_m

    key = run_key(cfg, prefiltered)
    run_dir = pipeline_root(cfg) / "runs" / key
    run_dir.mkdir(parents=True, exist_ok=True)
    scorer_path = run_dir / "scorer.pt"
    pool = hashed_sample(
        pl.scan_parquet(prefiltered["output"]), prefiltered["rows_out"], cfg.scorer.pool_sample_rows, cfg.scorer.seed
    ).collect()
    target = load_target(cfg)
    if target.height == 0:
        raise ValueError("target sample has no labelled rows after ingest")
    if scorer_path.exists():
        scorer = load_scorer(scorer_path)
    else:
        scorer = make_scorer(cfg.scorer, feature_names(cfg.features))
        scorer.fit_frames(target, pool, cfg.features)
        scorer.save(scorer_path)
    log_w = np.asarray(scorer.log_ratio_frame(pool, cfg.features), dtype=np.float64)
    beta = cfg.sampling.temper
    log_m = calibrate_log_m(beta * log_w, cfg.sampling.m_quantile)
    pool.select("_source", "_row").with_columns(log_w=pl.Series(log_w)).write_parquet(run_dir / "pool_sample_logw.parquet")
    return {
        "run_key": key,
        "run_dir": str(run_dir),
        "scorer_path": str(scorer_path),
        "scorer": cfg.scorer.kind,
        "log_m": float(log_m),
        "pool_sample_rows": pool.height,
        "target_rows": target.height,
        "diagnostics": scorer.diagnostics(),
    }


def select_stage(cfg: PipelineConfig, prefiltered: dict[str, Any], scored: dict[str, Any]) -> dict[str, Any]:
    """Sequential chunked selection (the flow maps chunks as tasks instead)."""
    from rsft.sampling import select

    run_dir = Path(scored["run_dir"])
    return select(
        prefiltered["output"], scored["scorer_path"], cfg.features, cfg.sampling, str(run_dir / "chunks"),
        log_m=scored["log_m"], out_path=str(run_dir / "selected.parquet"),
    ).to_dict()


def retrain_local(cfg: PipelineConfig) -> dict[str, Any]:
    """The whole retrain without an orchestrator (notebooks, debugging): same stages, in order."""
    from rsft.summary import run_summary

    ingested = ingest_stage(cfg)
    require_targets(ingested)
    check_adapt(cfg)
    prefiltered = prefilter_stage(cfg)
    scored = fit_scorer_stage(cfg, prefiltered)
    selection = select_stage(cfg, prefiltered, scored)
    report = report_stage(cfg, prefiltered, scored, selection)
    result = finetune_register_stage(cfg, ingested[pool_dataset(cfg)], prefiltered, scored, selection, report)
    sel = {"prefilter": prefiltered, "scorer": scored, "selection": selection, "report": report}
    return run_summary(cfg, ingested, sel, result)


def report_stage(cfg: PipelineConfig, prefiltered: dict[str, Any], scored: dict[str, Any], selection: dict[str, Any]) -> dict[str, Any]:
    from rsft.report import selection_report

    run_dir = Path(scored["run_dir"])
    sample = pl.read_parquet(run_dir / "pool_sample_logw.parquet")
    pool = hashed_sample(
        pl.scan_parquet(prefiltered["output"]), prefiltered["rows_out"], cfg.scorer.pool_sample_rows, cfg.scorer.seed
    ).collect()
    pool = pool.join(sample, on=["_source", "_row"], how="inner")
    selected = pl.read_parquet(selection["output"])
    if selected.height > 50_000:
        selected = selected.sample(50_000, seed=cfg.sampling.seed)
    return selection_report(
        load_target(cfg), pool, selected, cfg.features, pool.get_column("log_w").to_numpy(), run_dir / "report"
    )


# --------------------------------------------------------------------------------------
# training data
# --------------------------------------------------------------------------------------
def training_frame(cfg: PipelineConfig, selected_path: str | None) -> tuple[pl.DataFrame, dict[str, int]]:
    """Selected pool rows (labelled) + the target sample repeated ``target_weight`` times."""
    from rsft.features import rolling_names

    label = cfg.features.label
    inputs = ([cfg.features.text_column] if cfg.features.kind == "text"
              else [*cfg.features.numeric, *rolling_names(cfg.features), *cfg.features.categorical])
    cols = list(dict.fromkeys([*inputs, label]))
    parts, counts = [], {}
    if selected_path:
        sel = pl.scan_parquet(selected_path)
        n_all = sel.select(pl.len()).collect().item()
        sel = sel.filter(pl.col(label).is_not_null()).select(cols).collect()
        counts["selected_rows"] = n_all
        counts["selected_unlabelled"] = n_all - sel.height
        parts.append(sel)
    if cfg.train.include_target_sample or not parts:
        tgt = load_target(cfg).select(cols)
        reps = target_repeats(cfg.train.target_weight)
        parts += [tgt] * reps
        counts["target_rows"] = tgt.height * reps
    df = pl.concat(parts, how="vertical_relaxed")
    counts["train_rows"] = df.height
    return df, counts


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

    label = cfg.features.label
    cols = [*feature_exprs(cfg.features), pl.col(label).cast(pl.Float32)]
    sel = pl.scan_parquet(selected_path)
    n_all = sel.select(pl.len()).collect().item()
    parts = [sel.filter(pl.col(label).is_not_null()).select(cols)]
    counts = {"selected_rows": n_all}
    if cfg.train.include_target_sample:
        tgt = load_target(cfg).select(cols)
        reps = target_repeats(cfg.train.target_weight)
        parts += [tgt.lazy()] * reps
        counts["target_rows"] = tgt.height * reps
    path = out_dir / "train.parquet"
    tmp = path.with_name(".train.parquet.tmp")
    pl.concat(parts, how="vertical_relaxed").sink_parquet(tmp, row_group_size=65_536)
    tmp.replace(path)
    stream = ParquetStream(path, feature_names(cfg.features), label, batch_size=cfg.train.batch_size, seed=cfg.train.seed)
    counts["train_rows"] = stream.num_rows
    counts["selected_unlabelled"] = n_all - (stream.num_rows - counts.get("target_rows", 0))
    counts["streamed"] = 1
    return stream, counts


def pool_train_frame(cfg: PipelineConfig, prefiltered: dict[str, Any]) -> pl.DataFrame:
    label = cfg.features.label
    lf = pl.scan_parquet(prefiltered["output"]).filter(pl.col(label).is_not_null())
    return hashed_sample(lf, prefiltered["rows_out"], cfg.train.pretrain_rows, cfg.train.seed + 1).collect()


def arrays(df: pl.DataFrame, cfg: PipelineConfig) -> tuple[np.ndarray, np.ndarray]:
    from rsft.features import labels, to_matrix

    return to_matrix(df, cfg.features), labels(df, cfg.features)


def state(cfg: PipelineConfig) -> StatePaths:
    return state_paths(cfg.state.dir)


def model_io(cfg: PipelineConfig) -> tuple[int, int, list[str]]:
    """(in_features, out_features, input names) of the pipeline's model: features → 1 value,
    or → ``len(classes)`` logits; a text model reads ``text_buckets`` hashed n-gram ids."""
    from rsft.features import feature_names

    out = len(cfg.features.classes) or 1
    if cfg.features.kind == "text":
        return cfg.features.text_buckets, out, [cfg.features.text_column]
    names = feature_names(cfg.features)
    return len(names), out, names


def train_config(cfg: PipelineConfig):
    """train.* with the task implied by the labels (class names → classification)."""
    return cfg.train.model_copy(update={"task": "classification" if cfg.features.classes else "regression"})


def evaluate_frame(model, df: pl.DataFrame, cfg: PipelineConfig) -> dict[str, float]:
    """Task metrics of ``model`` on a labelled frame (the same function for champion and challenger)."""
    from rsft.evaluate import evaluate_model

    df = df.filter(pl.col(cfg.features.label).is_not_null())
    x, y = arrays(df, cfg)
    return evaluate_model(model, x, y, train_config(cfg).task)


# --------------------------------------------------------------------------------------
# fine-tune, evaluate, register, promote
# --------------------------------------------------------------------------------------
def _base_model(cfg: PipelineConfig, prefiltered: dict[str, Any], on_epoch=None):
    """The base model pretrained on the (prefiltered, labelled) pool; cached by its inputs."""
    from rsft.models import build_model, checkpoint, load_checkpoint, model_from_checkpoint, save_checkpoint, set_standardization
    from rsft.train import fit, seed_everything

    key = digest(prefiltered["output"], cfg.features.model_dump(mode="json"), cfg.model.model_dump(mode="json"),
                 cfg.train.pretrain_rows, cfg.train.pretrain_epochs, cfg.train.seed)
    path = pipeline_root(cfg) / "base" / f"{key}.pt"
    if path.exists():
        return model_from_checkpoint(load_checkpoint(path)), {"base_cached": True}
    x, y = arrays(pool_train_frame(cfg, prefiltered), cfg)
    n_in, n_out, names = model_io(cfg)
    tcfg = train_config(cfg).model_copy(update={"epochs": cfg.train.pretrain_epochs, "freeze": []})
    seed_everything(cfg.train.seed)
    model = build_model(cfg.model, n_in, n_out)
    set_standardization(model, x, y if tcfg.task == "regression" else None)
    result = fit(model, (x, y), tcfg, on_epoch=on_epoch)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(checkpoint(model, cfg.model, n_in, names, {"role": "base", "out_features": n_out}), path)
    return model, {"base_cached": False, "base_rows": int(len(y)), "base_epochs": result.epochs_run}


def finetune_register_stage(
    cfg: PipelineConfig,
    ingested: dict[str, Any],
    prefiltered: dict[str, Any],
    scored: dict[str, Any],
    selection: dict[str, Any],
    report: dict[str, Any] | None,
    on_epoch=None,
    map_units=None,
) -> dict[str, Any]:
    """Warm start, fine-tune the challenger, score it and the champion on the same hold-out,
    log everything to one MLflow run, register the challenger, and promote it if it wins.
    ``map_units``: how the adapt search's CV units run (``rsft.adapt.Search.run``)."""
    import copy

    import mlflow

    from rsft import registry
    from rsft.models import checkpoint, load_checkpoint, model_from_checkpoint, save_checkpoint
    from rsft.train import fit

    name = cfg.promotion.model_name
    paths = state(cfg)
    mlc = registry.client(tracking_uri(cfg))
    registry.use_experiment(cfg.state.experiment, None if cfg.state.tracking_uri else paths.artifacts)
    run_dir = Path(scored["run_dir"])
    n_in, n_out, names = model_io(cfg)
    pool_name = pool_dataset(cfg)
    holdout = load_target(cfg, "target_holdout")
    pool_eval = pool_train_frame(cfg, prefiltered).head(5_000)

    champ = registry.alias_version(mlc, name)
    with mlflow.start_run(run_name=f"retrain-{cfg.name}-{scored['run_key'][:8]}") as run:
        mlflow.set_tags({"rsft.pipeline": cfg.name, "rsft.run_key": scored["run_key"], **registry.environment_tags()})
        registry.log_flat_params(cfg.flat())
        mlflow.log_text(cfg_yaml(cfg), "config/resolved.yaml")
        registry.log_json({"ingest": ingested, "prefilter": prefiltered, "scorer": scored, "selection": selection}, "lineage/summary.json")
        mlflow.log_artifact(scored["scorer_path"], "scorer")
        root = pipeline_root(cfg)
        registry.log_dataset_inputs({
            "pool-ingested": (str(root / pool_name), dataset_digest(root / pool_name)),
            "pool-prefiltered": (prefiltered["output"], digest(prefiltered["output"], prefiltered["rows_out"])),
            "selected": (selection["output"], digest(selection["output"], selection["rows_out"])),
            "target-sample": (str(root / "target_sample"), dataset_digest(root / "target_sample")),
        })
        registry.log_dataset_inputs(
            {"target-holdout": (str(root / "target_holdout"), dataset_digest(root / "target_holdout"))}, context="evaluation")
        if report:
            mlflow.log_artifacts(str(run_dir / "report"), "selection_report")
        mlflow.log_metrics(
            {
                "rows_ingested": ingested.get("rows_ok", 0),
                "rows_quarantined": ingested.get("rows_quarantined", 0),
                "rows_prefiltered": prefiltered["rows_out"],
                "rows_selected": selection["rows_out"],
                "acceptance_rate": selection["acceptance_rate"],
                "ideal_acceptance": selection.get("ideal_acceptance") if selection.get("ideal_acceptance") is not None else float("nan"),
                "clipped_share": selection.get("clipped_share", 0.0),
            }
        )

        # ---- warm start -----------------------------------------------------------
        if champ is not None:
            start = model_from_checkpoint(load_checkpoint(registry.download_checkpoint(mlc, champ)))
            warm = {"warm_start": f"models:/{name}/{champ.version}"}
        else:
            start, warm = _base_model(cfg, prefiltered, on_epoch=None)
            warm["warm_start"] = "base"
        mlflow.set_tags({f"rsft.{k}": str(v) for k, v in warm.items()})

        # ---- fine-tune (one recipe) or choose a recipe by grouped CV (adapt) -----------
        def _on_epoch(row: dict) -> None:
            mlflow.log_metrics({k: float(v) for k, v in row.items() if k != "epoch" and v is not None}, step=int(row["epoch"]))
            if on_epoch:
                on_epoch(row)

        def fine_tune(fcfg: PipelineConfig):
            """The warm start fine-tuned on the sampling stage's selection + the target sample
            (``fcfg.train``'s include_target_sample / target_weight): the plain retrain's fit."""
            if streams_training(fcfg, selection["rows_out"]):
                train, counts = training_stream(fcfg, selection["output"], run_dir)
            else:
                train_df, counts = training_frame(fcfg, selection["output"])
                train = arrays(train_df, fcfg)
            model = copy.deepcopy(start)
            # checkpoints resume an interrupted fit of *this* warm start (and train config) only
            ckpt_dir = run_dir / f"train-{digest(warm['warm_start'], fcfg.train.model_dump(mode='json'))}"
            return model, fit(model, train, train_config(fcfg), checkpoint_dir=ckpt_dir, on_epoch=_on_epoch), counts

        example = arrays(holdout.head(5), cfg)[0]
        adapt_report = None
        if cfg.adapt.enabled:
            full: dict[str, Any] = {}

            def at_full_scale(c) -> tuple[Any, dict[str, Any]] | None:
                """An rsft choice with the sampling stage's settings (rejection mode, its β and M
                quantile) is that stage's recipe: train it on the stage's selection from the whole
                pool, not on the search's pool sample. Any other choice: None (pool sample)."""
                if not is_sampling_recipe(c, cfg):
                    return None
                fcfg = cfg.model_copy(update={"train": cfg.train.model_copy(
                    update={"include_target_sample": True, "target_weight": c.target_share})})
                model, full["result"], full["counts"] = fine_tune(fcfg)
                n = full["counts"]
                pool_rows = n["train_rows"] - n.get("target_rows", 0)
                return model, {"trained_on": f"the sampling stage's selection ({pool_rows:,} labelled rows of the "
                                             f"whole pool) + the target sample ×{target_repeats(c.target_share)}",
                               "pool_rows": pool_rows, "train_rows": n["train_rows"]}

            challenger, adapt_report = adapt_stage(cfg, start, prefiltered, map_units, final_fit=at_full_scale)
            result = full.get("result")
            counts = {**full.get("counts", {"train_rows": adapt_report["final"]["train_rows"]}),
                      "adapt_candidates": len(adapt_report["candidates"])}
        else:
            challenger, result, counts = fine_tune(cfg)
        mlflow.log_metrics({k: float(v) for k, v in counts.items()})

        # ---- evaluate on the same hold-out ------------------------------------------
        ch_metrics = evaluate_frame(challenger, holdout, cfg)
        start_metrics = evaluate_frame(start, holdout, cfg)
        ch_pool = evaluate_frame(challenger, pool_eval, cfg)
        start_pool = evaluate_frame(start, pool_eval, cfg)
        mlflow.log_metrics({f"holdout_{k}": float(v) for k, v in ch_metrics.items()})
        mlflow.log_metrics({f"warmstart_holdout_{k}": float(v) for k, v in start_metrics.items()})
        mlflow.log_metrics({f"pool_{k}": float(v) for k, v in ch_pool.items()})

        # ---- register + promote (one process at a time) ------------------------------
        ckpt_path = run_dir / "challenger.pt"
        save_checkpoint(checkpoint(challenger, cfg.model, n_in, names,
                                   {"role": "challenger", "run_key": scored["run_key"], "out_features": n_out}), ckpt_path)
        tags = {
            "rsft.run_key": scored["run_key"],
            "rsft.data_digest": dataset_digest(pipeline_root(cfg) / pool_name),
            "rsft.target_digest": dataset_digest(pipeline_root(cfg) / "target_sample"),
            "rsft.rows_selected": str(selection["rows_out"]),
            "rsft.acceptance_rate": f"{selection['acceptance_rate']:.6g}",
            # the recipe that produced this version (the audit trail shows it): the search's choice,
            # or the plain retrain's rejection-sampled fine-tune
            "rsft.recipe": adapt_report["chosen"] if adapt_report else f"rsft ({cfg.sampling.mode} sampling)",
            **registry.environment_tags(),
        }
        # the search concluded that no candidate beats the champion: the challenger *is* the
        # champion, so nothing new is registered; the night is an event on the champion's trail
        kept = adapt_report is not None and adapt_report["chosen"] == "keep_champion" and champ is not None
        with registry.registry_lock(paths.locks, name):
            current = registry.alias_version(mlc, name)
            if kept and current is not None and current.version == champ.version:
                version, champ_metrics = None, start_metrics
                m = cfg.promotion.metric
                decision = registry.Decision(False, f"the adaptation search kept the champion: {adapt_report['why']}",
                                             m, float(ch_metrics[m]), float(start_metrics[m]))
                registry.record_event(mlc, name, current.version,
                                      f"kept by retrain {scored['run_key'][:8]} (no model registered): {adapt_report['why']}")
            else:
                version = registry.log_model_version(challenger, ckpt_path, example, name, tags)
                if current is None:
                    champ_metrics, champ_pool = None, None
                elif champ is not None and current.version == champ.version:
                    champ_metrics, champ_pool = start_metrics, start_pool
                else:  # the champion moved while we trained: judge against the new one
                    newer = model_from_checkpoint(load_checkpoint(registry.download_checkpoint(mlc, current)))
                    champ_metrics = evaluate_frame(newer, holdout, cfg)
                    champ_pool = evaluate_frame(newer, pool_eval, cfg)
                decision = registry.decide(cfg.promotion, ch_metrics, champ_metrics, holdout.height, ch_pool, champ_pool)
                registry.record_decision(mlc, name, version, decision)
                if decision.promote:
                    registry.move_champion(mlc, name, version, current.version if current else None)
        mlflow.set_tags({"rsft.decision": "promoted" if decision.promote else ("kept-champion" if version is None else "rejected"),
                         "rsft.reason": decision.reason})
        registry.log_json(decision.to_dict(), "decision.json")
        run_id = run.info.run_id

    return {
        "run_id": run_id,
        "model_name": name,
        "version": version,
        "promoted": decision.promote,
        "reason": decision.reason,
        "metric": cfg.promotion.metric,
        "challenger": ch_metrics,
        "champion": champ_metrics,
        "warm_start": warm["warm_start"],
        "train": {**counts, **({"epochs_run": result.epochs_run, "best_epoch": result.best_epoch,
                                "stopped_early": result.stopped_early} if result else {})},
        "adapt": adapt_report,
        "holdout_rows": holdout.height,
        "champion_version": version if decision.promote else (current.version if current else None),
        "tracking_uri": tracking_uri(cfg),
    }


def is_sampling_recipe(c, cfg: PipelineConfig) -> bool:
    """Whether adapt candidate ``c`` is the sampling stage's own recipe: rsft by rejection with
    that stage's tempering β and M quantile (its selection is then the candidate's pool rows)."""
    sp = cfg.sampling
    return c.strategy == "rsft" and sp.mode == "rejection" and c.beta == sp.temper and c.m_quantile == sp.m_quantile


def adapt_stage(cfg: PipelineConfig, warm, prefiltered: dict[str, Any], map_units=None, final_fit=None):
    """Choose tonight's recipe by grouped CV on the target sample; every candidate is a nested
    MLflow run; returns (the chosen recipe's model, report): retrained on the whole target sample
    (+ its pool rows from the search's pool sample), or by ``final_fit`` at full scale
    (``rsft.adapt.run_search``; ``report["final"]`` says which)."""
    import mlflow

    from rsft.adapt import PoolSample, candidate_table, plot_candidates, run_search
    from rsft.features import feature_names

    target = load_target(cfg)
    if "ts" in target.columns:  # time blocks need time order
        target = target.sort("ts")
    xt, yt = arrays(target, cfg)
    a = cfg.adapt
    groups = target_groups(cfg, target)
    pool_df = hashed_sample(
        pl.scan_parquet(prefiltered["output"]).filter(pl.col(cfg.features.label).is_not_null()),
        prefiltered["rows_out"], a.pool_rows, cfg.train.seed + 2,
    ).collect()
    xp, yp = arrays(pool_df, cfg)
    model, report = run_search(a, cfg.train, cfg.scorer, feature_names(cfg.features), warm, (xt, yt, groups),
                               PoolSample(xp, yp), seed=cfg.train.seed, map_units=map_units, final_fit=final_fit)
    for row in report["candidates"]:
        with mlflow.start_run(run_name=f"candidate: {row['name']}", nested=True):
            mlflow.set_tags({"rsft.candidate": row["name"], "rsft.strategy": row["strategy"],
                             "rsft.chosen": str(row["name"] == report["chosen"]),
                             **({"rsft.eliminated": row["eliminated"]} if row.get("eliminated") else {})})
            if row["fold_losses"]:
                mlflow.log_metrics({"cv_rmse_mean": row["cv_loss_mean"], "cv_rmse_se": row["cv_loss_se"],
                                    "pool_rows": row["pool_rows_mean"], "seconds": row["seconds"]})
    mlflow.log_text(json.dumps(report, indent=2, default=float), "adapt/report.json")
    with tempfile.TemporaryDirectory() as d:
        mlflow.log_artifact(plot_candidates(report, os.path.join(d, "candidates.png")), "adapt")
    mlflow.log_text("\n".join(json.dumps(r) for r in candidate_table(report)), "adapt/candidates.jsonl")
    mlflow.set_tags({"rsft.adapt_chosen": report["chosen"], "rsft.adapt_why": report["why"][:250],
                     "rsft.adapt_trained_on": report["final"]["trained_on"][:250]})
    return model, report


def cfg_yaml(cfg: PipelineConfig) -> str:
    import yaml

    return yaml.safe_dump(cfg.model_dump(mode="json", exclude={"base_dir"}), sort_keys=False)
