"""gunicorn settings for the web process: `gunicorn -c deploy/gunicorn.conf.py billing_portal.wsgi`.

Every value can be overridden from the environment (GUNICORN_*), so one file serves every host.
"""

import multiprocessing
import os

bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")
# Sync workers: every request is a short database transaction; two per core plus one keeps the
# cores busy while some wait on PostgreSQL.
workers = int(os.environ.get("GUNICORN_WORKERS", multiprocessing.cpu_count() * 2 + 1))
threads = int(os.environ.get("GUNICORN_THREADS", "1"))
# A "Retry payment" click may wait for Stripe (STRIPE_TIMEOUT_SECONDS, 15 s); 30 s leaves room.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = 30
keepalive = 5
# Recycle workers now and then so that a slow leak can never grow without bound.
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "5000"))
max_requests_jitter = 500
# The load balancer terminates TLS and sets X-Forwarded-*; trust it (BEHIND_TLS_PROXY=true).
forwarded_allow_ips = os.environ.get("GUNICORN_FORWARDED_ALLOW_IPS", "127.0.0.1")
accesslog = "-"
errorlog = "-"
# Request id and time in the access log, so a line can be matched with the app's JSON logs.
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(L)ss request_id=%({x-request-id}o)s'


def on_starting(server):
    """Without DEBUG and with a weak SECRET_KEY, or with the seller's tax settings incomplete
    or malformed, the master exits (status 1, one line on stderr) before it binds the port or
    starts a worker. wsgi.py refuses too, for a server started without this file: there each
    worker fails to boot and gunicorn stops (non-zero)."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_portal.settings")
    from billing_portal.startup import exit_on_incomplete_seller, exit_on_insecure_secret_key

    exit_on_insecure_secret_key()
    # Sets Django up in the master (the seller's check needs the apps): the workers it forks
    # start with the apps loaded, and the check reads no database.
    exit_on_incomplete_seller()


def child_exit(server, worker):
    """With PROMETHEUS_MULTIPROC_DIR set, drop a dead worker's live gauges from /metrics."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
