"""The ``/api/v1/`` blueprint: what both API generations share (token, health, auth check).

The classic ``jobs/`` routes (:mod:`pfcon.api.classic`), pfcon 6's ``copyjobs/``,
``pluginjobs/``, ``uploadjobs/`` and ``deletejobs/`` (:mod:`pfcon.api.pfcon6`) and the history
(:mod:`pfcon.api.history`) hang off the same blueprint, over the same job service: a job is
one job whichever API created it.
"""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify, request
from flask.typing import ResponseReturnValue

from pfcon.api import classic, history, pfcon6, schemas
from pfcon.api.auth import TokenAuth
from pfcon.api.uploads import accepts
from pfcon.errors import InvalidInput, PfconError
from pfcon.operations.service import OperationService

OPEN_ENDPOINTS = frozenset({"api.health", "api.auth_token"})
AUTH_BODY_LIMIT = 8 * 1024  # a login is a few hundred bytes; no login may cost more


def blueprint(operations: OperationService, auth: TokenAuth) -> Blueprint:
    service = operations.jobs
    api = Blueprint("api", __name__, url_prefix="/api/v1")

    @api.before_request
    def require_token() -> None:
        if request.endpoint not in OPEN_ENDPOINTS:
            auth.verify(request.headers.get("Authorization"))

    @api.post("/auth-token/")
    @accepts(AUTH_BODY_LIMIT)
    def auth_token() -> ResponseReturnValue:
        body = request.get_json(silent=True) if request.is_json else request.form.to_dict()
        if not isinstance(body, dict):
            raise InvalidInput("expected a JSON object or a form with pfcon_user and pfcon_password")
        values = schemas.load(schemas.AuthSchema(), body)
        return jsonify(token=auth.issue(values["pfcon_user"], values["pfcon_password"]))

    @api.get("/health/")
    def health() -> ResponseReturnValue:
        try:
            parts = service.health()
        except PfconError as error:
            current_app.logger.warning("health check failed: %s", error.message)
            return jsonify(health="unavailable", message=error.message), 503
        return jsonify(health="OK", **parts)

    classic.register(api, service)
    pfcon6.register(api, operations)
    history.register(api, service)
    return api
