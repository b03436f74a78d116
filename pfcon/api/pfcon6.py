"""pfcon 6's API (what python-pfconclient 4.0 and ChRIS 7 speak), beside the classic one.

``copyjobs/``, ``pluginjobs/``, ``uploadjobs/`` and ``deletejobs/``: each list GET answers the
server info, each POST 201 with ``{"compute": ...}`` (the plugin's with ``data`` too), each
GET 200 with ``{"compute": ...}``, each DELETE 204. The rules between them live in
:mod:`pfcon.operations.service`; this module only reads forms and writes answers.
"""

from __future__ import annotations

from urllib.parse import unquote_to_bytes

from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue

from pfcon.api import schemas
from pfcon.api.uploads import FIELDS_LIMIT, IGNORED, accepts
from pfcon.observability.observer import PFCON6
from pfcon.operations.service import OperationService

SERVER_INFO = schemas.Pfcon6ServerInfoSchema()
OPERATION = schemas.OperationAnswerSchema()
PLUGIN_SUBMITTED = schemas.Pfcon6SubmitAnswerSchema()
PLUGIN_STATE = schemas.Pfcon6StatusAnswerSchema()
OPERATION_ROUTES = {"copy": "copyjobs", "upload": "uploadjobs", "delete": "deletejobs"}


#: pfconclient 4.0.0's CLI sends a stray ``data_file`` part (its timeout) with every submit
STRAY_PART = {"data_file": IGNORED}


def register(api: Blueprint, ops: OperationService) -> None:
    for kind, path in OPERATION_ROUTES.items():
        _operation_routes(api, ops, kind, path)
    _plugin_routes(api, ops)


def _server_info(ops: OperationService) -> ResponseReturnValue:
    return jsonify(SERVER_INFO.dump(ops.server_info()))


def _operation_routes(api: Blueprint, ops: OperationService, kind: str, path: str) -> None:
    @accepts(FIELDS_LIMIT, files=STRAY_PART)
    def submit() -> ResponseReturnValue:
        jid, params = schemas.operation_form(kind, request.form)
        return jsonify(OPERATION.dump({"compute": ops.submit(kind, jid, params)})), 201

    def status(jid: str) -> ResponseReturnValue:
        return jsonify(OPERATION.dump({"compute": ops.status(kind, jid)}))

    def remove(jid: str) -> ResponseReturnValue:
        ops.remove(kind, jid)
        return "", 204

    api.add_url_rule(f"/{path}/", f"{path}_info", lambda: _server_info(ops), methods=["GET"])
    api.add_url_rule(f"/{path}/", f"{path}_submit", submit, methods=["POST"])
    api.add_url_rule(f"/{path}/<jid>/", f"{path}_status", status, methods=["GET"])
    api.add_url_rule(f"/{path}/<jid>/", f"{path}_remove", remove, methods=["DELETE"])


def _plugin_routes(api: Blueprint, ops: OperationService) -> None:
    zip_input = ops.storage.upload_sink is not None  # zipfile: the input is the data_file part

    @api.get("/pluginjobs/")
    def pluginjobs_info() -> ResponseReturnValue:
        return _server_info(ops)

    @api.post("/pluginjobs/")
    @accepts(ops.jobs.settings.zip_limits.max_upload_bytes, files={"data_file": ops.storage.upload_sink})
    def pluginjobs_submit() -> ResponseReturnValue:
        upload = request.files.get("data_file") if zip_input else None
        with ops.jobs.observer.submission(PFCON6, request.content_length or 0):
            sub = schemas.submission(request.form, upload.stream if upload else None, PFCON6, strip_jid=True)
            accepted = ops.submit_plugin(sub)
        return jsonify(PLUGIN_SUBMITTED.dump(accepted)), 201

    @api.get("/pluginjobs/<jid>/")
    def pluginjobs_status(jid: str) -> ResponseReturnValue:
        return jsonify(PLUGIN_STATE.dump({"compute": ops.jobs.status(jid)}))

    @api.delete("/pluginjobs/<jid>/")
    def pluginjobs_remove(jid: str) -> ResponseReturnValue:
        ops.remove_plugin(jid)
        return "", 204

    @api.get("/pluginjobs/<jid>/file/")
    def pluginjobs_file(jid: str) -> ResponseReturnValue:
        return schemas.output_response(ops.output(jid, job_output_paths()))


def job_output_paths() -> list[str]:
    """``job_output_path`` as decoded, then as sent if that differs (a ``+`` kept a ``+``).

    python-pfconclient 4.0 appends the path to the URL unencoded, and a query string
    decodes ``+`` as a space; ChRIS usernames may hold a ``+``.
    """
    decoded = request.args.get("job_output_path")
    if decoded is None:
        return []
    paths = [decoded.lstrip("/")]
    for pair in request.query_string.split(b"&"):
        name, _, value = pair.partition(b"=")
        if name == b"job_output_path":
            raw = unquote_to_bytes(value).decode("utf-8", "replace").lstrip("/")
            if raw not in paths:
                paths.append(raw)
    return paths
