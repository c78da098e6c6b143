"""gunicorn settings for kimiproxy: uvicorn workers (ASGI, true streaming), one per core by default."""

import multiprocessing
import os

bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")
workers = int(os.environ.get("GUNICORN_WORKERS", multiprocessing.cpu_count()))
worker_class = "uvicorn_worker.UvicornWorker"
# Streams can be long (thinking, agents); the worker heartbeat is separate from request time.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "600"))
# On SIGTERM in-flight streams get this long to finish (KIMIPROXY_SHUTDOWN_GRACE bounds our own drain).
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "40"))
keepalive = 5
accesslog = None
errorlog = "-"
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
