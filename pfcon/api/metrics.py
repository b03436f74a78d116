"""``GET /metrics``: Prometheus' text format, guarded as PFCON_METRICS says."""

from __future__ import annotations

from flask import Blueprint, Response, request

from pfcon.api.auth import TokenAuth
from pfcon.observability.metrics import StateCollector, exposition_registry, render


def metrics_blueprint(mode: str, auth: TokenAuth, state: StateCollector) -> Blueprint | None:
    """The route for ``token`` and ``open``; None when metrics are ``off`` or on their own bind."""
    if mode not in ("token", "open"):
        return None
    routes = Blueprint("metrics", __name__)

    @routes.get("/metrics")
    def metrics() -> Response:
        if mode == "token":
            auth.verify_scraper(request.headers.get("Authorization"))
        body, content_type = render(exposition_registry(state))
        return Response(body, content_type=content_type)

    return routes
