"""The classic ``jobs/`` API of pfcon 5.3 (what python-pfconclient 3.3 and ChRIS 6.x speak)."""

from __future__ import annotations

from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue

from pfcon.api import schemas
from pfcon.api.uploads import accepts
from pfcon.jobs import JobService
from pfcon.observability.observer import CLASSIC

SERVER_INFO = schemas.ServerInfoSchema()
SUBMIT_ANSWER = schemas.SubmitAnswerSchema()


def register(api: Blueprint, service: JobService) -> None:
    upload = {"data_file": service.storage.upload_sink}  # None (in-network): read and dropped

    @api.get("/jobs/")
    def server_info() -> ResponseReturnValue:
        return jsonify(SERVER_INFO.dump(service.server_info()))

    @api.post("/jobs/")
    @accepts(service.settings.zip_limits.max_upload_bytes, files=upload)
    def submit() -> ResponseReturnValue:
        with service.observer.submission(CLASSIC, request.content_length or 0):
            upload = request.files.get("data_file")
            sub = schemas.submission(request.form, upload.stream if upload else None, CLASSIC)
            accepted = service.submit(sub)
        return jsonify(SUBMIT_ANSWER.dump(accepted)), 201

    @api.get("/jobs/<jid>/")
    def status(jid: str) -> ResponseReturnValue:
        return jsonify(schemas.status_answer(service.status(jid)))

    @api.delete("/jobs/<jid>/")
    def delete(jid: str) -> ResponseReturnValue:
        with service.observer.operation(CLASSIC, "delete"):
            service.delete(jid)
        return "", 204

    @api.get("/jobs/<jid>/file/")
    def output(jid: str) -> ResponseReturnValue:
        with service.observer.operation(CLASSIC, "output"):
            output = service.output(jid, request.args.get("job_output_path"))
        return schemas.output_response(output)
