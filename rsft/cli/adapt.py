"""``rsft adapt``: which adaptation recipe tonight's retrain would choose, and why — on the user's
files as they are (``--pool``, with the checks that pick their feature columns: ID-like, mostly
missing and label-copy columns left out) or on a config's pool as a night sees it (``--config``)."""

from __future__ import annotations

from contextlib import contextmanager

from pathlib import Path
from typing import Any, Optional, get_args

import typer
from rich.markup import escape

from rsft.cli.common import check_out_paths, console, err, fail, ingest_progress, load_pipeline, rows_table, say
from rsft.config import PipelineConfig
from rsft.readable import counts as _counts
from rsft.readable import strict_json
from rsft.state import state_paths


@contextmanager
def _tables():
    """rsft.tables' errors (a missing file, a value that does not parse) as one line."""
    from rsft.tables import TableError

    try:
        yield
    except TableError as e:
        fail(str(e))


def _did_you_mean(name: str, names: list[str]) -> str:
    """"; did you mean 'x'? (columns: …)" for an unknown column name."""
    from rsft.config import did_you_mean
    from rsft.tables import other_separator

    shown = ", ".join(names[:40]) + (f", … ({len(names)} in all)" if len(names) > 40 else "")
    sep = other_separator(names)
    hint = f"; the file looks {sep!r}-delimited (rsft reads ',' CSV)" if sep else ""
    return did_you_mean(name, names) + f" (columns: {shown}){hint}"


# rsft adapt --config: the options that are config settings too (given on the command line they
# override the config's, as --set does; --set wins), and the data options the config names itself
_ADAPT_KEYS = {"folds": ("adapt.folds",), "cv": ("adapt.cv",), "group_by": ("adapt.group_by",),
               "strategies": ("adapt.strategies",), "pool_rows": ("adapt.pool_rows",), "cv_epochs": ("adapt.epochs",),
               "epochs": ("train.epochs", "train.pretrain_epochs"), "max_steps": ("train.max_steps", "train.pretrain_max_steps"),
               "seed": ("train.seed",), "scorer": ("scorer.kind",), "model": ("model.kind",)}
_CONFIG_DATA = {"pool": ("--pool", "data.pool"), "target_sample": ("--target-sample", "data.target_sample"),
                "holdout": ("--holdout", "data.target_holdout"), "label": ("--label", "features.label"),
                "features": ("--features", "features.numeric")}


def adapt(
    ctx: typer.Context,
    config: Optional[str] = typer.Option(None, "--config", "-c", metavar="FILE", help="A pipeline config: search on the pool as a night sees it — its exports ingested under the contract (new files only, into state.dir), prefiltered by its rules — with its target sample, hold-out, features, label, adapt.* and train.* (the step budget of every fit). Without it: --pool, --target-sample and --label, read as they are (no contract, no prefilter)."),
    sets: Optional[list[str]] = typer.Option(None, "--set", metavar="KEY=VALUE", help="With --config: override a config value, --set train.max_steps=2000 (repeatable; YAML values)."),
    pool: Optional[str] = typer.Option(None, "--pool", help="Historical pool (without --config): a CSV or Parquet file, or a directory of them (CSV and Parquet may mix), with numeric features + label; a file of a directory that cannot be read or lacks a column is skipped with a warning."),
    target_sample: Optional[str] = typer.Option(None, "--target-sample", help="Small labelled sample of the current regime (CSV/Parquet; without --config)."),
    label: Optional[str] = typer.Option(None, "--label", help="Name of the label column to predict (regression; without --config)."),
    holdout: Optional[str] = typer.Option(None, "--holdout", help="Optional target hold-out (without --config; with it, data.target_holdout): every candidate is also scored on it."),
    group_by: Optional[str] = typer.Option(None, "--group-by", help="Column grouping the target rows for CV (machine, batch); default: contiguous time blocks (adapt.group_by)."),
    features: Optional[str] = typer.Option(None, "--features", help="Comma-separated feature columns (without --config); default: every numeric column except label, group and ID-like columns (id, *_id, an integer *_no/*_number/serial, integers all distinct) and copies of the label (|r| ≥ 0.999 with it on the target sample), named in one line."),
    strategies: Optional[str] = typer.Option(None, "--strategies", help="Comma-separated candidates, cheapest first; any of: keep_champion, recalibrate, ridge_head, head_only, sample_only, random_mix, rsft, weighted (default: all but ridge_head and weighted; adapt.strategies)."),
    folds: int = typer.Option(4, "--folds", min=2, help="Grouped K-fold count (adapt.folds)."),
    cv: str = typer.Option("auto", "--cv", help="grouped: K folds of whole groups; forward: each fold trains on every earlier group (in the target sample's row order) and validates on the next block of its later half; auto: forward when every group is one contiguous run of rows (days, weeks, time blocks) and there are 2×--folds of them, else grouped (adapt.cv)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", min=1, help="Passes over the training rows at most (train.epochs and pretrain_epochs): the warm start's pretraining, the survivor's full cross-validation round and the final retrain of the chosen recipe; default: no bound (the step budget decides), with --config the config's."),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", min=1, help="Optimizer steps per fit at most (train.max_steps and pretrain_max_steps; early stopping on a validation split ends fits sooner): the warm start, the survivor's full cross-validation round, the final retrain; the ranking round gets a quarter. Default: 5,000 per fine-tune, 20,000 for the warm start; with --config the config's train block."),
    cv_epochs: Optional[int] = typer.Option(None, "--cv-epochs", min=1, help="Passes per fit of the first, ranking round of cross-validation fits at most (adapt.epochs); default: a quarter of --epochs, at least 2, when --epochs is given, as in the retrain."),
    seed: int = typer.Option(0, "--seed", help="Seed for folds, sampling and training (train.seed)."),
    pool_rows: int = typer.Option(50_000, "--pool-rows", min=100, help="Pool rows the warm start and the candidates use: a seeded sample of the pool file, read in streaming passes (memory grows far slower than the file). Pool recipes gain from more (adapt.pool_rows)."),
    model: str = typer.Option("mlp", "--model", help="The warm start pretrained on the pool sample when there is no --champion: mlp (64-64), or autoencoder (an encoder first trained to reconstruct the pool rows, then a prediction head) (model.kind)."),
    scorer: str = typer.Option("gaussian", "--scorer", help="Density-ratio model behind the pool recipes' weights: gaussian, gmm or classifier (scorer.kind)."),
    json_out: Optional[Path] = typer.Option(None, "--json-out", help="Write the candidate report as JSON here (with the feature columns and where the pool came from)."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Write a PNG bar chart of the candidates' CV (and hold-out) RMSE here."),
    champion: Optional[str] = typer.Option(None, "--champion", help="The model you already have, as the starting point of every candidate: models:/NAME@ALIAS, models:/NAME/VERSION, runs:/RUN_ID (an rsft run) or an rsft checkpoint file; its input columns are the features. Default: with --config the config's registered champion (else its base model, as a first night), without it a model pretrained on the pool sample."),
    tracking_uri: Optional[str] = typer.Option(None, "--tracking-uri", envvar="MLFLOW_TRACKING_URI", help="MLflow tracking URI for a models:/ or runs:/ --champion (default: $MLFLOW_TRACKING_URI, else the config's store, else this directory's .rsft/mlflow.db)."),
) -> None:
    """Try rsft on your own files: which adaptation recipe would tonight's retrain choose, and why.

    Every candidate recipe starts from the champion (--champion, or a model pretrained on a pool sample) and is scored by cross-validation on the target sample — forward-chaining folds when its groups are time blocks, grouped K-fold otherwise (--cv) — and, with --holdout, on the hold-out. With --config, on the config's pool as a night sees it (ingested under its contract, prefiltered) and with its training budget.
    """  # noqa: E501 - one line per paragraph: the help renders line breaks as they are
    if model not in ("mlp", "autoencoder"):
        fail(f"--model must be mlp or autoencoder (got '{model}')")
    if champion and model != "mlp":
        fail("--model chooses the warm start pretrained on the pool; with --champion the champion is the warm start")
    if cv not in ("auto", "grouped", "forward"):
        fail(f"--cv must be auto, grouped or forward (got '{cv}')")
    if scorer not in ("gaussian", "gmm", "classifier"):
        fail(f"--scorer must be gaussian, gmm or classifier (got '{scorer}')")
    check_out_paths(("--json-out", json_out), ("--plot", plot))  # fail now, not after the search
    from rsft.config import Strategy

    known = get_args(Strategy)
    unknown = [x for x in (strategies or "").split(",") if x and x not in known]
    if unknown:
        fail(f"--strategies: unknown {', '.join(unknown)} (have: {', '.join(known)})")
    if config:
        return _adapt_with_config(ctx, config, sets, champion, tracking_uri, json_out, plot)
    if sets:
        fail("--set overrides a config's values: use it with --config")
    need = [opt for opt, v in (("--pool", pool), ("--target-sample", target_sample), ("--label", label)) if not v]
    if need:
        fail(f"{', '.join(need)} needed (or --config FILE: the pool, target sample and label of a pipeline config)")
    _adapt_files(pool, target_sample, label, holdout, group_by, features, strategies, folds, cv, epochs, max_steps,
                 cv_epochs, seed, pool_rows, model, scorer, json_out, plot, champion, tracking_uri)


def _adapt_files(pool, target_sample, label, holdout, group_by, features, strategies, folds, cv, epochs, max_steps,
                 cv_epochs, seed, pool_rows, model, scorer, json_out, plot, champion, tracking_uri) -> None:
    """``rsft adapt --pool …``: the user's files read as they are (no contract, no prefilter)."""
    import polars as pl

    from rsft.adapt import PoolSample, run_search, time_blocks
    from rsft.config import AdaptConfig, FeaturesConfig, ModelConfig, ScorerConfig, TrainConfig
    from rsft.pipeline.training import arrays, fit_facts, pretrain
    from rsft.tables import read_table, sample_table

    acfg = AdaptConfig(
        enabled=True, folds=folds, cv=cv, epochs=cv_epochs, group_by=group_by, pool_rows=pool_rows,
        **({"strategies": strategies.split(",")} if strategies else {}),
    )
    with _tables():
        tgt_raw = read_table(target_sample)
    if label in tgt_raw.columns and (not group_by or group_by in tgt_raw.columns):  # else _adapt_columns says which
        # the folds before the pool is read (the target sample is small): its labelled rows now,
        # its complete rows below, once the features are known
        _check_cv(tgt_raw.filter(pl.col(label).is_not_null()), group_by, folds, cv, seed, acfg.time_blocks)
    start = None
    if champion:
        from rsft.tracking.registry import load_champion

        uri = tracking_uri or state_paths(None).tracking_uri
        with console.status(f"loading the champion {champion}…"):
            try:
                start, names = load_champion(champion, uri)
            except ValueError as e:
                fail(f"--champion {e}")
        given = [c.strip() for c in (features or "").split(",") if c.strip()]
        if given and given != names:
            fail(f"--features {','.join(given)} differ from the champion's inputs {','.join(names)} (omit --features)")
        if getattr(start, "out_features", 1) != 1:
            fail(f"--champion {champion}: a model with {start.out_features} outputs; rsft adapt compares regression models")
        features = ",".join(names)
    skipped: list[tuple[str, str]] = []
    tgt_df, cols, files = _adapt_columns(pool, tgt_raw, label, group_by, features,
                                         "the champion's input" if champion else "--features", skipped)
    fcfg = FeaturesConfig(numeric=cols, label=label)
    incomplete = {c: n for c in cols if (n := _missing(tgt_df.filter(pl.col(label).is_not_null()), c))}
    if incomplete:  # said, not silent: the recipe rests on the rows left
        say(console, "target sample: rows with a missing feature value are left out — " + ", ".join(
            f"{c} missing in {n:,}" for c, n in incomplete.items()), style="yellow")
    tgt_df = tgt_df.drop_nulls([*cols, label])
    _check_cv(tgt_df, group_by, folds, cv, seed, acfg.time_blocks)
    tcfg = TrainConfig(epochs=epochs, pretrain_epochs=epochs, seed=seed,
                       **({"max_steps": max_steps, "pretrain_max_steps": max_steps} if max_steps else {}))
    many = len(files) > 1 or Path(pool).is_dir()
    with console.status(f"sampling {pool_rows:,} pool rows from {pool}…"), _tables():
        pool_df, pool_total = sample_table(files if many else pool, [*cols, label], pool_rows, seed,
                                           skipped if many else None)
    _warn_skipped(skipped)
    read = len(files) - sum(f in files for f, _ in skipped)
    say(console, f"pool: {pool_total:,} complete rows in {read} file(s) under {pool}"
        + (f" ({len(skipped)} skipped, named above)" if skipped else "")
        + " — read as they are: no ingest contract (ranges, aliases, quarantine, duplicates) and no prefilter "
          "rules were applied; --config FILE searches on the pool a night sees")
    xp, yp = arrays(pool_df, fcfg)
    xt, yt = arrays(tgt_df, fcfg)
    groups = tgt_df.get_column(group_by).to_numpy() if group_by else time_blocks(len(yt), acfg.time_blocks)
    hold = None
    if holdout:
        with _tables():
            hold = arrays(read_table(holdout).drop_nulls([*cols, label]), fcfg)
    warm_fit = None
    if start is not None:
        warm = start
    else:
        with console.status(f"pretraining the warm start on {len(yp):,} pool rows…"):
            warm, warm_fit = pretrain(ModelConfig(kind=model), xp, yp, tcfg)  # seeded: the same --seed, the same report
    with console.status(f"searching {len(acfg.strategies)} strategies × {folds} folds…"):
        try:
            _, report = run_search(acfg, tcfg, ScorerConfig(kind=scorer), cols, warm, (xt, yt, groups),
                                   PoolSample(xp, yp), hold, seed)
        except ValueError as e:
            fail(f"{e} (the target sample has {len(yt)} complete rows)")
    report["pool_rows_sampled"], report["pool_rows_complete"] = len(yp), pool_total
    report["pool_source"] = {"kind": "files", "path": pool, "files_read": read, "contract": False, "prefilter": False,
                             "files_skipped": [{"file": f, "why": why} for f, why in skipped]}
    report["champion"] = champion or "pretrained on the pool sample"
    if warm_fit is not None:  # trained to convergence on the pool sample (its own validation split)
        report["warm_start"] = fit_facts(warm_fit)
    _show_adapt(report, len(yt), cols, label, json_out, plot)


def _adapt_with_config(ctx: typer.Context, config: str, sets: Optional[list[str]], champion: Optional[str],
                       tracking_uri: Optional[str], json_out: Optional[Path], plot: Optional[Path]) -> None:
    """``rsft adapt --config``: the search on the pool a night sees — the config's exports ingested
    under its contract (new files only, as ``rsft ingest``), its kept pool brought up to date by
    its prefilter rules (the night's own stages, :mod:`rsft.pipeline.data`), its target sample,
    hold-out, features and label, ``adapt.*``, and its ``train`` block as every fit's budget."""
    from rsft.pipeline import data
    from rsft.pipeline.adapt import adapt_inputs, adapt_stage
    from rsft.pipeline.layout import TARGET_HOLDOUT, TARGET_SAMPLE, night_lock, pool_dataset
    from rsft.pipeline.results import Ingested
    from rsft.pipeline.training import arrays

    def given(name: str) -> bool:  # on the command line (or from its environment variable), not the default
        source = ctx.get_parameter_source(name)  # typer's own copy of click's ParameterSource: by name
        return source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT")

    for name, (opt, key) in _CONFIG_DATA.items():
        if given(name):
            fail(f"{opt}: with --config the config names it ({key}); change it with --set {key}=…")
    options: dict[str, Any] = {}  # the options given, as the config keys they set (--set wins)
    for name, keys in _ADAPT_KEYS.items():
        if given(name):
            value = ctx.params[name]
            for key in keys:
                options[key] = value.split(",") if name == "strategies" else value
    cfg = load_pipeline(config, sets, first=options, last={"adapt.enabled": True})  # the search is what this command runs
    f = cfg.features
    if f.kind == "text" or f.classes:
        fail(f"{config}: rsft adapt compares regression models; this config's label {f.label} is "
             + ("text classes" if f.kind == "text" else "classes"))
    folds_name = "--folds" if given("folds") else "adapt.folds"
    pool_name = pool_dataset(cfg)
    with night_lock(cfg):  # not while a night of this pipeline updates the same kept pool
        with ingest_progress():
            try:  # the target sample first: its folds are checked before the pool is ingested
                targets = data.ingest_stage(cfg, only=(TARGET_SAMPLE, TARGET_HOLDOUT))
                data.check_targets(targets)
                data.check_adapt(cfg, folds_name, "--folds")
                ingested = Ingested({**targets.datasets, **data.ingest_stage(cfg, only=(pool_name,)).datasets})
                data.check_ingested(cfg, ingested)
            except (ValueError, RuntimeError) as e:
                fail(str(e).splitlines()[0] if str(e) else type(e).__name__)
        for line in ingested.failed:  # as the retrain names them: left out of the pool
            say(err, f"[yellow]failed[/] {escape(line)} — left out of the pool, as a night leaves it out", markup=True)
        new = ingested.get(pool_name)
        if new is not None and new.quarantine_reasons:
            say(console, f"quarantined (new files): {_counts(new.quarantine_reasons)}")
        with console.status("prefiltering the pool (new or changed days only)…"):
            prefiltered = data.prefilter_stage(cfg)
        if prefiltered.dropped:
            say(console, f"prefilter dropped: {_counts(prefiltered.dropped)}")
        warm, who, warm_facts = _config_warm_start(cfg, prefiltered, champion, tracking_uri)
        with console.status("reading the target sample and the search's pool sample…"):
            inputs = adapt_inputs(cfg, prefiltered)
            hold = arrays(data.load_target(cfg, TARGET_HOLDOUT), f)
    (xt, yt, groups), pool_sample = inputs
    from rsft.features import feature_names

    for j, c in enumerate(feature_names(f)):  # the config names its features: kept, but said
        why = _label_copy_xy(xt[:, j], yt, f.label) if xt.ndim == 2 and j < xt.shape[1] else None
        if why:
            say(err, f"[yellow]warning[/] features: {escape(c)}: {escape(why)} — a copy of the label, not a cause "
                     "of it: the CV and hold-out figures will look far better than any real prediction", markup=True)
    root = data.pipeline_root(cfg)
    say(console, f"pool: {prefiltered.rows_out:,} rows — the kept pool of {config} as a night sees it: "
                 f"{prefiltered.rows_in:,} rows ingested under the contract ingest.{pool_name} into {root / pool_name}, "
                 f"{prefiltered.rows_out:,} kept by the prefilter rules; the search samples {len(pool_sample.y):,} "
                 "labelled rows of them (adapt.pool_rows)")
    say(console, f"warm start: {who}; every fit's budget: the config's train block (max_steps {cfg.train.max_steps:,}"
                 f"{f', epochs {cfg.train.epochs}' if cfg.train.epochs else ''}; the ranking rung a quarter)")
    with console.status(f"searching {len(cfg.adapt.strategies)} strategies × {cfg.adapt.folds} folds…"):
        try:
            _, report = adapt_stage(cfg, warm, prefiltered, inputs=inputs, holdout=hold)
        except ValueError as e:
            fail(f"{e} (the target sample has {len(yt)} labelled rows)")
    report["pool_rows_sampled"], report["pool_rows_complete"] = len(pool_sample.y), prefiltered.rows_out
    report["pool_source"] = {"kind": "config", "config": str(Path(config).resolve()), "state_dir": str(cfg.state.dir),
                             "dataset": str(root / pool_name), "contract": True, "prefilter": True,
                             "rows_ingested": prefiltered.rows_in, "rows_kept": prefiltered.rows_out,
                             "prefilter_dropped": prefiltered.dropped, "files_failed": list(ingested.failed)}
    report["champion"] = who
    report["train"] = cfg.train.model_dump(mode="json")
    if warm_facts:
        report["warm_start"] = warm_facts
    _show_adapt(report, len(yt), feature_names(f), f.label, json_out, plot, kept=True)


def _config_warm_start(cfg: PipelineConfig, prefiltered, champion: Optional[str], uri: Optional[str]):
    """(model, what it is, its fit's facts or None): ``--champion``; else the config's registered
    champion, as a night starts from it; else the config's base model (``rsft.pipeline.training.base_model``,
    pretrained on the kept pool with the train block's pretrain budget, cached as a first night's)."""
    from rsft.features import feature_names
    from rsft.pipeline.layout import state, tracking_uri as cfg_uri
    from rsft.pipeline.training import base_model
    from rsft.tracking import registry

    names = feature_names(cfg.features)
    if champion:
        with console.status(f"loading the champion {champion}…"):
            try:
                model, theirs = registry.load_champion(champion, uri or cfg_uri(cfg))
            except ValueError as e:
                fail(f"--champion {e}")
        if theirs != names:
            fail(f"--champion {champion}: its inputs {','.join(theirs)} are not the config's features {','.join(names)}")
        return model, champion, None
    name = cfg.promotion.model_name
    if cfg.state.tracking_uri or state(cfg).mlflow_db.exists():  # a fresh state dir has no registry yet
        with console.status(f"looking up {name}@champion…"):
            mlc = registry.client(cfg_uri(cfg))
            seen = registry.alias_version(mlc, name)
            if seen is not None:
                return registry.load_version_model(mlc, seen), f"models:/{name}/{seen.version} (the champion)", None
    with console.status("pretraining the base model on the kept pool (train.pretrain_*), as a first night…"):
        model, info = base_model(cfg, prefiltered)
    facts = {k.removeprefix("base_"): v for k, v in info.items()}
    steps = f"{facts['steps']:,} steps" if isinstance(facts.get("steps"), int) else "its steps not recorded"
    return model, f"the base model a first night trains ({'cached' if info.get('base_cached') else 'trained now'}, {steps})", facts


def _missing(df, column: str) -> int:
    """Rows of ``df`` whose ``column`` is null or NaN."""
    import polars as pl

    col = df.get_column(column)
    return int(col.is_null().sum() + (col.is_nan().sum() if col.dtype in (pl.Float32, pl.Float64) else 0))


def _adapt_columns(pool: str, target_sample, label: str, group_by: str | None, features: str | None,
                   what: str = "--features", skipped: list[tuple[str, str]] | None = None):
    """(the target sample, the feature columns, the pool files to read) of ``rsft adapt``: the
    label and group columns exist, the features are numeric in both the pool and the target
    sample; else one line. ``target_sample``: its path, or the frame already read.

    A directory of exports: a file that cannot be read, lacks a feature or the label, or holds
    one as text is left out and appended to ``skipped`` with why (one bad export does not stop
    the others; the caller warns); the default features are the target sample's numeric columns
    that at least half of the pool's readable files hold as numbers. A single pool file: any of
    these is one error line."""
    from rsft.tables import file_schemas, lacks, merge_schemas, read_table

    skipped = [] if skipped is None else skipped
    text_in: dict[str, str] = {}
    with _tables():
        tgt_df = read_table(target_sample) if isinstance(target_sample, str) else target_sample
        schemas, unreadable = file_schemas(pool)
    skipped += unreadable
    if not schemas:
        fail(f"--pool {pool}: no file could be read ({unreadable[0][0]}: {unreadable[0][1]})")
    pool_schema = merge_schemas(schemas, text_in)
    for name, names in (("pool", list(pool_schema)), ("target sample", tgt_df.columns)):
        if label not in names:
            fail(f"{name} has no column '{label}'{_did_you_mean(label, names)}")
    if group_by and group_by not in tgt_df.columns:
        fail(f"target sample has no column '{group_by}' for --group-by{_did_you_mean(group_by, tgt_df.columns)}")
    if features:
        cols = [c.strip() for c in features.split(",") if c.strip()]
    else:  # every numeric column both have, less identifiers (numbers that name a row, not measure it)
        numeric_in = {c: sum(c in sc and sc[c].is_numeric() for sc in schemas.values()) for c in pool_schema}
        cols = [c for c, t in tgt_df.schema.items() if t.is_numeric() and c not in (label, group_by) and c in pool_schema]
        rare = {c: numeric_in[c] for c in cols if len(schemas) > 1 and 2 * numeric_in[c] < len(schemas)}
        cols = [c for c in cols if c not in rare]
        if rare:  # a column few exports have: using it would skip most of them
            say(console, "features: left out " + ", ".join(f"{c} (numbers in only {n} of {len(schemas)} pool files)"
                                                           for c, n in rare.items())
                + " — name them in --features to use them (the files without them are then skipped)")
        left = {c: why for c in cols if (why := _id_like(tgt_df, c))}
        cols = [c for c in cols if c not in left]
        if left:
            say(console, "features: left out ID-like " + ", ".join(f"{c} ({why})" for c, why in left.items())
                + " — name them in --features to use them")
        # a column missing in most target rows: every row without it would be dropped (trial 6:
        # wind_gust, missing in 80 % of rows, left 95 of 300 target rows and a fifth of the pool)
        import polars as pl

        labelled = tgt_df.filter(pl.col(label).is_not_null())
        sparse = {c: n for c in cols if 2 * (n := _missing(labelled, c)) > labelled.height}
        cols = [c for c in cols if c not in sparse]
        if sparse:
            say(console, "features: left out mostly missing " + ", ".join(
                f"{c} ({n:,} of {labelled.height:,} target rows)" for c, n in sparse.items())
                + " — name them in --features to use them (rows missing a feature are dropped)")
        # (trial 7) a copy of the label in other units (ac_w beside ac_pu = ac_w / 3400): the model
        # would read the answer off it (CV RMSE 0.0089), and nothing said so
        copies = {c: why for c in cols if (why := _label_copy(labelled, c, label))}
        cols = [c for c in cols if c not in copies]
        if copies:
            say(console, "features: left out " + ", ".join(f"{c} ({why})" for c, why in copies.items())
                + " — a copy of the label, not a cause of it; name it in --features to use it anyway")
    if not cols:
        fail("no numeric feature columns shared by pool and target sample; pass --features")
    clash = [c for c in cols if c in (label, group_by)]
    if clash:
        fail(f"{what}: {', '.join(clash)} is the label or --group-by column, not a feature")
    missing = [c for c in cols if c not in pool_schema or c not in tgt_df.columns]
    if missing:
        fail(f"{what}: {', '.join(missing)} not in both the pool and the target sample")
    if features:  # asked for by name: kept, but said
        import polars as pl

        labelled = tgt_df.filter(pl.col(label).is_not_null())
        for c in cols:
            why = _label_copy(labelled, c, label)
            if why:
                say(err, f"[yellow]warning[/] {escape(what)} {escape(c)}: {escape(why)} — a copy of the label, "
                         "not a cause of it: the CV and hold-out figures will look far better than any real "
                         "prediction", markup=True)
    files = list(schemas)
    if len(schemas) > 1 or Path(pool).is_dir():  # a directory: leave out the files that cannot give the columns
        why_not = {f: why for f, sc in schemas.items() if (why := lacks(f, sc, [*cols, label]))}
        skipped += list(why_not.items())
        files = [f for f in files if f not in why_not]
        if not files:
            fail(f"--pool {pool}: no file has every column as numbers ({skipped[0][0]}: {skipped[0][1]})")
        pool_schema = merge_schemas({f: schemas[f] for f in files})
    for name, schema in (("pool", pool_schema), ("target sample", tgt_df.schema)):
        text = [f"{c} ({schema[c]}" + (f", in {text_in[c]}" if name == "pool" and c in text_in else "") + ")"
                for c in [*cols, label] if not schema[c].is_numeric()]
        if text:
            fail(f"{name}: not numeric: {', '.join(text)} (features and label must be numbers)")
    return tgt_df, cols, files


def _warn_skipped(skipped: list[tuple[str, str]]) -> None:
    """One warning line per pool file left out (``rsft adapt --pool <dir>``), naming it and why."""
    for f, why in skipped:
        say(err, f"[yellow]warning[/] pool file skipped: {escape(f)}: {escape(why)}", markup=True)


def _check_cv(df, group_by: str | None, folds: int, cv: str, seed: int, blocks: int) -> None:
    """``--folds`` against the target sample's groups, before the pool is read (one line)."""
    from rsft.adapt import check_folds, time_blocks

    groups = df.get_column(group_by).to_numpy() if group_by else time_blocks(df.height, blocks)
    try:
        check_folds(groups, folds, cv, seed, folds_name="--folds", cv_name="--cv",
                    what=f" of {group_by}" if group_by else f" ({df.height} rows in {min(blocks, df.height)} time blocks)")
    except ValueError as e:
        fail(str(e))


# a column named like an identifier: its last word (or an "id" first word), snake_case or camelCase.
# any numeric type for id/uuid/guid (pandas writes an integer column with gaps as floats); the
# others only as integers ("reynolds_number" is a measurement, "batch_number" is not)
_ID_NAMES = frozenset({"id", "uuid", "guid"})
_ID_NUMBER_NAMES = frozenset({"no", "nr", "number", "serial"})
ID_DISTINCT_MIN_ROWS = 100  # fewer rows: an integer measurement may be all distinct by chance


def _id_like(df, col: str) -> str | None:
    """Why the target sample's numeric column ``col`` looks like an identifier (a row,
    batch or machine number) rather than a measurement, or None: ``id``, ``*_id``, ``*Id``; an
    integer ``*_no``/``*_nr``/``*_number``/``serial``; or integers all distinct over at
    least ``ID_DISTINCT_MIN_ROWS`` rows. A model would learn the numbering, not the process."""
    import re

    words = re.findall(r"[a-z]+|[0-9]+", re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", col).lower())
    integer = df.schema[col].is_integer()
    if words and (words[-1] in _ID_NAMES or words[0] == "id" or (integer and words[-1] in _ID_NUMBER_NAMES)):
        return "named like an ID"
    values = df.get_column(col).drop_nulls()
    if integer and len(values) >= ID_DISTINCT_MIN_ROWS and values.n_unique() == len(values):
        return f"integers, all {len(values):,} distinct"
    return None


LABEL_COPY_R = 0.999  # |Pearson r| with the label at or above this: the label in other units (or nearly)
LABEL_COPY_MIN_ROWS = 10  # fewer labelled rows: a high r may be chance


def _label_copy(df, col: str, label: str) -> str | None:
    """Why the numeric column ``col`` looks like the label itself (a linear function of it, up to
    rounding) on the target sample's labelled rows ``df``, or None: ``|r| ≥ LABEL_COPY_R`` over at
    least ``LABEL_COPY_MIN_ROWS`` rows where both are finite."""
    if not (df.schema[col].is_numeric() and df.schema[label].is_numeric()):  # text: said elsewhere, in one line
        return None
    both = df.select(col, label).drop_nulls().cast(float).to_numpy()
    return _label_copy_xy(both[:, 0], both[:, 1], label)


def _label_copy_xy(x, y, label: str) -> str | None:
    """:func:`_label_copy` of a feature's values ``x`` beside the label's ``y`` (numpy arrays)."""
    import numpy as np

    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if len(x) < LABEL_COPY_MIN_ROWS or x.std() == 0 or y.std() == 0:
        return None
    r = float(np.corrcoef(x, y)[0, 1])
    if not abs(r) >= LABEL_COPY_R:
        return None
    return f"|r| {abs(r):.4f} with the label {label} over {len(x):,} target rows"


def _show_adapt(report: dict[str, Any], target_rows: int, features: list[str], label: str, json_out: Optional[Path],
                plot: Optional[Path], kept: bool = False) -> None:
    """The feature columns, the candidate table, the choice and why; the JSON report (with the
    features and the label) and the chart when asked."""
    from rsft.adapt import candidate_records, candidate_table, plot_candidates

    report["features"], report["label"] = list(features), label
    # the retrain's --json-out records too (trial 7: a consumer sorting candidates[].cv_loss_mean
    # picks an eliminated one, whose short rung-0 figure can read lower: its cv_rmse is null here)
    report["adapt_candidates"] = candidate_records(report)
    units = report["units"]
    say(console, f"features ({len(features)}): {', '.join(features)}; label: {label}")
    console.print(rows_table(f"adapt: {label} from {len(features)} features, {target_rows} target rows, {report['groups']} groups, "
                             f"{report['folds']} {report.get('cv', 'grouped')} folds, "
                             f"pool sample {report['pool_rows_sampled']:,} of {report['pool_rows_complete']:,} "
                             + ("kept rows" if kept else "complete rows")
                             + f", search {report['search_seconds']:.2f} s ({report['fits']} models "
                             f"trained; {len(units)} units, {sum(len(u) > 1 for u in units)} of them model stacks)",
                             candidate_table(report)))
    console.print(f"chosen: [bold]{report['chosen']}[/] — {report['why']}")
    if json_out:
        json_out.write_text(strict_json(report, default=float))
    if plot:
        console.print(f"plot: {plot_candidates(report, str(plot))}")
