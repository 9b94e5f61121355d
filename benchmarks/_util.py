"""Benchmark helpers: run a Python snippet in a fresh process, return wall seconds and peak RSS."""

from __future__ import annotations

import os
import subprocess
import sys
import time


def measure(code: str, *args: str) -> dict:
    """Run ``python -c code args...`` in a child; its own peak RSS comes from wait4."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    out, errs = proc.stdout.read(), proc.stderr.read()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"benchmark child failed: {errs.strip().splitlines()[-1] if errs.strip() else status}")
    return {"seconds": round(wall, 3), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1), "stdout": out.strip()}
