"""Text featurisation speed: rsft's pure-Polars hashed n-grams against DSIR's own featurizer.

    python benchmarks/text_features.py [--docs 200000] [--buckets 10000] [--ngrams 2] [--repeats 3]
                                       [--dsir-python .rsft/bench-dsir/bin/python] [--work /tmp/dsir-bench/features]

Data: ``--docs`` synthetic maintenance-log lines (rsft.synth's failure vocabulary: 20 machines,
five categories, hot/cold machines, ~15% junk: sensor dumps, export banners, error codes) written
once as JSONL with a "text" field.

Measured, on the same JSONL, best of ``--repeats``:
  rsft  ``rsft.features.hashed_ngram_ids(pl.col("text"), buckets, ngrams)`` (lowercase, ``\\w+|[^\\w\\s]+``
        tokens as DSIR's WordPunct, 1..n-grams, Polars hash to buckets) materialised as a List[UInt32] column, in a fresh
        child of this interpreter; once with ``POLARS_MAX_THREADS=1`` (per core) and once with Polars'
        default thread pool. ``read_featurise``: ``pl.scan_ndjson(...).select(ids).collect()``;
        ``featurise``: the same select on an already-read frame.
  dsir  ``HashedNgramDSIR.featurizer(text)`` (nltk WordPunct tokens, sha256 to buckets, a dense
        count vector per document), one document at a time in one process, as its
        ``compute_importance_weights`` does; run in the ``--dsir-python`` interpreter (data-selection
        is not an rsft dependency: that venv is created with ``pip install data-selection`` when
        missing). ``read_featurise``: ``json.loads`` of each line + featurizer; ``featurise``: the
        featurizer over texts already in a list.
Rates are docs/s and MB/s of UTF-8 text (the "text" fields, not the JSON framing). ``ngrams_total``
counts each side's n-grams (equal: the same tokens, hashed differently).

Goal: ``speedup_per_core`` (rsft one thread / DSIR one process, featurise docs/s) >= 10.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import polars as pl

from rsft.synth import _FILLER, _VOCAB, CATEGORIES

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DSIR_PYTHON = REPO / ".rsft" / "bench-dsir" / "bin" / "python"
MACHINES = 20
HOT_MACHINES = range(16, MACHINES + 1)  # M16..M20 run hot
_HOT = ["running hot", "housing warm", "coolant low", "fan noisy", "overheat alarm"]
_COLD = ["normal temp", "cool running", "ambient ok", "temp stable"]
TARGET_CATEGORY = "bearing"

RSFT_CHILD = """
import json, sys, time
import polars as pl
from rsft.features import hashed_ngram_ids
path, buckets, ngrams, repeats = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
expr = hashed_ngram_ids(pl.col("text"), buckets, ngrams)
best = {"read_featurise_s": float("inf"), "featurise_s": float("inf")}
for _ in range(repeats):
    t = time.perf_counter()
    ids = pl.scan_ndjson(path).select(expr).collect()
    best["read_featurise_s"] = min(best["read_featurise_s"], time.perf_counter() - t)
    df = pl.read_ndjson(path)
    t = time.perf_counter()
    ids = df.select(expr)
    best["featurise_s"] = min(best["featurise_s"], time.perf_counter() - t)
total = int(ids.to_series().list.len().sum())
print(json.dumps({**best, "threads": pl.thread_pool_size(), "docs": ids.height, "ngrams_total": total}))
"""

DSIR_CHILD = """
import json, sys, time
from data_selection import HashedNgramDSIR
path, buckets, ngrams, repeats, cache = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
dsir = HashedNgramDSIR([path], [path], cache_dir=cache, num_proc=1, ngrams=ngrams, num_buckets=buckets,
                       min_example_length=0)
best = {"read_featurise_s": float("inf"), "featurise_s": float("inf")}
for _ in range(repeats):
    t = time.perf_counter()
    with open(path) as f:
        for line in f:
            dsir.featurizer(dsir.raw_parse_example_fn(json.loads(line)))
    best["read_featurise_s"] = min(best["read_featurise_s"], time.perf_counter() - t)
    with open(path) as f:
        texts = [dsir.raw_parse_example_fn(json.loads(line)) for line in f]
    t = time.perf_counter()
    for text in texts:
        dsir.featurizer(text)
    best["featurise_s"] = min(best["featurise_s"], time.perf_counter() - t)
lengths = [len(dsir.tokenizer(text.lower())) for text in texts]
total = sum(sum(max(n - i, 0) for i in range(ngrams)) for n in lengths)
print(json.dumps({**best, "docs": len(texts), "ngrams_total": total}))
"""


def _event(r: random.Random, machine: int, category: str) -> str:
    """One maintenance-log line: machine tag, category vocabulary + filler, temperature context."""
    hot = machine in HOT_MACHINES
    words = r.choices(_VOCAB[category], k=3) + r.choices(_FILLER, k=r.randint(2, 5))
    if r.random() < 0.7:
        words.append(r.choice(_HOT if hot else _COLD))
    r.shuffle(words)
    temp = r.gauss(82.0 if hot else 55.0, 6.0)
    return f"M{machine:02d}: {' '.join(words)}, value {r.uniform(2, 20):.1f}, temp {temp:.0f}C"


def _junk(r: random.Random, machine: int) -> str:
    """Log noise: sensor dumps, export banners, error codes, placeholders."""
    kind = r.randrange(4)
    if kind == 0:
        return f"AUTO M{machine:02d} " + " ".join(f"s{j:02d}={r.uniform(0, 100):.2f}" for j in range(1, 13))
    if kind == 1:
        return f"=== export batch {r.randrange(10**6)} rows {r.randrange(10**4)} status OK ==="
    if kind == 2:
        return f"#{r.getrandbits(32):08x} ERR 0x{r.getrandbits(16):04X} ??? retry {r.randrange(9)}/9 -- see PLC log"
    return r.choice(["n/a", "-", "see previous entry", "same as above!!", "ok."])


def make_logs(n: int, seed: int, target: bool = False, junk: float = 0.15) -> pl.DataFrame:
    """``n`` log lines (id, machine_id, category, text). Pool: all machines and categories plus
    ``junk``; target: the regime, bearing events on the hot machines."""
    r = random.Random(seed)
    rows = []
    for i in range(n):
        if target:
            machine, category = r.choice(HOT_MACHINES), TARGET_CATEGORY
        else:
            machine = r.randint(1, MACHINES)
            category = "junk" if r.random() < junk else r.choice(CATEGORIES)
        text = _junk(r, machine) if category == "junk" else _event(r, machine, category)
        rows.append((i, f"M{machine:02d}", category, text))
    return pl.DataFrame(rows, schema=["id", "machine_id", "category", "text"], orient="row")


def target_like() -> pl.Expr:
    """Ground truth: the row is in the target regime (bearing event on a hot machine)."""
    hot = [f"M{m:02d}" for m in HOT_MACHINES]
    return (pl.col("category") == TARGET_CATEGORY) & pl.col("machine_id").is_in(hot)


def dsir_python(path: str | Path) -> str:
    """The interpreter that has ``data-selection``; a venv is created at its prefix when missing."""
    path = Path(path)
    if not path.exists():
        venv = path.parent.parent
        print(f"creating {venv} and installing data-selection into it (DSIR's reference implementation)",
              file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(path), "-m", "pip", "install", "-q", "data-selection"], check=True)
    return str(path)


def run_child(python: str, code: str, *args: str, env: dict[str, str] | None = None) -> dict:
    """``python -c code args...``: the JSON object on the last stdout line, plus the process wall time."""
    t = time.perf_counter()
    proc = subprocess.run([python, "-c", code, *args], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark child ({python}) failed:\n{proc.stderr[-3000:]}")
    return {**json.loads(proc.stdout.strip().splitlines()[-1]), "process_s": round(wall, 2)}


def _rates(res: dict, text_mb: float) -> dict:
    out = dict(res)
    for key in ("read_featurise", "featurise"):
        s = res[f"{key}_s"]
        out[f"{key}_s"] = round(s, 3)
        out[f"{key}_docs_per_s"] = round(res["docs"] / s)
        out[f"{key}_mb_per_s"] = round(text_mb / s, 2)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=200_000, help="log lines in the JSONL (default 200000)")
    ap.add_argument("--buckets", type=int, default=10_000, help="hashed n-gram buckets (default 10000)")
    ap.add_argument("--ngrams", type=int, default=2, help="n-gram order, 2 = uni + bigrams (default 2)")
    ap.add_argument("--repeats", type=int, default=3, help="timed passes per side, the best is kept (default 3)")
    ap.add_argument("--dsir-python", default=str(DEFAULT_DSIR_PYTHON),
                    help="interpreter with data-selection installed; created as a venv if missing "
                         "(default: .rsft/bench-dsir/bin/python under the repo)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/dsir-bench/features"), help="scratch directory")
    args = ap.parse_args()

    python = dsir_python(args.dsir_python)
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    path = args.work / "logs.jsonl"
    df = make_logs(args.docs, seed=1)
    df.write_ndjson(path)
    text_mb = df["text"].str.len_bytes().sum() / 1e6

    common = [str(path), str(args.buckets), str(args.ngrams), str(args.repeats)]
    env = {k: v for k, v in os.environ.items() if k != "POLARS_MAX_THREADS"}
    rsft_1 = _rates(run_child(sys.executable, RSFT_CHILD, *common, env={**env, "POLARS_MAX_THREADS": "1"}), text_mb)
    rsft_n = _rates(run_child(sys.executable, RSFT_CHILD, *common, env=env), text_mb)
    dsir = _rates(run_child(python, DSIR_CHILD, *common, str(args.work / "dsir-cache")), text_mb)
    out = {
        "docs": args.docs,
        "text_mb": round(text_mb, 2),
        "jsonl_mb": round(path.stat().st_size / 1e6, 2),
        "buckets": args.buckets,
        "ngrams": args.ngrams,
        "rsft_1_thread": rsft_1,
        "rsft_default_threads": rsft_n,
        "dsir_1_process": dsir,
        "speedup_per_core": round(rsft_1["featurise_docs_per_s"] / dsir["featurise_docs_per_s"], 1),
        "speedup_per_core_with_read": round(rsft_1["read_featurise_docs_per_s"] / dsir["read_featurise_docs_per_s"], 1),
        "speedup_default_threads": round(rsft_n["featurise_docs_per_s"] / dsir["featurise_docs_per_s"], 1),
        "goal": "speedup_per_core >= 10",
    }
    out["goal_met"] = out["speedup_per_core"] >= 10
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
