"""gunicorn settings for agegate: `agegate serve` loads them from here, and
`gunicorn -c config/gunicorn.conf.py wsgi:app` (or `-c python:agegate.gunicorn_conf`).

Every value can be changed with the environment variable named beside it.
"""

import gc
import multiprocessing
import os
import shutil
import sys
import tempfile
from typing import Any

from agegate.logs import logging_config

bind = os.environ.get("AGEGATE_BIND", "127.0.0.1:8000")
# Sync workers: each request is short (an age check is a few milliseconds) and the service is
# CPU- and database-bound, so one process per request in flight is the simplest fast model.
# One worker per core: an age check waits on no server (its record is batched, its message not
# waited for), so more workers only take turns on the same cores. On 2 cores, 5 workers (the
# usual 2 x cores + 1) cost a third more CPU per request than 2, and the age check's p99 was
# 26 ms against 15 (docs/decisions/0015-one-worker-per-core.md). Raise it if your requests
# wait on a distant database.
worker_class = "sync"
workers = int(os.environ.get("AGEGATE_WEB_WORKERS", multiprocessing.cpu_count()))
timeout = int(os.environ.get("AGEGATE_WEB_TIMEOUT", "30"))
graceful_timeout = 30
keepalive = 5
# Recycle workers now and then so that slow leaks cannot grow without bound. Not too often:
# a new agegate worker costs about 0.65 s of CPU to start, plus its first requests' loads
# (the rule table, the lockout window). At 20,000 requests that was 30-60 µs per request at
# benchmark rates, a tenth of an age check; at 200,000 it is a tenth of that.
max_requests = 200_000
max_requests_jitter = 20_000
# One JSON line per event on stderr, gunicorn's own lines and the access log included.
accesslog = "-"
errorlog = "-"
loglevel = os.environ.get("AGEGATE_LOG_LEVEL", "info").lower()
logconfig_dict = logging_config(loglevel, os.environ.get("AGEGATE_LIBRARY_LOG_LEVEL", "warning"))
# Request bodies are read in full before a view sees them; cap header sizes as well.
limit_request_line = 8190
limit_request_fields = 100
# gunicorn's control socket lives in $HOME by default, so two servers on one machine would
# share it; agegate is managed by signals and its process manager instead.
control_socket_disable = True

# Prometheus multiprocess mode: each worker keeps its counters in files in this directory and
# /metrics adds them up. It must be set before any worker imports prometheus_client. A
# directory you set yourself (to share it with `agegate worker` processes on this machine) is
# yours to empty before a start; the default one is this server's own and starts empty.
_own_metrics_dir = "PROMETHEUS_MULTIPROC_DIR" not in os.environ
metrics_dir = os.environ.setdefault(
    "PROMETHEUS_MULTIPROC_DIR",
    os.path.join(tempfile.gettempdir(), f"agegate-metrics-{os.getpid()}"),
)


def on_starting(server: object) -> None:
    """Before the socket opens: every configuration problem, or none (agegate/preflight.py)."""
    from agegate import preflight
    from agegate.settings import SettingsError, load_settings

    try:
        preflight.check(load_settings())
    except SettingsError as exc:
        sys.stderr.write(f"agegate: {exc}\n")
        raise SystemExit(2) from None
    if _own_metrics_dir:
        shutil.rmtree(metrics_dir, ignore_errors=True)
    os.makedirs(metrics_dir, exist_ok=True)


def on_exit(server: object) -> None:
    if _own_metrics_dir:
        shutil.rmtree(metrics_dir, ignore_errors=True)


def child_exit(server: object, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def post_worker_init(worker: object) -> None:
    """Exempt what the app built at start-up from the cyclic garbage collector.

    Those objects live as long as the worker. Without this, every full collection walks all
    of them (about 140,000 in agegate: a 70 ms pause, paid by whichever request is running).
    """
    gc.freeze()
