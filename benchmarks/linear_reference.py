"""The linear reference (`rsft.evaluate.linear_metrics`: ridge on the target sample alone, penalty
by exact leave-one-out) on the demo's nights, and on real data beside scikit-learn's RidgeCV.

    python benchmarks/linear_reference.py [--config examples/factory.yaml] [--nights 2]
    python benchmarks/linear_reference.py --real [--seeds 0 1 2]     # bench venv: '.[real-data]'
    python benchmarks/linear_reference.py --trial /tmp/trial10 [--dates 2026-02-21 …] [--terms poa*dc_kw]

Prints one JSON object. Demo: per night the reference's and the constant's hold-out RMSE on the
draws `make demo` writes (compare with its summary's challenger/champion rmse). ``--real``: per
real-drift data set and seed (``benchmarks/real_drift.py``'s loaders: files bundled in installed
packages, nothing downloaded) the reference's, RidgeCV's (standardised inputs, 29 alphas) and the
constant's hold-out RMSE (BENCHMARKS.md, "A linear reference every night"). ``--trial``: a
recorded trial's nights (its ``pv.yaml``, ``feed/``, ``nights/<date>.json``, MLflow store; read
only): each night's target sample (days D−8..D−2) and hold-out (D−1..D) rebuilt as its
``night.sh`` did and read through rsft's ingest and target prefilter; the reference without and
with ``promotion.linear_reference_terms`` beside the champion served after that night (loaded from
a copy of the trial's registry), the paired z as the night computes it (per-row SE, and a block SE
over area × clock hour) and whether the summary's model warning would fire.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import polars as pl

from rsft.evaluate import constant_metrics, linear_metrics


def demo(config: str, nights: int) -> dict:
    from rsft.config import load_config
    from rsft.synth import HOLDOUT_PERIOD, SAMPLE_PERIOD, generate_target

    cfg = load_config(config)
    f, s = cfg.features, cfg.synth
    out = {}
    for night in range(1, nights + 1):
        t = generate_target(s, night, s.target_sample_rows, 0, period=SAMPLE_PERIOD).filter(pl.col(f.label).is_not_null())
        h = generate_target(s, night, s.target_holdout_rows, 1, period=HOLDOUT_PERIOD).filter(pl.col(f.label).is_not_null())
        xt, yt, xh, yh = (d.select(c).to_numpy().astype(np.float64) for d, c in
                          ((t, f.numeric), (t, f.label), (h, f.numeric), (h, f.label)))
        out[f"night_{night}"] = {"linear_rmse": round(linear_metrics(xt, yt[:, 0], xh, yh[:, 0])["rmse"], 5),
                                 "constant_rmse": round(constant_metrics(yt[:, 0], yh[:, 0])["rmse"], 5),
                                 "target_rows": t.height, "holdout_rows": h.height}
    return out


def real(seeds: list[int]) -> dict:
    sys.path.insert(0, str(Path(__file__).parent))
    import real_drift as rd
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    out = {}
    for name, load in (("pvlib", rd.load_pvlib), ("nyc", rd.load_nyc), ("chicago", rd.load_chicago),
                       ("seattle", rd.load_seattle)):
        for seed in seeds:
            s = load(seed)
            (xt, yt), (xh, yh) = rd._xy(s.target, s), rd._xy(s.holdout, s)
            ridge_cv = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-3, 4, 29))).fit(xt, yt)
            out[f"{name}/{seed}"] = {"linear_rmse": round(linear_metrics(xt, yt, xh, yh)["rmse"], 4),
                                     "sklearn_ridgecv_rmse": round(rd.rmse(ridge_cv.predict(xh), yh), 4),
                                     "constant_rmse": round(constant_metrics(yt, yh)["rmse"], 4),
                                     "target_rows": len(yt), "inputs": xt.shape[1]}
    return out


def _trial_night(trial: Path, cfg_path: Path, date: str, terms: list[list[str]], work: Path, mlc, version: str):
    """One recorded night: the reference without / with ``terms`` and the champion ``version`` on
    its hold-out, and the summary's verdict for each."""
    import dataclasses
    import datetime as dt

    from rsft.config import load_config
    from rsft.pipeline.layout import TARGET_HOLDOUT, TARGET_SAMPLE
    from rsft.paired import paired_difference
    from rsft.pipeline.data import ingest_stage, load_target
    from rsft.pipeline.results import Finetuned
    from rsft.pipeline.summary import model_warnings
    from rsft.pipeline.training import constant_scores, evaluate_frame, linear_scores
    from rsft.tracking import registry

    d = dt.date.fromisoformat(date)
    for name, days in (("sample", range(-8, -1)), ("holdout", range(-1, 1))):  # night.sh's files, in its row order
        (work / date / name).mkdir(parents=True, exist_ok=True)
        for k in days:
            day = d + dt.timedelta(days=k)
            for area in ("A01", "A02", "A03", "A04"):
                (work / date / name / f"{day}-{area}.csv").write_bytes((trial / "feed" / area / f"{day}.csv").read_bytes())
    sets = {"state.dir": str(work / date / "state"), "data.target_sample": str(work / date / "sample"),
            "data.target_holdout": str(work / date / "holdout")}
    cfg = load_config(cfg_path, sets)
    ingest_stage(cfg, only=(TARGET_SAMPLE, TARGET_HOLDOUT))
    sample, holdout = load_target(cfg, TARGET_SAMPLE), load_target(cfg, TARGET_HOLDOUT)
    model = registry.load_version_model(mlc, mlc.get_model_version(cfg.promotion.model_name, version))
    champ = evaluate_frame(model, holdout, cfg)
    night = Finetuned(run_id="r", model_name=cfg.promotion.model_name, version=None, promoted=False, reason="",
                      metric="rmse", challenger=champ, champion=champ, warm_start="", train={}, adapt=None,
                      holdout_rows=holdout.height, champion_version=version, tracking_uri="",
                      constant=constant_scores(cfg, sample, holdout))
    out = {"champion_version": version, "champion_rmse": round(champ["rmse"], 5), "sample_rows": sample.height,
           "holdout_rows": holdout.height}
    blocks = holdout.select(pl.col(cfg.features.group) + pl.col(cfg.features.time_column).cast(pl.String).str.slice(0, 13))
    for label, t in (("raw", []), ("terms", terms)):
        lin = linear_scores(load_config(cfg_path, {**sets, "promotion.linear_reference_terms": t}), sample, holdout)
        p = paired_difference("rmse", lin.rows, champ.rows)
        warned = model_warnings(dataclasses.replace(night, linear=lin), cfg.promotion.linear_reference_by,
                                cfg.promotion.min_z)
        out[label] = {"linear_rmse": round(lin["rmse"], 5), "difference": round(p.difference, 4),
                      "se": round(p.se, 4), "z": round(p.z, 2),
                      "z_block_area_hour": round(p.difference / _block_se(lin.rows, champ.rows, blocks), 2),
                      "warns": bool(warned)}
    return out


def _block_se(lin, champ, blocks: pl.DataFrame) -> float:
    """The SE of the paired RMSE difference from block sums of its per-row influence (blocks of
    rows that err together: area × clock hour), as the trial's blockse.py."""
    sl, sc = (lin.out - lin.y) ** 2, (champ.out - champ.y) ** 2
    infl = sc / (2 * np.sqrt(sc.mean())) - sl / (2 * np.sqrt(sl.mean()))
    g = pl.DataFrame({"b": blocks.to_series(), "i": infl - infl.mean()}).group_by("b").agg(pl.col("i").sum())
    return float(np.sqrt((g["i"].to_numpy() ** 2).sum()) / len(infl))


def trial(path: str, dates: list[str] | None, terms: list[list[str]]) -> dict:
    """The recorded nights ``dates`` (default: all) of the trial at ``path``; its MLflow store is
    copied first (the trial's state is never written)."""
    import shutil
    import tempfile

    from rsft.tracking import registry

    root = Path(path)
    work = Path(tempfile.mkdtemp(prefix="rsft-linref-"))
    shutil.copy(root / "state" / "mlflow.db", work / "mlflow.db")
    mlc = registry.client(f"sqlite:///{work / 'mlflow.db'}")
    champion, out = None, {}
    for night in sorted((root / "nights").glob("2026-*.json")):
        j = json.loads(night.read_text())
        champion = j["model_version"] if j["promoted"] else champion
        if dates is None or night.stem in dates:
            out[night.stem] = {**_trial_night(root, root / "pv.yaml", night.stem, terms, work, mlc, champion),
                               "logged": {"champion_rmse": j["challenger_rmse"] if j["promoted"] else j["champion_rmse"],
                                          "linear_rmse": j["linear_rmse"]}}
            print(night.stem, json.dumps(out[night.stem]), file=sys.stderr, flush=True)
    shutil.rmtree(work, ignore_errors=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="examples/factory.yaml")
    ap.add_argument("--nights", type=int, default=2)
    ap.add_argument("--real", action="store_true", help="the real-drift data sets instead of the demo")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--trial", help="a recorded trial's directory (pv.yaml, feed/, nights/, state/)")
    ap.add_argument("--dates", nargs="+", help="--trial: these nights only (default: all)")
    ap.add_argument("--terms", nargs="+", default=["poa*dc_kw"], help="--trial: the terms, columns joined by *")
    args = ap.parse_args()
    if args.trial:
        print(json.dumps(trial(args.trial, args.dates, [t.split("*") for t in args.terms])))
        return
    print(json.dumps(real(args.seeds) if args.real else demo(args.config, args.nights)))


if __name__ == "__main__":
    main()
