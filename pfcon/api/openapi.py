"""pfcon's API description (OpenAPI 3.1), built by apispec from the marshmallow schemas the
routes validate input and dump answers with.

One table, :data:`ROUTES`, names each route's method, path, tag, input schemas and answers,
so the views stay plain Flask. ``tests/test_openapi.py`` checks that this table and the
application's URL map list the same routes, that ``docs/openapi.json`` is this document, and
fuzzes a live pfcon against it (schemathesis). Regenerate the checked-in copy with
``pfcon openapi --output docs/openapi.json``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from marshmallow import Schema, fields

from pfcon import __version__
from pfcon.api import schemas
from pfcon.api.dashboard import schemas as board
from pfcon.api.history import HistoryPageSchema, HistoryQuerySchema, JobHistorySchema

PREFIX = "/api/v1"
JSON, FORM, MULTIPART = "application/json", "application/x-www-form-urlencoded", "multipart/form-data"
ZIP, HTML, TEXT = "application/zip", "text/html", "text/plain"

CLASSIC, PFCON6, HISTORY, OPS, DASHBOARD = "classic", "pfcon6", "history", "operations", "dashboard"
TAGS = [
    {
        "name": CLASSIC,
        "description": "pfcon 5.3's `jobs/` API, as python-pfconclient 3.3 and ChRIS 6.x speak it. "
        "Statuses spell `notstarted` in lowercase, as pfcon 5.3 did.",
    },
    {
        "name": PFCON6,
        "description": "pfcon 6's `copyjobs/`, `pluginjobs/`, `uploadjobs/` and `deletejobs/`, as "
        "python-pfconclient 4.0 and ChRIS 7 speak them (docs/pfcon6.md). A job is one job whichever "
        "API made it.",
    },
    {"name": HISTORY, "description": "What ran, read from the job store (docs/store.md)."},
    {"name": OPS, "description": "Health, login, metrics and this description."},
    {
        "name": DASHBOARD,
        "description": "The web dashboard (docs/observability.md): its pages and the JSON they "
        "refresh from, behind a session cookie from its login form.",
    },
]

BEARER, BASIC, SESSION = "bearerAuth", "basicAuth", "dashboardSession"
SECURITY_SCHEMES = {
    BEARER: {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "`POST /api/v1/auth-token/` gives a token (HS256, expires; PFCON_TOKEN_LIFETIME).",
    },
    BASIC: {"type": "http", "scheme": "basic", "description": "the pfcon user and password (metrics only)"},
    SESSION: {"type": "apiKey", "in": "cookie", "name": "pfcon_dashboard"},
}

ERRORS = {
    400: "Bad input: a form, query, path or body that is malformed or unsafe; `message` says which "
    "field (`errors` has each field's problems). Nothing was written.",
    401: "Missing, malformed, invalid or expired credentials.",
    403: "A form posted without this server's CSRF token, or from another site.",
    404: "No such job (or its data is gone).",
    408: "The request body stalled or came too slowly.",
    409: "In conflict with the job's state: a live job has this jid, a step was asked for before the "
    "one it needs, or job data pfcon may not delete.",
    413: "The body, a form's fields or an upload's content is over a limit.",
    503: "The container engine, the storage or the job database does not answer; or, for a request "
    "with a body, this worker already receives as many bodies as it may (`Retry-After: 5`).",
    507: "storeBase is full; the upload was discarded.",
}
ERROR_SCHEMA = "Error"
URI_TOO_LONG = "UriTooLong"


@dataclass(frozen=True)
class Answer:
    """One status's answer: its description and its content (media type to schema)."""

    description: str
    content: dict[str, Any] = field(default_factory=dict)


def json_answer(description: str, schema: Any) -> Answer:
    return Answer(description, {JSON: schema})


NO_CONTENT = Answer("Done; no body.")
BUSY = json_answer(ERRORS[503], ERROR_SCHEMA)
OUTPUT = Answer(
    "The job's output: a zip attachment (zipfile storage, and swift or s3 without "
    "`job_output_path`), or the listing of what the job wrote under `job_output_path`.",
    {ZIP: {"type": "string", "format": "binary"}, JSON: schemas.ListingSchema},
)


class SubmitUpload(schemas.SubmitSchema):
    """The job form with its input zip (documentation of the multipart body)."""

    data_file = fields.Raw(
        metadata={
            "type": "string",
            "format": "binary",
            "description": "the input zip; required with zipfile storage, read and dropped elsewhere",
        }
    )


class Pfcon6Submit(schemas.SubmitSchema):
    """The job form as pfcon 6 takes it: a leading ``/`` of ``jid`` is stripped."""

    jid = fields.String(required=True, metadata=schemas.PFCON6_JID)


class Pfcon6SubmitUpload(SubmitUpload):
    jid = fields.String(required=True, metadata=schemas.PFCON6_JID)


@dataclass(frozen=True)
class Route:
    """One route: what it takes and every answer it gives."""

    method: str
    path: str  # OpenAPI's spelling: ``{jid}``
    tag: str
    summary: str
    answers: dict[int, Answer]
    errors: tuple[int, ...] = ()
    body: dict[str, Any] = field(default_factory=dict)  # media type -> schema
    query: type[Schema] | None = None
    security: tuple[str, ...] = (BEARER,)
    description: str = ""
    error_type: str = JSON  # the dashboard's pages answer errors with an HTML page

    def operation(self) -> dict[str, Any]:
        statuses = sorted({*self.answers, *self.errors, *((401,) if self.security else ())})
        op: dict[str, Any] = {
            "tags": [self.tag],
            "summary": self.summary,
            "operationId": _operation_id(self.method, self.path),
            "security": [{name: []} for name in self.security],
            "responses": {
                **{str(code): self._answer(code) for code in statuses},
                "414": URI_TOO_LONG,  # gunicorn's own answer, before pfcon sees the request
            },
        }
        if self.description:
            op["description"] = self.description
        parameters = [_path_parameter(name) for name in re.findall(r"{(\w+)}", self.path)]
        if self.query is not None:
            parameters.append({"in": "query", "schema": self.query})
        if parameters:
            op["parameters"] = parameters
        if self.body:
            op["requestBody"] = {
                "required": True,
                "content": {kind: {"schema": schema} for kind, schema in self.body.items()},
            }
        return op

    def _answer(self, code: int) -> dict[str, Any]:
        error = ERROR_SCHEMA if self.error_type == JSON else {"type": "string"}
        answer = self.answers.get(code) or Answer(ERRORS[code], {self.error_type: error})
        out: dict[str, Any] = {"description": answer.description}
        if answer.content:
            out["content"] = {kind: {"schema": schema} for kind, schema in answer.content.items()}
        return out


def _path_parameter(name: str) -> dict[str, Any]:
    schema = {"type": "string", "pattern": schemas.JID["pattern"]} if name == "jid" else {"type": "string"}
    return {"in": "path", "name": name, "required": True, "schema": schema}


def _operation_id(method: str, path: str) -> str:
    words = [w.strip("{}") for w in path.removeprefix(PREFIX).split("/") if w]
    return method.lower() + "".join(w.replace(".", "_").replace("-", "_").title() for w in words)


class OutputQuery(Schema):
    job_output_path = fields.String(
        metadata={"description": "in-network storage: the job's output, storeBase-relative (or a prefix)"}
    )


# -- the table ---------------------------------------------------------------------------------
BODY_ERRORS = (400, 408, 413, 503)
JOB_ERRORS = (400, 404, 503)
OPEN: tuple[str, ...] = ()


def _forms(schema: Any, multipart: Any = None) -> dict[str, Any]:
    return {MULTIPART: multipart or schema, FORM: schema}


def _classic() -> list[Route]:
    p = f"{PREFIX}/jobs"
    return [
        Route("GET", f"{p}/", CLASSIC, "Server info",
              {200: json_answer("Server info.", schemas.ServerInfoSchema)}),
        Route(
            "POST", f"{p}/", CLASSIC, "Submit a job",
            {201: json_answer("Accepted: input staged, container queued.", schemas.SubmitAnswerSchema)},
            (*BODY_ERRORS, 409, 503, 507),
            _forms(schemas.SubmitSchema, SubmitUpload),
            description="Command = entrypoint + args (path flags localised) + `/share/incoming` (ds only) "
            "+ `/share/outgoing`. The image must be on the engine already: pfcon never pulls during a "
            "request (400).",
        ),
        Route("GET", f"{p}/{{jid}}/", CLASSIC, "A job's status and log tail",
              {200: json_answer("The job.", schemas.StatusAnswerSchema)}, JOB_ERRORS),
        Route("DELETE", f"{p}/{{jid}}/", CLASSIC, "Delete a job's data and container",
              {204: NO_CONTENT}, (*JOB_ERRORS, 409)),
        Route("GET", f"{p}/{{jid}}/file/", CLASSIC, "A job's output", {200: OUTPUT}, JOB_ERRORS,
              query=OutputQuery),
    ]  # fmt: skip


OPERATIONS = {
    "copyjobs": ("copy", schemas.CopyForm, "Copy a job's input into storeBase"),
    "uploadjobs": ("upload", schemas.UploadForm, "Upload a job's output to the object store"),
    "deletejobs": ("delete", schemas.DeleteForm, "Stop a job and delete its data"),
}
PFCON6_INFO = json_answer("Server info, with `requires_copy_job` and `requires_upload_job`.",
                          schemas.Pfcon6ServerInfoSchema)  # fmt: skip


def _pfcon6() -> list[Route]:
    routes = []
    for name, (kind, form, summary) in OPERATIONS.items():
        p = f"{PREFIX}/{name}"
        answer = schemas.OperationAnswerSchema
        routes += [
            Route("GET", f"{p}/", PFCON6, "Server info", {200: PFCON6_INFO}),
            Route("POST", f"{p}/", PFCON6, summary,
                  {201: json_answer(f"The {kind} operation, as it is after up to 50 ms.", answer)},
                  (*BODY_ERRORS, 409, 503), _forms(form)),
            Route("GET", f"{p}/{{jid}}/", PFCON6, f"A {kind} operation's status and log",
                  {200: json_answer(f"The {kind} operation.", answer)}, JOB_ERRORS),
            Route("DELETE", f"{p}/{{jid}}/", PFCON6, f"Forget a {kind} operation (into the history)",
                  {204: NO_CONTENT}, (400, 503)),
        ]  # fmt: skip
    p = f"{PREFIX}/pluginjobs"
    return [
        *routes,
        Route("GET", f"{p}/", PFCON6, "Server info", {200: PFCON6_INFO}),
        Route("POST", f"{p}/", PFCON6, "Submit a plugin job",
              {201: json_answer("Accepted (or the live job of this jid, as it is).",
                                schemas.Pfcon6SubmitAnswerSchema)},
              (*BODY_ERRORS, 409, 503, 507), _forms(Pfcon6Submit, Pfcon6SubmitUpload)),
        Route("GET", f"{p}/{{jid}}/", PFCON6, "A plugin job's status and log tail",
              {200: json_answer("The job.", schemas.Pfcon6StatusAnswerSchema)}, JOB_ERRORS),
        Route("DELETE", f"{p}/{{jid}}/", PFCON6, "Remove a plugin job's container and folder",
              {204: NO_CONTENT}, (400, 409, 503)),
        Route("GET", f"{p}/{{jid}}/file/", PFCON6, "A plugin job's output", {200: OUTPUT}, JOB_ERRORS,
              query=OutputQuery),
    ]  # fmt: skip


def _history() -> list[Route]:
    p = f"{PREFIX}/history"
    return [
        Route("GET", f"{p}/", HISTORY, "Jobs, newest first, a page at a time",
              {200: json_answer("A page; `next` is the following page's URL, null on the last.",
                                HistoryPageSchema)}, (400, 503), query=HistoryQuerySchema),
        Route("GET", f"{p}/{{jid}}/", HISTORY, "A job and its events",
              {200: json_answer("The newest job of this jid (its plugin job first) and its events.",
                                JobHistorySchema)}, JOB_ERRORS),
    ]  # fmt: skip


def _operations() -> list[Route]:
    return [
        Route("GET", f"{PREFIX}/health/", OPS, "Whether the engine, storage and database answer",
              {200: json_answer("All three answer.", schemas.HealthSchema),
               503: json_answer("One does not.", schemas.UnhealthySchema)}, security=OPEN),
        Route("POST", f"{PREFIX}/auth-token/", OPS, "Log in: a token for the pfcon user",
              {200: json_answer("The token.", schemas.TokenSchema)}, BODY_ERRORS,
              {JSON: schemas.AuthSchema, FORM: schemas.AuthSchema}, security=OPEN,
              description="Wrong credentials are a 400, as in pfcon 5.3."),
        Route("GET", f"{PREFIX}/openapi.json", OPS, "This description",
              {200: Answer("The OpenAPI 3.1 document.", {JSON: {"type": "object"}})}, security=OPEN),
        Route("GET", f"{PREFIX}/docs/", OPS, "This description as a page (works offline)",
              {200: Answer("The reference page.", {HTML: {"type": "string"}})}, security=OPEN),
        Route("GET", f"{PREFIX}/docs/start.js", OPS, "The reference page's start-up script",
              {200: Answer("The script.", {"text/javascript": {"type": "string"}})}, security=OPEN),
        Route("GET", f"{PREFIX}/docs/assets/{{name}}", OPS, "The reference page's files (Swagger UI)",
              {200: Answer("The file.", {"*/*": {"type": "string", "format": "binary"}})}, (404,),
              security=OPEN),
        Route("GET", "/metrics", OPS, "Prometheus metrics",
              {200: Answer("The text exposition format.", {TEXT: {"type": "string"}})},
              security=(BEARER, BASIC),
              description="Served here when PFCON_METRICS is `token` (default; the API token or the "
              "pfcon user's password) or `open` (no credentials); not with `off` or its own address."),
    ]  # fmt: skip


def _dashboard() -> list[Route]:
    p, page = "/dashboard", Answer("The page.", {HTML: {"type": "string"}})
    login = (SESSION,)
    redirect = Answer("To the login page (no valid session), or where the form said.")
    return [
        Route("GET", f"{p}/login", DASHBOARD, "The login page", {200: page}, security=OPEN),
        Route("POST", f"{p}/login", DASHBOARD, "Log in", {302: redirect, 401: Answer(
              "Wrong user name or password: the login page again.", {HTML: {"type": "string"}}),
              403: Answer(ERRORS[403], {HTML: {"type": "string"}}), 503: BUSY},
              (400, 408, 413), {FORM: board.LoginFormSchema}, security=OPEN, error_type=HTML),
        Route("POST", f"{p}/logout", DASHBOARD, "Log out", {302: redirect,
              403: Answer(ERRORS[403], {HTML: {"type": "string"}}), 503: BUSY}, (400, 408, 413),
              {FORM: board.LogoutFormSchema}, security=login, error_type=HTML),
        Route("GET", f"{p}/", DASHBOARD, "The jobs page", {200: page, 302: redirect}, (400,),
              query=board.JobsQuerySchema, security=login, error_type=HTML),
        Route("GET", f"{p}/jobs/{{jid}}", DASHBOARD, "A job's page", {200: page, 302: redirect}, (404,),
              security=login, error_type=HTML),
        Route("GET", f"{p}/timeline", DASHBOARD, "The timeline page", {200: page, 302: redirect},
              security=login, error_type=HTML),
        Route("GET", f"{p}/timeline.jsonl", DASHBOARD, "The timeline's jobs, one JSON record a line",
              {200: Answer("An attachment.", {"application/x-ndjson": {"type": "string"}}),
               302: redirect}, (400, 503), query=board.RangeQuerySchema, security=login, error_type=HTML),
        Route("GET", f"{p}/api/jobs", DASHBOARD, "Jobs, newest first",
              {200: json_answer("A page.", board.JobsPageSchema)}, (400, 503),
              query=board.JobsQuerySchema, security=login),
        Route("GET", f"{p}/api/jobs/{{jid}}", DASHBOARD, "A job and its events",
              {200: json_answer("The job.", board.JobDetailSchema)}, (404, 503), security=login),
        Route("GET", f"{p}/api/jobs/{{jid}}/logs", DASHBOARD, "A job's log tail",
              {200: json_answer("The logs.", board.JobLogsSchema)}, (400, 503), security=login),
        Route("GET", f"{p}/api/timeline", DASHBOARD, "The jobs of a time window",
              {200: json_answer("At most `limit` jobs.", board.TimelineSchema)}, (400, 503),
              query=board.RangeQuerySchema, security=login),
        Route("GET", f"{p}/static/{{filename}}", DASHBOARD, "The dashboard's CSS, scripts and images",
              {200: Answer("The file (cached for a week: its URL carries pfcon's version).",
                           {"*/*": {"type": "string", "format": "binary"}}),
               404: Answer("No such file: the dashboard's error page, or JSON for a name no route takes.",
                           {HTML: {"type": "string"}, JSON: ERROR_SCHEMA})}, security=OPEN),
        Route("GET", f"{p}/api/capacity", DASHBOARD, "What the local engine has free",
              {200: json_answer("The capacity.", board.CapacitySchema)}, (503,), security=login),
    ]  # fmt: skip


ROUTES: tuple[Route, ...] = (*_classic(), *_pfcon6(), *_history(), *_operations(), *_dashboard())


@cache
def document() -> dict[str, Any]:
    """The OpenAPI document (built once: it depends on nothing but the code).

    apispec is imported here, not with the module: a worker that never serves the document
    does not carry it (part of the idle footprint, docs/performance.md).
    """
    from apispec import APISpec
    from apispec.ext.marshmallow import MarshmallowPlugin

    spec = APISpec(
        title="pfcon",
        version=__version__,
        openapi_version="3.1.0",
        plugins=[MarshmallowPlugin()],
        info={
            "description": "ChRIS's compute controller: runs jobs as containers. It speaks pfcon 5.3's "
            "classic API and pfcon 6's API from one process (docs/openapi.md).",
            "license": {"name": "MIT", "identifier": "MIT"},
        },
        servers=[{"url": "/"}],
        tags=TAGS,
        security=[{BEARER: []}],
    )
    for name, scheme in SECURITY_SCHEMES.items():
        spec.components.security_scheme(name, scheme)
    spec.components.schema(ERROR_SCHEMA, schema=schemas.ErrorSchema)
    spec.components.schema("Data", schema=schemas.DataSchema)
    spec.components.response(
        URI_TOO_LONG,
        {
            "description": "The request line is over gunicorn's limit (4094 bytes): gunicorn answers "
            "this itself, in HTML, on any path.",
            "content": {HTML: {"schema": {"type": "string"}}},
        },
    )
    paths: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        paths.setdefault(route.path, {})[route.method.lower()] = route.operation()
    for path, operations in paths.items():
        spec.path(path=path, operations=operations)
    return spec.to_dict()


def document_text() -> str:
    """The document as checked in (docs/openapi.json): stable key order, a final newline."""
    return json.dumps(document(), indent=2, sort_keys=False, ensure_ascii=False) + "\n"
