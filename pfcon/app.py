"""Application factory: builds storage and compute once, the job service, and the API."""

from __future__ import annotations

import atexit
import logging

from flask import Flask

from pfcon.api import errors
from pfcon.api.auth import TokenAuth
from pfcon.api.routes import blueprint
from pfcon.api.uploads import streaming_request_class
from pfcon.compute import build_backend
from pfcon.jobs import JobService
from pfcon.settings import Settings, load_settings
from pfcon.storage import build_storage
from pfcon.store import open_store, prepare
from pfcon.storebase import StoreBase

log = logging.getLogger(__name__)


def build_service(settings: Settings) -> JobService:
    storebase = StoreBase(settings.storebase_mount)
    storebase.ensure()
    prepare(settings)  # a no-op in a gunicorn worker: its master did it before forking
    storage = build_storage(settings, storebase)
    backend, volumes = build_backend(settings)
    return JobService(settings, storebase, storage, backend, volumes, open_store(settings))


def create_app(settings: Settings | None = None, service: JobService | None = None) -> Flask:
    settings = settings or load_settings()
    service = service or build_service(settings)
    app = Flask("pfcon")
    app.config["MAX_CONTENT_LENGTH"] = settings.zip_limits.max_upload_bytes
    app.config["MAX_FORM_MEMORY_SIZE"] = errors.FORM_FIELD_LIMIT
    app.config["MAX_FORM_PARTS"] = errors.FORM_PARTS_LIMIT
    app.url_map.strict_slashes = False  # /api/v1/jobs and /api/v1/jobs/ alike, no redirect
    app.request_class = streaming_request_class(service.storage.upload_sink)
    app.extensions["pfcon"] = service
    app.register_blueprint(blueprint(service, TokenAuth(settings)))
    errors.register(app, settings.zip_limits.max_upload_bytes)
    service.starter.resume()  # the scheduler: also starts what a stopped service left queued
    atexit.register(service.close)
    log.info(
        "pfcon %s: storage=%s engine=%s storeBase=%s",
        settings.server_version,
        settings.storage_env,
        settings.container_env,
        settings.storebase_mount,
    )
    return app
