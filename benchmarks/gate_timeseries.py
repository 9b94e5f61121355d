"""The paired gate's standard error on real time-ordered hold-outs: per row vs in time order.

    python benchmarks/gate_timeseries.py [--seeds 3]      (the bench venv: pandas, the real kits' packages)

For each of ``real_drift``'s real kits (bundled pvlib TMY PV, NYC / Chicago / Seattle weather; the
hold-out's rows are in time order in their files) two models are compared on the hold-out as the
gate compares a challenger with its champion — a ridge fitted on the target sample alone (the
linear reference) and a ridge fitted on pool + target sample, with ``rsft.paired`` on the rmse:
the SE treating rows as independent, the SE with the rows' time order (batch means, the block
length it chose), their ratio and both z. Then the question the SE answers — does the sign hold on
rows not seen? — by the hold-out's first and second half in time: the z on the first half, per row
and in time order, and the difference on the second. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import real_drift as rd  # noqa: E402  (the real kits' loaders)

from rsft.evaluate import Rows, ridge_predictor  # noqa: E402
from rsft.paired import paired_difference  # noqa: E402


def _pair(s: rd.Split, rows: slice | None = None) -> dict:
    xt, yt = rd._xy(s.target, s)
    xp, yp = rd._xy(s.pool, s)
    xh, yh = rd._xy(s.holdout, s)
    if rows is not None:
        xh, yh = xh[rows], yh[rows]
    ref = ridge_predictor(xt, yt)(xh)
    ch = ridge_predictor(np.vstack([xp, xt]), np.concatenate([yp, yt]))(xh)
    order = np.arange(len(yh))
    flat = paired_difference("rmse", Rows("regression", yh, ch), Rows("regression", yh, ref))
    timed = paired_difference("rmse", Rows("regression", yh, ch, order), Rows("regression", yh, ref, order))
    return {"rows": len(yh), "difference": round(flat.difference, 4), "se_per_row": round(flat.se, 5),
            "se_time_order": round(timed.se, 5), "ratio": round(timed.se / flat.se, 2), "z_per_row": round(flat.z, 1),
            "z_time_order": round(timed.z, 1), "method": timed.method}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=3)
    args = ap.parse_args()
    out = {}
    for d in rd.DATASETS.values():
        for seed in range(args.seeds if d.seeded_split else 1):
            s = d.load(seed)
            n = len(s.holdout)
            first, second = _pair(s, slice(0, n // 2)), _pair(s, slice(n // 2, n))
            out[f"{d.name} seed {seed}"] = {"whole": _pair(s), "first_half": first,
                                            "second_half_difference": second["difference"],
                                            "second_half_z_time_order": second["z_time_order"]}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
