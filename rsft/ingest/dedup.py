"""Exact duplicate rows within a file (``duplicate_rows: quarantine``): the one piece of ingest
state that grows with the file, 8 bytes per distinct row."""

from __future__ import annotations

from typing import Any


class _SeenHashes:
    """Exact-duplicate detection across a file's batches: sorted runs of 64-bit row hashes,
    merged LSM-style (amortised O(n log n)); 8 bytes of state per distinct row."""

    def __init__(self):
        self.runs: list = []

    def check_add(self, h) -> "Any":
        import numpy as np

        h = np.asarray(h, dtype=np.uint64)
        if not len(h):
            return np.zeros(0, dtype=bool)
        # np.unique(h, return_index=True), cheaper: an unstable argsort (np.unique's is stable:
        # 0.155 against 0.13 s of CPU on 22 batches of 100k hashes), each value's first row the
        # least index of its run. Sorted needles: searchsorted stays in cache
        order = np.argsort(h)
        s = h[order]
        starts = np.flatnonzero(np.concatenate(([True], s[1:] != s[:-1])))
        uniq, first = s[starts], np.minimum.reduceat(order, starts)
        seen = np.zeros(len(uniq), dtype=bool)
        for run in self.runs:
            i = np.searchsorted(run, uniq).clip(max=len(run) - 1)
            seen |= run[i] == uniq
        dup = np.ones(len(h), dtype=bool)  # every row but the first of each new hash
        dup[first[~seen]] = False
        new = uniq[~seen]
        if len(new):  # a batch of nothing but repeats adds no run (an empty run cannot be searched)
            self.runs.append(new)
        while len(self.runs) > 1 and len(self.runs[-2]) <= 1.5 * len(self.runs[-1]):
            b, a = self.runs.pop(), self.runs.pop()
            self.runs.append(np.sort(np.concatenate([a, b]), kind="mergesort"))
        return dup
