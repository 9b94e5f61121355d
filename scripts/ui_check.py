"""Look at a demo's state as a new user would: start the MLflow UI on loopback and save
screenshots of its pages with headless Chromium, after checking through the REST API that the
night's run, its model version and the logged model tell their story.

    python scripts/ui_check.py [--state .rsft] [--out .rsft/ui-check]      (make ui-check)

Needs a state directory with at least one night (``make demo``) and Chromium from the system's
packages (``/usr/bin/chromium``, ``chromium-browser`` or ``google-chrome``); without Chromium it
prints one line and exits 0 after the REST checks. Writes ``<out>/NN-<page>.png`` and
``<out>/checks.json``; exits 1 when a check fails.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

BROWSERS = ("/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_browser() -> str | None:
    for b in BROWSERS:
        path = b if os.path.isabs(b) and os.access(b, os.X_OK) else shutil.which(b)
        if path:
            return path
    return None


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Api:
    def __init__(self, base: str):
        self.base = base

    def get(self, path: str, **params) -> dict:
        q = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None}, doseq=True)
        with urllib.request.urlopen(f"{self.base}/api/2.0/mlflow/{path}" + (f"?{q}" if q else ""), timeout=30) as r:
            return json.loads(r.read())

    def post(self, path: str, body: dict) -> dict:
        req = urllib.request.Request(f"{self.base}/api/2.0/mlflow/{path}", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read())

    def artifact(self, run_id: str, path: str) -> bytes:
        q = urllib.parse.urlencode({"run_uuid": run_id, "path": path})
        with urllib.request.urlopen(f"{self.base}/get-artifact?{q}", timeout=30) as r:
            return r.read()


def start_ui(state: Path, port: int, log_path: Path) -> subprocess.Popen:
    mlflow = Path(sys.executable).parent / "mlflow"
    cmd = [str(mlflow) if mlflow.exists() else "mlflow", "ui", "--backend-store-uri", f"sqlite:///{state / 'mlflow.db'}",
           "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    return subprocess.Popen(cmd, stdout=open(log_path, "w"), stderr=subprocess.STDOUT, env=env, start_new_session=True)


def wait_up(base: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError("mlflow ui exited early (see its log)")
        try:
            with urllib.request.urlopen(f"{base}/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"mlflow ui did not answer at {base} in {timeout:.0f} s")


def screenshot(browser: str, url: str, path: Path, size: str = "1600,1200", wait_ms: int = 12000,
               timeout: float = 150, tries: int = 2) -> bool:
    """One page as a PNG. Chromium runs in its own process group (killed with its children when it
    hangs: on a loaded machine a page can outlast its virtual-time budget); one retry."""
    for attempt in range(tries):
        with tempfile.TemporaryDirectory() as profile:
            cmd = [browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                   "--hide-scrollbars", "--no-first-run", f"--user-data-dir={profile}", f"--window-size={size}",
                   f"--virtual-time-budget={wait_ms}", f"--screenshot={path}", url]
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                    start_new_session=True)
            try:
                _, err = proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
                proc.communicate()
                err = f"timed out after {timeout:.0f} s"
        if proc.returncode == 0 and path.exists() and path.stat().st_size > 0:
            return True
        print(f"  screenshot {'failed' if attempt + 1 == tries else 'retrying'}: {url}: "
              f"{(err or '').strip().splitlines()[-1:] or proc.returncode}")
    return False


def prefect_pages(state: Path, out: Path, browser: str, first: int) -> int:
    """Start the Prefect UI over the state's Prefect database and screenshot the newest nightly
    run: its artifacts and its logs. Returns the number of screenshots saved."""
    port = _port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "PREFECT_HOME": str(state / "prefect"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_UI_ENABLED": "true", "PREFECT_SERVER_LOGGING_LEVEL": "WARNING", "PREFECT_UI_API_URL": f"{base}/api"}
    env.pop("PREFECT_API_URL", None)
    prefect = Path(sys.executable).parent / "prefect"
    proc = subprocess.Popen([str(prefect) if prefect.exists() else "prefect", "server", "start", "--host", "127.0.0.1",
                             "--port", str(port)], stdout=open(out / "prefect-ui.log", "w"), stderr=subprocess.STDOUT,
                            env=env, start_new_session=True)
    try:
        t0 = time.time()
        while True:
            try:
                with urllib.request.urlopen(f"{base}/api/health", timeout=2):
                    break
            except OSError:
                if proc.poll() is not None or time.time() - t0 > 180:
                    print("  prefect server did not start (see prefect-ui.log)")
                    return 0
                time.sleep(1)
        def newest(**state) -> list:
            body = {"sort": "START_TIME_DESC", "limit": 1, "flows": {"name": {"any_": ["nightly-retrain"]}},
                    **({"flow_runs": {"state": {"type": {"any_": list(state.values())}}}} if state else {})}
            req = urllib.request.Request(f"{base}/api/flow_runs/filter", data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"}, method="POST")
            with urllib.request.urlopen(req, timeout=30) as r:
                return json.loads(r.read())

        # the newest night that finished: a failed or crashed later run (a killed test night, a
        # re-run stopped by hand) has no report to show
        runs = newest(type="COMPLETED") or newest()
        if not runs:
            print("  no nightly-retrain flow run in the Prefect database")
            return 0
        run = runs[0]
        state = (run.get("state") or {}).get("type", "?")
        print(f"  prefect: newest {'completed ' if state == 'COMPLETED' else ''}night {run['name']!r}"
              + ("" if state == "COMPLETED" else f" ({state}: no completed night)"))
        body = {"artifacts": {"flow_run_id": {"any_": [run["id"]]}}, "sort": "KEY_ASC"}
        req = urllib.request.Request(f"{base}/api/artifacts/filter", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(req, timeout=30) as r:
            arts = {a["key"]: a for a in json.loads(r.read()) if a.get("key")}
        print(f"  prefect: artifacts on the nightly run: {', '.join(sorted(arts)) or 'none'}")
        pages = [("logs", f"{base}/runs/flow-run/{run['id']}", "1600,1400")]
        pages += [(key, f"{base}/artifacts/artifact/{arts[key]['id']}", "1600,1400")
                  for key in ("selection-report", "promotion-decision", "adapt-candidates", "retrain-summary") if key in arts]
        n = 0
        for i, (name, url, size) in enumerate(pages, first):
            path = out / f"{i:02d}-prefect-night-{name}.png"
            if screenshot(browser, url, path, size, wait_ms=20000):
                n += 1
                print(f"  saved {path}")
        return n
    finally:
        stop(proc, 30)


def stop(proc: subprocess.Popen, timeout: float) -> None:
    """SIGTERM a UI server's process group; SIGKILL it when it has not ended within ``timeout`` s."""
    os.killpg(proc.pid, 15)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)


def story(api: Api) -> dict:
    """The newest night, its model version and logged model, read through the REST API."""
    exps = [e for e in api.post("experiments/search", {"max_results": 100})["experiments"] if e["name"] != "Default"]
    if not exps:
        raise SystemExit("the state has no rsft experiment: run `make demo` first")
    exp = exps[0]
    runs = api.post("runs/search", {"experiment_ids": [exp["experiment_id"]], "max_results": 50,
                                    "order_by": ["attributes.start_time DESC"],
                                    "filter": "tags.`mlflow.parentRunId` IS NULL"}).get("runs", [])
    nights = [r for r in runs if "rsft.pipeline" in {t["key"] for t in r["data"].get("tags", [])}]
    night = nights[0]
    tags = {t["key"]: t["value"] for t in night["data"].get("tags", [])}
    versions = api.get("model-versions/search", filter=f"run_id='{night['info']['run_id']}'")
    mv = (versions.get("model_versions") or [None])[0]
    return {"experiment": exp, "night": night, "tags": tags, "version": mv, "nights": nights}


def checks(api: Api, s: dict) -> list[tuple[str, bool, str]]:
    """What a person needs to find, each (what, ok, detail)."""
    night, tags, mv = s["night"], s["tags"], s["version"]
    metrics = {m["key"] for m in night["data"].get("metrics", [])}
    out = [
        ("run named '<pipeline> <date> <decision> v<N>'", len(night["info"]["run_name"].split()) >= 3
         and night["info"]["run_name"][:4] != "run-", night["info"]["run_name"]),
        ("run has a markdown description", "night of" in tags.get("mlflow.note.content", ""),
         tags.get("mlflow.note.content", "")[:80]),
        ("key figures are metrics", {"rows_kept", "rows_selected", "acceptance_rate", "ess", "auc_selected_vs_target"} <= metrics,
         ", ".join(sorted(metrics))[:200]),
    ]
    exp_tags = {t["key"]: t["value"] for t in s["experiment"].get("tags", [])}
    view = json.loads(exp_tags.get("mlflow.sharedViewState.rsft-nights") or "{}")
    columns = [c.removeprefix("metrics.`").rstrip("`") for c in view.get("selectedColumns", [])]
    out.append(("the nights view: the key figures as runs-table columns, linked from the experiment",
                bool(columns) and {c for c in columns if not c.startswith("champion_")}  # (from the 2nd night on)
                <= {m["key"] for n in s["nights"] for m in n["data"].get("metrics", [])} and "viewStateShareKey=rsft-nights" in exp_tags.get("mlflow.note.content", ""),
                ", ".join(columns)))
    inputs = {d["dataset"]["name"]: json.loads(d["dataset"].get("profile") or "{}").get("num_rows")
              for d in night.get("inputs", {}).get("dataset_inputs", [])}
    chain = ("1_raw_files", "2_ingested", "3_kept", "4_selected", "5_training_set")
    out.append(("the run's datasets are the lineage, with row counts", all(inputs.get(k) is not None for k in chain),
                " → ".join(f"{k} {inputs.get(k)}" for k in chain)))
    if mv is not None:
        vt = {t["key"]: t["value"] for t in mv.get("tags", [])}
        chain = [vt.get(f"lineage.{k}.rows") for k in ("1_raw_files", "2_ingested", "3_kept", "4_selected", "5_training_set")]
        out.append(("lineage tags on the version (rows in order)", all(chain), " → ".join(map(str, chain))))
        out.append(("version has a description", bool(mv.get("description")), (mv.get("description") or "")[:80]))
        model_id = mv["source"].removeprefix("models:/").split("/")[0] if mv["source"].startswith("models:/m-") else None
        if model_id:
            lm = api.get(f"logged-models/{model_id}")["model"]
            ds = {m.get("dataset_name") for m in lm.get("data", {}).get("metrics", []) if m.get("dataset_name")}
            out.append(("logged model linked to datasets", bool(ds), ", ".join(sorted(ds))))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--state", default=os.environ.get("RSFT_STATE_DIR", ".rsft"))
    ap.add_argument("--out", default=None)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--browser", default="auto", help="Chromium's path; 'none' = REST checks only")
    ap.add_argument("--prefect", action="store_true", help="also start the Prefect UI and screenshot the newest night")
    a = ap.parse_args()
    state = Path(a.state).resolve()
    out = Path(a.out or state / "ui-check").resolve()
    if not (state / "mlflow.db").exists():
        print(f"ui-check: no MLflow store at {state / 'mlflow.db'}: run `make demo` first (or pass --state)")
        return 2
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.png"):
        old.unlink()
    port = a.port or _port()
    base = f"http://127.0.0.1:{port}"
    proc = start_ui(state, port, out / "mlflow-ui.log")
    try:
        wait_up(base, proc)
        api = Api(base)
        s = story(api)
        results = checks(api, s)
        for what, ok, detail in results:
            detail = " ".join(str(detail).split())
            print(f"  {'ok  ' if ok else 'FAIL'} {what}" + (f": {detail[:150]}" if detail else ""))
        (out / "checks.json").write_text(json.dumps([{"check": w, "ok": o, "detail": d} for w, o, d in results], indent=2))
        browser = find_browser() if a.browser == "auto" else (None if a.browser == "none" else a.browser)
        if browser is None:
            print("ui-check: no Chromium found (/usr/bin/chromium, chromium-browser, google-chrome): screenshots skipped")
            return 0 if all(o for _, o, _ in results) else 1
        exp_id, run_id = s["experiment"]["experiment_id"], s["night"]["info"]["run_id"]
        pages = [("runs-table", f"{base}/#/experiments/{exp_id}/runs", "1800,1000"),
                 ("runs-nights-view", f"{base}/#/experiments/{exp_id}/runs?viewStateShareKey=rsft-nights", "1800,1000"),
                 ("runs-charts", f"{base}/#/experiments/{exp_id}/runs?compareRunsMode=CHART", "1800,1400"),
                 ("night-run", f"{base}/#/experiments/{exp_id}/runs/{run_id}", "1600,1800")]
        mv = s["version"]
        if mv is not None:
            pages.append(("model-version", f"{base}/#/models/{urllib.parse.quote(mv['name'])}/versions/{mv['version']}", "1600,2200"))
            if mv["source"].startswith("models:/m-"):
                model_id = mv["source"].removeprefix("models:/")
                pages.append(("logged-model", f"{base}/#/experiments/{exp_id}/models/{model_id}", "1600,1400"))
        for art in ("selection_report/log_w_hist.png", "selection_report/marginals.png",
                    "selection_report/coverage_by_group.png", "adapt/candidates.png", "training/curves.png"):
            pages.append((f"artifact-{Path(art).stem}", f"{base}/#/experiments/{exp_id}/runs/{run_id}/artifacts/{art}",
                          "1600,1300"))
        shot = 0
        for i, (name, url, size) in enumerate(pages, 1):
            path = out / f"{i:02d}-{name}.png"
            if screenshot(browser, url, path, size):
                shot += 1
                print(f"  saved {path}")
        if a.prefect:
            shot += prefect_pages(state, out, browser, len(pages) + 1)
        print(f"ui-check: {shot} screenshots in {out}")
        return 0 if all(o for _, o, _ in results) and shot >= len(pages) else 1
    finally:
        stop(proc, 20)


if __name__ == "__main__":
    sys.exit(main())
