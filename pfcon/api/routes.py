"""The HTTP resources of ``/api/v1/`` (pfcon 5.3's paths and shapes)."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify, request
from flask.typing import ResponseReturnValue

from pfcon.api import history, schemas
from pfcon.api.auth import TokenAuth
from pfcon.api.uploads import accepts
from pfcon.errors import InvalidInput, PfconError
from pfcon.jobs import JobService
from pfcon.observability.observer import CLASSIC
from pfcon.storage.base import ZipOutput

OPEN_ENDPOINTS = frozenset({"api.health", "api.auth_token"})
AUTH_BODY_LIMIT = 8 * 1024  # a login is a few hundred bytes; no login may cost more
SERVER_INFO = schemas.ServerInfoSchema()
SUBMIT_ANSWER = schemas.SubmitAnswerSchema()
STATUS_ANSWER = schemas.StatusAnswerSchema()


def blueprint(service: JobService, auth: TokenAuth) -> Blueprint:
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

    @api.get("/jobs/")
    def server_info() -> ResponseReturnValue:
        return jsonify(SERVER_INFO.dump(service.server_info()))

    @api.post("/jobs/")
    @accepts(service.settings.zip_limits.max_upload_bytes, files={"data_file": service.storage.upload_sink})
    def submit() -> ResponseReturnValue:
        with service.observer.submission(CLASSIC, request.content_length or 0):
            upload = request.files.get("data_file")
            sub = schemas.submission(request.form, upload.stream if upload else None)
            accepted = service.submit(sub)
        return jsonify(SUBMIT_ANSWER.dump(accepted)), 201

    @api.get("/jobs/<jid>/")
    def status(jid: str) -> ResponseReturnValue:
        return jsonify(STATUS_ANSWER.dump({"compute": service.status(jid)}))

    @api.delete("/jobs/<jid>/")
    def delete(jid: str) -> ResponseReturnValue:
        with service.observer.operation(CLASSIC, "delete"):
            service.delete(jid)
        return "", 204

    @api.get("/jobs/<jid>/file/")
    def output(jid: str) -> ResponseReturnValue:
        with service.observer.operation(CLASSIC, "output"):
            result = service.output(jid, request.args.get("job_output_path"))
        if isinstance(result, ZipOutput):
            return Response(
                result.chunks,
                mimetype="application/zip",
                headers={"Content-Disposition": f'attachment; filename="{result.filename}"'},
                direct_passthrough=True,
            )
        return jsonify(result.body)

    history.register(api, service)
    return api
