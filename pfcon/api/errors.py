"""Domain errors to HTTP, in one table; every error answer is JSON ``{"message": ...}``."""

from __future__ import annotations

import logging

from flask import Flask, jsonify, request
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import ClientDisconnected, HTTPException, RequestEntityTooLarge

from pfcon.api.uploads import FIELDS_LIMIT, PARTS_LIMIT
from pfcon.errors import (
    NO_SPACE_ERRNOS,
    BackendUnavailable,
    DataNotDeletable,
    InsufficientStorage,
    InvalidInput,
    JobExists,
    JobNotFound,
    OutOfOrder,
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
    OutOfOrder: 409,
    PayloadTooLarge: 413,
    BackendUnavailable: 503,
    StorageUnavailable: 503,
    StoreUnavailable: 503,
    InsufficientStorage: 507,
}


def status_of(error: PfconError) -> int:
    for cls in type(error).__mro__:
        if cls in STATUS_OF:
            return STATUS_OF[cls]
    return 500


def error_response(message: str, status: int, **extra: object) -> ResponseReturnValue:
    return jsonify(message=message, **extra), status


def register(app: Flask) -> None:
    @app.errorhandler(PfconError)
    def domain_error(error: PfconError) -> ResponseReturnValue:
        details = getattr(error, "details", None)
        return error_response(error.message, status_of(error), **({"errors": details} if details else {}))

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(_error: RequestEntityTooLarge) -> ResponseReturnValue:
        limit = request.max_content_length
        if limit is not None and (request.content_length or 0) > limit:
            return error_response(f"request body is over the limit of {limit} bytes for this path", 413)
        return error_response(
            f"form too large: over {limit} bytes in all, over {FIELDS_LIMIT} bytes of fields, "
            f"or more than {PARTS_LIMIT} parts",
            413,
        )

    @app.errorhandler(ClientDisconnected)
    def body_cut(error: ClientDisconnected) -> ResponseReturnValue:
        if isinstance(error.__context__, TimeoutError):  # stalled or trickling (pfcon.serving)
            return error_response(f"the request body stalled or came too slowly: {error.__context__}", 408)
        return error_response("the request body ended before its announced length", 400)

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> ResponseReturnValue:
        return error_response(error.description or error.name, error.code or 500)

    @app.errorhandler(OSError)
    def os_error(error: OSError) -> ResponseReturnValue:
        if isinstance(error, TimeoutError):  # the client stopped sending (pfcon.serving)
            return error_response(f"the request body stalled or came too slowly: {error}", 408)
        if error.errno in NO_SPACE_ERRNOS:
            log.error("storeBase is full: %s", error)
            return error_response("no space left in storeBase; the upload was discarded", 507)
        log.exception("unexpected I/O error")
        return error_response("internal I/O error; see pfcon's log", 500)

    @app.errorhandler(Exception)
    def unexpected(error: Exception) -> ResponseReturnValue:
        log.exception("unexpected error")
        return error_response("internal error; see pfcon's log", 500)
