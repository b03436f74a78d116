"""The dashboard's JSON answers (``/dashboard/api/...``), as marshmallow schemas.

The views build these answers from the job store; the schemas describe them in the API
document (pfcon.api.openapi), and tests/test_openapi.py checks the views' answers against it.
"""

from __future__ import annotations

from marshmallow import Schema, fields

from pfcon.store.repository import APIS, STATUSES

STATUS = {"enum": STATUSES}
WHEN = {"description": "UTC, `YYYY-MM-DD HH:MM:SS`; empty when it has not happened"}
EPOCH_MS = {"description": "milliseconds since the epoch"}


class JobRowSchema(Schema):
    """A job as the list and the job page show it (durations in seconds)."""

    jid = fields.String(required=True)
    api = fields.String(required=True, metadata={"enum": APIS})
    image = fields.String(required=True)
    auid = fields.String(required=True)
    status = fields.String(required=True, metadata=STATUS)
    message = fields.String(required=True)
    command = fields.String(required=True)
    cpu_millicores = fields.Integer(required=True, allow_none=True)
    memory_mib = fields.Integer(required=True, allow_none=True)
    gpus = fields.Integer(required=True, allow_none=True)
    terminal = fields.Boolean(required=True)
    accepted = fields.String(required=True, metadata=WHEN)
    started = fields.String(required=True, metadata=WHEN)
    finished = fields.String(required=True, metadata=WHEN)
    deleted = fields.String(required=True, metadata=WHEN)
    waited = fields.Float(required=True, allow_none=True)
    ran = fields.Float(required=True, allow_none=True)


class JobEventSchema(Schema):
    when = fields.String(required=True, metadata=WHEN)
    label = fields.String(required=True)
    message = fields.String(required=True)


class JobsPageSchema(Schema):
    items = fields.List(fields.Nested(JobRowSchema), required=True)
    next = fields.String(required=True, allow_none=True, metadata={"description": "the next page's cursor"})


class JobDetailSchema(Schema):
    job = fields.Nested(JobRowSchema, required=True)
    events = fields.List(fields.Nested(JobEventSchema), required=True)


class JobLogsSchema(Schema):
    """A job's log tail; ``status`` is null when the job and its logs are gone."""

    status = fields.String(required=True, allow_none=True, metadata={"enum": [*STATUSES, None]})
    logs = fields.String(required=True)
    message = fields.String(required=True)


class TimelineRecordSchema(Schema):
    """One job of the timeline, HyperFlow-style (its camelCase names)."""

    workflowId = fields.String(required=True)
    jobId = fields.String(required=True)
    name = fields.String(required=True)
    api = fields.String(required=True, metadata={"enum": APIS})
    status = fields.String(required=True, metadata=STATUS)
    queueStart = fields.Integer(required=True, allow_none=True, metadata=EPOCH_MS)
    jobStart = fields.Integer(required=True, allow_none=True, metadata=EPOCH_MS)
    jobEnd = fields.Integer(required=True, allow_none=True, metadata=EPOCH_MS)
    cpuMillicores = fields.Integer(required=True, allow_none=True)
    memoryMiB = fields.Integer(required=True, allow_none=True)
    gpus = fields.Integer(required=True, allow_none=True)


class TimelineSchema(Schema):
    since = fields.Float(required=True, metadata={"description": "seconds since the epoch"})
    until = fields.Float(required=True, metadata={"description": "seconds since the epoch"})
    now = fields.Float(required=True)
    limit = fields.Integer(required=True)
    jobs = fields.List(fields.Nested(TimelineRecordSchema), required=True)


class CapacitySchema(Schema):
    """What a local engine can hand out; only ``engine`` and ``local`` when it is not local."""

    engine = fields.String(required=True)
    local = fields.Boolean(required=True)
    total_cpus = fields.Float()
    free_cpus = fields.Float()
    total_memory_bytes = fields.Integer()
    free_memory_bytes = fields.Integer()
    total_gpus = fields.Integer()
    free_gpus = fields.Integer()
    queue_length = fields.Integer()


class RangeQuerySchema(Schema):
    """The timeline's window (documentation only: the view reads it itself)."""

    since = fields.Float(metadata={"description": "seconds since the epoch; default: an hour before until"})
    until = fields.Float(metadata={"description": "seconds since the epoch; default: now"})


class JobsQuerySchema(Schema):
    """The job list's filters (documentation only: the view reads them itself)."""

    status = fields.String(metadata={"enum": ["", *STATUSES], "description": "empty: any"})
    auid = fields.String()
    image = fields.String()
    q = fields.String(metadata={"description": "a search in jid, image and auid"})
    limit = fields.Integer(metadata={"description": "at most 200"})
    cursor = fields.String()


class LoginFormSchema(Schema):
    username = fields.String(required=True)
    password = fields.String(required=True)
    csrf_token = fields.String(required=True, metadata={"description": "from the login page's form"})
    next = fields.String(metadata={"description": "a /dashboard/ path to go to after login"})


class LogoutFormSchema(Schema):
    csrf_token = fields.String(required=True)
