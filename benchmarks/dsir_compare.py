"""End-to-end text selection: rsft (Polars n-grams + NgramScorer + budget ``select``) against DSIR.

    python benchmarks/dsir_compare.py [--corpus logs|real] [--docs 200000] [--target-docs 2000] [--k 10000]
                                      [--target-genre man] [--target-share 0.05] [--pool-sample 50000]
                                      [--ngram-score sum|per_ngram] [--workers 2] [--dsir-procs 2]
                                      [--chunk-rows 50000] [--chunk-bytes N]
                                      [--row-group-rows 82000] [--no-dsir] [--dsir-cache DIR]
                                      [--dsir-python .rsft/bench-dsir/bin/python] [--work DIR]

Data, ``--corpus logs`` (text_features.make_logs): a pool JSONL of ``--docs`` maintenance-log lines
(20 machines, five failure categories, ~15% junk; ~4% are in the target regime) and a target JSONL
of ``--target-docs`` lines from one regime: bearing events on the hot machines M16..M20.
``--corpus real`` (real_docs.py): real documents of realistic length assembled offline from this
machine (man pages, changelogs, copyright files, licences, package descriptions, Python docstrings
and def/class source blocks; 100 to 100 000+ tokens, nothing truncated); the target is
``--target-docs`` documents of ``--target-genre`` (man pages) held out of the pool, where that genre
is ``--target-share`` of the ``--docs`` documents (a pool larger than the corpus repeats it).
Both sides select ``--k`` documents from the same pool JSONL with the same target JSONL, uni +
bigrams, each with its own default buckets (DSIR 10 000 = ``--buckets``; rsft 32 768 =
``--rsft-buckets``), sampling without replacement with probability ∝ w (Gumbel top-k, no
tempering). The KL reductions are measured in 10 000-bucket spaces (``--buckets``): rsft's hash
and DSIR's.

Timed (wall seconds and CPU seconds, interpreter start and imports excluded on both sides):
  dsir  in the ``--dsir-python`` interpreter (data-selection, created as a venv when missing):
        ``HashedNgramDSIR(num_proc=--dsir-procs, min_example_length=0)``, then
        ``fit_importance_estimator(num_tokens_to_fit="all")``, ``compute_importance_weights()``,
        ``resample(num_to_sample=k, top_k=False)``. ``min_example_length=0``: DSIR's default (100
        tokens) would drop every log line (they are 5-60 tokens); at 0 it keeps every document, as
        rsft does (an empty document scores log w = 0 there). CPU: its process and its (joined)
        worker processes. Its results are cached under ``--dsir-cache`` by the digests of the JSONL
        files and the settings (DSIR on the real corpus takes ~20 CPU minutes).
  rsft  in two fresh children of this interpreter, each with its peak RSS (VmHWM):
        prepare: stream the pool JSONL into Parquet (row groups of ``--row-group-rows``), read the
        target, hash n-grams of the target and of a ``--pool-sample`` pool sample, ``NgramScorer.fit``
        + save; select: ``rsft.sampling.select`` in budget mode (k) with ``--workers`` threads over
        chunks of ``--chunk-rows`` (``sampling.chunk_bytes`` = ``--chunk-bytes`` when given).
``docs_per_cpu_s``: pool documents per CPU second of the whole timed path (all cores, all
processes): the per-core rate, robust to other load on the machine; ``per_core_speedup`` is
rsft's over DSIR's.
Quality: both selections are matched back to pool rows by their ``id`` and measured by ONE function,
``rsft.report.ngram_kl_reduction`` (KL(target ‖ pool) − KL(target ‖ selected), smoothing 1) over
rsft's hashed ids; ``kl_in_dsir_features`` repeats it over DSIR's own sha256 bucket counts (from
its ``get_ngram_counts``), so neither side is judged only in the other's feature space.
``target_like_share`` is the ground-truth share of target-regime / target-genre rows in each
selection (``target_like_share_best``: min(1, such rows in the pool / k)).

Goals: logs: ``rsft_over_dsir`` (wall) <= 0.1 and rsft's ``kl_reduction`` >= DSIR's. real (issue
#21): ``per_core_speedup`` >= 30, rsft's ``kl_reduction`` >= DSIR's in both feature spaces, and the
select child's peak RSS <= 1 GB. ``--no-dsir``: rsft alone (peak RSS at other pool sizes).
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import polars as pl

from rsft.config import ScorerConfig
from rsft.density.ngram import NGRAM_HASH
from rsft.features import hashed_ngram_flat
from rsft.report import ngram_kl_reduction

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import measure  # noqa: E402
from real_docs import build_corpus, pool_and_target  # noqa: E402
from text_features import DEFAULT_DSIR_PYTHON, dsir_python, make_logs, run_child, target_like  # noqa: E402

DSIR_SELECT = """
import json, resource, sys, time
from pathlib import Path
import numpy as np
from data_selection import HashedNgramDSIR
pool, target, work, k, procs, buckets, ngrams = sys.argv[1:4] + [int(a) for a in sys.argv[4:8]]
np.random.seed(0)  # resample's Gumbel noise
cpu = lambda who: (lambda r: r.ru_utime + r.ru_stime)(resource.getrusage(who))
cpu0 = cpu(resource.RUSAGE_SELF)
t = time.perf_counter()
dsir = HashedNgramDSIR([pool], [target], cache_dir=f"{work}/cache", num_proc=procs, ngrams=ngrams,
                       num_buckets=buckets, min_example_length=0)
dsir.fit_importance_estimator(num_tokens_to_fit="all")
t_fit = time.perf_counter()
dsir.compute_importance_weights()
t_weights = time.perf_counter()
dsir.resample(out_dir=f"{work}/selected", num_to_sample=k, cache_dir=f"{work}/resample-cache", top_k=False)
t_end = time.perf_counter()
try:  # DSIR's workers are loky processes: joined here, so that RUSAGE_CHILDREN holds their CPU time
    from joblib.externals.loky import get_reusable_executor
    get_reusable_executor().shutdown(wait=True)
except Exception:
    pass
ids = [json.loads(line)["id"] for f in sorted(Path(work, "selected").glob("*.jsonl")) for line in open(f)]
print(json.dumps({"seconds": t_end - t, "fit_s": t_fit - t, "weights_s": t_weights - t_fit,
                  "resample_s": t_end - t_weights,
                  "cpu_s": cpu(resource.RUSAGE_SELF) - cpu0 + cpu(resource.RUSAGE_CHILDREN), "selected_ids": ids}))
"""

DSIR_COUNTS = """
import json, sys
import numpy as np
from data_selection.hashed_ngram_dsir import get_ngram_counts, wpt
pool, target, sets, buckets, ngrams, whole = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), sys.argv[6] == "1"
def count(texts):
    c = np.zeros(buckets, dtype=np.int64)
    for text in texts:
        get_ngram_counts(text, n=ngrams, num_buckets=buckets, counts=c, tokenizer=wpt.tokenize)
    return c
def counts(texts, procs=2):  # integer counts: the same summed over shards in any order
    texts = list(texts)
    if len(texts) < 10_000:
        return count(texts).tolist()
    from multiprocessing import Pool
    with Pool(procs) as p:
        return sum(p.map(count, [texts[i::4 * procs] for i in range(4 * procs)])).tolist()
docs = {}
with open(pool) as f:
    for line in f:
        ex = json.loads(line)
        docs[ex["id"]] = ex["text"]
out = {}
if whole:  # the pool and target counts (cacheable: they depend on the data only)
    with open(target) as f:
        out["target"] = counts(json.loads(line)["text"] for line in f)
    out["pool"] = counts(docs.values())
for name, ids in json.load(open(sets)).items():
    out[name] = counts(docs[i] for i in ids)
print(json.dumps(out))
"""


RSFT_PREPARE = """
import json, resource, sys, time
from rsft.config import ScorerConfig  # rsft first, as the CLI: it sets Polars' allocator options
import numpy as np
import polars as pl
from rsft.config import FeaturesConfig
from rsft.density import make_scorer
pool_jsonl, target_jsonl, work, sample_rows, buckets, ngrams, smoothing, rg, score = sys.argv[1:10]
sample_rows, buckets, ngrams, smoothing, rg = int(sample_rows), int(buckets), int(ngrams), float(smoothing), int(rg)
cpu0 = (lambda r: r.ru_utime + r.ru_stime)(resource.getrusage(resource.RUSAGE_SELF))
t = time.perf_counter()
# the pool JSONL -> Parquet, streamed (row groups of rg rows); the target is small
pl.scan_ndjson(pool_jsonl).sink_parquet(f"{work}/pool.parquet", row_group_size=rg)
target = pl.read_ndjson(target_jsonl)
n = pl.scan_parquet(f"{work}/pool.parquet").select(pl.len()).collect().item()
idx = np.sort(np.random.default_rng(0).choice(n, size=min(sample_rows, n), replace=False))
cfg = ScorerConfig(kind="ngram", buckets=buckets, ngrams=ngrams, smoothing=smoothing, ngram_score=score)
sample = (pl.scan_parquet(f"{work}/pool.parquet").with_row_index("__i").filter(pl.col("__i").is_in(pl.lit(idx)))
          .select("text").collect())
# the pipeline's fit (fit_frames): n-gram counts of both sides, featurised in slices of bounded bytes
make_scorer(cfg, []).fit_frames(target, sample, FeaturesConfig(text_column="text")).save(f"{work}/ngram.pt")
cpu = (lambda r: r.ru_utime + r.ru_stime)(resource.getrusage(resource.RUSAGE_SELF)) - cpu0
print(json.dumps({"seconds": time.perf_counter() - t, "cpu_s": cpu, "pool_sample": int(len(idx))}))
"""

RSFT_SELECT = """
import json, resource, sys, time
from rsft.config import FeaturesConfig, SamplingConfig  # rsft first, as the CLI: it sets Polars' allocator options
from rsft.sampling import select
import polars as pl
work, k, workers, chunk_rows, extra = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), json.loads(sys.argv[5])
cpu0 = (lambda r: r.ru_utime + r.ru_stime)(resource.getrusage(resource.RUSAGE_SELF))
t = time.perf_counter()
summary = select(f"{work}/pool.parquet", f"{work}/ngram.pt", FeaturesConfig(text_column="text"),
                 SamplingConfig(mode="budget", budget=k, chunk_rows=chunk_rows, **extra), f"{work}/rsft-select",
                 workers=workers)
seconds = time.perf_counter() - t
cpu = (lambda r: r.ru_utime + r.ru_stime)(resource.getrusage(resource.RUSAGE_SELF)) - cpu0
ids = pl.read_parquet(summary.output, columns=["id"])["id"].to_list()
print(json.dumps({"seconds": seconds, "cpu_s": cpu, "chunks": summary.chunks, "selected_ids": ids}))
"""


def run_rsft(pool_jsonl: Path, target_jsonl: Path, work: Path, args: argparse.Namespace) -> dict:
    """The timed rsft path from the JSONL files to the selected Parquet, in two fresh children of
    this interpreter (prepare: JSONL -> Parquet + fit; select), each with its own peak RSS."""
    shutil.rmtree(work / "rsft-select", ignore_errors=True)
    prep = measure(RSFT_PREPARE, str(pool_jsonl), str(target_jsonl), str(work), str(args.pool_sample),
                   str(args.rsft_buckets), str(args.ngrams), str(args.smoothing), str(args.row_group_rows),
                   args.ngram_score)
    sel = measure(RSFT_SELECT, str(work), str(args.k), str(args.workers), str(args.chunk_rows),
                  json.dumps({k: v for k, v in {"chunk_bytes": args.chunk_bytes}.items() if v is not None}))
    p, s = json.loads(prep["stdout"].splitlines()[-1]), json.loads(sel["stdout"].splitlines()[-1])
    return {"seconds": p["seconds"] + s["seconds"], "read_write_fit_s": p["seconds"], "select_s": s["seconds"],
            "cpu_s": p["cpu_s"] + s["cpu_s"], "select_cpu_s": s["cpu_s"], "chunks": s["chunks"],
            "prepare_peak_rss_mb": prep["peak_rss_mb"], "select_peak_rss_mb": sel["peak_rss_mb"],
            "pool_sample": p["pool_sample"], "selected_ids": s["selected_ids"]}


def dsir_cached(python: str, code: str, key: dict, cache: Path | None, *args: str) -> dict:
    """run_child(python, code, *args), reused from ``cache`` when run before on the same inputs
    (``key`` holds the digests of the JSONL files and the settings)."""
    name = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    path = cache / f"{name}.json" if cache else None
    if path and path.exists():
        return {**json.loads(path.read_text()), "cached": True}
    out = run_child(python, code, *args)
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(out))
    return out


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            h.update(block)
    return h.hexdigest()


def quality(pool: pl.DataFrame, target: pl.DataFrame, selections: dict[str, list[int]], dsir_counts: dict,
            buckets: int, ngrams: int, like: pl.Expr) -> dict[str, dict]:
    """Per selection: distinct rows, target-like share, and the KL reduction in both feature spaces."""
    pool_ids, target_ids = _flat(pool, buckets, ngrams), _flat(target, buckets, ngrams)
    as_ids = lambda c: [np.repeat(np.arange(buckets), c)]  # noqa: E731  bucket counts -> one bag of ids
    out = {}
    for name, ids in selections.items():
        picked = pool.filter(pl.col("id").is_in(ids))
        out[name] = {
            "selected": len(ids),
            "distinct_pool_rows": picked.height,
            "target_like_share": round(float(picked.select(like.mean()).item()), 4),
            "kl": _round(ngram_kl_reduction(target_ids, pool_ids, _flat(picked, buckets, ngrams), buckets)),
            "kl_in_dsir_features": _round(ngram_kl_reduction(
                as_ids(dsir_counts["target"]), as_ids(dsir_counts["pool"]), as_ids(dsir_counts[name]), buckets)),
        }
    return out


def _flat(df: pl.DataFrame, buckets: int, ngrams: int, step: int = 5_000) -> tuple[np.ndarray, np.ndarray]:
    """(flat ids, offsets) of a frame's text, hashed in slices (a large pool's n-grams as strings at
    once would need tens of GB)."""
    parts, lens = [], []
    for off in range(0, df.height, step):
        flat, offsets = hashed_ngram_flat(df.slice(off, step), "text", buckets, ngrams, scheme=NGRAM_HASH)
        parts.append(flat)
        lens.append(np.diff(offsets))
    lens = np.concatenate(lens).astype(np.int64) if lens else np.zeros(0, np.int64)
    return (np.concatenate(parts) if parts else np.zeros(0, np.int64)), np.concatenate([[0], np.cumsum(lens)])


def _round(d: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 4) for k, v in d.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", choices=["logs", "real"], default="logs",
                    help="logs: synthetic maintenance-log lines; real: real_docs.py's offline corpus (default logs)")
    ap.add_argument("--docs", type=int, default=200_000, help="pool documents (default 200000)")
    ap.add_argument("--target-docs", type=int, default=2_000, help="target documents (default 2000)")
    ap.add_argument("--target-genre", default="man", help="real: the target genre (default man)")
    ap.add_argument("--target-share", type=float, default=0.05, help="real: the target genre's share of the pool (default 0.05)")
    ap.add_argument("--real-docs", type=Path, default=Path("/tmp/dsir-bench/real-docs.jsonl"),
                    help="real: the corpus JSONL (built by real_docs.py when missing)")
    ap.add_argument("--k", type=int, default=10_000, help="documents to select (default 10000)")
    ap.add_argument("--pool-sample", type=int, default=ScorerConfig().pool_sample_rows,
                    help="pool rows rsft fits its pool model on (default: ScorerConfig's, 50000); DSIR uses all")
    ap.add_argument("--buckets", type=int, default=10_000,
                    help="DSIR's hashed n-gram buckets, and the feature spaces the KL is measured in (default 10000)")
    ap.add_argument("--rsft-buckets", type=int, default=ScorerConfig().buckets,
                    help=f"rsft scorer's buckets (default: rsft's own default, {ScorerConfig().buckets})")
    ap.add_argument("--ngrams", type=int, default=2, help="n-gram order, 2 = uni + bigrams (default 2)")
    ap.add_argument("--ngram-score", choices=["sum", "per_ngram"], default=ScorerConfig().ngram_score,
                    help="rsft scorer.ngram_score (default: its default, sum)")
    ap.add_argument("--smoothing", type=float, default=ScorerConfig().smoothing,
                    help="rsft ngram pseudo-count per bucket (default: scorer.smoothing's default)")
    ap.add_argument("--workers", type=int, default=2, help="rsft select threads (default 2)")
    ap.add_argument("--chunk-rows", type=int, default=50_000, help="rsft pool rows per chunk (default 50000)")
    ap.add_argument("--chunk-bytes", type=int, default=None,
                    help="rsft sampling.chunk_bytes (default: SamplingConfig's)")
    ap.add_argument("--row-group-rows", type=int, default=82_000,
                    help="row group size of the pool Parquet rsft writes (default 82000, as in issue #21)")
    ap.add_argument("--dsir-procs", type=int, default=2, help="DSIR num_proc (default 2)")
    ap.add_argument("--no-dsir", action="store_true", help="rsft only (peak RSS at other pool sizes)")
    ap.add_argument("--dsir-cache", type=Path, default=Path("/tmp/dsir-bench/dsir-cache"),
                    help="DSIR's results reused from here for identical inputs and settings ('' = never)")
    ap.add_argument("--dsir-python", default=str(DEFAULT_DSIR_PYTHON),
                    help="interpreter with data-selection installed; created as a venv if missing "
                         "(default: .rsft/bench-dsir/bin/python under the repo)")
    ap.add_argument("--work", type=Path, default=None, help="scratch directory (default /tmp/dsir-bench/compare[-real])")
    args = ap.parse_args()
    work = args.work or Path("/tmp/dsir-bench/compare" + ("-real" if args.corpus == "real" else ""))
    cache = args.dsir_cache if str(args.dsir_cache) not in ("", ".") else None

    python = None if args.no_dsir else dsir_python(args.dsir_python)
    shutil.rmtree(work, ignore_errors=True)
    (work / "dsir").mkdir(parents=True)
    if args.corpus == "real":
        pool, target = pool_and_target(build_corpus(args.real_docs), args.docs, args.target_docs, args.target_genre,
                                       args.target_share)
        pool, target = pool.select("id", "text", "genre"), target.select("id", "text", "genre")
        like = pl.col("genre") == args.target_genre
    else:
        pool, target = make_logs(args.docs, seed=1), make_logs(args.target_docs, seed=2, target=True)
        like = target_like()
    pool_jsonl, target_jsonl = work / "pool.jsonl", work / "target.jsonl"
    pool.write_ndjson(pool_jsonl)
    target.write_ndjson(target_jsonl)
    text_mb = pool["text"].str.len_bytes().sum() / 1e6
    tokens = pool["text"].str.count_matches(r"\w+|[^\w\s]+")

    dims = [str(args.buckets), str(args.ngrams)]
    key = {"pool": _digest(pool_jsonl), "target": _digest(target_jsonl), "dims": dims}
    dsir = None
    if not args.no_dsir:
        dsir = dsir_cached(python, DSIR_SELECT, {**key, "k": args.k, "procs": args.dsir_procs}, cache,
                           str(pool_jsonl), str(target_jsonl), str(work / "dsir"), str(args.k), str(args.dsir_procs), *dims)
    rsft = run_rsft(pool_jsonl, target_jsonl, work, args)
    out = {
        "corpus": args.corpus,
        "docs": args.docs,
        "target_docs": args.target_docs,
        "k": args.k,
        "text_mb": round(text_mb, 1),
        "tokens": {"median": int(tokens.median()), "max": int(tokens.max()), "docs_10k_plus": int((tokens >= 10_000).sum())},
        "pool_target_like_share": round(float(pool.select(like.mean()).item()), 4),
        "target_like_share_best": round(min(1.0, pool.select(like.sum()).item() / args.k), 4),
        "cpu_count": os.cpu_count(),
    }
    if args.corpus == "real":
        out["target_genre"] = args.target_genre
    rsft_ids = rsft.pop("selected_ids")
    r = {**{k: round(v, 2) if isinstance(v, float) else v for k, v in rsft.items()},
         "buckets": args.rsft_buckets, "workers": args.workers, "chunk_rows": args.chunk_rows, "chunk_bytes": args.chunk_bytes,
         "row_group_rows": args.row_group_rows, "docs_per_cpu_s": round(args.docs / rsft["cpu_s"])}
    if dsir is None:
        out["rsft"] = r
        print(json.dumps(out, indent=2))
        return
    selections = {"rsft": rsft_ids, "dsir": dsir.pop("selected_ids")}
    (work / "selections.json").write_text(json.dumps(selections))
    whole = dsir_cached(python, DSIR_COUNTS, {**key, "counts": 1}, cache, str(pool_jsonl), str(target_jsonl),
                        str(work / "selections.json"), *dims, "1")
    counts = {**whole, **run_child(python, DSIR_COUNTS, str(pool_jsonl), str(target_jsonl),
                                   str(work / "selections.json"), *dims, "0")}
    q = quality(pool, target, selections, counts, args.buckets, args.ngrams, like)
    d = {**{k: round(v, 2) if isinstance(v, float) else v for k, v in dsir.items()}, "num_proc": args.dsir_procs,
         "docs_per_cpu_s": round(args.docs / dsir["cpu_s"])}
    out.update({
        "rsft": {**r, **q["rsft"]},
        "dsir": {**d, **q["dsir"]},
        "rsft_over_dsir": round(rsft["seconds"] / dsir["seconds"], 3),
        "per_core_speedup": round(d["docs_per_cpu_s"] and r["docs_per_cpu_s"] / d["docs_per_cpu_s"], 1),
    })
    if args.corpus == "real":
        out["goal"] = ("per_core_speedup (docs per CPU second, rsft / DSIR) >= 30, rsft kl_reduction >= DSIR's "
                       "(both feature spaces), rsft select_peak_rss_mb <= 1024")
        out["goal_met"] = bool(out["per_core_speedup"] >= 30
                               and q["rsft"]["kl"]["kl_reduction"] >= q["dsir"]["kl"]["kl_reduction"]
                               and q["rsft"]["kl_in_dsir_features"]["kl_reduction"]
                               >= q["dsir"]["kl_in_dsir_features"]["kl_reduction"]
                               and rsft["select_peak_rss_mb"] <= 1024)
    else:
        out["goal"] = "rsft_over_dsir <= 0.1 and rsft kl_reduction >= dsir kl_reduction"
        out["goal_met"] = bool(out["rsft_over_dsir"] <= 0.1
                               and q["rsft"]["kl"]["kl_reduction"] >= q["dsir"]["kl"]["kl_reduction"])
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
