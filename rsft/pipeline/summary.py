"""The small, human-readable summary a night ends with (the CLI's table, ``--json``)."""

from __future__ import annotations

from typing import Any

from rsft.config import PipelineConfig, target_repeats
from rsft.pipeline.layout import TARGET_HOLDOUT, TARGET_SAMPLE, pool_dataset, tracking_uri
from rsft.pipeline.results import DatasetIngest, Finetuned, Ingested, Selection
from rsft.pipeline.targets import dataset_unlike_earlier, mostly_quarantined, unlike_earlier_files
from rsft.pipeline.warning_history import story_warnings


# the prefilter keeping less than this share of the pool is worth a look: rules written for other
# data (a text rule for one-line logs on multi-line documents) can throw away nearly everything
PREFILTER_WARN_KEPT = 0.05


def warned(check, *args, what: str = "a check", **kwargs) -> list[str]:
    """``check(*args)``'s lines, or one line saying it was skipped and why: the summary is written
    after the night's version is registered and decided — a warning must never fail the night
    (a manifest entry a concurrent ingest replaced meanwhile, a part it removed)."""
    import logging

    try:
        return check(*args, **kwargs)
    except Exception as e:  # noqa: BLE001
        logging.getLogger("rsft.pipeline").warning("%s skipped: %s", what, e, exc_info=True)
        return [f"{what} skipped: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"]


def pool_warnings(cfg: PipelineConfig, selection: Selection) -> list[str]:
    """What the night's prefilter and selection did to the pool that a person should check: the
    prefilter kept a tiny share of it (the rules that dropped most, named), or a budget selection
    has fewer rows than its budget."""
    from rsft.readable import counts

    sel, pre, out = selection.selected, selection.prefiltered, []
    if pre.rows_in and pre.rows_out < PREFILTER_WARN_KEPT * pre.rows_in:
        top = dict(sorted(pre.dropped.items(), key=lambda kv: -kv[1])[:3])
        out.append(f"the prefilter kept {pre.rows_out:,} of {pre.rows_in:,} pool rows ({pre.rows_out / pre.rows_in:.1%})"
                   + (f" — dropped most: {counts(top)}" if top else "")
                   + ": check the prefilter rules against this data (prefilter.write_excluded: true keeps the dropped rows, "
                   "with the rule that dropped each, to look at)")
    budget = cfg.sampling.budget if cfg.sampling.mode == "budget" else None
    if budget and sel.rows_out < budget:
        out.append(f"{sel.rows_out:,} rows selected, fewer than sampling.budget {budget:,}: the kept pool has "
                   f"only {pre.rows_out:,} rows")
    return out


def run_summary(cfg: PipelineConfig, ingested: Ingested, selection: Selection, result: Finetuned) -> dict[str, Any]:
    from rsft.adapt import candidate_records
    from rsft.tracking.runs import nights_link, ui_base, ui_command

    pool = ingested[pool_dataset(cfg)]
    sel, pre = selection.selected, selection.prefiltered
    metric, champ, search, t = result.metric, result.champion, result.adapt, result.train
    rep = selection.report or {}
    uri = tracking_uri(cfg)
    return {
        # ingested since the last night's summary (tonight, or by the hourly ingest / `rsft ingest` since),
        # of every dataset: a new target sample or hold-out export counts (failed: below)
        "files_new": sum(d.files - d.files_skipped - len(d.files_failed) for d in ingested.datasets.values()),
        "rows_ingested": pool.rows_ok,  # this run (earlier files are skipped)
        "rows_quarantined": pool.rows_quarantined,
        "quarantine_reasons": pool.quarantine_reasons,
        "files_failed": len(pool.files_failed),
        # the target sample's and hold-out's new files' quarantined rows (the pool's are above)
        **({"target_rows_quarantined": tq} if (tq := {n: d.rows_quarantined for n, d in ingested.datasets.items()
                                                       if n in (TARGET_SAMPLE, TARGET_HOLDOUT) and d.rows_quarantined})
           else {}),
        # every dataset's failed files, named with why ("sensors: a.csv: …"): left out of tonight's
        # pool and tried again next night — the operator must see which, not only how many
        "failed_files": [f"{name}: {line}" for name, d in ingested.datasets.items() for line in d.files_failed],
        # every dataset's new files none of whose rows passed the contract, one line each ("sensors:
        # a.csv: all 336 rows quarantined (reasons) — the setting"), as `rsft ingest` warns of them
        "files_mostly_quarantined": warned(mostly_quarantined, cfg, ingested, what="the quarantined-files check"),
        # new files with a column whose median lies outside the range of the files before them
        # (a unit change within the contract's range, a swapped column, a new regime): one line each
        "files_unlike_earlier": warned(unlike_earlier_files, cfg, ingested, what="the unlike-earlier-files check"),
        "rows_prefiltered_in": pre.rows_in,
        "rows_kept_by_prefilter": pre.rows_out,
        "prefilter_dropped": pre.dropped,
        # the kept pool is updated day by day: how many days tonight prefiltered (new, changed,
        # or a neighbour whose window context changed) of all the pool's days
        "prefilter_days": (f"{pre.days_computed} of {pre.days_total} prefiltered tonight" if not pre.whole_pool_why
                           else f"the whole pool, every night: {pre.whole_pool_why}"),
        "rows_selected": sel.rows_out,
        "acceptance_rate": round(sel.acceptance_rate, 5),
        "ideal_acceptance": None if sel.ideal_acceptance is None else round(sel.ideal_acceptance, 5),
        "clipped_share": round(sel.clipped_share, 5),
        # how many pool-sample rows the weights effectively rest on ((Σw)² / Σw²): a handful = degenerate
        **({"effective_sample_size": f"{rep['ess']:,.0f} of {rep['pool_sample_rows']:,} pool-sample rows"}
           if isinstance(rep.get("ess"), (int, float)) and rep.get("pool_sample_rows") else {}),
        # text: how much closer to the target the selected documents' n-grams are than the pool's
        **({"text_kl_to_target": f"pool {kl['kl_target_pool']:.3g} → selected {kl['kl_target_selected']:.3g} nats"
                                 + (f" (a random subset with as many n-grams: {kl['kl_target_random']:.3g})"
                                    if isinstance(kl.get("kl_target_random"), float) else "")
                                 + " (hashed n-gram KL)"} if (kl := rep.get("text")) else {}),
        # the selection report's warnings (uncovered target rows, missed groups, worse features)
        "selection_warnings": pool_warnings(cfg, selection) + list(rep.get("warnings") or []),
        # the target sample's / hold-out's rows the prefilter's rules dropped (prefilter.targets)
        **({"target_rows_dropped": dropped} if (dropped := target_rows_dropped(cfg)) else {}),
        "train_rows": result.train["train_rows"],
        # selected pool rows that are target hold-out rows (the same export's readings) or lie in
        # their machine's hold-out span (train.holdout_exclusion): not trained on
        **({"holdout_rows_left_out": left_out_line(cfg, n, result.train.get("holdout_span_rows_left_out"))}
           if (n := int(result.train.get("holdout_rows_left_out") or 0)) else {}),
        "warm_start": result.warm_start,
        # what each fit did, as numbers (the CLI prints them in a line: fit_text)
        **({"base_model_fit": fit} if (fit := fit_record(cfg, t, "base_")) else {}),
        **({"final_fit": fit} if (fit := fit_record(cfg, t, "")) else {}),
        # a fit the budget cut short (below min_steps, or still improving at its step cap)
        "fit_warnings": fit_warnings(cfg, t),
        **({"recipe": search["chosen"], "recipe_why": search["why"],
            "recipe_trained_on": search["final"]["trained_on"],
            "search_seconds": round(search["search_seconds"], 2),
            "search_models_trained": search["fits"],
            # forward: each fold trained on earlier time blocks, validated on later ones; grouped: K-fold
            "search_cv": f"{search.get('cv', 'grouped')}, {search['folds']} folds over {search['groups']} groups",
            "adapt_candidates": candidate_records(search)} if search else {}),  # numbers (the CLI formats them)
        f"challenger_{metric}": round(result.challenger[metric], 5),
        f"champion_{metric}": None if champ is None else round(champ[metric], 5),
        # the floor: predicting the target sample's label mean (or class shares) for every hold-out row
        **({f"constant_{metric}": round(result.constant[metric], 5)} if result.constant and metric in result.constant else {}),
        # a linear model fitted on the target sample alone (promotion.linear_reference_by): what the
        # sample gives without the pool
        **({f"linear_{metric}": round(result.linear[metric], 5)} if result.linear and metric in result.linear else {}),
        # a first night: the base model the fine-tune started from (the bar besides the constant)
        **({f"base_model_{metric}": round(result.base[metric], 5)} if result.base and metric in result.base else {}),
        # the first night's fine-tune lost to its base model, which was registered instead
        **({f"fine_tune_{metric}": round(result.fine_tune_lost[metric], 5)} if result.fine_tune_lost else {}),
        "model_warnings": model_warnings(result, cfg.promotion.linear_reference_by, cfg.promotion.min_z,
                                         cfg.promotion.linear_reference_terms) + span_warnings(cfg, result.train)
        + warned(holdout_warnings, cfg, what="the hold-out checks"),
        "promoted": result.promoted,
        "reason": result.reason,
        "model_version": result.version,
        # a re-run of a decided night (same inputs and config): the recorded decision, nothing new
        **({"already_decided": (f"v{result.version} was registered and decided" if result.version else
                                f"the champion v{result.champion_version} was kept")
                               + f" by MLflow run {result.run_id}; this run registered nothing"} if result.recorded else {}),
        # where serving loads the champion from; None while there is none (a refused first night)
        "champion_uri": f"models:/{result.model_name}@champion" if result.champion_version else None,
        "mlflow_run": result.run_id,
        # disk use of the state dir after the night (`rsft gc` removes old nights' intermediates)
        **state_disk(cfg),
        # a local store: the command that starts a UI where the links point (state.ui_url); a
        # tracking server: the UI's address
        "mlflow_ui": ui_command(uri, cfg.state.ui_url) or ui_base(uri, cfg.state.ui_url),
        # the runs table with the nights' key figures as columns (rsft.tracking.runs.nights_view)
        "mlflow_nights": nights_link(uri, cfg.state.experiment, cfg.state.ui_url),
    }


def target_rows_dropped(cfg: PipelineConfig) -> dict[str, Any]:
    """{"target_sample": {"rows": n, "dropped": {rule: rows}}, …} for the targets a rule dropped rows of."""
    from rsft.pipeline.data import target_dropped
    from rsft.prefilter import target_rules

    if not target_rules(cfg.prefilter).rules:
        return {}
    out = {}
    for which in (TARGET_SAMPLE, TARGET_HOLDOUT):
        rows, dropped = target_dropped(cfg, which)
        if dropped:
            out[which] = {"rows": rows, "dropped": dropped}
    return out


def fit_record(cfg: PipelineConfig, t: dict[str, Any], prefix: str) -> dict[str, Any] | None:
    """A fit's facts as numbers (``prefix`` "base_": the first night's base model; "": the night's
    final fit); None when there was no such fit."""
    if t.get(prefix + "steps") is None:
        return None
    rec = {"steps": t[prefix + "steps"], "planned_steps": t.get(prefix + "planned_steps"),
           "best_step": t.get(prefix + "best_step"), "stopped_early": bool(t.get(prefix + "stopped_early")),
           # the weighted mean loss on the fit's validation rows: squared error in label units², or cross-entropy
           "best_validation_loss": t.get(prefix + "best_val_loss"),
           "loss": "cross-entropy" if cfg.features.classes else "mse"}
    return {**rec, "cached": True} if t.get(prefix + "cached") else rec


def fit_text(rec: dict[str, Any]) -> str:
    """``3,270 of 5,000 planned steps, stopped early, best at step 2,770; best validation MSE 0.92 (RMSE 0.959)``."""
    import math

    planned = rec.get("planned_steps")
    out = f"{rec['steps']:,}" + (f" of {planned:,} planned" if planned else "") + " steps"
    out += ", stopped early" if rec.get("stopped_early") else ""
    # where the best weights came from: at the very end of a capped fit, more steps might help
    out += f", best at step {rec['best_step']:,}" if rec.get("best_step") else ""
    loss = rec.get("best_validation_loss")
    if isinstance(loss, (int, float)) and math.isfinite(loss):
        out += (f"; best validation MSE {loss:.4g} (RMSE {math.sqrt(loss):.4g})" if rec.get("loss") == "mse"
                else f"; best validation {rec.get('loss', 'loss')} {loss:.4g}")
    return out + (" (cached)" if rec.get("cached") else "")


def fit_warnings(cfg: PipelineConfig, t: dict[str, Any]) -> list[str]:
    """A fit the budget ended too soon: fewer steps than ``train.min_steps`` (an ``epochs`` cap), or
    still improving when it reached its step cap (:func:`rsft.pipeline.training.still_improving`)."""
    tr, out = cfg.train, []
    for prefix, what, cap, epochs in (("base_", "the base model's fit", "train.pretrain_max_steps", "train.pretrain_epochs"),
                                      ("", "the final fit", "train.max_steps", "train.epochs")):
        steps, planned, best = t.get(prefix + "steps"), t.get(prefix + "planned_steps"), t.get(prefix + "best_step")
        if steps is None or t.get(prefix + "cached") or t.get(prefix + "diverged"):
            continue
        if planned is not None and planned < tr.min_steps:
            step_cap = tr.pretrain_max_steps if prefix else tr.max_steps
            why = (f"{cap} {step_cap:,} is below it — raise {cap} or lower train.min_steps" if planned >= step_cap else
                   f"{epochs} caps it on {'the pool rows it trains on' if prefix else 'tonight’s training rows'} — "
                   "remove the cap (the step budget decides) or raise it")
            out.append(f"{what} had {planned:,} planned steps, fewer than train.min_steps {tr.min_steps:,}: {why}")
        elif (planned is not None and steps >= planned and not t.get(prefix + "stopped_early")
              and t.get(prefix + "still_improving")):
            fell = t.get(prefix + "late_fall")  # (None: facts of a fit from before it was kept)
            fell = (f"fell {fell:.1%} in the fit's last fifth" if isinstance(fell, (int, float)) and fell > 0
                    else "was still falling")
            out.append(f"{what} was still improving when it reached its {planned:,} steps (best at step {best:,}; the "
                       f"validation loss {fell}): raise {cap} (or {epochs}, if set) for a better model")
    return out


def left_out_line(cfg: PipelineConfig, n: int, by_spans: int | None = None) -> str:
    """The summary's line for the ``n`` selected rows :func:`rsft.pipeline.data.without_holdout`
    left out, naming what ``train.holdout_exclusion`` leaves out and, where counted, how many of
    them the spans alone left out (an older night's counts have no split)."""
    what = "target hold-out rows" + (" or lie in their machine's hold-out time span"
                                     if cfg.train.holdout_exclusion == "span" else "")
    split = (f" ({n - by_spans:,} hold-out rows, {by_spans:,} inside the spans)"
             if by_spans is not None and cfg.train.holdout_exclusion == "span" else "")
    return f"{n:,} selected pool rows are {what}{split} — left out of training (the gate judges on the hold-out)"


# selected rows inside the hold-out's spans (train.holdout_exclusion: span): above this share, say so
SPAN_WARN_SHARE = 0.25


def span_warnings(cfg: PipelineConfig, train: dict[str, Any]) -> list[str]:
    """With ``train.holdout_exclusion: span``: spans that could not be applied (training's
    ``holdout_no_spans``: only the hold-out's own rows were left out, its neighbours trained on),
    and a hold-out whose time spans cover much of the selection: one span per machine runs from
    its first to its last hold-out reading, so a hold-out spread over the pool's own period (every
    7th day, a random subsample) leaves that whole period out of training — counted, but easy to
    miss. The share is of the labelled selected rows: the left-out count is of those alone."""
    if cfg.train.holdout_exclusion != "span":
        return []
    out = ([f"train.holdout_exclusion span drew no spans: {why} — only the hold-out's own rows were left out of "
            "training; the pool readings beside them were trained on"] if (why := train.get("holdout_no_spans")) else [])
    n = int(train.get("holdout_rows_left_out") or 0)
    sel = int(train.get("selected_rows") or 0) - int(train.get("selected_unlabelled") or 0)
    if sel <= 0 or n <= SPAN_WARN_SHARE * sel:
        return out
    how = ("set train.holdout_gap_s to keep the pool rows between its periods, or "
           if cfg.train.holdout_gap_s is None else "lower train.holdout_gap_s, or ")
    return out + [f"{n:,} of the {sel:,} labelled selected rows ({n / sel:.0%}) lie in the machines' hold-out time spans "
                  f"and were left out of training: a hold-out spread over the pool's period? {how}export the hold-out "
                  "from one period"]


# hold-out rows outside the target sample's range on a feature: above this share, say so
HOLDOUT_OUTSIDE_WARN = 0.10


def holdout_warnings(cfg: PipelineConfig) -> list[str]:
    """What makes the gate's comparison unfair, from the target sample and the hold-out: sample
    rows that are hold-out rows; sample rows repeating each other (> 5 %); a numeric feature on
    which more than :data:`HOLDOUT_OUTSIDE_WARN` of the hold-out rows lie outside the target
    sample's [min, max] (trial 6: the November sample's coldest hour was 28 °F, 344 December
    hold-out rows were colder, and the champion's error there was 3× its error elsewhere). Each file
    is read once."""
    from rsft.pipeline.data import holdout_identity, load_target, without_holdout

    f = cfg.features
    target, holdout = load_target(cfg, TARGET_SAMPLE), load_target(cfg, TARGET_HOLDOUT)
    identity = holdout_identity(cfg, holdout)
    # the hold-out's own rows, as the line says (not the rows inside its spans)
    shared = target.height - without_holdout(target, identity[:2]).height
    out = ([f"{shared:,} of the target sample's {target.height:,} rows are hold-out rows too (same {', '.join(identity[0])}): "
            "the fine-tune trains on rows the gate judges it on — export the sample and the hold-out from "
            "different periods"] if shared else [])
    out += target_span_warnings(cfg, target, holdout, shared, identity.spans)
    # repeated examples in the sample: the fine-tune's validation rows (held out of the sample) repeat
    # its training rows, and early stopping watches a loss near 0 (trial 8: 194 distinct of 250 texts)
    inputs = [f.text_column] if f.kind == "text" else [*f.numeric, *f.categorical]
    # with the machine and time where the sample has them: coarse readings of two hours may agree
    cols = [c for c in dict.fromkeys([*inputs, f.label, f.group, f.time_column]) if c and c in target.columns]
    repeats = target.height - target.select(cols).unique().height if cols and target.height else 0
    if repeats > max(5, 0.05 * target.height):
        out.append(f"the target sample repeats rows: {repeats:,} of its {target.height:,} rows repeat another's inputs and "
                   "label — the fine-tune's validation rows (held out of the sample) repeat training rows, and early "
                   "stopping watches a loss near 0; deduplicate the export")
    cols = [] if f.kind == "text" else list(f.numeric)
    if not cols:
        return out
    return out + range_warnings(target, holdout, cols)


def target_span_warnings(cfg: PipelineConfig, target, holdout, shared: int = 0, spans=None) -> list[str]:
    """Target-sample rows (not hold-out rows themselves: ``shared`` of them are) inside their
    machine's hold-out time span (:func:`rsft.pipeline.data.holdout_spans`, whatever
    ``train.holdout_exclusion`` says): a random sample/hold-out split of one export shares no row,
    yet every hold-out reading has its neighbour in the sample, which is trained on
    (``target_weight`` times). Warned of, never left out: the target sample is the user's choice.
    Spans that cannot be drawn or compared are the training's line (:func:`span_warnings`).
    ``spans``: the hold-out's, when :func:`rsft.pipeline.data.holdout_identity` drew them already."""
    from rsft.pipeline.data import HoldoutIdentity, holdout_spans, span_problem, without_holdout

    f = cfg.features
    if spans is None:  # train.holdout_exclusion: rows draws none for training; the warning still does
        spans = holdout_spans(holdout, f.group, f.time_column, cfg.train.holdout_gap_s)
    if spans is None or not target.height or not cfg.train.include_target_sample:
        return []
    identity = HoldoutIdentity([], holdout.head(0), spans, (f.group, f.time_column), holdout.schema[f.time_column])
    if span_problem(identity, target.schema, "target sample"):
        return []
    n = target.height - without_holdout(target, identity).height - shared
    if n <= 0:
        return []
    return [f"{n:,} of the target sample's {target.height:,} rows lie in their machine's hold-out time span, beside "
            f"hold-out readings: the fine-tune trains on them (× {target_repeats(cfg.train.target_weight)}) and the gate "
            "judges it on their neighbours — export the sample and the hold-out from different periods (a random "
            "split of one export shares no row, but every reading's neighbour)"]


def range_warnings(t, h, cols: list[str]) -> list[str]:
    """:func:`holdout_warnings` on the frames: target sample ``t``, hold-out ``h``."""
    import polars as pl

    if not t.height or not h.height:
        return []
    parts = []
    for c in cols:
        lo, hi = t.get_column(c).min(), t.get_column(c).max()
        if lo is None or hi is None:
            continue
        below, above = h.select((pl.col(c) < lo).sum().alias("below"), (pl.col(c) > hi).sum().alias("above")).row(0)
        if below + above > HOLDOUT_OUTSIDE_WARN * h.height:
            side = " and ".join(s for s, n in ((f"{below:,} below its min {lo:.4g}", below), (f"{above:,} above its max {hi:.4g}", above)) if n)
            parts.append(f"{c} ({side})")
    if not parts:
        return []
    return [f"the hold-out reaches beyond the target sample's range — of its {h.height:,} rows: {'; '.join(parts)}: the "
            "gate judges conditions the sample (and so the fine-tune) has not seen; a target sample that spans them "
            "makes the comparison fairer"]


def model_warnings(result: Finetuned, linear_by: float | None = None, min_z: float | None = None,
                   terms: list[list[str]] | tuple = ()) -> list[str]:
    """The served model is no better than a constant — the champion after tonight's decision did
    not beat predicting the target sample's mean (or class shares) on tonight's hold-out — or a
    linear model fitted on the target sample alone beats it by more than ``linear_by`` (relative)
    and, where both were scored row by row tonight, by ``min_z`` standard errors of the paired
    difference (a small hold-out's luck is not a finding): the champion is not getting from the
    pool what a few hundred target rows give. ``terms``: the products the reference also read
    (``promotion.linear_reference_terms``), named in the line."""
    from rsft.paired import paired_z
    from rsft.readable import figures
    from rsft.tracking.registry import HIGHER_IS_BETTER, constant_kind

    m, up = result.metric, result.metric in HIGHER_IS_BETTER
    champ = result.challenger if result.promoted else result.champion
    c = (champ or {}).get(m)
    if c is None or result.champion_version is None:
        return []
    k, lin = (result.constant or {}).get(m), (result.linear or {}).get(m)
    if k is not None and not (c > k if up else c < k):
        cs, ks = figures(c, k)
        return [f"the champion v{result.champion_version} is no better than a constant on tonight's hold-out ({m} {cs} vs "
                f"{ks} for predicting {constant_kind(result.constant)}): "
                "look at its training budget and features"]
    if lin is None or linear_by is None or not (lin > c + abs(c) * linear_by if up else lin < c - abs(c) * linear_by):
        return []
    # the z the night computed and logged (a decided night's re-run reads it back: it has no per-row
    # outputs); a result built without it, from its rows
    z = result.linear.get("z_vs_champion")
    z = paired_z(m, result.linear, champ) if z is None else z
    if z is not None and min_z and z < min_z:
        return []
    cs, ls = figures(c, lin)
    by = f", {z:.1f} SE of the paired difference" if z is not None else ""
    fit = "an L2-logistic regression" if "accuracy" in result.linear else "a ridge regression"
    if terms:
        fit += " with " + ", ".join("×".join(t) for t in terms)
    return [f"the champion v{result.champion_version} is worse than {fit} fitted on the target sample alone "
            f"({m} {cs} vs {ls} on tonight's hold-out{by}; promotion.linear_reference_by={linear_by:g}): the pool is not "
            "helping tonight — look at the selection's warnings, the training budget and train.target_weight"
            + (f" (tonight's adaptation search chose {result.adapt['chosen']})" if result.adapt else
               " (adapt.enabled tries recipes that lean on the sample)")]


def _coverage_line(rep: dict[str, Any]) -> str:
    """Where the pool does not cover the target, in one cell ('' when the report has no coverage)."""
    cov = rep.get("coverage") or {}
    share, col = cov.get("uncovered_share"), cov.get("group_column")
    parts = [f"{share:.1%} of target rows have no comparable pool rows"] if isinstance(share, float) else []
    missed = [g for g in cov.get("by_group") or [] if g.get("flagged")]
    if missed:
        total = sum(g["target_share"] for g in missed)
        parts.append(f"{col} {', '.join(str(g[col]) for g in missed)} ({total:.0%} of the target) "
                     f"{'is' if len(missed) == 1 else 'are'} nearly missing from the selected rows")
    return "; ".join(parts)


def state_disk(cfg: PipelineConfig) -> dict[str, Any]:
    """The state dir's disk use: ``state_disk``, ``1.2 GB (ingested 800.0 MB, kept pool 300.0 MB,
    runs …)`` for a person, and ``state_disk_bytes``, the same parts in bytes, for a scheduler
    reading the JSON (trial finding: it parsed the prose)."""
    from rsft.pipeline.layout import state
    from rsft.state import disk_usage, human_bytes

    u = disk_usage(state(cfg), cfg.name)
    parts = ", ".join(f"{k.replace('_', ' ')} {human_bytes(v)}" for k, v in u.items() if k != "total")
    return {"state_disk": f"{human_bytes(u['total'])} ({parts})", "state_disk_bytes": u}


def night_story(cfg: PipelineConfig, night: str, ingested: DatasetIngest | None, selection: Selection,
                result: Finetuned) -> str:
    """The night in markdown, as a person asks: what came in, what was kept and selected, what was
    trained on, what was decided and why (the MLflow run's and the version's description)."""
    pre, sel, rep = selection.prefiltered, selection.selected, selection.report or {}
    m, search = result.metric, result.adapt
    ch = result.challenger.get(m)
    champ = (result.champion or {}).get(m)
    decision = "promoted" if result.promoted else "rejected" if result.version else "kept the champion"
    head = f"**{cfg.name}, night of {night}: {decision}" + (f" v{result.version}" if result.version else "") + "**"
    rows = [
        ("ingested (new files since the last night)", "—" if ingested is None else
         f"{ingested.files - ingested.files_skipped} files, {ingested.rows_ok:,} rows ok, "
         f"{ingested.rows_quarantined:,} quarantined" + (f", {len(ingested.files_failed)} files failed (left out, tried "
                                                         f"again next night: {'; '.join(ingested.files_failed[:3])}"
                                                         + ("; …" if len(ingested.files_failed) > 3 else "") + ")"
                                                         if ingested.files_failed else "")),
        ("kept by the prefilter (all nights)", f"{pre.rows_out:,} of {pre.rows_in:,} pool rows"),
        ("selected for tonight's regime", f"{sel.rows_out:,} rows ({sel.acceptance_rate:.2%} of the kept pool, {sel.mode} sampling)"
         + (f"; ESS {rep['ess']:.0f} of {rep.get('pool_sample_rows', 0):,} pool-sample rows" if isinstance(rep.get("ess"), (int, float)) else "")
         + (f"; selected-vs-target AUC {rep['auc_selected_vs_target']:.2f}" if isinstance(rep.get("auc_selected_vs_target"), float) else "")),
        *([("coverage of the target", _coverage_line(rep))] if _coverage_line(rep) else []),
        ("recipe", (f"the base model — tonight's fine-tune ({m} {result.fine_tune_lost.get(m, float('nan')):.4g}) did not "
                    "beat it" if result.fine_tune_lost else
                    f"{search['chosen']} — {search['why']}" if search else f"rsft ({cfg.sampling.mode} sampling)")),
        ("trained on", f"{result.train.get('train_rows', 0):,} rows" + (f" ({search['final']['trained_on']})" if search else "")
         + f", warm start {result.warm_start}"),
        (f"challenger hold-out {m}", "—" if ch is None else f"{ch:.4g} on {result.holdout_rows:,} target hold-out rows"),
        (f"champion hold-out {m}", "— (no champion yet)" if champ is None else f"{champ:.4g}"),
        *([(f"constant prediction hold-out {m}", f"{k:.4g} (the target sample's mean or class shares for every row)")]
          if (k := (result.constant or {}).get(m)) is not None else []),
        *([(f"linear reference hold-out {m}", f"{k:.4g} (a linear model fitted on the target sample alone)")]
          if (k := (result.linear or {}).get(m)) is not None else []),
        ("decision", result.reason),
    ]
    lines = [head, "", "| | |", "|---|---|", *[f"| {k} | {v.replace('|', '/')} |" for k, v in rows]]
    # tonight's pool files whose readings sit where no earlier file's did (a unit change?)
    unlike = [] if ingested is None else warned(dataset_unlike_earlier, cfg, pool_dataset(cfg), ingested, mark=False,
                                                what="the unlike-earlier-files check")
    # warnings given on earlier nights: one line (dated as the summary dates them: the data's in a backfill)
    earlier = story_warnings(cfg, selection, result.night_date)
    if unlike:
        new, old = earlier.split("files_unlike_earlier", unlike)
        lines += ["", "Input warnings:", *_listed(new, "the night's summary, files_unlike_earlier"), *old]
    warnings = rep.get("warnings") or []
    if warnings:
        new, old = earlier.split("selection_warnings", warnings)
        lines += ["", "Selection warnings:", *_listed(new, "the selection report"), *old]
    fits = fit_warnings(cfg, result.train)  # a fit its budget cut short: more steps, a better model
    if fits:
        new, old = earlier.split("fit_warnings", fits)
        lines += ["", "Fit warnings:", *_listed(new, "the night's summary, fit_warnings"), *old]
    return _fit_description("\n".join(lines))


STORY_WARNINGS = 8  # warning lines a night's story lists per kind (the rest counted)
STORY_CHARS = 7_900  # MLflow cuts a run's description at 8,000 characters (with a warning line)


def _listed(warnings: list[str], where: str) -> list[str]:
    """The first :data:`STORY_WARNINGS` warnings as markdown items, then how many more and where
    they all are (trial 9: 36 unit-change lines on a first night ran the story past MLflow's limit)."""
    more = len(warnings) - STORY_WARNINGS
    return [f"- {w}" for w in warnings[:STORY_WARNINGS]] + ([f"- … and {more} more (all in {where})"] if more > 0 else [])


def _fit_description(story: str) -> str:
    """``story`` within :data:`STORY_CHARS`, cut at a line with a last line saying so."""
    if len(story) <= STORY_CHARS:
        return story
    note = "\n… (cut to fit MLflow's description; the whole night is in its summary)"
    return story[:story.rfind("\n", 0, STORY_CHARS - len(note))] + note


def _md_cell(v: Any) -> str:
    return str(v).replace("|", "/").replace("\n", " ")


def mlflow_line(result: Finetuned) -> str:
    """A markdown line linking the night's MLflow run (and how to start the UI for a local store)."""
    from rsft.tracking.runs import run_link

    url, start = run_link(result.tracking_uri, result.run_id, result.ui_url)
    return f"MLflow run: [{result.run_id}]({url})" + (f" — start the UI first: `{start}`" if start else "")


def selection_markdown(cfg: PipelineConfig, selection: Selection) -> str:
    """The selection report for people (the Prefect ``selection-report`` artifact): the counts,
    the match to the target, coverage per group, and the warnings first."""
    sel, pre, rep = selection.selected, selection.prefiltered, selection.report or {}
    warnings = rep.get("warnings") or []
    lines = [f"# Selection report: {sel.rows_out:,} pool rows selected for the target", ""]
    if warnings:
        lines += [f"## ⚠ {len(warnings)} warning{'s' if len(warnings) > 1 else ''}", "", *[f"- {w}" for w in warnings], ""]
    lines += ["| measure | value |", "|---|---|",
              f"| kept by the prefilter | {pre.rows_out:,} of {pre.rows_in:,} ingested pool rows |",
              f"| selected ({sel.mode} sampling, {cfg.scorer.kind} scorer) | {sel.rows_out:,} rows = "
              f"{sel.acceptance_rate:.2%} of the kept rows"
              + (f" (ideal {sel.ideal_acceptance:.2%})" if sel.ideal_acceptance is not None else "") + " |",
              f"| rows with w > M (always accepted) | {sel.clipped_share:.2%} |"]
    if rep.get("text"):
        t = rep["text"]
        lines.append(f"| hashed n-gram KL to the target: pool → selected | {t['kl_target_pool']:.3g} → "
                     f"{t['kl_target_selected']:.3g} nats |")
    for key, label in (("ess", "effective sample size of the pool sample's weights"),
                       ("auc_pool_vs_target", "pool-vs-target AUC (0.5 = indistinguishable)"),
                       ("auc_selected_vs_target", "selected-vs-target AUC"),
                       ("mean_abs_ks_pool_vs_target", "mean KS pool vs target"),
                       ("mean_abs_ks_selected_vs_target", "mean KS selected vs target")):
        if isinstance(rep.get(key), (int, float)):
            lines.append(f"| {label} | {rep[key]:.3g} |")
    cov = rep.get("coverage") or {}
    share = cov.get("uncovered_share")
    if share is not None:
        lines.append(f"| target rows with no comparable pool rows | {share:.1%} |" if isinstance(share, float)
                     else f"| target rows with no comparable pool rows | {share} |")
    groups, col = cov.get("by_group") or [], cov.get("group_column")
    if groups:
        lines += ["", f"## Coverage per {col}", "",
                  f"| {col} | target share | selected share | pool share | target rows with no comparable pool rows | |",
                  "|---|---|---|---|---|---|"]
        pct = lambda v: "—" if v is None else f"{v:.0%}"  # noqa: E731
        for g in groups:
            lines.append(f"| {_md_cell(g[col])} | {pct(g['target_share'])} | {pct(g['selected_share'])} | "
                         f"{pct(g['pool_share'])} | {pct(g['uncovered_share'])} | {'⚠ missed' if g['flagged'] else ''} |")
    return "\n".join(lines)


def decision_markdown(result: Finetuned) -> str:
    """The night's decision (the Prefect ``promotion-decision`` artifact), with the MLflow link."""
    m = result.metric
    champ = (result.champion or {}).get(m)
    what = ("promoted" if result.promoted else "rejected" if result.version else "kept the champion (nothing registered)")
    version = f" v{result.version}" if result.version else ""
    return "\n".join([
        f"# Decision: {result.model_name}{version} {what}", "",
        f"**Why:** {result.reason}", "",
        "| | |", "|---|---|",
        f"| challenger hold-out {m} | {result.challenger.get(m, float('nan')):.4g} on {result.holdout_rows:,} rows |",
        f"| champion hold-out {m} | {'— (no champion yet)' if champ is None else f'{champ:.4g}'} |",
        *([f"| constant prediction hold-out {m} | {k:.4g} |"] if (k := (result.constant or {}).get(m)) is not None else []),
        *([f"| linear reference hold-out {m} (target sample alone) | {k:.4g} |"]
          if (k := (result.linear or {}).get(m)) is not None else []),
        f"| warm start | {result.warm_start} |",
        f"| champion now | {'—' if result.champion_version is None else f'v{result.champion_version}'} "
        f"(`models:/{result.model_name}@champion`) |",
        f"| trained on | {result.train.get('train_rows', 0):,} rows |",
        "", mlflow_line(result),
    ])
