"""Domain errors to HTTP, in one table; every error answer is JSON ``{"message": ...}``."""

from __future__ import annotations

import logging

from flask import Flask, jsonify, request
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from pfcon.errors import (
    NO_SPACE_ERRNOS,
    BackendUnavailable,
    DataNotDeletable,
    InsufficientStorage,
    InvalidInput,
    JobExists,
    JobNotFound,
    PayloadTooLarge,
    PfconError,
    StorageUnavailable,
    StoreUnavailable,
    Unauthorized,
)

log = logging.getLogger(__name__)

STATUS_OF: dict[type[PfconError], int] = {
    InvalidInput: 400,
    Unauthorized: 401,
    JobNotFound: 404,
    JobExists: 409,
    DataNotDeletable: 409,
    PayloadTooLarge: 413,
    BackendUnavailable: 503,
    StorageUnavailable: 503,
    StoreUnavailable: 503,
    InsufficientStorage: 507,
}
FORM_FIELD_LIMIT = 4 * 1024 * 1024  # bytes of one non-file field
FORM_PARTS_LIMIT = 1000  # werkzeug's default, well above what ChRIS sends


def status_of(error: PfconError) -> int:
    for cls in type(error).__mro__:
        if cls in STATUS_OF:
            return STATUS_OF[cls]
    return 500


def error_response(message: str, status: int, **extra: object) -> ResponseReturnValue:
    return jsonify(message=message, **extra), status


def register(app: Flask, max_upload_bytes: int) -> None:
    @app.errorhandler(PfconError)
    def domain_error(error: PfconError) -> ResponseReturnValue:
        details = getattr(error, "details", None)
        return error_response(error.message, status_of(error), **({"errors": details} if details else {}))

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(_error: RequestEntityTooLarge) -> ResponseReturnValue:
        if (request.content_length or 0) > max_upload_bytes:
            return error_response(f"request body is over the limit of {max_upload_bytes} bytes", 413)
        return error_response(
            f"form too large: a field over {FORM_FIELD_LIMIT} bytes or more than {FORM_PARTS_LIMIT} parts",
            413,
        )

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> ResponseReturnValue:
        return error_response(error.description or error.name, error.code or 500)

    @app.errorhandler(OSError)
    def os_error(error: OSError) -> ResponseReturnValue:
        if error.errno in NO_SPACE_ERRNOS:
            log.error("storeBase is full: %s", error)
            return error_response("no space left in storeBase; the upload was discarded", 507)
        log.exception("unexpected I/O error")
        return error_response("internal I/O error; see pfcon's log", 500)

    @app.errorhandler(Exception)
    def unexpected(error: Exception) -> ResponseReturnValue:
        log.exception("unexpected error")
        return error_response("internal error; see pfcon's log", 500)
