"""The night's model step: warm start → fine-tune (or the adaptation search) → evaluate the
challenger and the champion on the same hold-out → register → gate → aliases, in one MLflow run.

Composition only: training lives in :mod:`rsft.pipeline.training`, the search in
:mod:`rsft.pipeline.adapt`, every MLflow call in :mod:`rsft.tracking`.
"""

from __future__ import annotations

import dataclasses

import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import polars as pl

from rsft.config import PipelineConfig, target_repeats
from rsft.fsio import temp_path
from rsft.ingest.manifest import dataset_digest
from rsft.pipeline.adapt import adapt_stage, is_sampling_recipe
from rsft.pipeline.data import load_target, pool_sample
from rsft.pipeline.layout import (
    TARGET_HOLDOUT,
    TARGET_SAMPLE,
    cfg_yaml,
    pipeline_root,
    pool_dataset,
    state,
    tracking_uri,
)
from rsft.pipeline.lineage import night_key, night_lineage
from rsft.pipeline.results import DatasetIngest, Finetuned, Selection
from rsft.pipeline.targets import named_digest, named_files
from rsft.pipeline.training import (
    arrays,
    base_model,
    constant_scores,
    linear_scores,
    evaluate_frame,
    fine_tune,
    fit_facts,
    model_io,
    resolved,
)
from rsft.tracking import lineage, promotion, registry, runs, serving


def finetune_stage(cfg: PipelineConfig, ingested: DatasetIngest | None, selection: Selection,
                   started: float | None = None, on_epoch: Callable[[dict], None] | None = None, map_units=None) -> Finetuned:
    """Warm start, fine-tune the challenger (or choose its recipe by grouped CV with
    ``adapt.enabled``; ``map_units`` runs the CV units), score it and the champion on the same
    hold-out, log everything to one MLflow run, register the challenger, promote it if it wins.
    ``started`` (epoch seconds): when the night began, the run's start time (default: now), so the
    run's duration in the MLflow UI is the night's."""
    name, scored = cfg.promotion.model_name, selection.scored
    mlc = registry.client(tracking_uri(cfg))
    holdout = load_target(cfg, TARGET_HOLDOUT)
    artifacts = None if cfg.state.tracking_uri else str(state(cfg).artifacts)
    night_id = night_key(cfg, scored.run_key)
    sample = load_target(cfg, TARGET_SAMPLE)
    ran = datetime.fromtimestamp(started or time.time(), timezone.utc).date()
    newest = newest_day((sample, holdout), cfg.features.time_column)  # the night's data date: its name, tag, warnings
    night, day = night_label(ran, newest), night_date(ran, newest)
    recorded = promotion.recorded_night(mlc, state(cfg).locks, name, night_id)
    if recorded is not None:  # this night (same inputs and config) is decided: nothing to train or register
        runs.close_stale_runs(registry.use_experiment(cfg.state.experiment, artifacts))
        return _recorded(cfg, recorded, holdout.height, day)
    t = cfg.train
    pool_eval = pool_sample(selection.prefiltered, t.pretrain_rows, t.seed + 1, labelled=cfg.features.label).head(5_000)
    seen = registry.alias_version(mlc, name)
    with runs.night_run(cfg.state.experiment, artifacts, f"{cfg.name} {night} (running)",
                        {"rsft.pipeline": cfg.name, "rsft.run_key": scored.run_key}, cfg.flat(), cfg_yaml(cfg),
                        started=started, metric=cfg.promotion.metric) as run_id:
        _log_inputs(cfg, ingested, selection)
        start, warm = _warm_start(cfg, mlc, seen, selection)
        runs.set_tags({f"rsft.{k}": v for k, v in warm.items()})
        challenger, result, counts, search = _train_challenger(cfg, start, warm["warm_start"], selection,
                                                               runs.epoch_logger(on_epoch), map_units)
        runs.log_metrics(_train_metrics(counts))
        if result is not None and result.history:
            runs.log_plot(lambda path: _curves(result, path, warm["warm_start"]), "training/curves.png")

        scores = {"challenger": (evaluate_frame(challenger, holdout, cfg), evaluate_frame(challenger, pool_eval, cfg)),
                  "start": (evaluate_frame(start, holdout, cfg), evaluate_frame(start, pool_eval, cfg))}
        runs.log_metrics(scores["challenger"][0], "challenger_holdout_")
        runs.log_metrics(scores["start"][0], "warm_start_holdout_")
        runs.log_metrics(scores["challenger"][1], "challenger_pool_")

        def score(version) -> promotion.Scores:
            model = registry.load_version_model(mlc, version)
            return evaluate_frame(model, holdout, cfg), evaluate_frame(model, pool_eval, cfg)

        constant, linear = constant_scores(cfg, sample, holdout), linear_scores(cfg, sample, holdout)
        if constant:
            runs.log_metrics(constant, "constant_holdout_")
        if linear:
            runs.log_metrics(linear, "linear_holdout_")
        kept = search["why"] if search is not None and search["chosen"] == "keep_champion" and seen is not None else None
        # first night: it must beat the base model it started from (unless it is that model: the
        # search kept it, there being no champion to keep) — and when it does not but the base model
        # passes the gate, the base model is the night's version: the plant gets a champion
        base = scores["start"] if seen is None and not (search and search["chosen"] == "keep_champion") else None
        lost = base is not None and _base_instead(cfg.promotion, scores, holdout.height, _diverged(result), constant)
        model, night_scores = (start, scores["start"]) if lost else (challenger, scores["challenger"])
        candidate = _challenger(cfg, model, holdout, night_scores, selection, search, base_instead=lost,
                                data_to=newest, first_night=seen is None)
        try:
            outcome = promotion.register_and_gate(
                mlc, state(cfg).locks, name, cfg.promotion, candidate,
                holdout.height, seen, scores["start"] if seen is not None else None, score,
                keep_reason=kept, run_label=scored.run_key[:8], base_scores=None if lost else base,
                diverged=None if lost else _diverged(result), night=night_id, run_id=run_id, constant=constant,
                preface=_lost_preface(cfg.promotion.metric, scores) if lost else "", night_name=night)
        finally:  # a registered version holds its own copy (checkpoint/model.pt)
            Path(candidate.checkpoint_path).unlink(missing_ok=True)
        # the version's lineage tags are written by the run that registered it (a concurrent run of
        # the same night that found its version would race it on the same tags)
        lineage.record(mlc, run_id, night_lineage(cfg, selection, counts, search), name,
                       None if outcome.recorded_by else outcome.version, night_scores[0])
        runs.log_decision(outcome.decision, outcome.version is not None)
        if outcome.challenger_scores:  # the version a killed run of this night registered, as judged
            runs.log_metrics(outcome.challenger_scores, "registered_holdout_")
        if outcome.champion_scores:
            runs.log_metrics(outcome.champion_scores, "champion_holdout_")
        if linear and (z := _linear_z(cfg.promotion.metric, linear, outcome, night_scores[0])) is not None:
            linear["z_vs_champion"] = z  # a re-run of this night reads it back (it has no per-row outputs)
            runs.log_metrics({"z_vs_champion": z}, "linear_holdout_")

    fit_stats = ({**fit_facts(result), "epochs_run": result.epochs_run, "best_epoch": result.best_epoch,
                  "diverged": result.diverged} if result else {})
    if outcome.recorded_by:  # a concurrent run of this night registered and decided meanwhile: its story stands
        runs.describe_run(run_id, f"{cfg.name} {night} already decided v{outcome.version}",
                          f"A concurrent run of this night (MLflow run {outcome.recorded_by}) registered "
                          f"v{outcome.version} and decided it; this run registered nothing.")
    out = Finetuned(
        run_id=outcome.recorded_by or run_id, model_name=name, version=outcome.version, promoted=outcome.decision.promote,
        reason=outcome.decision.reason, metric=cfg.promotion.metric,
        challenger=outcome.challenger_scores or night_scores[0],
        champion=outcome.champion_scores, warm_start=warm["warm_start"],
        train={**counts, **fit_stats, **{k: v for k, v in warm.items() if k.startswith("base_")}},
        adapt=search, holdout_rows=holdout.height, champion_version=outcome.champion_after, tracking_uri=tracking_uri(cfg),
        ui_url=cfg.state.ui_url, recorded=outcome.recorded_by is not None, constant=constant, linear=linear,
        fine_tune_lost=scores["challenger"][0] if lost else None, base=scores["start"][0] if seen is None else None,
        night_date=day)
    if not out.recorded:
        out = dataclasses.replace(out, title=_describe(cfg, mlc, night, ingested, selection, out))
    return out


def _linear_z(metric: str, linear, outcome, challenger) -> float | None:
    """How many standard errors of the paired difference the linear reference beats the champion
    after tonight's decision by (negative: it is worse), where both were scored row by row."""
    from rsft.paired import paired_z

    champ = (outcome.challenger_scores or challenger) if outcome.decision.promote else outcome.champion_scores
    z = paired_z(metric, linear, champ)
    return None if z is None else round(z, 4)


def night_label(started, newest) -> str:
    """The night's name in its MLflow run and story: the date it ran, and where ``newest`` (the day
    of the newest reading of the night's target sample and hold-out, :func:`newest_day`) is older
    than the day before, the date of the data it was judged on — a backfill of 54 nights run on one
    day (trial 9) had 54 runs of the same name; the sample alone ends before its hold-out (trial
    10: "data to 02-08" for the night of 02-10)."""
    day, last = started.isoformat(), _backfilled(started, newest)
    return day if last is None else f"{day} (data to {last.isoformat()})"


def night_date(started, newest) -> str:
    """The night's date (ISO), as its warnings are dated night to night: :func:`night_label`'s
    "(data to …)" date in a backfill, else the day it ran (trial 10: every night of a backfill run
    on one day said its warnings were "unchanged since" that day)."""
    return (_backfilled(started, newest) or started).isoformat()


def _backfilled(started, newest):
    """``newest`` where it is older than the day before ``started`` (a backfill's night), else None."""
    return None if newest is None or (started - newest).days <= 1 else newest


def newest_day(frames, time_column: str):
    """The day of the newest reading in ``frames`` (a frame or several), or None where they have
    no dated ``time_column``."""
    newest = [d.get_column(time_column).max() for d in ([frames] if isinstance(frames, pl.DataFrame) else frames)
              if time_column in d.columns and d.height
              and (d.schema[time_column] == pl.Date or isinstance(d.schema[time_column], pl.Datetime))]
    return max((x.date() if isinstance(x, datetime) else x for x in newest if x is not None), default=None)


def _recorded(cfg: PipelineConfig, outcome: promotion.Outcome, holdout_rows: int, day: str | None = None) -> Finetuned:
    """A decided night, as its deciding MLflow run recorded it (hold-out metrics, training rows,
    warm start; the decision's own figures where the run was killed before logging them)."""
    metrics, tags = runs.night_record(outcome.recorded_by) if outcome.recorded_by else ({}, {})
    d = outcome.decision

    def prefixed(prefix: str) -> dict[str, float]:
        return {k.removeprefix(prefix): v for k, v in metrics.items() if k.startswith(prefix)}

    challenger = prefixed("registered_holdout_") or prefixed("challenger_holdout_") or {d.metric: d.challenger}
    warm = tags.get("rsft.warm_start", "")
    return Finetuned(
        run_id=outcome.recorded_by, model_name=cfg.promotion.model_name, version=outcome.version, promoted=d.promote,
        reason=d.reason, metric=cfg.promotion.metric, challenger=challenger,
        champion=prefixed("champion_holdout_") or outcome.champion_scores, warm_start=warm,
        train={"train_rows": int(metrics.get("train_rows", 0))}, adapt=None, holdout_rows=holdout_rows,
        champion_version=outcome.champion_after, tracking_uri=tracking_uri(cfg), ui_url=cfg.state.ui_url,
        recorded=True,
        # (trial 7) the figures beside the decision, as the deciding run logged them: the constant
        # prediction's, the linear reference's, and a first night's base model's
        constant=prefixed("constant_holdout_") or None, linear=prefixed("linear_holdout_") or None, base=(prefixed("warm_start_holdout_") or None) if warm == "base" else None,
        night_date=day)


# --------------------------------------------------------------------------------------
# the steps
# --------------------------------------------------------------------------------------
def _log_inputs(cfg: PipelineConfig, ingested: DatasetIngest | None, selection: Selection) -> None:
    """Stage summaries, scorer, selection report and the data metrics."""
    pre, sel = selection.prefiltered, selection.selected
    runs.log_lineage(
        {"ingest": ingested.to_dict() if ingested else {}, "prefilter": pre.to_dict(), "scorer": selection.scored.to_dict(),
         "selection": sel.to_dict()},
        selection.scored.scorer_path,
        str(Path(selection.scored.run_dir) / "report") if selection.report else None,
    )  # the datasets, in order with row counts: rsft.tracking.lineage.record at the end of the run
    report = selection.report or {}
    per = report.get("per_feature") or {}
    runs.log_metrics({
        "rows_ingested_new": ingested.rows_ok if ingested else 0,  # pool rows from tonight's new files
        "rows_quarantined_new": ingested.rows_quarantined if ingested else 0,
        "rows_pool": pre.rows_in,  # every ingested pool row, all nights (the prefilter's input)
        "rows_kept": pre.rows_out,  # kept by the prefilter
        "rows_selected": sel.rows_out,
        "acceptance_rate": sel.acceptance_rate,  # rows_selected / rows_kept
        "ideal_acceptance": sel.ideal_acceptance,
        "clipped_share": sel.clipped_share,
        "ess": report.get("ess"),  # effective sample size of the pool sample's weights
        # numeric features: how far the selection is from the target (text has none: not logged)
        **({"auc_selected_vs_target": report["auc_selected_vs_target"],  # 0.5 = indistinguishable
            "ks_max_selected_vs_target": max((abs(v["ks_selected_vs_target"]) for v in per.values()), default=None)}
           if report.get("auc_selected_vs_target") is not None else {}),
        # text: the hashed n-gram KL to the target, of the pool and of the selection (nats)
        **({"text_kl_target_pool": text["kl_target_pool"], "text_kl_target_selected": text["kl_target_selected"]}
           if (text := report.get("text")) else {}),
    })


def _train_metrics(counts: dict[str, Any]) -> dict[str, Any]:
    """The final fit's row counts under names that say what they count."""
    names = {"train_rows": "train_rows", "target_rows": "train_rows_target_repeated",
             "selected_rows": None, "selected_unlabelled": "train_selected_unlabelled_dropped",
             "streamed": "train_streamed", "adapt_candidates": "adapt_candidates", "holdout_no_spans": None}
    return {names.get(k, f"train_{k}"): v for k, v in counts.items() if names.get(k, "") is not None}


def _describe(cfg: PipelineConfig, mlc, night: str, ingested: DatasetIngest | None, selection: Selection,
              out: Finetuned) -> str:
    """Name the night's run after its decision and give it, the model and the version a description;
    returns the name."""
    from rsft.pipeline.summary import night_story

    decision = ("promoted" if out.promoted else "rejected" if out.version else "kept champion")
    version = out.version or out.champion_version
    title = f"{cfg.name} {night} {decision}" + (f" v{version}" if version else "")
    story = night_story(cfg, night, ingested, selection, out)
    runs.describe_run(out.run_id, title, story)
    registry.describe(mlc, out.model_name, out.version,
                      f"rsft model of pipeline '{cfg.name}': predicts {cfg.features.label} from "
                      f"{len(model_io(cfg.features)[2])} inputs; retrained nightly on density-ratio-selected pool rows "
                      f"+ the target sample, promoted when it beats the champion on the target hold-out "
                      f"({cfg.promotion.metric}).", story)
    serving.describe_logged_model(mlc, out.model_name, out.version, story)
    return title


def _recipe(cfg: PipelineConfig, search, base_instead: bool, first_night: bool = False) -> str:
    """The version's recipe (its ``rsft.recipe`` tag, `rsft history`): the search's choice, or the
    plain retrain's rejection-sampled fine-tune; on a first night whose search kept its warm start
    (no champion to keep: the base model) that base model, not "keep_champion" (trial 11's v1)."""
    if base_instead:
        return "base model (tonight's fine-tune did not beat it)"
    if search and search["chosen"] == "keep_champion" and first_night:
        return "base model (the search kept it: no champion yet)"
    return search["chosen"] if search else f"rsft ({cfg.sampling.mode} sampling)"


def _warm_start(cfg: PipelineConfig, mlc, seen, selection: Selection) -> tuple[Any, dict[str, Any]]:
    """The champion's model (``models:/<name>/<v>``), or on the first night a base model
    pretrained on the pool (cached)."""
    if seen is not None:
        return registry.load_version_model(mlc, seen), {"warm_start": f"models:/{cfg.promotion.model_name}/{seen.version}"}
    model, info = base_model(cfg, selection.prefiltered)
    return model, {**info, "warm_start": "base"}


def _train_challenger(cfg: PipelineConfig, start, warm_start: str, selection: Selection, on_epoch, map_units):
    """(challenger, FitResult or None, row counts, the search's report or None)."""
    run_dir = Path(selection.scored.run_dir)
    if not cfg.adapt.enabled:
        model, result, counts = fine_tune(cfg, start, selection.selected, run_dir, warm_start, on_epoch)
        return model, result, counts, None
    full: dict[str, Any] = {}

    def at_full_scale(c) -> tuple[Any, dict[str, Any]] | None:
        """An rsft choice with the sampling stage's settings (rejection mode, its β and M
        quantile) is that stage's recipe: train it on the stage's selection from the whole
        pool, not on the search's pool sample. Any other choice: None (pool sample)."""
        if not is_sampling_recipe(c, cfg):
            return None
        fcfg = cfg.model_copy(update={"train": cfg.train.model_copy(
            update={"include_target_sample": True, "target_weight": c.target_share})})
        model, full["result"], full["counts"] = fine_tune(fcfg, start, selection.selected, run_dir, warm_start, on_epoch)
        n = full["counts"]
        pool_rows = n["train_rows"] - n.get("target_rows", 0)
        return model, {"trained_on": f"the sampling stage's selection ({pool_rows:,} labelled rows of the "
                                     f"whole pool) + the target sample ×{target_repeats(c.target_share)}",
                       "pool_rows": pool_rows, "train_rows": n["train_rows"]}

    from rsft.adapt import candidate_records, plot_candidates

    model, report = adapt_stage(cfg, start, selection.prefiltered, map_units, final_fit=at_full_scale)
    runs.log_adapt_search(report, candidate_records(report), lambda path: plot_candidates(report, path))
    counts = {**full.get("counts", {"train_rows": report["final"]["train_rows"]}), "adapt_candidates": len(report["candidates"])}
    return model, full.get("result"), counts, report


def _curves(result, path: str, warm_start: str) -> str:
    from rsft.report import plot_training_curves

    return plot_training_curves(result.history, path, f"Fine-tune of tonight's challenger (warm start: {warm_start})",
                                result.best_step, result.planned_steps)


def _diverged(result) -> str | None:
    """Why the fit is no model at all (no epoch had a finite loss: the weights are the warm
    start's), or None."""
    if result is None or not getattr(result, "diverged", False):
        return None
    last = result.history[-1]
    return (f"no finite loss in {result.epochs_run} epoch(s) (last train_loss {last['train_loss']:.4g}, "
            f"val_loss {last['val_loss']:.4g}); the weights are the warm start's")


def _base_instead(policy, scores, holdout_rows: int, diverged: str | None, constant) -> bool:
    """A first night whose fine-tune loses to the base model it started from, where the base model
    itself would pass the gate: register the base model instead (a diverged fit is rejected as such).
    (Against its base model the gate asks no ``promotion.min_z``: the one that measured better serves.)"""
    from rsft.tracking.registry import decide

    if diverged:
        return False
    (ch, ch_pool), (base, base_pool) = scores["challenger"], scores["start"]
    return (not decide(policy, ch, None, holdout_rows, ch_pool, None, base=base, base_pool=base_pool).promote
            and decide(policy, base, None, holdout_rows, base_pool, None, constant=constant).promote)


def _lost_preface(metric: str, scores) -> str:
    from rsft.readable import figures
    from rsft.tracking.registry import HIGHER_IS_BETTER

    c, b = scores["challenger"][0][metric], scores["start"][0][metric]
    ch, base = figures(c, b)
    # better, yet not by promotion.min_improvement
    margin = " by the gate's margin" if (c > b if metric in HIGHER_IS_BETTER else c < b) else ""
    return (f"tonight's fine-tune ({metric} {ch}) did not beat its base model ({base}){margin}: the base model is "
            "registered instead; ")


def _challenger(cfg: PipelineConfig, model, holdout: pl.DataFrame, scores, selection: Selection, search,
                base_instead: bool = False, data_to=None, first_night: bool = False) -> promotion.Challenger:
    """The challenger's checkpoint (state dict + model config + input names) and registry tags.
    ``base_instead``: ``model`` is the first night's base model, registered in the fine-tune's place;
    ``data_to``: the day of the night's newest reading (:func:`newest_day`); ``first_night``: no
    champion yet (:func:`_recipe`)."""
    from rsft.models import checkpoint, save_checkpoint

    scored, sel = selection.scored, selection.selected
    n_in, n_out, names = model_io(cfg.features)
    # a name of its own: concurrent retrains of the same inputs share run_dir, and this file is
    # written before the registry lock — a shared name let one version register another's weights;
    # a hidden temp name with the writer's pid, so a killed night's copy is removed by the next
    # night's clean-up of run_dir (fsio.remove_orphans)
    path = temp_path(Path(scored.run_dir) / "challenger.pt")
    save_checkpoint(checkpoint(model, cfg.model, n_in, names,
                               {"role": "challenger", "run_key": scored.run_key, "out_features": n_out,
                                "config": resolved(cfg)}), path)
    root = pipeline_root(cfg)
    tags = {
        "rsft.run_key": scored.run_key,
        "rsft.data_digest": dataset_digest(root / pool_dataset(cfg)),
        "rsft.target_digest": named_digest(cfg, TARGET_SAMPLE),
        # what the gate judged it on (`rsft history`; the digest and rows are the lineage.target_holdout tags)
        registry.HOLDOUT_FILES: named_files(cfg, TARGET_HOLDOUT),
        **({registry.DATA_TO: data_to.isoformat()} if data_to else {}),  # the night's data date (`rsft history`)
        "rsft.rows_selected": str(sel.rows_out),
        "rsft.acceptance_rate": f"{sel.acceptance_rate:.6g}",
        # the recipe that produced this version (the audit trail shows it): the search's choice,
        # or the plain retrain's rejection-sampled fine-tune
        "rsft.recipe": _recipe(cfg, search, base_instead, first_night),
        **registry.environment_tags(),
    }
    example = serving.input_example(arrays(holdout.head(5), cfg.features)[0], names)  # named columns
    return promotion.Challenger(model, str(path), example, tags, scores[0], scores[1])
