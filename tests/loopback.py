"""Real servers on loopback, started by the tests themselves: `prefect server`, `mlflow server`,
and an S3-compatible object store (moto in server mode). Nothing here is a mock of the code under
test; each helper returns what a client needs and stops the server on exit."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator

BIN = Path(sys.executable).parent

# credentials the S3 server accepts (moto takes any); region for botocore
S3_ENV = {"AWS_ACCESS_KEY_ID": "rsft-test", "AWS_SECRET_ACCESS_KEY": "rsft-test", "AWS_DEFAULT_REGION": "us-east-1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen | None = None, timeout: float = 120) -> None:
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited early: {proc.stderr.read()[-2000:] if proc.stderr else ''}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(url)


def stop(*procs: subprocess.Popen) -> None:
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()


@contextlib.contextmanager
def prefect_server(home: Path, env: dict[str, str] | None = None) -> Iterator[str]:
    """`prefect server start` on a free loopback port (its own PREFECT_HOME); yields the API URL."""
    port = free_port()
    env = {**(env or os.environ), "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_UI_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)
    proc = subprocess.Popen([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_http(f"http://127.0.0.1:{port}/api/health", proc)
        yield f"http://127.0.0.1:{port}/api"
    finally:
        stop(proc)


@contextlib.contextmanager
def mlflow_server(backend: Path, artifacts: str, env: dict[str, str] | None = None) -> Iterator[str]:
    """`mlflow server` on a free loopback port: SQLite store ``backend``, artifacts proxied to
    ``artifacts`` (a file:// or s3:// URI); yields the tracking URI."""
    port = free_port()
    proc = subprocess.Popen(
        [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{backend}", "--artifacts-destination", artifacts],
        env={**(env or os.environ)}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_http(f"http://127.0.0.1:{port}/health", proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc)


@contextlib.contextmanager
def s3_server() -> Iterator[str]:
    """An S3-compatible server (moto, server mode) on a free loopback port; yields its endpoint URL."""
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()
