"""Chunked samplers: plan, rejection exactness, clipping, tempering, budget mode, determinism, resume.

The statistical tests use an *exact* scorer (pool N(0, 1), target N(1, 1): log w = x − ½), so
they test the sampler, not a density estimate. Each states its seed and tolerance.
"""

from __future__ import annotations

import itertools
import math
import json
import os
import random
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from polars.testing import assert_frame_equal

from rsft.config import FeaturesConfig, SamplingConfig, ScorerConfig
from rsft.density import load_scorer, make_scorer
from rsft.sampling import (
    ChunkSpec,
    calibrate_log_m,
    chunk_seed,
    gumbel_keys,
    merge_selection,
    plan_chunks,
    read_chunk,
    sample_chunk,
    select,
)

FEAT = FeaturesConfig(numeric=["x"], label="y")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def exact_scorer(path: Path, shift: float = 1.0) -> str:
    """Gaussian scorer with the true parameters: target N(shift, 1), pool N(0, 1)."""
    s = make_scorer(ScorerConfig(kind="gaussian"), ["x"])
    s.mu_t.fill_(shift)
    s.save(path)
    return str(path)


def pool_file(path: Path, n: int, seed: int = 0, lineage: bool = True) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=n)
    df = pl.DataFrame({"x": x, "y": x * 2.0, "machine_id": [f"M{i % 3:02d}" for i in range(n)]})
    if lineage:
        df = df.with_columns(_source=pl.lit("pool"), _row=pl.int_range(1, n + 1, dtype=pl.Int64))
    df.write_parquet(path, row_group_size=5000)
    return x


# ---- plan / read --------------------------------------------------------------------------------
def test_plan_splits_large_files_packs_small_ones_and_reads_back(tmp_path):
    root = tmp_path / "ds"
    (root / "machine_id=M07").mkdir(parents=True)
    sizes = {"a.parquet": 5, "b.parquet": 3, "machine_id=M07/c.parquet": 12}
    for i, (name, n) in enumerate(sizes.items()):
        pl.DataFrame({"x": np.arange(n, dtype=np.float64) + 100 * i}).write_parquet(root / name, row_group_size=4)
    specs = plan_chunks(root, 7)
    assert [s.rows for s in specs] == [7, 7, 6]
    assert [len(s.parts) for s in specs] == [2, 2, 1]
    assert [ChunkSpec.from_dict(json.loads(json.dumps(s.to_dict()))) for s in specs] == specs
    df = pl.concat([read_chunk(s) for s in specs], how="diagonal_relaxed")
    assert df["x"].to_list() == [*range(5), *range(100, 103), *range(200, 212)]
    assert df["_row"].to_list() == [*range(1, 6), *range(1, 4), *range(1, 13)]  # lineage added, 1-based
    assert df.filter(pl.col("x") >= 200)["machine_id"].unique().to_list() == ["M07"]  # hive key
    with pytest.raises(ValueError, match="no Parquet files"):
        plan_chunks(tmp_path / "ds" / "*.csv", 7)


def test_a_writers_temporary_files_are_never_data(tmp_path):
    """A leftover under rsft.fsio's temporary name (a complete Parquet file inside) is skipped
    however the pool is named: directory, glob, recursive glob, or a glob of hidden names."""
    from rsft.fsio import temp_path

    root = tmp_path / "ds"
    root.mkdir()
    pl.DataFrame({"x": [1.0, 2.0]}).write_parquet(root / "a.parquet")
    leftover = temp_path(root / "b.parquet")
    pl.DataFrame({"x": [9.0]}).write_parquet(leftover)
    assert leftover.name.startswith(".b.parquet.tmp-")
    for source in (root, root / "*", root / "**" / "*"):
        assert [Path(p.path).name for s in plan_chunks(source, 10) for p in s.parts] == ["a.parquet"], source
    with pytest.raises(ValueError, match="no Parquet files"):
        plan_chunks(root / ".*", 10)


def test_chunk_seed_and_calibration_helpers():
    seeds = {chunk_seed(s, c) for s in range(5) for c in range(50)}
    assert len(seeds) == 250 and chunk_seed(3, 7) == chunk_seed(3, 7)
    assert calibrate_log_m(np.array([0.0, 2.0, np.nan, -np.inf])) == 2.0
    assert calibrate_log_m(np.arange(101.0), 0.9) == pytest.approx(90.0)
    with pytest.raises(ValueError, match="no finite"):
        calibrate_log_m(np.array([np.nan]))
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        calibrate_log_m(np.zeros(3), 0.0)


# ---- rejection mode --------------------------------------------------------------------------------
def test_rejection_sampling_is_exact(tmp_path):
    """Pool N(0, 1) (200 000 rows, seed 0), target N(1, 1), M = sup w over the pool (exact).
    Accepted rows: mean within 4 SE of 1, sd within 4 SE of 1, KS vs N(1, 1) p > 0.01 (seed 0).
    Acceptance within 4 binomial SE of its ideal mean min(1, w/M) = E[w]/M; E[w] within 1.5 % of 1."""
    from scipy import stats

    x = pool_file(tmp_path / "pool.parquet", 200_000)
    sp = exact_scorer(tmp_path / "s.pt")
    s = select(tmp_path / "pool.parquet", sp, FEAT, SamplingConfig(chunk_rows=50_000, seed=0), str(tmp_path / "sel"))
    sel = pl.read_parquet(s.output)
    xs = sel["x"].to_numpy()
    n = len(xs)
    assert n > 2000 and n == s.rows_out
    assert abs(xs.mean() - 1.0) < 4 / np.sqrt(n)
    assert abs(xs.std() - 1.0) < 4 / np.sqrt(2 * n)
    assert stats.kstest(xs, "norm", args=(1.0, 1.0)).pvalue > 0.01
    assert s.log_m == pytest.approx(x.max() - 0.5) and s.clipped_share == 0.0
    assert abs(s.acceptance_rate - s.ideal_acceptance) < 4 * np.sqrt(s.ideal_acceptance / s.rows_in)
    assert s.ideal_acceptance == pytest.approx(s.mean_w * s.inv_m, rel=1e-9)  # no clipping: E[min(w,M)] = E[w]
    assert s.mean_w == pytest.approx(1.0, abs=0.015)
    # every input column + lineage + scores; accept_prob = w/M on the kept rows
    assert {"x", "y", "machine_id", "_source", "_row", "log_w", "accept_prob"} <= set(sel.columns)
    np.testing.assert_allclose(sel["accept_prob"].to_numpy(), np.exp(sel["log_w"].to_numpy() - s.log_m), rtol=1e-12)
    assert s.rows_in == s.rows_out + sum(s.dropped.values())
    assert json.loads(json.dumps(s.to_dict(), allow_nan=False))["mode"] == "rejection"


def test_quantile_m_clips_a_reported_share(tmp_path):
    """M at the 0.99 quantile of a separate 20 000-row pool sample (seed 7): about 1 % of the
    100 000-row pool is clipped (tolerance ±0.3 %, ≈ 4 SE); acceptance rises above the exact run's."""
    x = pool_file(tmp_path / "pool.parquet", 100_000)
    sp = exact_scorer(tmp_path / "s.pt")
    sample_lw = load_scorer(sp).log_ratio(np.random.default_rng(7).normal(size=(20_000, 1))).numpy()
    cfg = SamplingConfig(chunk_rows=25_000, m_quantile=0.99)
    clipped = select(tmp_path / "pool.parquet", sp, FEAT, cfg, str(tmp_path / "q"), log_m=calibrate_log_m(sample_lw, 0.99))
    exact = select(tmp_path / "pool.parquet", sp, FEAT, cfg, str(tmp_path / "e"), log_m=float(x.max() - 0.5))
    assert abs(clipped.clipped_share - 0.01) < 0.003
    assert clipped.max_log_w > clipped.log_m
    assert clipped.acceptance_rate > 5 * exact.acceptance_rate
    assert clipped.ideal_acceptance < clipped.mean_w * clipped.inv_m  # clipping loses mass


@pytest.mark.parametrize("beta", [0.0, 0.5])
def test_tempering(beta, tmp_path):
    """w^β with pool N(0,1), target N(1,1) selects N(β, 1): β = 0 keeps every row; β = ½ gives a
    mean within 4 SE of ½ (100 000 rows, seed 1)."""
    pool_file(tmp_path / "pool.parquet", 100_000, seed=1)
    sp = exact_scorer(tmp_path / "s.pt")
    s = select(tmp_path / "pool.parquet", sp, FEAT, SamplingConfig(chunk_rows=30_000, temper=beta, seed=1), str(tmp_path / "t"))
    xs = pl.read_parquet(s.output)["x"].to_numpy()
    if beta == 0.0:
        assert s.rows_out == s.rows_in == 100_000
    else:
        assert abs(xs.mean() - beta) < 4 / np.sqrt(len(xs))


def test_rows_with_bad_features_are_counted_never_selected(tmp_path):
    x = np.random.default_rng(0).normal(size=1000)
    x[::10] = np.nan
    pl.DataFrame({"x": x}).write_parquet(tmp_path / "p.parquet")
    sp = exact_scorer(tmp_path / "s.pt", shift=0.0)  # w = 1 everywhere: every finite row accepted
    s = select(tmp_path / "p.parquet", sp, FEAT, SamplingConfig(chunk_rows=300), str(tmp_path / "o"))
    assert s.dropped == {"rejected": 0, "nonfinite_features": 100}
    assert s.rows_out == 900 and s.rows_in == s.rows_out + sum(s.dropped.values())
    assert pl.read_parquet(s.output)["x"].is_nan().sum() == 0


def test_rejection_without_m_is_refused(tmp_path):
    pool_file(tmp_path / "p.parquet", 100)
    spec = plan_chunks(tmp_path / "p.parquet", 50)[0]
    with pytest.raises(ValueError, match="log M"):
        sample_chunk(spec, exact_scorer(tmp_path / "s.pt"), FEAT, SamplingConfig(), None, str(tmp_path / "o"))


# ---- budget mode ---------------------------------------------------------------------------------------
def test_budget_merge_is_the_global_top_k_of_all_keys(tmp_path):
    """Exactly k rows, and they are the k largest of all rows' keys β·log w + Gumbel recomputed
    independently from the chunk seeds: the per-chunk top-k + merge loses nothing."""
    pool_file(tmp_path / "pool.parquet", 30_000)
    sp = exact_scorer(tmp_path / "s.pt")
    cfg = SamplingConfig(mode="budget", budget=500, chunk_rows=4000, seed=11)
    s = select(tmp_path / "pool.parquet", sp, FEAT, cfg, str(tmp_path / "b"))
    rows = pl.read_parquet(s.output)["_row"].to_numpy()
    assert s.rows_out == len(rows) == len(np.unique(rows)) == 500
    keys = []
    for spec in plan_chunks(tmp_path / "pool.parquet", cfg.chunk_rows):
        lw = load_scorer(sp).log_ratio_frame(read_chunk(spec), FEAT)
        keys.append(gumbel_keys(lw, np.random.default_rng(chunk_seed(cfg.seed, spec.chunk_id))))
    want = np.sort(np.argsort(-np.concatenate(keys))[:500] + 1)
    np.testing.assert_array_equal(np.sort(rows), want)
    # a budget above the pool size returns the whole pool
    big = select(tmp_path / "pool.parquet", sp, FEAT, cfg.model_copy(update={"budget": 10**6}), str(tmp_path / "all"))
    assert big.rows_out == 30_000


def _successive_sampling_inclusion(w: np.ndarray, k: int) -> np.ndarray:
    """Exact inclusion probabilities of k draws without replacement, each ∝ w among the rest."""
    incl = np.zeros(len(w))
    for seq in itertools.permutations(range(len(w)), k):
        p, left = 1.0, w.sum()
        for i in seq:
            p *= w[i] / left
            left -= w[i]
        incl[list(seq)] += p
    return incl


@pytest.mark.parametrize("k", [1, 3])
def test_budget_inclusion_frequencies(k):
    """6 rows, log w = x − ½ for x = 0, 0.4, …, 2; 20 000 seeds. k = 1: frequencies ∝ w; k = 3: the
    exact successive-sampling inclusion probabilities. Tolerance 4.5 binomial SE per row."""
    lw = np.linspace(0, 2, 6) - 0.5
    trials = 20_000
    counts = np.zeros(6)
    for seed in range(trials):
        keys = gumbel_keys(lw, np.random.default_rng(chunk_seed(seed, 0)))
        counts[np.argpartition(-keys, k - 1)[:k]] += 1
    w = np.exp(lw)
    want = w / w.sum() if k == 1 else _successive_sampling_inclusion(w, k)
    assert want.sum() == pytest.approx(k)
    se = np.sqrt(want * (1 - want) / trials)
    assert (np.abs(counts / trials - want) < 4.5 * se).all()


# ---- determinism and resume ------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["rejection", "budget"])
def test_same_rows_for_any_order_concurrency_and_after_resume(mode, tmp_path):
    pool_file(tmp_path / "pool.parquet", 30_000, lineage=False)
    sp = exact_scorer(tmp_path / "s.pt")
    cfg = SamplingConfig(mode=mode, budget=700, chunk_rows=4000, seed=3)
    log_m = 4.0  # fixed M (clips a few rows; irrelevant to determinism)
    specs = plan_chunks(tmp_path / "pool.parquet", cfg.chunk_rows)
    run = lambda spec, d: sample_chunk(spec, sp, FEAT, cfg, log_m, str(tmp_path / d))  # noqa: E731
    fwd = [run(s, "fwd") for s in specs]
    rev = [run(s, "rev") for s in reversed(specs)]
    shuffled = random.Random(0).sample(specs, len(specs))
    with ThreadPoolExecutor(4) as pool:
        par = list(pool.map(lambda s: run(s, "par"), shuffled))
    a = pl.read_parquet(merge_selection(fwd, str(tmp_path / "fwd.parquet"), cfg).output)
    assert a.height > 0
    for name, sums in (("rev", rev), ("par", par)):
        assert_frame_equal(pl.read_parquet(merge_selection(sums, str(tmp_path / f"{name}.parquet"), cfg).output), a)
    threaded = select(tmp_path / "pool.parquet", sp, FEAT, cfg, str(tmp_path / "thr"), log_m=log_m, workers=3)
    assert_frame_equal(pl.read_parquet(threaded.output), a)

    # resume: half the chunks finished, one interrupted after its rows but before its marker
    half = len(specs) // 2
    done = [run(s, "res") for s in specs[:half]]
    run(specs[half], "res")
    os.remove(tmp_path / "res" / f"chunk-{half:06d}.json")
    mtimes = [os.stat(d.output).st_mtime_ns for d in done]
    s = select(tmp_path / "pool.parquet", sp, FEAT, cfg, str(tmp_path / "res"), log_m=log_m)
    assert [os.stat(d.output).st_mtime_ns for d in done] == mtimes  # finished chunks not recomputed
    assert_frame_equal(pl.read_parquet(s.output), a)

    # a marker from another run (other seed) is stale: recomputed, not reused
    sample_chunk(specs[0], sp, FEAT, cfg.model_copy(update={"seed": 99}), log_m, str(tmp_path / "stale"))
    s = select(tmp_path / "pool.parquet", sp, FEAT, cfg, str(tmp_path / "stale"), log_m=log_m)
    assert_frame_equal(pl.read_parquet(s.output), a)


# ---- text --------------------------------------------------------------------------------------------
def test_text_pool_selection_with_the_ngram_scorer(tmp_path):
    target = ["spindle bearing vibration high", "bearing replaced on spindle"] * 30
    pool = ["seal leak pressure drop", "fuse replaced", "cleaning done", "spindle bearing vibration"] * 250
    pl.DataFrame({"text": pool}).write_parquet(tmp_path / "logs.parquet")
    scorer = make_scorer(ScorerConfig(kind="ngram", buckets=2048), [])
    scorer.fit(scorer.encode(target), scorer.encode(pool)).save(tmp_path / "ng.pt")  # ids in the scorer's scheme
    cfg = SamplingConfig(mode="budget", budget=100, chunk_rows=300)
    s = select(tmp_path / "logs.parquet", str(tmp_path / "ng.pt"), FeaturesConfig(text_column="text"), cfg, str(tmp_path / "o"))
    picked = pl.read_parquet(s.output)["text"]
    assert s.rows_out == 100 and (picked == "spindle bearing vibration").mean() > 0.9


def test_a_text_selection_reads_its_ngram_scorer_without_torch(tmp_path):
    """A scheme-2 n-gram scorer file is read without Torch (rsft.scorer_file): its weights are the
    saved tensors' bits, its frame scores are the Torch scorer's bit for bit, and a text selection
    in a fresh interpreter selects the same rows as this one without ever importing Torch. Other
    files (another kind, a scheme-1 n-gram scorer) are left to load_scorer."""
    import subprocess
    import sys

    from rsft.scorer_file import load_ngram_weights, read_blob

    docs = ["spindle bearing vibration high", "seal leak pressure drop", "", "Spindel: Lager-Vibration!! ÉTÉ",
            "fuse replaced", " ".join(["bearing noise, spindle"] * 3000)] * 40
    pl.DataFrame({"text": docs, "id": list(range(len(docs)))}).write_parquet(tmp_path / "pool.parquet", row_group_size=64)
    feat = FeaturesConfig(text_column="text")
    scorer = make_scorer(ScorerConfig(kind="ngram", buckets=512), []).fit_frames(
        pl.DataFrame({"text": ["spindle bearing vibration", "bearing replaced on spindle"] * 20}),
        pl.DataFrame({"text": docs[:60]}), feat)
    scorer.save(tmp_path / "ng.pt")
    blob = read_blob(tmp_path / "ng.pt")
    want = torch.load(tmp_path / "ng.pt", weights_only=True)
    assert blob["config"] == want["config"] and blob["state_dict"]["_extra_state"] == {"ngram_hash": 2}
    for name in ("log_p_t", "log_p_p", "mean", "scale"):
        np.testing.assert_array_equal(blob["state_dict"][name], want["state_dict"][name].numpy())
    light = load_ngram_weights(tmp_path / "ng.pt")
    assert light is not None and light.hash_scheme == 2 and light.kind == "ngram"
    frame = pl.DataFrame({"text": docs[:12]})
    np.testing.assert_array_equal(light.log_ratio_frame(frame, feat), load_scorer(tmp_path / "ng.pt").log_ratio_frame(frame, feat))
    assert load_ngram_weights(Path(__file__).parent / "data" / "ngram-scorer-scheme1.pt") is None
    assert load_ngram_weights(exact_scorer(tmp_path / "g.pt")) is None

    cfg = SamplingConfig(mode="budget", budget=50, chunk_rows=100, chunk_bytes=20_000)
    here = pl.read_parquet(select(tmp_path / "pool.parquet", str(tmp_path / "ng.pt"), feat, cfg, str(tmp_path / "a"),
                                  workers=2).output)
    code = (
        "import json, sys\n"
        "from rsft.config import FeaturesConfig, SamplingConfig\n"
        "from rsft.sampling import select\n"
        f"s = select({str(tmp_path / 'pool.parquet')!r}, {str(tmp_path / 'ng.pt')!r}, FeaturesConfig(text_column='text'),"
        f" SamplingConfig(mode='budget', budget=50, chunk_rows=100, chunk_bytes=20_000), {str(tmp_path / 'b')!r}, workers=2)\n"
        "print(json.dumps({'output': s.output, 'torch': 'torch' in sys.modules, 'pandas': 'pandas' in sys.modules}))\n"
    )
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                    env=env).stdout.splitlines()[-1])
    assert out["torch"] is False and out["pandas"] is False
    assert_frame_equal(pl.read_parquet(out["output"]), here)


@pytest.mark.parametrize("kind, tol_mean, tol_cov", [("gaussian", 0.05, 0.05), ("classifier", 0.12, 0.1)])
def test_fitted_scorers_select_rows_distributed_like_the_target(kind, tol_mean, tol_cov, tmp_path):
    """p = N(μ, Σ) with correlation, q = N(0, I) in 2-D. Scorers fitted on 4 000 target rows and a
    40 000-row pool sample (seed 1), rejection sampling with M = max w over the 200 000-row pool
    (seed 0). Selected mean within ``tol_mean`` of μ and covariance entries within ``tol_cov`` of
    Σ (absolute; the classifier is a density-ratio *estimate*, hence the looser bounds)."""
    mu, cov = np.array([1.0, -0.5]), np.array([[0.8, 0.3], [0.3, 0.6]])
    rng = np.random.default_rng(1)
    target = rng.multivariate_normal(mu, cov, size=4000)
    fit_pool = rng.normal(size=(40_000, 2))
    pool = np.random.default_rng(0).normal(size=(200_000, 2))
    pl.DataFrame({"a": pool[:, 0], "b": pool[:, 1]}).with_columns(
        _source=pl.lit("pool"), _row=pl.int_range(1, len(pool) + 1, dtype=pl.Int64)
    ).write_parquet(tmp_path / "pool.parquet", row_group_size=20_000)
    scorer = make_scorer(ScorerConfig(kind=kind, seed=0), ["a", "b"]).fit(target, fit_pool)
    scorer.save(tmp_path / "s.pt")
    feat = FeaturesConfig(numeric=["a", "b"], label="a")
    s = select(tmp_path / "pool.parquet", str(tmp_path / "s.pt"), feat, SamplingConfig(chunk_rows=50_000, seed=0),
               str(tmp_path / "sel"))
    xs = pl.read_parquet(s.output).select("a", "b").to_numpy()
    assert len(xs) > 3000 and s.clipped_share == 0.0
    np.testing.assert_allclose(xs.mean(0), mu, atol=tol_mean)
    np.testing.assert_allclose(np.cov(xs.T), cov, atol=tol_cov)


@pytest.mark.parametrize("log_w", [1_000.0, 1_055.0, 5_000.0])
def test_merge_keeps_weight_statistics_in_log_space(log_w, tmp_path):
    """Real long documents give log w in the thousands: merging their chunks must not overflow
    (exp(1,055) does); log E[w] is reported, plain numbers only where they fit, with a note."""
    from rsft.sampling import ChunkSummary

    sums = []
    for i in range(2):
        out = tmp_path / f"chunk-{i}.parquet"
        pl.DataFrame({"x": [0.0, 1.0], "log_w": [log_w, log_w - 1]}).write_parquet(out)
        sums.append(ChunkSummary(chunk_id=i, rows_in=3, rows_out=2, output=str(out), sum_accept_prob=1.0 + math.exp(-1),
                                 max_log_w=log_w, lse_log_w=log_w + math.log1p(math.exp(-1)), log_m=log_w))
    s = merge_selection(sums, str(tmp_path / "sel.parquet"), SamplingConfig(), log_m=log_w)
    assert s.rows_out == 4 and s.rows_in == 6
    assert s.log_mean_w == pytest.approx(log_w + math.log1p(math.exp(-1)) - math.log(3))  # 2 chunks of 3 rows
    assert s.mean_w is None and any("mean_w" in n for n in s.notes)
    assert s.inv_m == pytest.approx(math.exp(-log_w))  # 0.0 (underflow) is a fine plain number
    assert json.loads(json.dumps(s.to_dict(), allow_nan=False))["log_mean_w"] == pytest.approx(s.log_mean_w)
    # and an M below the weights' scale: 1/M = exp(+log_w) overflows the same way
    neg = merge_selection(sums, str(tmp_path / "sel2.parquet"), SamplingConfig(), log_m=-log_w)
    assert neg.inv_m is None and any("inv_m" in n for n in neg.notes)


# ---- long documents: memory bounded by sampling.chunk_bytes ------------------------------------------
def test_byte_slices_keep_each_slice_within_the_budget():
    from rsft.features import byte_slices

    nbytes = np.array([10, 30, 70, 200, 5, 5, 90, 0, 40])
    cuts = byte_slices(nbytes, 100)
    assert cuts[0] == 0 and cuts[-1] == len(nbytes) and sorted(set(cuts)) == cuts
    for a, b in zip(cuts[:-1], cuts[1:]):
        assert b - a == 1 or nbytes[a:b].sum() <= 100  # only a row over the budget stands alone
    assert cuts == [0, 2, 3, 4, 8, 9]  # 5 + 5 + 90 + 0 fits exactly
    assert byte_slices(np.zeros(0), 100) == [0]


def test_iter_chunk_streams_the_same_rows_as_read_chunk(tmp_path):
    """Parts that start and end inside row groups, packed small files, hive keys: the streamed
    batches (a few rows each) are read_chunk's rows, in order, with the same lineage."""
    from rsft.sampling import iter_chunk

    root = tmp_path / "ds"
    (root / "machine_id=M07").mkdir(parents=True)
    for i, (name, n) in enumerate({"a.parquet": 23, "b.parquet": 4, "machine_id=M07/c.parquet": 41}.items()):
        pl.DataFrame({"x": np.arange(n, dtype=np.float64) + 100 * i, "t": ["w " * (j % 7) for j in range(n)]}
                     ).write_parquet(root / name, row_group_size=6)
    for budget in (1, 40, 10**9):
        for spec in plan_chunks(root, 17):
            batches = list(iter_chunk(spec, budget))
            assert_frame_equal(pl.concat(batches, how="diagonal_relaxed"), read_chunk(spec))
            if budget == 1:
                assert max(b.height for b in batches) == 1


def _long_text_pool(path: Path, long_tokens: int = 20_000) -> list[str]:
    rng = np.random.default_rng(4)
    words = np.array("the kernel page system call file read write error bearing spindle seal leak fuse".split())
    docs = [" ".join(rng.choice(words, size=int(n))) for n in rng.integers(5, 400, size=600)]
    for i in (3, 250, 599):  # three documents of 20 000 tokens, one at the end of the pool
        docs[i] = " ".join(rng.choice(words, size=long_tokens))
    pl.DataFrame({"text": docs}).write_parquet(path, row_group_size=128)
    return docs


@pytest.mark.parametrize("mode", ["rejection", "budget"])
def test_long_documents_are_scored_in_slices_under_the_byte_budget(mode, tmp_path, monkeypatch):
    """A pool with three 20 000-token documents: with ``chunk_bytes`` = 20 000 every n-gram scoring
    call holds at most 2 × 20 000 n-grams (uni + bigrams of ≤ 20 000 one-byte-or-longer tokens)
    unless it is one document alone, the 20 000-token documents score finite log w (no overflow),
    and the rows selected are those of an unsliced run (the budget changes no random stream)."""
    import rsft.features

    docs = _long_text_pool(tmp_path / "pool.parquet")
    enc = make_scorer(ScorerConfig(kind="ngram", buckets=4096), []).encode
    make_scorer(ScorerConfig(kind="ngram", buckets=4096), []).fit(enc(["bearing spindle seal"] * 20), enc(docs[:100])
                                                                 ).save(tmp_path / "ng.pt")
    feat = FeaturesConfig(text_column="text")
    calls: list[tuple[int, int]] = []  # (documents, n-grams) per scoring call
    real = rsft.features.hashed_ngram_sums  # the n-gram scorer's scoring call (hash scheme 2)

    def spy(df, column, weights, ngrams=2, seed=0, scheme=2, **kw):
        _, per_doc = rsft.features.hashed_ngram_counts(df, column, len(weights), ngrams, seed, scheme)
        calls.append((len(per_doc), int(per_doc.sum())))
        return real(df, column, weights, ngrams, seed, scheme, **kw)

    monkeypatch.setattr(rsft.features, "hashed_ngram_sums", spy)
    base = SamplingConfig(mode=mode, budget=50, chunk_rows=400, seed=7)
    small = base.model_copy(update={"chunk_bytes": 20_000})
    log_m = None if mode == "budget" else 0.0
    a = select(tmp_path / "pool.parquet", str(tmp_path / "ng.pt"), feat, base, str(tmp_path / "a"), log_m=log_m)
    assert len(calls) <= 4  # unsliced: a call per Parquet batch (the default budget is far above this pool)
    calls.clear()
    b = select(tmp_path / "pool.parquet", str(tmp_path / "ng.pt"), feat, small, str(tmp_path / "b"), log_m=log_m)
    assert len(calls) > 20
    assert all(ngrams <= 2 * 20_000 for n, ngrams in calls if n > 1)
    assert sum(n == 1 and ngrams >= 2 * 20_000 - 1 for n, ngrams in calls) == 3  # the long ones, alone
    assert_frame_equal(pl.read_parquet(b.output), pl.read_parquet(a.output))
    lw = pl.concat([pl.read_parquet(p) for p in sorted((tmp_path / "b").glob("chunk-*.parquet"))])["log_w"]
    assert lw.is_finite().all() and b.max_log_w is not None and math.isfinite(b.max_log_w)
    assert b.rows_out == (50 if mode == "budget" else a.rows_out) and b.rows_in == 600


def test_plan_sees_a_rewritten_file(tmp_path):
    """Row-group layouts are cached per file version (path, mtime, size): a day file rewritten in
    place (a recomputed day) is planned and read with its new rows, not the cached footer's."""
    import os

    import polars as pl

    from rsft.sampling import plan_chunks, read_chunk

    f = tmp_path / "day.parquet"
    pl.DataFrame({"x": [1.0, 2.0, 3.0]}).write_parquet(f)
    assert [s.rows for s in plan_chunks(f, 10)] == [3]
    st = os.stat(f)
    pl.DataFrame({"x": [float(i) for i in range(7)]}).write_parquet(f)
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))  # same mtime: the size still tells them apart
    specs = plan_chunks(f, 10)
    assert [s.rows for s in specs] == [7]
    assert read_chunk(specs[0])["x"].to_list() == [float(i) for i in range(7)]


def test_small_day_files_are_read_together_with_their_lineage(tmp_path):
    """A chunk of many small files (a kept pool's days) is read as one frame per run of parts —
    the same rows, order, hive and lineage columns as part by part (a slice of the first and last
    file included)."""
    import polars as pl

    from rsft.sampling import _read_part, iter_chunk, plan_chunks

    for d in range(6):
        day = tmp_path / f"date=2026-01-0{d + 1}"
        day.mkdir()
        pl.DataFrame({"x": [float(10 * d + i) for i in range(7)]}).write_parquet(day / "part.parquet")
    specs = plan_chunks(tmp_path, 17)  # chunks cut files: slices at both ends
    assert any(len(s.parts) > 2 for s in specs)
    for spec in specs:
        frames = list(iter_chunk(spec, 1 << 20))
        assert len(frames) == 1  # one read for the run of small parts
        want = pl.concat([_read_part(p) for p in spec.parts], how="diagonal_relaxed")
        assert frames[0].equals(want.select(frames[0].columns)) and set(frames[0].columns) == set(want.columns)
        assert {"_source", "_row", "date"} <= set(frames[0].columns)
