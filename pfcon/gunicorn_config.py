"""gunicorn settings: threaded workers, guarded so slow clients never block status polls.

Use with ``gunicorn -c python:pfcon.gunicorn_config pfcon.wsgi:application``. The settings
(and the storeBase volume, which may need one engine call) are validated in the master
before any worker starts, so a bad variable stops the service with one clear line.
"""

import sys

from pfcon.observability import multiproc
from pfcon.settings import SettingsError, load_serving_settings

try:
    _serving = load_serving_settings()
except SettingsError as _error:
    print(f"pfcon: configuration error: {_error}", file=sys.stderr)
    sys.exit(2)
multiproc.prepare()  # before any worker loads prometheus_client: totals summed across workers

bind = _serving.bind
worker_class = "pfcon.serving.GuardedThreadWorker"  # gthread + time limits (pfcon.serving)
workers = _serving.workers
threads = _serving.threads
keepalive = 30
timeout = 120
graceful_timeout = 30
accesslog = "-"
errorlog = "-"
control_socket_disable = True  # gunicorn 27+: we use no control interface
loglevel = _serving.log_level
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms'
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "root": {"level": loglevel.upper(), "handlers": ["console"]},
    "loggers": {
        "gunicorn.error": {"level": loglevel.upper(), "handlers": ["console"], "propagate": False},
        "gunicorn.access": {"level": "INFO", "handlers": ["access"], "propagate": False},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "stream": "ext://sys.stderr",
        },
        "access": {
            "class": "logging.StreamHandler",
            "formatter": "bare",
            "stream": "ext://sys.stdout",
        },
    },
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
        "bare": {"format": "%(message)s"},
    },
}


def on_starting(server) -> None:
    """Before forking workers: validate the settings and where the engine finds storeBase,
    then bring the job store up to date once (migrations, import of old records).

    The work runs in a child process: it imports the engine client, SQLAlchemy and Alembic,
    which would otherwise stay in the master's memory for good (about 35 MiB of an idle
    service's RSS) although the master never serves a request.
    """
    import os

    from pfcon.settings import STORE_PREPARED_ENV, load_settings

    sys.stdout.flush()
    sys.stderr.flush()
    child = os.fork()
    if child == 0:
        code = 1
        try:
            code = _prepare_service()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    code = os.waitstatus_to_exitcode(os.waitpid(child, 0)[1])
    if code != 0:
        sys.exit(code if code > 0 else 4)
    os.environ[STORE_PREPARED_ENV] = load_settings().database_url


def _prepare_service() -> int:
    """The start-up checks and store preparation; the exit status the service stops with."""
    from pfcon.compute import build_backend
    from pfcon.errors import PfconError
    from pfcon.settings import load_settings
    from pfcon.store import prepare
    from pfcon.storebase import StoreBase

    try:
        settings = load_settings()
        backend, _volumes = build_backend(settings)
        backend.close()
        StoreBase(settings.storebase_mount).ensure()
        prepare(settings)
    except SettingsError as error:
        print(f"pfcon: configuration error: {error}", file=sys.stderr)
        return 2
    except PfconError as error:
        print(f"pfcon: {error.message}", file=sys.stderr)
        return 4
    return 0


def when_ready(server) -> None:
    """PFCON_METRICS=HOST:PORT: the master serves /metrics there, summed over its workers."""
    from pfcon.settings import load_settings

    observability = load_settings().observability
    if observability.metrics != "bind" or not observability.metrics_bind:
        return  # the exporter loads the job store (SQLAlchemy): not into a master that needs none
    from pfcon.observability.exporter import serve_metrics_if_bound

    serve_metrics_if_bound()


def worker_exit(server, worker) -> None:
    """In the worker on its way out: its scheduler, status feed and pools stop (bounded), and
    its engine client and job store close, while logging still works."""
    from pfcon.app import close_app

    app = getattr(getattr(worker, "wsgi", None), "app", None)  # pfcon.wsgi's BodySlots wraps it
    if app is not None and hasattr(app, "extensions"):
        close_app(app)


def child_exit(server, worker) -> None:
    multiproc.worker_exited(worker.pid)


def on_exit(server) -> None:
    multiproc.cleanup()
