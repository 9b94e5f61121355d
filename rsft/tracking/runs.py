"""The night's MLflow run: what was ingested, selected and trained, and what was decided.

One run per night (``night_run``); the adaptation search's candidates are nested runs under it.
Every call into ``mlflow`` for runs is here, so what a person sees in the MLflow UI is decided
in one file.
"""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from typing import Any, Callable, Iterator

from rsft.fsio import owner, owner_gone
from rsft.tracking import registry


def _mlflow():
    import mlflow  # heavy import: only when tracking is used

    return mlflow


# the config values a person compares across nights (the runs table's params); the whole
# resolved config is the run's config/resolved.yaml artifact and rides in every checkpoint
KEY_PARAMS = (
    "features.kind", "features.label", "scorer.kind", "scorer.pool_sample_rows",
    "sampling.mode", "sampling.temper", "sampling.m_quantile", "sampling.budget",
    "model.kind", "model.hidden", "train.max_steps", "train.epochs", "train.lr", "train.batch_size", "train.target_weight",
    "train.include_target_sample", "train.freeze", "train.holdout_exclusion", "adapt.enabled", "adapt.strategies", "adapt.folds",
    "promotion.metric", "promotion.min_improvement",
)


# the runs table as a person wants it: MLflow 3's UI shows no metric column until one is picked,
# and its column choice is not configurable on the server; a shared view (an experiment tag the UI
# reads for ``?viewStateShareKey=<key>``) holds the nights' key figures as columns, newest first
NIGHTS_VIEW = "rsft-nights"
NIGHT_COLUMNS = ("rows_pool", "rows_kept", "rows_selected", "acceptance_rate", "ess", "auc_selected_vs_target",
                 "ks_max_selected_vs_target", "train_rows", "challenger_holdout_{metric}", "champion_holdout_{metric}")


def nights_view(experiment_id: str, metric: str) -> None:
    """Write the experiment's nights view (:data:`NIGHTS_VIEW`) and its description linking it."""
    client = _mlflow().MlflowClient()
    columns = [f"metrics.`{c.format(metric=metric)}`" for c in NIGHT_COLUMNS]
    # the grid's column ids: run name, created, duration, then the figures in NIGHT_COLUMNS' order
    order = ["attributes.`Run Name`", "runDateAndNestInfo", "duration", *columns]
    view = json.dumps({"orderByKey": "attributes.start_time", "orderByAsc": False, "selectedColumns": columns,
                       "columnOrder": order, "columnWidths": {"attributes.`Run Name`": 280}})
    tags = client.get_experiment(experiment_id).tags
    if tags.get(f"mlflow.sharedViewState.{NIGHTS_VIEW}") != view:
        client.set_experiment_tag(experiment_id, f"mlflow.sharedViewState.{NIGHTS_VIEW}", view)
    note = (f"rsft: one run per night (named pipeline, date, decision, version). "
            f"[The nights with their key figures as columns]({nights_path(experiment_id)}): rows in / kept / "
            f"selected, acceptance, ESS, selected-vs-target AUC and KS, challenger and champion hold-out {metric}. "
            f"Each run's description tells its night; its datasets are the lineage in order.")
    if tags.get("mlflow.note.content") != note:
        client.set_experiment_tag(experiment_id, "mlflow.note.content", note)


def nights_path(experiment_id: str) -> str:
    """The UI route of the experiment's nights view (append to the UI's address)."""
    return f"#/experiments/{experiment_id}/runs?viewStateShareKey={NIGHTS_VIEW}"


@contextmanager
def night_run(experiment: str, artifact_root: str | None, run_name: str, tags: dict[str, str],
              flat_params: dict[str, Any], config_yaml: str, started: float | None = None,
              metric: str = "rmse") -> Iterator[str]:
    """Start the night's run in ``experiment`` (created with a local artifact root when embedded);
    yields the run id. Params: :data:`KEY_PARAMS` of ``flat_params`` (plus the number of model
    inputs); the whole config as ``config/resolved.yaml``. ``started`` (epoch seconds): the run's
    start time when the night began before its run (ingest and selection come first);
    ``metric``: the gate's metric, a column of the experiment's nights view (:func:`nights_view`)."""
    mlflow = _mlflow()
    exp_id = registry.use_experiment(experiment, artifact_root)
    close_stale_runs(exp_id)
    nights_view(exp_id, metric)
    from mlflow.tracking.context.registry import resolve_tags  # the source/user tags start_run would add

    created = mlflow.MlflowClient().create_run(exp_id, start_time=int(started * 1000) if started else None,
                                               tags={**resolve_tags(), **owner()}, run_name=run_name)
    with mlflow.start_run(run_id=created.info.run_id) as run:  # (owner tags at creation: a kill after it is closable)
        mlflow.set_tags({**tags, **registry.environment_tags()})
        registry.log_flat_params({k: flat_params[k] for k in KEY_PARAMS if k in flat_params})
        mlflow.log_text(config_yaml, "config/resolved.yaml")
        yield run.info.run_id


def close_stale_runs(experiment_id: str) -> list[str]:
    """Mark as KILLED the runs of ``experiment_id`` still RUNNING whose process, on this machine,
    is gone (a night killed mid-run leaves its run RUNNING forever otherwise). Runs of other
    machines or of live processes are left alone. Returns the run ids closed."""
    client = _mlflow().MlflowClient()
    running = client.search_runs([experiment_id], "attributes.status = 'RUNNING'", max_results=500)
    closed = [run.info.run_id for run in running if owner_gone(run.data.tags)]
    # and the candidate runs nested under a killed night
    closed += [r.info.run_id for r in running if r.data.tags.get("mlflow.parentRunId") in closed]
    for run_id in closed:
        client.set_terminated(run_id, status="KILLED")
    return closed


def night_record(run_id: str) -> tuple[dict[str, float], dict[str, str]]:
    """(metrics, tags) of a night's run: what a re-run of a decided night reports."""
    run = _mlflow().MlflowClient().get_run(run_id)
    return dict(run.data.metrics), dict(run.data.tags)


def describe_run(run_id: str, name: str, markdown: str) -> None:
    """The run's name in the runs table and its description (the run page's markdown note)."""
    client = _mlflow().MlflowClient()
    client.set_tag(run_id, "mlflow.runName", name)
    client.set_tag(run_id, "mlflow.note.content", markdown)


def log_lineage(lineage: dict[str, Any], scorer_path: str, report_dir: str | None) -> None:
    """Stage summaries (``lineage/summary.json``), the fitted scorer and the selection report (the
    datasets themselves, in order: :func:`rsft.tracking.lineage.record`)."""
    mlflow = _mlflow()
    registry.log_json(lineage, "lineage/summary.json")
    mlflow.log_artifact(scorer_path, "scorer")
    if report_dir:
        mlflow.log_artifacts(report_dir, "selection_report")


def log_metrics(metrics: dict[str, Any], prefix: str = "", step: int | None = None) -> None:
    """Numeric metrics (None becomes NaN); ``prefix`` is prepended to every name."""
    _mlflow().log_metrics({f"{prefix}{k}": float("nan") if v is None else float(v) for k, v in metrics.items()}, step=step)


def epoch_logger(then: Callable[[dict], None] | None = None) -> Callable[[dict], None]:
    """An ``on_epoch`` callback logging each epoch's row as step metrics (then calling ``then``)."""

    def on_epoch(row: dict) -> None:  # fit_lr, fit_train_loss, fit_val_loss, … as curves over optimizer steps
        _mlflow().log_metrics({f"fit_{k}": float(v) for k, v in row.items() if k not in ("step",) and v is not None},
                              step=int(row.get("step", row["epoch"])))
        if then:
            then(row)

    return on_epoch


def log_plot(draw: Callable[[str], str], artifact_file: str) -> None:
    """A chart as an artifact: ``draw(path)`` writes the PNG (``artifact_file`` = dir/name.png)."""
    directory, _, name = artifact_file.rpartition("/")
    with tempfile.TemporaryDirectory() as d:
        _mlflow().log_artifact(draw(os.path.join(d, name)), directory or None)


def set_tags(tags: dict[str, Any]) -> None:
    _mlflow().set_tags({k: str(v) for k, v in tags.items()})


def log_adapt_search(report: dict[str, Any], records: list[dict[str, Any]], plot: Callable[[str], str]) -> None:
    """The adaptation search: one nested run per candidate (CV mean and SE, pool rows, seconds),
    the report JSON, the candidates chart (``plot(path)`` draws it), their records (numbers:
    ``candidate_records``) as ``adapt/candidates.jsonl``, the choice as tags."""
    mlflow = _mlflow()
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
        mlflow.log_artifact(plot(os.path.join(d, "candidates.png")), "adapt")
    mlflow.log_text("\n".join(json.dumps(r) for r in records), "adapt/candidates.jsonl")
    mlflow.set_tags({"rsft.adapt_chosen": report["chosen"], "rsft.adapt_why": report["why"][:250],
                     "rsft.adapt_trained_on": report["final"]["trained_on"][:250]})


def log_decision(decision: registry.Decision, registered: bool) -> None:
    """The gate's decision as run tags and ``decision.json``."""
    _mlflow().set_tags({"rsft.decision": "promoted" if decision.promote else ("rejected" if registered else "kept-champion"),
                        "rsft.reason": decision.reason})
    registry.log_json(decision.to_dict(), "decision.json")


MLFLOW_UI = "http://127.0.0.1:5000"  # where `mlflow ui` listens by default


def _served(tracking_uri: str) -> bool:
    return tracking_uri.startswith(("http://", "https://"))


def ui_base(tracking_uri: str, ui_url: str | None = None) -> str:
    """The UI's address: ``state.ui_url`` when configured, else a tracking server's own, else
    where ``mlflow ui`` listens by default."""
    if ui_url:
        return ui_url.rstrip("/")
    return tracking_uri.rstrip("/") if _served(tracking_uri) else MLFLOW_UI


def ui_command(tracking_uri: str, ui_url: str | None = None) -> str | None:
    """The command that starts a UI on a local store, listening where the links point
    (``--host``/``--port`` when ``ui_url`` is not ``mlflow ui``'s default); None for a tracking server."""
    if _served(tracking_uri):
        return None
    from urllib.parse import urlsplit

    where = urlsplit(ui_base(tracking_uri, ui_url))
    host = where.hostname or "127.0.0.1"
    port = where.port or (443 if where.scheme == "https" else 80) if ui_url else 5000
    return (f"mlflow ui --backend-store-uri {tracking_uri}" + ("" if host in ("127.0.0.1", "localhost") else f" --host {host}")
            + ("" if port == 5000 else f" --port {port}"))


def run_link(tracking_uri: str, run_id: str, ui_url: str | None = None) -> tuple[str, str | None]:
    """(URL of the run's page, the command that starts a UI for it or None): at ``state.ui_url``
    when configured, else a tracking server's own address, else ``mlflow ui``'s default address
    (a local store: with the command to start it)."""
    try:
        exp = registry.client(tracking_uri).get_run(run_id).info.experiment_id
    except Exception:  # noqa: BLE001 - a link is a courtesy: never fail a night over it
        exp = "0"
    return f"{ui_base(tracking_uri, ui_url)}/#/experiments/{exp}/runs/{run_id}", ui_command(tracking_uri, ui_url)


def nights_link(tracking_uri: str, experiment: str, ui_url: str | None = None) -> str | None:
    """URL of the experiment's nights view (:func:`nights_view`) at the UI's address
    (:func:`ui_base`), or None before its first night."""
    try:
        exp = registry.client(tracking_uri).get_experiment_by_name(experiment)
    except Exception:  # noqa: BLE001 - a link is a courtesy
        return None
    if exp is None:
        return None
    return f"{ui_base(tracking_uri, ui_url)}/{nights_path(exp.experiment_id)}"
