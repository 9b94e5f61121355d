"""A synthetic factory: machines × sensors over time, drifting regimes, faults, maintenance logs.

The generative story (all seeded, one day at a time so 50 M rows stream in bounded memory):

* Every (machine, day) runs one **product variant** (A, B or C). Each variant sets the machine's
  load distribution and its pressure set-point, so variants occupy different regions of sensor
  space.
* **Ambient temperature** drifts over the days (a warming trend plus daily noise) and heats the
  temperature sensors; **wear** grows since the last maintenance and raises vibration.
* The labelled **quality** target depends on the standardised sensors through coefficients that
  differ by variant, with an ambient interaction: the same sensor reading means a different
  quality in a different regime. Idle and maintenance rows have no quality (null).
* The **current regime** (the target) is variant C on hot days. The pool holds only a small share
  of variant-C rows (``target_like_share``) and few of them hot: RSFT has to find that needle.
* **Faults**: missing values, out-of-range readings, stuck sensors (a run of identical values),
  spikes (within range, far from the neighbours) and exact duplicate rows.
* **Maintenance log**: one JSONL line per event with a failure category whose vocabulary follows
  the machine's condition (vibration → bearing, pressure → seal, current → electrical, ...).
  The crew of the current regime (variant C) writes shorthand ("vib hi", "chg brg"): the text
  target regime is their logs, and the pool holds only the few variant-C machine-days of them.

Night ``n`` (1, 2, ...) sees the pool days ``[0, days + (n-1)*target_days)``: a later night adds
new daily export files and leaves the earlier ones byte-identical (incremental ingest), and draws
a fresh target sample and hold-out from the days just after its pool.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import polars as pl

from rsft.config import SynthConfig
from rsft.fsio import atomic_path, atomic_write_text

log = logging.getLogger(__name__)

SENSORS = [f"s{i:02d}" for i in range(1, 13)]
# physical ranges (the ingest contract): temps °C, pressures bar, vibration mm/s, current A
RANGES = {
    **{s: (0.0, 150.0) for s in SENSORS[0:4]},
    **{s: (0.0, 10.0) for s in SENSORS[4:7]},
    **{s: (0.0, 50.0) for s in SENSORS[7:10]},
    **{s: (0.0, 100.0) for s in SENSORS[10:12]},
}
VARIANTS = ["A", "B", "C"]
CATEGORIES = ["bearing", "seal", "electrical", "sensor", "other"]
TARGET_VARIANT = 2  # C

_VOCAB = {
    "bearing": ["bearing", "spindle", "grinding noise", "vibration high", "replaced bearing", "lubricated", "play in shaft"],
    "seal": ["seal", "leak", "pressure drop", "o-ring", "replaced gasket", "hydraulic oil", "seeping"],
    "electrical": ["motor current", "breaker tripped", "cable", "contactor", "overcurrent", "fuse replaced", "drive fault"],
    "sensor": ["sensor", "reading frozen", "probe", "recalibrated", "thermocouple", "signal lost", "replaced transmitter"],
    "other": ["cleaning", "inspection", "operator request", "tooling change", "visual check", "no fault found", "adjusted guard"],
}
_FILLER = ["on", "after", "during", "shift", "line", "checked", "found", "reported", "by", "operator", "night", "morning"]
# the current regime's crew (variant C) writes shorthand: the same events, other words. Lists have
# the lengths of the ones above, so a shorthand log consumes the random stream like a plain one.
_SHORTHAND = {
    "bearing": ["brg", "brg noise", "vib hi", "chg brg", "greased", "shaft play", "rumble"],
    "seal": ["sl", "lkg", "press lo", "oring", "chg gskt", "hyd oil", "drip"],
    "electrical": ["mtr amps", "cb trip", "cbl", "cntctr", "oc", "fuse chg", "vfd flt"],
    "sensor": ["snsr", "rdg stuck", "prb", "recal", "tc", "no sig", "chg xmtr"],
    "other": ["clean", "insp", "op req", "tool chg", "vis chk", "nff", "guard adj"],
}
_FILLER_SHORT = ["aft", "dur", "shft", "ln", "chk", "fnd", "rptd", "op", "nt", "am", "pm", "wo"]


@dataclass(frozen=True)
class Regime:
    """Hidden ground truth of the generator (never written to the exports)."""

    load_mean: np.ndarray  # [variants]
    load_std: np.ndarray  # [variants]
    pressure_offset: np.ndarray  # [variants]
    coef: np.ndarray  # [variants, sensors] quality coefficients on standardised sensors
    ambient_coef: np.ndarray  # [variants] quality sensitivity to ambient temperature
    intercept: np.ndarray  # [variants]
    machine_offset: np.ndarray  # [machines, sensors] calibration offsets


def make_regime(cfg: SynthConfig) -> Regime:
    rng = np.random.default_rng([cfg.seed, 7_777])
    coef = rng.normal(0.0, 1.0, size=(3, len(SENSORS)))
    # the current regime's relation is clearly different from the majority's
    coef[TARGET_VARIANT] = -0.6 * coef[0] + rng.normal(0.0, 0.8, size=len(SENSORS))
    return Regime(
        load_mean=np.array([0.0, 1.2, -1.0]),
        load_std=np.array([1.0, 0.6, 0.5]),
        pressure_offset=np.array([0.0, -0.8, 2.2]),
        coef=coef,
        ambient_coef=np.array([0.02, 0.05, 0.25]),
        intercept=np.array([50.0, 55.0, 47.0]),
        machine_offset=rng.normal(0.0, 0.5, size=(cfg.machines, len(SENSORS))),
    )


def _ambient(day: float, cfg: SynthConfig, rng: np.random.Generator, n: int) -> np.ndarray:
    # warming trend over the pool: ~12 °C at day 0, ~30 °C at the end of the pool and beyond
    trend = 12.0 + 18.0 * day / max(cfg.days, 1)
    return trend + rng.normal(0.0, 3.0, size=n)


def _variant_probs(cfg: SynthConfig) -> np.ndarray:
    c = cfg.target_like_share
    return np.array([(1 - c) * 0.6, (1 - c) * 0.4, c])


def _sensors(
    n_machine: np.ndarray, variant: np.ndarray, ambient: np.ndarray, wear: np.ndarray, regime: Regime, rng: np.random.Generator
) -> np.ndarray:
    n = len(variant)
    load = regime.load_mean[variant] + regime.load_std[variant] * rng.normal(size=n)
    x = np.empty((n, len(SENSORS)))
    x[:, 0:4] = 60.0 + 8.0 * load[:, None] + 0.8 * ambient[:, None] + rng.normal(0, 1.5, (n, 4))
    x[:, 4:7] = 4.0 + 0.8 * load[:, None] + regime.pressure_offset[variant][:, None] + rng.normal(0, 0.25, (n, 3))
    x[:, 7:10] = 5.0 + 9.0 * wear[:, None] + 1.0 * load[:, None] + rng.normal(0, 0.6, (n, 3))
    x[:, 10:12] = 40.0 + 10.0 * load[:, None] + rng.normal(0, 2.0, (n, 2))
    x += regime.machine_offset[n_machine]
    lo = np.array([RANGES[s][0] for s in SENSORS])
    hi = np.array([RANGES[s][1] for s in SENSORS])
    return np.clip(x, lo + 0.01, hi - 0.01)


# standardisation of the quality formula (fixed, so the relation is the same on every day)
_Q_CENTER = np.array([80.0] * 4 + [4.5] * 3 + [9.0] * 3 + [42.0] * 2)
_Q_SCALE = np.array([12.0] * 4 + [1.5] * 3 + [3.0] * 3 + [10.0] * 2)


def quality(x: np.ndarray, variant: np.ndarray, ambient: np.ndarray, regime: Regime, rng: np.random.Generator) -> np.ndarray:
    z = (x - _Q_CENTER) / _Q_SCALE
    lin = np.einsum("nd,nd->n", z, regime.coef[variant])
    inter = regime.ambient_coef[variant] * (ambient - 20.0) * (1.0 + 0.5 * z[:, 0])
    nonlin = 1.5 * np.tanh(z[:, 4] * z[:, 10])
    return regime.intercept[variant] + 3.0 * lin + inter + nonlin + rng.normal(0.0, 0.8, size=len(variant))


def _timestamps(start: datetime, day: int, machines: int, per_day: int) -> np.ndarray:
    step = 86_400 // per_day
    base = np.datetime64(start.replace(tzinfo=None), "s") + np.timedelta64(day * 86_400, "s")
    t = base + (np.arange(per_day) * step).astype("timedelta64[s]")
    return np.tile(t, machines)


def _start(cfg: SynthConfig) -> datetime:
    return datetime.fromisoformat(cfg.start.replace("Z", "+00:00")).astimezone(timezone.utc)


def generate_day(cfg: SynthConfig, day: int, regime: Regime | None = None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """One pool day: (sensor rows, maintenance-log rows). Deterministic in (seed, day)."""
    regime = regime or make_regime(cfg)
    rng = np.random.default_rng([cfg.seed, 1, day])
    m, k = cfg.machines, cfg.samples_per_day
    machine = np.repeat(np.arange(m), k)
    day_variant = rng.choice(3, size=m, p=_variant_probs(cfg))
    variant = np.repeat(day_variant, k)
    ambient = _ambient(day, cfg, rng, 1)[0] + rng.normal(0, 1.0, size=m * k)
    wear = np.repeat(rng.uniform(0, 1, size=m), k) + np.tile(np.linspace(0, 0.05, k), m)
    x = _sensors(machine, variant, ambient, wear, regime, rng)
    q = quality(x, variant, ambient, regime, rng)
    status = np.where(rng.uniform(size=m * k) < 0.04, "IDLE", "RUN").astype(object)
    sensors, logs = _finish(cfg, rng, machine, _timestamps(_start(cfg), day, m, k), x, q, status, shorthand=variant == TARGET_VARIANT)
    return sensors, _junk_logs(logs, np.random.default_rng([cfg.seed, 5, day]), cfg.fault_rate * 10)


_JUNK = ["ok", "#### ---- ####", "test test test test test test", "see above", "\x07\x07 ?? \x07"]


def _junk_logs(logs: pl.DataFrame, rng: np.random.Generator, rate: float) -> pl.DataFrame:
    """Real exports carry junk lines: one-word notes, symbol rows, repeated words, control
    characters and lines pasted twice (the text prefilter's job). Own random stream: the
    sensor rows and the clean log lines do not change."""
    if logs.height == 0:
        return logs
    hit = np.flatnonzero(rng.uniform(size=logs.height) < rate)
    if len(hit) == 0:
        return logs
    kind = rng.integers(0, len(_JUNK) + 1, size=len(hit))
    junk = logs[hit.tolist()].with_columns(
        text=pl.Series([logs["text"][int(i)] if k == len(_JUNK) else _JUNK[k] for i, k in zip(hit, kind)]))
    order = np.argsort(np.concatenate([np.arange(logs.height), hit]), kind="stable")
    return pl.concat([logs, junk])[order.tolist()]


SCENARIOS = ("covariate", "concept", "gain")


def generate_target(cfg: SynthConfig, night: int, rows: int, stream: int, scenario: str = "covariate",
                    period: tuple[float, float] = (0.0, 1.0)) -> pl.DataFrame:
    """Rows of the current regime from the days just after night's pool (``period``: the part of
    those ``target_days`` they come from, as fractions — the demo's sample the first half, its
    hold-out the second: exported from different periods, as rsft's hold-out checks advise).

    Scenarios (each with a known best recipe, for the adaptation benchmark):

    * ``covariate`` (the demo): the rare variant C on hot days; its region of sensor space is
      only thinly covered by the pool — rejection sampling should win.
    * ``concept``: the usual variant mix, but the input→quality relation changed (new
      coefficients): the pool's labels mislead — fine-tuning on the target sample alone should win.
    * ``gain``: the usual variant mix and relation, but the quality gauge's gain and offset
      drifted (reads 1.15·q + 2) — recalibrating the champion's output should win.
    """
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario '{scenario}' (have: {', '.join(SCENARIOS)})")
    regime = make_regime(cfg)
    rng = np.random.default_rng([cfg.seed, 2, night, stream])
    pool_days = cfg.days + (night - 1) * cfg.target_days
    machine = rng.integers(0, cfg.machines, size=rows)
    day = pool_days + cfg.target_days * rng.uniform(*period, size=rows)
    if scenario == "covariate":
        variant = np.full(rows, TARGET_VARIANT)
        ambient = 12.0 + 18.0 * day / max(cfg.days, 1) + 4.0 + rng.normal(0, 3.0, size=rows)
    else:
        variant = rng.choice(2, size=rows, p=[0.6, 0.4])
        ambient = _ambient(float(rng.uniform(0, cfg.days)), cfg, rng, rows)
    wear = rng.uniform(0, 1, size=rows)
    x = _sensors(machine, variant, ambient, wear, regime, rng)
    if scenario == "concept":
        drng = np.random.default_rng([cfg.seed, 9_999])
        new = regime.coef.copy()
        new[:2] = drng.normal(0.0, 1.0, size=(2, len(SENSORS)))
        regime = Regime(regime.load_mean, regime.load_std, regime.pressure_offset, new, regime.ambient_coef,
                        regime.intercept, regime.machine_offset)
    q = quality(x, variant, ambient, regime, rng)
    if scenario == "gain":
        q = 1.15 * q + 2.0
    start = np.datetime64(_start(cfg).replace(tzinfo=None), "s")
    ts = start + (np.sort(day) * 86_400).astype("timedelta64[s]")
    return _finish(cfg, rng, machine, ts, x, q, np.full(rows, "RUN", dtype=object), faults=False)[0]


# the demo's target sample and hold-out: the first and the second half of the target days (one
# period each: a hold-out beside the sample's readings would judge the fine-tune on its neighbours)
SAMPLE_PERIOD, HOLDOUT_PERIOD = (0.0, 0.5), (0.5, 1.0)


def generate_target_logs(cfg: SynthConfig, night: int, rows: int, stream: int,
                         period: tuple[float, float] = (0.0, 1.0)) -> pl.DataFrame:
    """Labelled maintenance logs of the current regime (variant C's crew, shorthand) from the
    days just after night's pool: the text pipeline's target sample and hold-out (``period``: as
    :func:`generate_target`'s)."""
    regime = make_regime(cfg)
    rng = np.random.default_rng([cfg.seed, 4, night, stream])
    pool_days = cfg.days + (night - 1) * cfg.target_days
    machine = rng.integers(0, cfg.machines, size=rows)
    day = np.sort(pool_days + cfg.target_days * rng.uniform(*period, size=rows))
    variant = np.full(rows, TARGET_VARIANT)
    ambient = 12.0 + 18.0 * day / max(cfg.days, 1) + rng.normal(0, 3.0, size=rows)
    x = _sensors(machine, variant, ambient, rng.uniform(0, 1, size=rows), regime, rng)
    ts = np.datetime64(_start(cfg).replace(tzinfo=None), "s") + (day * 86_400).astype("timedelta64[s]")
    return _maintenance_events(cfg, rng, machine, ts, x, np.arange(rows), np.ones(rows, dtype=bool))


def _finish(
    cfg: SynthConfig,
    rng: np.random.Generator,
    machine: np.ndarray,
    ts: np.ndarray,
    x: np.ndarray,
    q: np.ndarray,
    status: np.ndarray,
    faults: bool = True,
    shorthand: np.ndarray | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    n = len(machine)
    x = np.round(x, 3)
    q = np.round(q, 3)
    logs = _empty_logs()
    if faults:
        events = np.flatnonzero(rng.uniform(size=n) < cfg.event_rate)
        logs = _maintenance_events(cfg, rng, machine, ts, x, events, shorthand)
        status[events] = "MAINT"
    labelled = status == "RUN"
    cols: dict[str, object] = {
        "machine_id": np.array([f"M{i + 1:02d}" for i in range(cfg.machines)])[machine],
        "ts": ts.astype("datetime64[us]"),
    }
    xs = x.astype(object) if faults else x
    if faults:
        r = cfg.fault_rate
        # missing value: an empty cell (quarantined at ingest)
        hit = rng.uniform(size=n) < r
        xs[hit, rng.integers(0, 12, size=hit.sum())] = None
        # out of range: beyond the physical limit (quarantined at ingest)
        hit = np.flatnonzero(rng.uniform(size=n) < r)
        col = rng.integers(0, 12, size=len(hit))
        for i, c in zip(hit, col):
            xs[i, c] = round(RANGES[SENSORS[c]][1] * rng.uniform(1.05, 1.5), 3)
        # spike: within range but far from the neighbours (dropped by the prefilter)
        hit = np.flatnonzero(rng.uniform(size=n) < r)
        for i in hit:
            c = int(rng.integers(0, 12))
            lo, hi = RANGES[SENSORS[c]]
            xs[i, c] = round(hi - (hi - lo) * 0.02, 3) if x[i, c] < (lo + hi) / 2 else round(lo + (hi - lo) * 0.02, 3)
        # stuck sensor: a run of 15 identical readings on one machine (dropped by the prefilter)
        for start in np.flatnonzero(rng.uniform(size=n) < r / 10):
            c = int(rng.integers(0, 12))
            run = np.arange(start, min(start + 15, n))
            run = run[machine[run] == machine[start]]
            xs[run, c] = xs[start, c] if xs[start, c] is not None else x[start, c]
    for j, s in enumerate(SENSORS):
        cols[s] = pl.Series(s, xs[:, j].tolist() if faults else xs[:, j], dtype=pl.Float64)
    cols["status"] = status.astype(str)
    cols["quality"] = pl.Series("quality", np.where(labelled, q, np.nan)).fill_nan(None)
    df = pl.DataFrame(cols).with_columns(pl.col("ts").dt.replace_time_zone("UTC"))
    if faults:
        dup = np.flatnonzero(rng.uniform(size=n) < r)
        if len(dup):
            # exact duplicate rows, appended right after their original
            order = np.sort(np.concatenate([np.arange(n), dup]), kind="stable")
            df = df[order.tolist()]
    return df, logs


def _empty_logs() -> pl.DataFrame:
    return pl.DataFrame(schema={"machine_id": pl.String, "ts": pl.String, "category": pl.String, "text": pl.String})


def _maintenance_events(
    cfg: SynthConfig,
    rng: np.random.Generator,
    machine: np.ndarray,
    ts: np.ndarray,
    x: np.ndarray,
    rows: np.ndarray,
    shorthand: np.ndarray | None = None,
) -> pl.DataFrame:
    if len(rows) == 0:
        return _empty_logs()
    vib = x[rows, 7:10].mean(1)
    pres = x[rows, 4:7].mean(1)
    cur = x[rows, 10:12].mean(1)
    score = np.stack([(vib - 9) / 3, np.abs(pres - 4.5) / 1.5, (cur - 42) / 10, np.zeros(len(rows)), np.zeros(len(rows))], 1)
    score += rng.gumbel(size=score.shape)
    cat = score.argmax(1)
    texts = []
    for i, c in zip(rows, cat):
        name = CATEGORIES[c]
        short = shorthand is not None and bool(shorthand[i])
        vocab, filler = (_SHORTHAND[name], _FILLER_SHORT) if short else (_VOCAB[name], _FILLER)
        words = list(rng.choice(vocab, size=3)) + list(rng.choice(filler, size=int(rng.integers(2, 6))))
        rng.shuffle(words)
        texts.append(f"M{machine[i] + 1:02d}: " + " ".join(words) + f", value {x[i, 7 + (c % 3)]:.1f}")
    stamp = [str(t)[:19] + "Z" for t in ts[rows].astype("datetime64[s]")]
    return pl.DataFrame(
        {
            "machine_id": [f"M{machine[i] + 1:02d}" for i in rows],
            "ts": stamp,
            "category": [CATEGORIES[c] for c in cat],
            "text": texts,
        }
    )


# --------------------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------------------
@dataclass
class SynthSummary:
    out_dir: str
    night: int
    pool_files: list[str] = field(default_factory=list)
    log_files: list[str] = field(default_factory=list)
    pool_rows: int = 0
    log_rows: int = 0
    target_sample: str = ""
    target_holdout: str = ""
    target_sample_rows: int = 0
    target_holdout_rows: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def _write_sensors(df: pl.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        if path.suffix == ".parquet":
            df.write_parquet(tmp)
        else:
            df.with_columns(pl.col("ts").dt.strftime("%Y-%m-%dT%H:%M:%SZ")).write_csv(tmp)


def write_synthetic(cfg: SynthConfig, out_dir: str | Path, night: int = 1, on_day=None) -> SynthSummary:
    """Write night ``night``'s exports under ``out_dir``::

        pool/sensors_dayNNN.{csv,parquet}   one export per historical day
        logs/maintenance_dayNNN.jsonl       maintenance log per day
        target/sample.csv                   small labelled sample of the current regime
        target/holdout.parquet              hold-out of the current regime (promotion gate)
        target/logs_sample.jsonl            labelled maintenance logs of the current regime
        target/logs_holdout.jsonl           ... and their hold-out (the text pipeline's gate)

    Existing day files are rewritten byte-identically (same seed), so re-running is harmless.
    """
    if night < 1:
        raise ValueError("night must be >= 1")
    out = Path(out_dir)
    regime = make_regime(cfg)
    summary = SynthSummary(out_dir=str(out), night=night)
    days = cfg.days + (night - 1) * cfg.target_days
    for day in range(days):
        sensors, logs = generate_day(cfg, day, regime)
        fmt = cfg.pool_format if cfg.pool_format != "mixed" else ("parquet" if day % 2 else "csv")
        path = out / "pool" / f"sensors_day{day:03d}.{fmt}"
        _write_sensors(sensors, path)
        log_path = out / "logs" / f"maintenance_day{day:03d}.jsonl"
        lines = "".join(json.dumps(r) + "\n" for r in logs.iter_rows(named=True))
        atomic_write_text(log_path, lines)
        summary.pool_files.append(str(path))
        summary.log_files.append(str(log_path))
        summary.pool_rows += sensors.height
        summary.log_rows += logs.height
        if on_day:
            on_day(day, days)
    sample = generate_target(cfg, night, cfg.target_sample_rows, stream=0, period=SAMPLE_PERIOD)
    holdout = generate_target(cfg, night, cfg.target_holdout_rows, stream=1, period=HOLDOUT_PERIOD)
    summary.target_sample = str(out / "target" / "sample.csv")
    summary.target_holdout = str(out / "target" / "holdout.parquet")
    _write_sensors(sample, Path(summary.target_sample))
    _write_sensors(holdout, Path(summary.target_holdout))
    summary.target_sample_rows, summary.target_holdout_rows = sample.height, holdout.height
    for stream, rows, fname, period in ((0, cfg.target_sample_rows, "logs_sample.jsonl", SAMPLE_PERIOD),
                                        (1, cfg.target_holdout_rows, "logs_holdout.jsonl", HOLDOUT_PERIOD)):
        text = "".join(json.dumps(r) + "\n" for r in generate_target_logs(cfg, night, rows, stream, period).iter_rows(named=True))
        atomic_write_text(out / "target" / fname, text)
    log.info("synth night %d: %d pool rows in %d files", night, summary.pool_rows, len(summary.pool_files))
    return summary
