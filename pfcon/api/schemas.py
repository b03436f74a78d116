"""Schemas (marshmallow) of both API generations: job forms, the auth-token body, answers.

The classic API and pfcon 6 share the plugin job's form and the ``compute`` answer; they
differ in one spelling (pfcon 5.3 sends ``notstarted``, pfcon 6 ``notStarted``), in the
server-info keys, and in pfcon 6's copy, upload and delete forms with their defaults.
"""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify
from marshmallow import EXCLUDE, Schema, ValidationError, fields, pre_load, validate
from werkzeug.datastructures import MultiDict

from pfcon.compute.base import JobStatus
from pfcon.errors import InvalidInput
from pfcon.imageref import check_image
from pfcon.jobs import JobState, Submission
from pfcon.storage.base import InputRequest, ListingOutput, ZipOutput
from pfcon.storebase import JID_PATTERN

LIST_FIELDS = frozenset({"entrypoint", "args", "args_path_flags", "env", "input_dirs"})
#: the status strings of pfcon 6 (and of this pfcon's history); pfcon 5.3 spelled the first one ``notstarted``
STATUS_NAMES = tuple(status.value for status in JobStatus)
CLASSIC_STATUS_NAMES = ("notstarted", *STATUS_NAMES[1:])
#: a jid as the store takes it, for the API description
JID = {"pattern": f"^{JID_PATTERN.pattern}$", "description": "the job id, chosen by the client"}
PFCON6_JID = {**JID, "pattern": f"^/*{JID_PATTERN.pattern}$"}  # pfcon 6 strips a leading "/"


def _env_pair(value: str) -> None:
    key, sep, _ = value.partition("=")
    if not sep or not key:
        raise ValidationError('must be a "KEY=value" string')


def _image_reference(value: str) -> None:
    try:
        check_image(value)
    except InvalidInput as error:
        raise ValidationError(error.message.removeprefix("image: ")) from None


#: the largest count or size a form may give: what the job store's integer columns hold
#: (PostgreSQL's INTEGER); a larger one is a 400, not an overflow deep in the store
MAX_FORM_INT = 2**31 - 1


def _count(minimum: int) -> validate.Range:
    return validate.Range(min=minimum, max=MAX_FORM_INT)


class SubmitSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    jid = fields.String(required=True, metadata=JID)
    entrypoint = fields.List(fields.String(), required=True, validate=validate.Length(min=1))
    args = fields.List(fields.String(), load_default=list)
    args_path_flags = fields.List(fields.String(), load_default=list)
    auid = fields.String(required=True, validate=validate.Length(min=1))
    number_of_workers = fields.Integer(required=True, validate=_count(1))
    cpu_limit = fields.Integer(required=True, validate=_count(1))
    memory_limit = fields.Integer(required=True, validate=_count(1))
    gpu_limit = fields.Integer(required=True, validate=_count(0))
    image = fields.String(required=True, validate=_image_reference)
    type = fields.String(required=True, validate=validate.OneOf(("ds", "fs", "ts")))
    env = fields.List(fields.String(validate=_env_pair), load_default=list)
    input_dirs = fields.List(fields.String(), load_default=list)
    output_dir = fields.String(load_default=None)


class AuthSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    pfcon_user = fields.String(required=True)
    pfcon_password = fields.String(required=True)


class ErrorSchema(Schema):
    """Every error answer (pfcon.api.errors); a form or query that failed validation adds ``errors``."""

    message = fields.String(required=True, metadata={"description": "what went wrong, for a person"})
    errors = fields.Dict(
        keys=fields.String(),
        metadata={"description": "per field, its problems (a list, or per list item)"},
    )


class TokenSchema(Schema):
    token = fields.String(required=True, metadata={"description": "an HS256 JWT; send it as `Bearer`"})


class HealthSchema(Schema):
    """``GET health/``: each part says what answered."""

    health = fields.Constant("OK", required=True, metadata={"type": "string", "enum": ["OK"]})
    engine = fields.String(required=True)
    storage = fields.String(required=True)
    database = fields.String(required=True)


class UnhealthySchema(Schema):
    health = fields.Constant(
        "unavailable", required=True, metadata={"type": "string", "enum": ["unavailable"]}
    )
    message = fields.String(required=True)


class ListingSchema(Schema):
    """In-network storage's answer to a file GET: what the job wrote under ``job_output_path``."""

    job_output_path = fields.String(required=True)
    rel_file_paths = fields.List(fields.String(), required=True)


class ComputeSchema(Schema):
    """The ``compute`` part of submit and status answers, spelled as pfcon 6 spells statuses."""

    spelling: dict[str, str] = {}

    jid = fields.String(attribute="info.jid", required=True)
    image = fields.String(attribute="info.image", required=True)
    cmd = fields.String(attribute="info.cmd", required=True)
    status = fields.Method("status_of", required=True, metadata={"type": "string", "enum": STATUS_NAMES})
    message = fields.String(attribute="info.message", required=True)
    timestamp = fields.String(attribute="info.timestamp", required=True)
    logs = fields.String(required=True)

    def status_of(self, state: Any) -> str:
        value = state.info.status.value
        return self.spelling.get(value, value)


class ClassicComputeSchema(ComputeSchema):
    """pfcon 5.3's enum (tag v5.3.0) spells ``notstarted`` all lowercase; ChRIS 6.x compares it."""

    spelling = {JobStatus.notStarted.value: "notstarted"}
    status = fields.Method(
        "status_of", required=True, metadata={"type": "string", "enum": CLASSIC_STATUS_NAMES}
    )


class DataSchema(Schema):
    """The ``data`` part of a submit answer."""

    jid = fields.String(required=True)
    nfiles = fields.Integer(required=True, metadata={"description": "files staged in (links not counted)"})
    timestamp = fields.String(required=True)
    path = fields.String(required=True, metadata={"description": "the input folder, storeBase-relative"})


class SubmitAnswerSchema(Schema):
    data = fields.Nested(DataSchema, required=True)
    compute = fields.Nested(ClassicComputeSchema, required=True)


class StatusAnswerSchema(Schema):
    compute = fields.Nested(ClassicComputeSchema, required=True)


def _text(value: Any) -> str | None:
    """What a marshmallow ``String`` field makes of a value."""
    return None if value is None else str(value)


def status_answer(state: JobState) -> dict[str, Any]:
    """``StatusAnswerSchema().dump({"compute": state})``, field by field.

    A running job's status is the request clients make most, and marshmallow's per-field
    machinery was about 5 % of its CPU. The schema stays the description (OpenAPI);
    ``tests/test_status_answer.py`` proves this answer equal to its dump for every status.
    """
    info = state.info
    return {
        "compute": {
            "jid": _text(info.jid),
            "image": _text(info.image),
            "cmd": _text(info.cmd),
            "status": ClassicComputeSchema.spelling.get(info.status.value, info.status.value),
            "message": _text(info.message),
            "timestamp": _text(info.timestamp),
            "logs": _text(state.logs),
        }
    }


class AmountSchema(Schema):
    """CPUs (a number), memory (MiB) and GPUs."""

    cpus = fields.Function(lambda amount: amount.cpu_millicores / 1000, metadata={"type": "number"})
    memory_mib = fields.Integer()
    gpus = fields.Integer()


class QueueSchema(Schema):
    """The admission queue (docker and podman): capacity, what is free, how many wait."""

    capacity = fields.Nested(AmountSchema)
    free = fields.Nested(AmountSchema)
    free_share = fields.Function(
        lambda stats: stats.free_share(),
        metadata={
            "description": "the free part of each resource, 0 to 1",
            "type": "object",
            "properties": {name: {"type": "number"} for name in ("cpu", "memory", "gpu")},
        },
    )
    running = fields.Integer()
    queued = fields.Integer()
    fair_share = fields.Boolean()
    gpu_devices = fields.List(fields.String(), metadata={"description": "the IDs of the GPUs it hands out"})
    free_gpu_devices = fields.List(fields.String(), metadata={"description": "those no job holds"})


class ServerInfoSchema(Schema):
    server_version = fields.String(required=True)
    pfcon_innetwork = fields.Boolean(required=True)
    storage_env = fields.String(required=True)
    container_env = fields.String(required=True)
    compute_volume_type = fields.String(required=True)
    swift_auth_url = fields.String(metadata={"description": "swift storage only"})
    s3_endpoint_url = fields.String(metadata={"description": "s3 storage only"})
    queue = fields.Nested(
        QueueSchema, metadata={"description": "docker and podman with the admission queue on"}
    )


class Pfcon6ServerInfoSchema(ServerInfoSchema):
    """pfcon 6 adds two keys; ChRIS indexes both and fails if one is missing."""

    requires_copy_job = fields.Boolean(required=True)
    requires_upload_job = fields.Boolean(required=True)


def _strip_leading_slash(data: Any, names: tuple[str, ...]) -> Any:
    """pfcon 6 strips a leading ``/`` from these fields (``lstrip('/')``); so do we."""
    if isinstance(data, dict):
        data = {**data, **{n: data[n].lstrip("/") for n in names if isinstance(data.get(n), str)}}
    return data


class OperationForm(Schema):
    """What copy, upload and delete POSTs share: pfcon 6's resource fields and defaults."""

    class Meta:
        unknown = EXCLUDE

    jid = fields.String(required=True, metadata=PFCON6_JID)
    cpu_limit = fields.Integer(load_default=1000, validate=_count(1))
    memory_limit = fields.Integer(load_default=300, validate=_count(1))

    @pre_load
    def strip(self, data: Any, **_kwargs: Any) -> Any:
        return _strip_leading_slash(data, ("jid", "job_output_path"))


class CopyForm(OperationForm):
    input_dirs = fields.List(fields.String(), load_default=list)
    output_dir = fields.String(required=True, validate=validate.Length(min=1))


class UploadForm(OperationForm):
    job_output_path = fields.String(required=True, validate=validate.Length(min=1))


class DeleteForm(OperationForm):
    pass


OPERATION_FORMS: dict[str, type[OperationForm]] = {
    "copy": CopyForm,
    "upload": UploadForm,
    "delete": DeleteForm,
}


def operation_form(kind: str, form: MultiDict) -> tuple[str, dict[str, Any]]:
    """The jid and the recorded parameters of a copy, upload or delete POST."""
    values = load(OPERATION_FORMS[kind](), form_to_dict(form))
    return values.pop("jid"), values


class OperationComputeSchema(Schema):
    """An operation as pfcon 6 answers its container: ``compute`` with ``status`` and ``logs``."""

    jid = fields.String(required=True)
    image = fields.Constant("", required=True, metadata={"type": "string", "enum": [""]})
    cmd = fields.Constant("", required=True, metadata={"type": "string", "enum": [""]})
    status = fields.String(required=True, metadata={"enum": STATUS_NAMES})
    message = fields.String(required=True)
    timestamp = fields.Function(
        lambda op: op.finished_at or op.started_at, required=True, metadata={"type": "string"}
    )
    logs = fields.Function(lambda op: "\n".join(op.log), required=True, metadata={"type": "string"})


class OperationAnswerSchema(Schema):
    compute = fields.Nested(OperationComputeSchema, required=True)


class Pfcon6StatusAnswerSchema(Schema):
    compute = fields.Nested(ComputeSchema, required=True)


class Pfcon6SubmitAnswerSchema(Schema):
    """``{"data", "compute"}``; ``data`` is ``{}`` when nothing was staged by this request."""

    data = fields.Function(
        lambda accepted: DataSchema().dump(accepted.data) if accepted.data else {},
        required=True,
        metadata={
            "anyOf": [{"$ref": "#/components/schemas/Data"}, {"type": "object", "maxProperties": 0}],
            "description": "`{}` when the input was staged by a copy job or the job already existed",
        },
    )
    compute = fields.Nested(ComputeSchema, required=True)


def output_response(result: ZipOutput | ListingOutput) -> Response:
    """A streamed zip attachment, or the JSON listing."""
    if isinstance(result, ZipOutput):
        return Response(
            result.chunks,
            mimetype="application/zip",
            headers={"Content-Disposition": f'attachment; filename="{result.filename}"'},
            direct_passthrough=True,
        )
    return jsonify(result.body)


def _flatten(errors: dict[str, Any]) -> str:
    parts = []
    for name, problems in sorted(errors.items()):
        if isinstance(problems, dict):  # list items: {index: [messages]}
            problems = [m for msgs in problems.values() for m in (msgs if isinstance(msgs, list) else [msgs])]
        parts.append(f"{name}: {' '.join(str(p) for p in problems)}")
    return "; ".join(parts)


def load(schema: Schema, data: dict[str, Any]) -> dict[str, Any]:
    try:
        return schema.load(data)
    except ValidationError as exc:
        error = InvalidInput(_flatten(exc.normalized_messages()))
        error.details = exc.normalized_messages()  # type: ignore[attr-defined]
        raise error from None


def form_to_dict(form: MultiDict) -> dict[str, Any]:
    """Repeatable fields become lists; a scalar field given twice is an error."""
    data: dict[str, Any] = {}
    for key in form:
        values = form.getlist(key)
        if key in LIST_FIELDS:
            data[key] = values
        elif len(values) > 1:
            raise InvalidInput(f"{key}: given more than once")
        else:
            data[key] = values[0]
    return data


def _path_flags(values: list[str]) -> frozenset[str]:
    """pfcon 5.3 takes repeated values; python-pfconclient's CLI sends one comma-separated string."""
    return frozenset(flag.strip() for value in values for flag in value.split(",") if flag.strip())


def submission(form: MultiDict, upload: Any, api: str, strip_jid: bool = False) -> Submission:
    data = form_to_dict(form)
    values = load(SubmitSchema(), _strip_leading_slash(data, ("jid",)) if strip_jid else data)
    return Submission(
        jid=values["jid"],
        image=values["image"],
        entrypoint=tuple(values["entrypoint"]),
        type=values["type"],
        auid=values["auid"],
        number_of_workers=values["number_of_workers"],
        cpu_limit=values["cpu_limit"],
        memory_limit=values["memory_limit"],
        gpu_limit=values["gpu_limit"],
        args=tuple(values["args"]),
        args_path_flags=_path_flags(values["args_path_flags"]),
        env=tuple(tuple(pair.split("=", 1)) for pair in values["env"]),  # type: ignore[misc]
        data=InputRequest(
            upload=upload, input_dirs=tuple(values["input_dirs"]), output_dir=values["output_dir"]
        ),
        api=api,
    )
