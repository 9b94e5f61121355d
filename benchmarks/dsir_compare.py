"""End-to-end text selection: rsft (Polars n-grams + NgramScorer + budget ``select``) against DSIR.

    python benchmarks/dsir_compare.py [--docs 200000] [--target-docs 2000] [--k 10000] [--pool-sample 50000]
                                      [--workers 2] [--dsir-procs 2] [--chunk-rows 50000]
                                      [--dsir-python .rsft/bench-dsir/bin/python] [--work /tmp/dsir-bench/compare]

Data (text_features.make_logs): a pool JSONL of ``--docs`` maintenance-log lines (20 machines, five
failure categories, ~15% junk; ~4% are in the target regime) and a target JSONL of ``--target-docs``
lines from one regime: bearing events on the hot machines M16..M20. Both sides select ``--k``
documents from the same pool JSONL with the same target JSONL, 10 000 buckets, uni + bigrams,
sampling without replacement with probability ∝ w (Gumbel top-k, no tempering).

Timed (wall seconds, interpreter start and imports excluded on both sides):
  dsir  in the ``--dsir-python`` interpreter (data-selection, created as a venv when missing):
        ``HashedNgramDSIR(num_proc=--dsir-procs, min_example_length=0)``, then
        ``fit_importance_estimator(num_tokens_to_fit="all")``, ``compute_importance_weights()``,
        ``resample(num_to_sample=k, top_k=False)``. ``min_example_length=0``: DSIR's default (100
        tokens) would drop every log line (they are 5-60 tokens); at 0 it keeps every document, as
        rsft does (an empty document scores log w = 0 there).
  rsft  in this interpreter: read the pool JSONL with Polars and write it once as Parquet, read the
        target, hash n-grams (``hashed_ngram_ids``) of the target and of a ``--pool-sample`` pool
        sample, ``NgramScorer.fit`` + save, then ``rsft.sampling.select`` in budget mode (k) with
        ``--workers`` threads over chunks of ``--chunk-rows``.
Quality: both selections are matched back to pool rows by their ``id`` and measured by ONE function,
``rsft.report.ngram_kl_reduction`` (KL(target ‖ pool) − KL(target ‖ selected), smoothing 1) over
rsft's hashed ids; ``kl_in_dsir_features`` repeats it over DSIR's own sha256 bucket counts (from
its ``get_ngram_counts``), so neither side is judged only in the other's feature space.
``target_like_share`` is the ground-truth share of regime rows in each selection
(``target_like_share_best``: min(1, regime rows in the pool / k)).

Goals: ``rsft_over_dsir`` (wall) <= 0.1 and rsft's ``kl_reduction`` >= DSIR's.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

from rsft.config import FeaturesConfig, SamplingConfig, ScorerConfig
from rsft.density import make_scorer
from rsft.features import hashed_ngram_ids
from rsft.report import ngram_kl_reduction
from rsft.sampling import select

sys.path.insert(0, str(Path(__file__).resolve().parent))
from text_features import DEFAULT_DSIR_PYTHON, dsir_python, make_logs, run_child, target_like  # noqa: E402

DSIR_SELECT = """
import json, sys, time
from pathlib import Path
import numpy as np
from data_selection import HashedNgramDSIR
pool, target, work, k, procs, buckets, ngrams = sys.argv[1:4] + [int(a) for a in sys.argv[4:8]]
np.random.seed(0)  # resample's Gumbel noise
t = time.perf_counter()
dsir = HashedNgramDSIR([pool], [target], cache_dir=f"{work}/cache", num_proc=procs, ngrams=ngrams,
                       num_buckets=buckets, min_example_length=0)
dsir.fit_importance_estimator(num_tokens_to_fit="all")
t_fit = time.perf_counter()
dsir.compute_importance_weights()
t_weights = time.perf_counter()
dsir.resample(out_dir=f"{work}/selected", num_to_sample=k, cache_dir=f"{work}/resample-cache", top_k=False)
t_end = time.perf_counter()
ids = [json.loads(line)["id"] for f in sorted(Path(work, "selected").glob("*.jsonl")) for line in open(f)]
print(json.dumps({"seconds": t_end - t, "fit_s": t_fit - t, "weights_s": t_weights - t_fit,
                  "resample_s": t_end - t_weights, "selected_ids": ids}))
"""

DSIR_COUNTS = """
import json, sys
import numpy as np
from data_selection.hashed_ngram_dsir import get_ngram_counts, wpt
pool, target, sets, buckets, ngrams = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
def counts(texts):
    c = np.zeros(buckets, dtype=np.int64)
    for text in texts:
        get_ngram_counts(text, n=ngrams, num_buckets=buckets, counts=c, tokenizer=wpt.tokenize)
    return c.tolist()
docs = {}
with open(pool) as f:
    for line in f:
        ex = json.loads(line)
        docs[ex["id"]] = ex["text"]
with open(target) as f:
    out = {"target": counts(json.loads(line)["text"] for line in f)}
out["pool"] = counts(docs.values())
for name, ids in json.load(open(sets)).items():
    out[name] = counts(docs[i] for i in ids)
print(json.dumps(out))
"""


def run_rsft(pool_jsonl: Path, target_jsonl: Path, work: Path, args: argparse.Namespace) -> dict:
    """The timed rsft path from the JSONL files to the selected Parquet."""
    t = time.perf_counter()
    pool = pl.read_ndjson(pool_jsonl)
    pool.write_parquet(work / "pool.parquet")
    target = pl.read_ndjson(target_jsonl)
    sample = pool.sample(n=min(args.pool_sample, pool.height), seed=0)
    cfg = ScorerConfig(kind="ngram", buckets=args.buckets, ngrams=args.ngrams, smoothing=args.smoothing)
    enc = lambda df: df.select(hashed_ngram_ids(pl.col("text"), cfg.buckets, cfg.ngrams))["text"]  # noqa: E731
    make_scorer(cfg, []).fit(enc(target), enc(sample)).save(work / "ngram.pt")
    t_fit = time.perf_counter()
    summary = select(work / "pool.parquet", str(work / "ngram.pt"), FeaturesConfig(text_column="text"),
                     SamplingConfig(mode="budget", budget=args.k, chunk_rows=args.chunk_rows),
                     str(work / "rsft-select"), workers=args.workers)
    t_end = time.perf_counter()
    ids = pl.read_parquet(summary.output, columns=["id"])["id"].to_list()
    return {"seconds": t_end - t, "read_write_fit_s": t_fit - t, "select_s": t_end - t_fit, "selected_ids": ids}


def quality(pool: pl.DataFrame, target: pl.DataFrame, selections: dict[str, list[int]], dsir_counts: dict,
            buckets: int, ngrams: int) -> dict[str, dict]:
    """Per selection: distinct rows, target-like share, and the KL reduction in both feature spaces."""
    enc = lambda df: df.select(hashed_ngram_ids(pl.col("text"), buckets, ngrams))["text"]  # noqa: E731
    pool_ids, target_ids = enc(pool), enc(target)
    as_ids = lambda c: [np.repeat(np.arange(buckets), c)]  # noqa: E731  bucket counts -> one bag of ids
    out = {}
    for name, ids in selections.items():
        picked = pool.filter(pl.col("id").is_in(ids))
        out[name] = {
            "selected": len(ids),
            "distinct_pool_rows": picked.height,
            "target_like_share": round(float(picked.select(target_like().mean()).item()), 4),
            "kl": _round(ngram_kl_reduction(target_ids, pool_ids, enc(picked), buckets)),
            "kl_in_dsir_features": _round(ngram_kl_reduction(
                as_ids(dsir_counts["target"]), as_ids(dsir_counts["pool"]), as_ids(dsir_counts[name]), buckets)),
        }
    return out


def _round(d: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 4) for k, v in d.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=200_000, help="pool (raw) log lines (default 200000)")
    ap.add_argument("--target-docs", type=int, default=2_000, help="target log lines (default 2000)")
    ap.add_argument("--k", type=int, default=10_000, help="documents to select (default 10000)")
    ap.add_argument("--pool-sample", type=int, default=ScorerConfig().pool_sample_rows,
                    help="pool rows rsft fits its pool model on (default: ScorerConfig's, 50000); DSIR uses all")
    ap.add_argument("--buckets", type=int, default=10_000, help="hashed n-gram buckets (default 10000)")
    ap.add_argument("--ngrams", type=int, default=2, help="n-gram order, 2 = uni + bigrams (default 2)")
    ap.add_argument("--smoothing", type=float, default=ScorerConfig().smoothing,
                    help="rsft ngram pseudo-count per bucket (default: scorer.smoothing's default)")
    ap.add_argument("--workers", type=int, default=2, help="rsft select threads (default 2)")
    ap.add_argument("--chunk-rows", type=int, default=50_000, help="rsft pool rows per chunk (default 50000)")
    ap.add_argument("--dsir-procs", type=int, default=2, help="DSIR num_proc (default 2)")
    ap.add_argument("--dsir-python", default=str(DEFAULT_DSIR_PYTHON),
                    help="interpreter with data-selection installed; created as a venv if missing "
                         "(default: .rsft/bench-dsir/bin/python under the repo)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/dsir-bench/compare"), help="scratch directory")
    args = ap.parse_args()

    python = dsir_python(args.dsir_python)
    shutil.rmtree(args.work, ignore_errors=True)
    (args.work / "dsir").mkdir(parents=True)
    pool, target = make_logs(args.docs, seed=1), make_logs(args.target_docs, seed=2, target=True)
    pool_jsonl, target_jsonl = args.work / "pool.jsonl", args.work / "target.jsonl"
    pool.write_ndjson(pool_jsonl)
    target.write_ndjson(target_jsonl)

    dims = [str(args.buckets), str(args.ngrams)]
    dsir = run_child(python, DSIR_SELECT, str(pool_jsonl), str(target_jsonl), str(args.work / "dsir"), str(args.k),
                     str(args.dsir_procs), *dims)
    rsft = run_rsft(pool_jsonl, target_jsonl, args.work, args)
    selections = {"rsft": rsft.pop("selected_ids"), "dsir": dsir.pop("selected_ids")}
    (args.work / "selections.json").write_text(json.dumps(selections))
    counts = run_child(python, DSIR_COUNTS, str(pool_jsonl), str(target_jsonl), str(args.work / "selections.json"), *dims)
    q = quality(pool, target, selections, counts, args.buckets, args.ngrams)

    out = {
        "docs": args.docs,
        "target_docs": args.target_docs,
        "k": args.k,
        "pool_target_like_share": round(float(pool.select(target_like().mean()).item()), 4),
        "target_like_share_best": round(min(1.0, pool.select(target_like().sum()).item() / args.k), 4),
        "rsft": {**{k: round(v, 2) for k, v in rsft.items()}, "pool_sample": min(args.pool_sample, args.docs),
                 "workers": args.workers, **q["rsft"]},
        "dsir": {**{k: round(v, 2) for k, v in dsir.items()}, "num_proc": args.dsir_procs, **q["dsir"]},
        "rsft_over_dsir": round(rsft["seconds"] / dsir["seconds"], 3),
        "goal": "rsft_over_dsir <= 0.1 and rsft kl_reduction >= dsir kl_reduction",
    }
    out["goal_met"] = bool(out["rsft_over_dsir"] <= 0.1
                           and q["rsft"]["kl"]["kl_reduction"] >= q["dsir"]["kl"]["kl_reduction"])
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
