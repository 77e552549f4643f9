"""gunicorn settings for agegate: `gunicorn -c config/gunicorn.conf.py wsgi:app`.

Every value can be changed with the environment variable named beside it.
"""

import multiprocessing
import os

bind = os.environ.get("AGEGATE_BIND", "127.0.0.1:8000")
# Sync workers: each request is short (an age check is a few milliseconds) and the service is
# CPU- and database-bound, so one process per request in flight is the simplest fast model.
worker_class = "sync"
workers = int(os.environ.get("AGEGATE_WEB_WORKERS", multiprocessing.cpu_count() * 2 + 1))
timeout = int(os.environ.get("AGEGATE_WEB_TIMEOUT", "30"))
graceful_timeout = 30
keepalive = 5
# Recycle workers now and then so that slow leaks cannot grow without bound.
max_requests = 20000
max_requests_jitter = 2000
accesslog = "-"
errorlog = "-"
loglevel = os.environ.get("AGEGATE_LOG_LEVEL", "info").lower()
# Request bodies are read in full before a view sees them; cap header sizes as well.
limit_request_line = 8190
limit_request_fields = 100
# gunicorn's control socket lives in $HOME by default, so two servers on one machine would
# share it; agegate is managed by signals and its process manager instead.
control_socket_disable = True
