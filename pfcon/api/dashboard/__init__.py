"""pfcon's web dashboard at ``/dashboard/``: jobs, a job's events and logs, the execution
timeline and the capacity gauge. Plain HTML, CSS and vanilla JavaScript shipped in the package
(no CDN); it works offline. See docs/observability.md."""

from __future__ import annotations

from flask import Flask

from pfcon.api.auth import TokenAuth
from pfcon.api.dashboard import session
from pfcon.api.dashboard.views import dashboard_blueprint
from pfcon.jobs import JobService
from pfcon.observability.capacity import HostCapacity


def register(app: Flask, service: JobService, auth: TokenAuth, host: HostCapacity) -> None:
    session.configure(app, service.settings)
    app.register_blueprint(dashboard_blueprint(service, auth, host))
