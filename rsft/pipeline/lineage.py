"""The night's data lineage, in order: raw files → ingested → kept → selected → training set,
each with its row count and digest, plus the target sample and hold-out.

The digests are the ones the run's dataset inputs and the stage keys already use, so a tag, an
input and a directory name can be matched by eye:

- raw files: sha256 of each export file's bytes (the ingest manifest's entries), digested together;
- ingested: :func:`rsft.ingest.manifest.dataset_digest` of the dataset (also ``rsft.data_digest``);
- kept / selected: ``digest(parquet path, rows)`` of the prefilter's and the sampler's output
  (their paths carry the stage keys, themselves digests of every input and setting);
- training set: ``digest(selected, target sample, recipe, row counts)``.

:func:`night_lineage` only reads the state directory; :mod:`rsft.tracking.lineage` writes it to
MLflow (version and run tags, ``lineage/chain.json``, dataset inputs with row counts).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rsft.config import PipelineConfig
from rsft.ingest.manifest import dataset_digest
from rsft.fsio import digest
from rsft.pipeline.layout import TARGET_HOLDOUT, TARGET_SAMPLE, night_config, pipeline_root, pool_dataset
from rsft.pipeline.results import Selection
from rsft.pipeline.targets import named_digest, named_entries


def night_key(cfg: PipelineConfig, run_key: str) -> str:
    """The night's identity: its selection's ``run_key`` (prefiltered pool, target sample,
    features, scorer, sampling), the target hold-out and the resolved config (:func:`night_config`:
    not where or how fast it runs). Tagged on the version the night registers (``rsft.night``): a
    night registers at most one version however often it is re-run."""
    return digest(run_key, named_digest(cfg, TARGET_HOLDOUT), night_config(cfg))


def manifest_totals(dataset_dir: str | Path, entries: list[dict] | None = None) -> dict[str, Any]:
    """Files, rows read, rows written and the digest of the files' own digests, from a dataset's
    ingest manifest (every night's files, not just tonight's), or of the given entries of it."""
    if entries is None:
        entries = [json.loads(p.read_text()) for p in sorted((Path(dataset_dir) / "_manifest").glob("*.json"))]
    return {
        "files": len(entries),
        "rows_read": sum(int(e.get("rows_total") or 0) for e in entries),
        "rows_ok": sum(int(e.get("rows_ok") or 0) for e in entries),
        "rows_quarantined": sum(int(e.get("rows_quarantined") or 0) for e in entries),
        "raw_digest": digest(sorted(e.get("digest", "") for e in entries)),
    }


def night_lineage(cfg: PipelineConfig, selection: Selection, train: dict[str, Any],
                  search: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The steps in order. Each: ``key`` (``1_raw_files`` … ``5_training_set``, then
    ``target_sample``, ``target_holdout``), ``rows``, ``digest``, ``uri`` (where it is) and
    ``what`` (one sentence). ``train`` is the final fit's row counts (``train_rows``,
    ``target_rows``…); ``search`` the adaptation search's report when it ran."""
    root = pipeline_root(cfg)
    pool, pre, sel = pool_dataset(cfg), selection.prefiltered, selection.selected
    tot = manifest_totals(root / pool)
    sources = [str(Path(cfg.resolve(p)).resolve()) for p in (cfg.data.logs if pool == "logs" else cfg.data.pool)]
    kept_d, sel_d = digest(pre.output, pre.rows_out), digest(sel.output, sel.rows_out)
    # the target sample and hold-out: the files the config names now (rsft.pipeline.targets)
    t_tot, h_tot = (manifest_totals(root / n, list(named_entries(cfg, n).values())) for n in (TARGET_SAMPLE, TARGET_HOLDOUT))
    target_d = named_digest(cfg, TARGET_SAMPLE)
    dropped = ", ".join(f"{k} {v:,}" for k, v in pre.dropped.items() if v) or "none"
    train_rows = int(train.get("train_rows") or 0)
    t_rows = int(train.get("target_rows") or 0)
    chosen = search["chosen"] if search else None
    if search and "selection" not in (search.get("final", {}).get("trained_on") or "") and chosen != "keep_champion":
        trained_on = f"{search['final'].get('trained_on') or chosen} (recipe {chosen})"
        train_uri = str(root)
    elif chosen == "keep_champion":
        trained_on, train_uri = "nothing: the search kept the champion", str(root)
    else:
        pool_rows = train_rows - t_rows
        trained_on = (f"{pool_rows:,} labelled rows of step 4"
                      + (f" + the target sample ×{t_rows // max(t_tot['rows_ok'], 1)} ({t_rows:,} rows)" if t_rows else ""))
        train_uri = sel.output
    steps = [
        {"key": "1_raw_files", "rows": tot["rows_read"], "digest": tot["raw_digest"], "uri": sources[0] if len(sources) == 1 else ", ".join(sources),
         "what": f"{tot['files']:,} export files read by ingest (every night's), {tot['rows_read']:,} rows"},
        {"key": "2_ingested", "rows": tot["rows_ok"], "digest": dataset_digest(root / pool), "uri": str(root / pool),
         "what": f"rows that passed the {pool} contract ({tot['rows_quarantined']:,} quarantined with a reason)"},
        {"key": "3_kept", "rows": pre.rows_out, "digest": kept_d, "uri": pre.output,
         "what": f"kept by the prefilter of {pre.rows_in:,} ingested rows (dropped: {dropped})"},
        {"key": "4_selected", "rows": sel.rows_out, "digest": sel_d, "uri": sel.output,
         "what": f"selected by {sel.mode} sampling toward the target sample ({sel.acceptance_rate:.2%} of the kept rows)"},
        {"key": "5_training_set", "rows": train_rows,
         "digest": digest(sel_d, target_d, chosen, train_rows, t_rows), "uri": train_uri,
         "what": f"what the model was fitted on: {trained_on}"},
        {"key": "target_sample", "rows": t_tot["rows_ok"], "digest": target_d, "uri": str(root / TARGET_SAMPLE),
         "what": "the labelled sample of the current regime the selection aims at"
                 + (f" ({t_rows:,} rows of the training set)" if t_rows else "")},
        {"key": "target_holdout", "rows": h_tot["rows_ok"], "digest": named_digest(cfg, TARGET_HOLDOUT),
         "uri": str(root / TARGET_HOLDOUT), "what": "the hold-out champion and challenger are both scored on (never trained on)"},
    ]
    return steps
