"""Request schemas (marshmallow): the ``POST jobs/`` form and the auth-token body."""

from __future__ import annotations

from typing import Any

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate
from werkzeug.datastructures import MultiDict

from pfcon.errors import InvalidInput
from pfcon.imageref import check_image
from pfcon.jobs import Submission
from pfcon.storage.base import InputRequest

LIST_FIELDS = frozenset({"entrypoint", "args", "args_path_flags", "env", "input_dirs"})


def _env_pair(value: str) -> None:
    key, sep, _ = value.partition("=")
    if not sep or not key:
        raise ValidationError('must be a "KEY=value" string')


def _image_reference(value: str) -> None:
    try:
        check_image(value)
    except InvalidInput as error:
        raise ValidationError(error.message.removeprefix("image: ")) from None


class SubmitSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    jid = fields.String(required=True)
    entrypoint = fields.List(fields.String(), required=True, validate=validate.Length(min=1))
    args = fields.List(fields.String(), load_default=list)
    args_path_flags = fields.List(fields.String(), load_default=list)
    auid = fields.String(required=True, validate=validate.Length(min=1))
    number_of_workers = fields.Integer(required=True, validate=validate.Range(min=1))
    cpu_limit = fields.Integer(required=True, validate=validate.Range(min=1))
    memory_limit = fields.Integer(required=True, validate=validate.Range(min=1))
    gpu_limit = fields.Integer(required=True, validate=validate.Range(min=0))
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


class ComputeSchema(Schema):
    """The ``compute`` part of submit and status answers (pfcon 5.3's fields)."""

    jid = fields.String(attribute="info.jid")
    image = fields.String(attribute="info.image")
    cmd = fields.String(attribute="info.cmd")
    status = fields.Function(lambda state: state.info.status.value)
    message = fields.String(attribute="info.message")
    timestamp = fields.String(attribute="info.timestamp")
    logs = fields.String()


class DataSchema(Schema):
    """The ``data`` part of a submit answer."""

    jid = fields.String()
    nfiles = fields.Integer()
    timestamp = fields.String()
    path = fields.String()


class SubmitAnswerSchema(Schema):
    data = fields.Nested(DataSchema)
    compute = fields.Nested(ComputeSchema)


class StatusAnswerSchema(Schema):
    compute = fields.Nested(ComputeSchema)


class ServerInfoSchema(Schema):
    server_version = fields.String()
    pfcon_innetwork = fields.Boolean()
    storage_env = fields.String()
    container_env = fields.String()
    compute_volume_type = fields.String()
    swift_auth_url = fields.String()
    s3_endpoint_url = fields.String()


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


def submission(form: MultiDict, upload: Any) -> Submission:
    values = load(SubmitSchema(), form_to_dict(form))
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
    )
