"""Application factory: builds storage and compute once, the job service, and the API."""

from __future__ import annotations

import logging

from flask import Flask

from pfcon.api import dashboard, errors
from pfcon.api.afterreply import after_reply
from pfcon.api.auth import TokenAuth
from pfcon.api.metrics import metrics_blueprint
from pfcon.api.reference import reference_blueprint
from pfcon.api.uploads import RuledRequest
from pfcon.api.v1 import blueprint
from pfcon.background import Closer
from pfcon.compute import build_backend
from pfcon.jobs import JobService
from pfcon.observability.capacity import HostCapacity
from pfcon.observability.exporter import state_collector
from pfcon.observability.instrument import timed_engine, timed_storage
from pfcon.observability.observer import Observer
from pfcon.operations.records import StoreOperationStore
from pfcon.operations.service import OperationService
from pfcon.settings import Settings, load_settings
from pfcon.storage import build_storage
from pfcon.storage.staging import Sweeper
from pfcon.store import open_store, prepare
from pfcon.storebase import StoreBase

log = logging.getLogger(__name__)

CLOSER = "pfcon-closer"  # app.extensions key of what closes the app's threads


def build_service(settings: Settings) -> JobService:
    storebase = StoreBase(settings.storebase_mount)
    storebase.ensure()
    prepare(settings)  # a no-op in a gunicorn worker: its master did it before forking
    storage = timed_storage(build_storage(settings, storebase))
    backend, volumes = build_backend(settings)
    observer = Observer(storage.name)
    return JobService(
        settings, storebase, storage, timed_engine(backend), volumes, open_store(settings), observer
    )


def create_app(settings: Settings | None = None, service: JobService | None = None) -> Flask:
    settings = settings or load_settings()
    service = service or build_service(settings)
    closer = Closer()  # closes, last first, what the app starts beside its requests
    closer.add("job service", service.close)  # feed, scheduler, engine client, job store
    try:
        app = _build_app(settings, service, closer)
    except BaseException:
        closer.close()
        raise
    log.info(
        "pfcon %s: storage=%s engine=%s storeBase=%s",
        settings.server_version,
        settings.storage_env,
        settings.container_env,
        settings.storebase_mount,
    )
    return app


def _build_app(settings: Settings, service: JobService, closer: Closer) -> Flask:
    app = Flask("pfcon", static_folder=None)  # no /static/: each blueprint serves its own files
    app.url_map.strict_slashes = False  # /api/v1/jobs and /api/v1/jobs/ alike, no redirect
    app.extensions[CLOSER] = closer
    operations = OperationService(
        service, StoreOperationStore(service.store, settings.storebase_mount), settings.op_workers
    )
    closer.add("operations", operations.close)
    app.request_class = RuledRequest  # each view declares its body (pfcon.api.uploads.accepts)
    app.extensions["pfcon"] = service
    service.after_reply = after_reply  # a submit's answer goes out before its job's start begins
    auth = TokenAuth(settings)
    app.extensions["pfcon-operations"] = operations
    app.register_blueprint(blueprint(operations, auth))
    app.register_blueprint(reference_blueprint())
    host = HostCapacity(service.backend)
    closer.add("capacity reader", host.close)
    state = state_collector(service.store, host, service.queue_stats)
    if (metrics := metrics_blueprint(settings.observability.metrics, auth, state)) is not None:
        app.register_blueprint(metrics)
    dashboard.register(app, service, auth, host)
    errors.register(app)
    service.starter.resume()  # the scheduler: also starts what a stopped service left queued
    operations.resume()  # operations whose process stopped before they ended
    sweeper = Sweeper(service.storebase.uploads_dir).start()  # uploads of workers that died
    closer.add("upload sweeper", sweeper.stop)
    service.feed.start()  # running jobs' state flows in from the engine
    return app


def close_app(app: Flask) -> None:
    """Stop every thread and pool the app started and close its engine client and job store.

    Bounded and idempotent: safe to call twice, and while the engine does not answer (each
    thread gets a join timeout). Tests call it at teardown; a gunicorn worker on its way out
    (``worker_exit``), and otherwise the interpreter's exit, call it too.
    """
    closer = app.extensions.get(CLOSER)
    if closer is not None:
        closer.close()
