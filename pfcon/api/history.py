"""``GET history/`` and ``GET history/<jid>/``: what ran, what failed, how long jobs waited.

Read from the job store only (never the engine), newest first, with cursor pagination: a
page's ``next`` is the URL of the following page (its ``cursor`` names the last job seen, so
pages stay stable while new jobs arrive), ``null`` on the last one. Auth as the rest of the API.
"""

from __future__ import annotations

from datetime import UTC

from flask import Blueprint, jsonify, request, url_for
from flask.typing import ResponseReturnValue
from marshmallow import RAISE, Schema, fields, validate

from pfcon.admission.devices import devices_of
from pfcon.api import schemas
from pfcon.jobs import JobService
from pfcon.store import HistoryQuery
from pfcon.store.repository import APIS, KINDS, MAX_PAGE, STATES, STATUSES, rfc3339


class HistoryQuerySchema(Schema):
    """The query string of ``GET history/``; an unknown parameter is a 400, not ignored."""

    class Meta:
        unknown = RAISE

    status = fields.String(validate=validate.OneOf(STATUSES))
    state = fields.String(validate=validate.OneOf(STATES))
    auid = fields.String(validate=validate.Length(min=1, max=256))
    image = fields.String(validate=validate.Length(min=1, max=1024))
    kind = fields.String(validate=validate.OneOf(KINDS))
    since = fields.AwareDateTime(default_timezone=UTC)
    until = fields.AwareDateTime(default_timezone=UTC)
    limit = fields.Integer(validate=validate.Range(min=1, max=MAX_PAGE), load_default=50)
    cursor = fields.String(validate=validate.Length(min=1, max=200))


def _when(attribute: str) -> fields.Function:
    return fields.Function(
        lambda row: rfc3339(getattr(row, attribute)) or None,
        required=True,
        metadata={"type": ["string", "null"], "format": "date-time"},
    )


class HistoryItemSchema(Schema):
    """One job as history tells it: times, durations (seconds) and how it ended."""

    jid = fields.String(required=True)
    kind = fields.String(required=True, metadata={"enum": KINDS})
    api = fields.String(required=True, metadata={"enum": APIS})
    image = fields.String(required=True)
    auid = fields.String(required=True)
    status = fields.String(required=True, metadata={"enum": STATUSES})
    state = fields.String(required=True, metadata={"enum": STATES})
    message = fields.String(required=True)
    exit_code = fields.Integer(required=True, allow_none=True)
    engine_id = fields.String(
        required=True,
        allow_none=True,
        metadata={"description": "the engine's own id of the job, once started"},
    )
    accepted = _when("accepted_at")
    queued = _when("queued_at")
    started = _when("started_at")
    finished = _when("finished_at")
    deleted = _when("deleted_at")
    wait_seconds = fields.Float(required=True, allow_none=True)
    run_seconds = fields.Float(required=True, allow_none=True)


class EventSchema(Schema):
    state = fields.String(required=True, metadata={"enum": STATES})
    status = fields.String(required=True, metadata={"enum": STATUSES})
    message = fields.String(required=True)
    at = fields.Function(lambda event: rfc3339(event.at), required=True, metadata={"type": "string"})


class HistoryPageSchema(Schema):
    """``GET history/``: a page, newest first; ``next`` is the following page's URL."""

    results = fields.List(fields.Nested(HistoryItemSchema), required=True)
    next = fields.String(required=True, allow_none=True)


class JobHistorySchema(HistoryItemSchema):
    """``GET history/<jid>/``: the job, the GPUs it was given and its events, oldest first."""

    gpu_devices = fields.List(
        fields.String(),
        required=True,
        metadata={"description": "the engine's IDs of the GPUs the admission queue gave the job (docker)"},
    )
    events = fields.List(fields.Nested(EventSchema), required=True)


QUERY = HistoryQuerySchema()
PAGE = HistoryPageSchema()
ITEM = HistoryItemSchema()
EVENTS = EventSchema(many=True)


def register(api: Blueprint, service: JobService) -> None:
    """Add the history routes to the API blueprint (behind its token check)."""

    @api.get("/history/")
    def history() -> ResponseReturnValue:
        query = HistoryQuery(**schemas.load(QUERY, request.args.to_dict()))
        page = service.history(query)
        following = None
        if page.next_cursor is not None:
            args = {**request.args.to_dict(), "cursor": page.next_cursor}
            following = url_for("api.history", _external=True, **args)
        return jsonify(PAGE.dump({"results": page.items, "next": following}))

    @api.get("/history/<jid>/")
    def job_history(jid: str) -> ResponseReturnValue:
        row, events = service.job_history(jid)
        return jsonify({**ITEM.dump(row), "gpu_devices": devices_of(row.spec), "events": EVENTS.dump(events)})
