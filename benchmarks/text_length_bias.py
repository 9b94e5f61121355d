"""Is rsft's text selection length-biased, and is the summary's KL-vs-random comparison fair?

    python benchmarks/text_length_bias.py [--corpus /tmp/dsir-bench/real-docs.jsonl] [--docs 20000]
        [--target-docs 200] [--share 0.05] [--k 800] [--seeds 0 1 2] [--targets man changelog ...]

On real_docs.py's corpus (cached JSONL, ``real_docs.py --out``), per seed and target: a pool of
``--docs`` documents where the target genre is ``--share`` (a ``mixed`` target: half man pages,
half copyright files, each at ``--share`` / 2 of the pool), a held-out target of ``--target-docs``
documents, rsft's NgramScorer (default ScorerConfig: 32 768 buckets, smoothing 1e-6) fitted on
target vs pool, and ``--k`` documents selected by Gumbel top-k on each score:

  sum      log w = Σ over a document's n-grams of log p_t − log p_p (rsft's, and DSIR's, score)
  per_ngram  rsft's scorer.ngram_score = per_ngram: the mean of that over the document's n-grams ×
           the target's mean n-grams per document
  sqrt     the sum / √(n-grams / the target's median): the evidence's z-score, scaled back (median)
  dsir_like  the sum with DSIR's 10 000 buckets and ~1e-8 smoothing (a reimplementation, not DSIR)
  random   a uniform random subset (no score)

Measured: the share of target-genre documents (ground truth) and of the selection's n-grams that
are theirs (``ngram_share``: a budget of documents trains on their tokens), the Spearman ρ of the score with
n-gram count, the selection's n-grams, and the report's n-gram KL(target ‖ set) (10 000 buckets,
smoothing 1) for the selection, a random subset of the same document count (the report's baseline
before) and a random subset of the same n-gram count (``kl_random_tokens``: the fair one).
``kl_target_split``: the KL estimator's own bias, the KL of the target to a subset of itself with
as many n-grams as the selection (what the KL reads on a perfect selection of that size).
``--kl-by-size``: only the estimator's bias, by n-gram count (random pool subsets; the target's
own n-grams resampled). Prints one JSON object (per run rows and per-target means / spreads).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import polars as pl

from rsft.config import FeaturesConfig, ScorerConfig
from rsft.density import make_scorer
from rsft.density.ngram import bucket_log_probs, kl
from rsft.features import hashed_ngram_flat
from rsft.report import KL_SMOOTHING, ngram_matched_subset

sys.path.insert(0, str(Path(__file__).resolve().parent))


def make_pool(df: pl.DataFrame, target: str, docs: int, target_docs: int, share: float, seed: int):
    """(pool, target frames) with an ``is_t`` ground-truth column on the pool."""
    rng = np.random.default_rng(seed)
    genres = ["man", "copyright"] if target == "mixed" else [target]
    pools, tgts = [], []
    for g in genres:
        frame = df.filter(pl.col("genre") == g)
        perm = rng.permutation(frame.height)
        nt = target_docs // len(genres)
        tgts.append(frame[perm[:nt]])
        pools.append(frame[perm[nt:nt + int(round(docs * share / len(genres)))]])
    other = df.filter(~pl.col("genre").is_in(genres))
    n_other = docs - sum(p.height for p in pools)
    pools.append(other[rng.choice(other.height, n_other, replace=False)])
    pool = pl.concat(pools)
    pool = pool[rng.permutation(pool.height)].with_columns(pl.col("genre").is_in(genres).alias("is_t"))
    return pool, pl.concat(tgts)


def kl_to(lp_t, flat, offsets, idx, buckets):
    """KL(target ‖ the documents idx), the report's estimator (smoothing KL_SMOOTHING)."""
    parts = [flat[offsets[i]:offsets[i + 1]] for i in idx]
    ids = np.concatenate(parts) if parts else np.zeros(0, np.int64)
    import torch

    return kl(lp_t, bucket_log_probs(torch.as_tensor(ids), buckets, KL_SMOOTHING))


def spearman(a, b):
    ra, rb = (pl.Series(v).rank("average").to_numpy() for v in (a, b))
    return float(np.corrcoef(ra, rb)[0, 1])


def one_run(df, target_name, args, seed):
    import torch

    pool, target = make_pool(df, target_name, args.docs, args.target_docs, args.share, seed)
    fcfg = FeaturesConfig(text_column="text")
    sc = make_scorer(ScorerConfig(kind="ngram"), []).fit_frames(target, pool, fcfg)
    lw = sc.log_ratio_frame(pool, fcfg)
    buckets = 10_000
    flat, off = hashed_ngram_flat(pool, "text", buckets, 2)
    tflat, toff = hashed_ngram_flat(target, "text", buckets, 2)
    lengths, tlen = np.diff(off), np.diff(toff)
    lp_t = bucket_log_probs(torch.as_tensor(tflat), buckets, KL_SMOOTHING)
    typical = float(np.median(tlen))
    n_grams = np.maximum(np.diff(hashed_ngram_flat(pool, "text", 1, 2)[1]), 1)  # n-grams per document
    dsir = make_scorer(ScorerConfig(kind="ngram", buckets=10_000, smoothing=1e-8), []).fit_frames(target, pool, fcfg)
    per = make_scorer(ScorerConfig(kind="ngram", ngram_score="per_ngram"), []).fit_frames(target, pool, fcfg)
    scores = {"sum": lw, "per_ngram": per.log_ratio_frame(pool, fcfg), "sqrt": lw / np.sqrt(n_grams / typical),
              "dsir_like": dsir.log_ratio_frame(pool, fcfg)}
    rng = np.random.default_rng(1000 + seed)
    is_t = pool["is_t"].to_numpy()
    rows = []
    for name, s in [*scores.items(), ("random", None)]:
        if s is None:
            idx = rng.choice(pool.height, args.k, replace=False)
        else:
            keys = s + rng.gumbel(size=len(s))
            idx = np.argpartition(-keys, args.k)[:args.k]
        ntok = int(lengths[idx].sum())
        r_docs = [kl_to(lp_t, flat, off, rng.choice(pool.height, args.k, replace=False), buckets) for _ in range(3)]
        r_tok = [kl_to(lp_t, flat, off, ngram_matched_subset(rng, lengths, ntok), buckets) for _ in range(3)]
        split = [kl_to(lp_t, tflat, toff, ngram_matched_subset(rng, tlen, min(ntok, int(tlen.sum()) // 2)), buckets)
                 for _ in range(3)]
        rows.append({"target": target_name, "seed": seed, "score": name, "share": float(is_t[idx].mean()),
                     "ngram_share": float(lengths[idx][is_t[idx]].sum() / max(ntok, 1)),
                     "best_share": min(1.0, is_t.sum() / args.k), "ngrams": ntok,
                     "median_ngrams": float(np.median(lengths[idx])),
                     "rho_len": spearman(s, lengths) if s is not None else None,
                     "kl_selected": kl_to(lp_t, flat, off, idx, buckets), "kl_random_docs": float(np.mean(r_docs)),
                     "kl_random_tokens": float(np.mean(r_tok)), "kl_target_split": float(np.mean(split)),
                     "kl_pool": kl_to(lp_t, flat, off, np.arange(pool.height), buckets)})
        print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in rows[-1].items()}),
              file=sys.stderr, flush=True)
    return rows


def kl_by_size(df, args, sizes=(5_000, 20_000, 50_000, 200_000, 1_000_000)):
    """The KL estimator's bias alone: KL(target ‖ random pool subsets of n n-grams) and KL(target ‖
    the target's own n-grams resampled), 3 draws each, man-page target (seed 0)."""
    import torch

    pool, target = make_pool(df, "man", args.docs, args.target_docs, args.share, 0)
    buckets, rng = 10_000, np.random.default_rng(0)
    flat, off = hashed_ngram_flat(pool, "text", buckets, 2)
    tflat, _ = hashed_ngram_flat(target, "text", buckets, 2)
    lp_t = bucket_log_probs(torch.as_tensor(tflat), buckets, KL_SMOOTHING)
    out = {}
    for n in sizes:
        pool_kl = [kl_to(lp_t, flat, off, ngram_matched_subset(rng, np.diff(off), n), buckets) for _ in range(3)]
        own = [kl(lp_t, bucket_log_probs(torch.as_tensor(rng.choice(tflat, n, replace=False)), buckets, KL_SMOOTHING))
               for _ in range(3)] if n < len(tflat) else []
        out[n] = {"random_pool": [round(float(np.mean(pool_kl)), 3), round(float(np.std(pool_kl)), 3)],
                  "target_resampled": round(float(np.mean(own)), 3) if own else None}
    out["whole_pool"] = round(kl_to(lp_t, flat, off, np.arange(pool.height), buckets), 3)
    return out


def summarise(rows):
    out = {}
    df = pl.DataFrame(rows)
    for (t, s), g in df.group_by(["target", "score"], maintain_order=True):
        out[f"{t}/{s}"] = {c: [round(float(g[c].mean()), 4), round(float(g[c].std() or 0.0), 4)]
                           for c in ("share", "ngram_share", "kl_selected", "kl_random_docs", "kl_random_tokens", "kl_target_split",
                                     "median_ngrams") if g[c].null_count() == 0}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, default=Path("/tmp/dsir-bench/real-docs.jsonl"))
    ap.add_argument("--docs", type=int, default=20_000)
    ap.add_argument("--target-docs", type=int, default=200)
    ap.add_argument("--share", type=float, default=0.05)
    ap.add_argument("--k", type=int, default=800)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--targets", nargs="+", default=["man", "changelog", "docstring", "copyright", "mixed"])
    ap.add_argument("--max-tokens", type=int, default=20_000, help="drop longer corpus documents (bounded memory)")
    ap.add_argument("--kl-by-size", action="store_true", help="only the KL estimator's bias by n-gram count")
    args = ap.parse_args()
    df = pl.read_ndjson(args.corpus).filter(pl.col("tokens") <= args.max_tokens)
    if args.kl_by_size:
        print(json.dumps(kl_by_size(df, args), indent=1))
        return
    rows = [r for t in args.targets for seed in args.seeds for r in one_run(df, t, args, seed)]
    print(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "summary": summarise(rows), "runs": rows},
                     indent=1))


if __name__ == "__main__":
    main()
