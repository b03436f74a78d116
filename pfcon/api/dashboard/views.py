"""The dashboard's pages and the JSON they refresh from: all read from the job store.

No route here asks the engine anything, except the log tail, which goes through the job
service's own status path (with its cache of finished jobs) and only when an operator opens
a job's log.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, abort, jsonify, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException

from pfcon.api.auth import TokenAuth
from pfcon.api.dashboard import session as login
from pfcon.errors import InvalidInput, JobNotFound, PfconError
from pfcon.jobs import JobService
from pfcon.observability.capacity import HostCapacity, free_capacity
from pfcon.observability.outputs import list_output
from pfcon.store import HistoryPage, HistoryQuery, JobRow
from pfcon.store.repository import ADMITTED_MESSAGE, Event

OPEN_ENDPOINTS = frozenset({"dashboard.login_form", "dashboard.login_post", "dashboard.static"})
STATUSES = ("notStarted", "started", "finishedSuccessfully", "finishedWithError", "undefined")
TERMINAL = frozenset(STATUSES[2:])
PAGE_SIZE = 50
STATIC_MAX_AGE = 7 * 24 * 3600
TIMELINE_LIMIT = 1000
DEFAULT_RANGE_SECONDS = 3600
LAST_EPOCH = datetime(9999, 12, 31, tzinfo=UTC).timestamp()  # the last day a datetime holds
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def dashboard_blueprint(service: JobService, auth: TokenAuth, host: HostCapacity) -> Blueprint:
    pages = Blueprint(
        "dashboard",
        __name__,
        url_prefix="/dashboard",
        template_folder="templates",
        static_folder="static",
        static_url_path="/static",
    )
    lifetime = service.settings.observability.session_seconds
    engine = service.backend.name
    store = service.store
    version = service.settings.server_version

    @pages.before_request
    def require_session() -> ResponseReturnValue | None:
        if request.endpoint in OPEN_ENDPOINTS:
            return None
        state = login.state()
        if state == "valid":
            return None
        if request.path.startswith("/dashboard/api/"):
            return jsonify(message=f"not logged in to the dashboard ({state} session)"), 401
        expired = {"expired": 1} if state == "expired" else {}
        return redirect(url_for("dashboard.login_form", next=request.path, **expired))

    @pages.after_request
    def headers(response: Response) -> Response:
        response.headers.update(SECURITY_HEADERS)
        if request.endpoint == "dashboard.static":
            # asset URLs carry pfcon's version (?v=): the browser keeps them without asking again
            response.cache_control.max_age = STATIC_MAX_AGE
            response.cache_control.public = True
        else:
            response.headers["Cache-Control"] = "no-store"
        return response

    @pages.context_processor
    def page_context() -> dict[str, Any]:
        return {
            "csrf_token": login.csrf_token,
            "logged_in": login.state() == "valid",
            "asset": lambda name: url_for("dashboard.static", filename=name, v=version),
        }

    @pages.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> ResponseReturnValue:
        message, code = error.description or error.name, error.code or 500
        if request.path.startswith("/dashboard/api/"):
            return jsonify(message=message), code
        return render_template("dashboard/error.html", code=code, message=message), code

    @pages.errorhandler(login.Forbidden)
    def forbidden(error: login.Forbidden) -> ResponseReturnValue:
        return render_template("dashboard/login.html", error=error.message, next="/dashboard/"), 403

    # -- login ------------------------------------------------------------------------------
    @pages.get("/login")
    def login_form() -> ResponseReturnValue:
        if login.state() == "expired":
            login.log_out()  # the stale session goes; a fresh one carries the form's token
        note = "Your session has expired; please log in again." if request.args.get("expired") == "1" else ""
        return render_template("dashboard/login.html", note=note, next=_local(request.args.get("next")))

    @pages.post("/login")
    def login_post() -> ResponseReturnValue:
        login.check_form()
        user, password = request.form.get("username", ""), request.form.get("password", "")
        target = _local(request.form.get("next"))
        if not auth.check_password(user, password):
            return render_template(
                "dashboard/login.html", error="Wrong user name or password.", next=target
            ), 401
        login.log_in(user, lifetime)
        return redirect(target)

    @pages.post("/logout")
    def logout() -> ResponseReturnValue:
        login.check_form()
        login.log_out()
        return redirect(url_for("dashboard.login_form"))

    # -- pages ------------------------------------------------------------------------------
    @pages.get("/")
    def jobs_page() -> ResponseReturnValue:
        query = _query()
        page = _page(service, query)
        rows = [_row(job) for job in page.items]
        return render_template(
            "dashboard/jobs.html",
            rows=rows,
            next=page.next_cursor,
            query=query,
            statuses=STATUSES,
            engine=engine,
        )

    @pages.get("/jobs/<jid>")
    def job_page(jid: str) -> ResponseReturnValue:
        row, events = _job(service, jid)
        outputs = list_output(service.storebase.root, row.output_path or "")
        return render_template(
            "dashboard/job.html",
            job=_row(row),
            staged=_staged_files(service.storebase.root, row),
            events=[_event(e) for e in events],
            outputs=outputs,
        )

    @pages.get("/timeline")
    def timeline_page() -> ResponseReturnValue:
        return render_template("dashboard/timeline.html")

    # -- data -------------------------------------------------------------------------------
    @pages.get("/api/jobs")
    def jobs_data() -> ResponseReturnValue:
        page = _page(service, _query())
        return jsonify(items=[_row(job) for job in page.items], next=page.next_cursor)

    @pages.get("/api/jobs/<jid>")
    def job_data(jid: str) -> ResponseReturnValue:
        row, events = _job(service, jid)
        return jsonify(job=_row(row), events=[_event(e) for e in events])

    @pages.get("/api/jobs/<jid>/logs")
    def job_logs(jid: str) -> ResponseReturnValue:
        try:
            state = service.status(jid)
        except JobNotFound:
            return jsonify(status=None, logs="", message="the job and its logs are gone (deleted)")
        except InvalidInput as error:  # a jid no job can have
            return jsonify(message=error.message), 400
        except PfconError as error:
            return jsonify(message=error.message), 503
        return jsonify(status=state.info.status.value, logs=state.logs, message=state.info.message)

    @pages.get("/api/timeline")
    def timeline_data() -> ResponseReturnValue:
        since, until = _range()
        jobs = store.timeline(_utc(since), _utc(until), TIMELINE_LIMIT)
        return jsonify(
            since=since,
            until=until,
            now=time.time(),
            limit=TIMELINE_LIMIT,
            jobs=[_record(job) for job in jobs],
        )

    @pages.get("/timeline.jsonl")
    def timeline_download() -> ResponseReturnValue:
        since, until = _range()
        jobs = store.timeline(_utc(since), _utc(until), TIMELINE_LIMIT)
        lines: Iterator[str] = (json.dumps(_record(job)) + "\n" for job in jobs)
        stamp = datetime.fromtimestamp(since, UTC).strftime("%Y%m%dT%H%M%SZ")
        disposition = f'attachment; filename="pfcon-timeline-{stamp}.jsonl"'
        return Response(lines, mimetype="application/x-ndjson", headers={"Content-Disposition": disposition})

    @pages.get("/api/capacity")
    def capacity_data() -> ResponseReturnValue:
        if host.host is None:
            return jsonify(engine=engine, local=False)
        return jsonify(engine=engine, local=True, **asdict(free_capacity(host.host, store)))

    return pages


def _local(target: str | None) -> str:
    """Only a path inside the dashboard is a place to go back to after login (no open redirect)."""
    if target and target.startswith("/dashboard/") and "//" not in target and "\\" not in target:
        return target
    return "/dashboard/"


def _query() -> HistoryQuery:
    args = request.args

    def text(name: str) -> str | None:
        value = args.get(name, "").strip()
        return value[:200] or None

    status = text("status")
    if status is not None and status not in STATUSES:
        abort(400, f"status: one of {', '.join(STATUSES)}")
    try:
        limit = min(int(args.get("limit", PAGE_SIZE)), 200)
    except ValueError:
        abort(400, "limit: a number")
    return HistoryQuery(
        status=status, auid=text("auid"), image=text("image"), search=text("q"), kind="plugin",
        limit=limit, cursor=text("cursor"),
    )  # fmt: skip


def _page(service: JobService, query: HistoryQuery) -> HistoryPage:
    try:
        return service.history(query)
    except InvalidInput as error:
        abort(400, error.message)


def _job(service: JobService, jid: str) -> tuple[JobRow, list[Event]]:
    try:
        return service.job_history(jid)
    except (JobNotFound, InvalidInput) as error:
        abort(404, error.message)


def _staged_files(root: Path, row: JobRow) -> str:
    """The files in the job's input folder while its data is held (a bounded count)."""
    listing = list_output(root, row.input_path or "")
    if not listing.exists:
        return "\u2013"  # an en dash: gone with the data
    return f"{len(listing.entries)}{'+' if listing.truncated else ''}"


def _utc(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def _range() -> tuple[float, float]:
    now = time.time()
    try:
        until = float(request.args.get("until", now))
        since = float(request.args.get("since", until - DEFAULT_RANGE_SECONDS))
    except ValueError:
        abort(400, "since, until: seconds since the epoch")
    if not (0 <= since <= LAST_EPOCH and 0 <= until <= LAST_EPOCH):  # also NaN; a datetime must hold it
        abort(400, f"since, until: seconds since the epoch, from 0 to {LAST_EPOCH:.0f}")
    if not since < until:
        abort(400, "since must be before until")
    return since, until


def _when(at: datetime | None) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if at else ""


def _epoch(at: datetime | None) -> float | None:
    return None if at is None else at.timestamp()


def _row(job: JobRow) -> dict[str, Any]:
    """A job as the list and the job page show it (times in UTC, durations in seconds)."""
    now = time.time()
    accepted, started = job.accepted_at.timestamp(), _epoch(job.started_at)
    ended = _epoch(job.finished_at) or _epoch(job.deleted_at)
    terminal = job.status in TERMINAL
    return {
        "jid": job.jid,
        "api": job.api,
        "image": job.image,
        "auid": job.auid,
        "status": job.status,
        "message": job.message,
        "command": job.cmd,
        "cpu_millicores": job.cpu_millicores,
        "memory_mib": job.memory_mib,
        "gpus": job.gpus,
        "terminal": terminal,
        "accepted": _when(job.accepted_at),
        "started": _when(job.started_at),
        "finished": _when(job.finished_at),
        "deleted": _when(job.deleted_at),
        "waited": None if started is None and (terminal or ended) else (started or now) - accepted,
        "ran": None if started is None else (ended or now) - started,
    }


def _event(event: Event) -> dict[str, Any]:
    label = event.status if event.state == "finished" else event.state
    if event.message == ADMITTED_MESSAGE:  # the admission queue's turn (docs/admission.md)
        label = "admitted"
    return {"when": _when(event.at), "label": label, "message": event.message}


def _record(job: JobRow) -> dict[str, Any]:
    """One job of the timeline, HyperFlow-style (a job description line, times in epoch ms)."""

    def ms(at: datetime | None) -> int | None:
        return None if at is None else round(at.timestamp() * 1000)

    return {
        "workflowId": job.auid,
        "jobId": job.jid,
        "name": job.image,
        "api": job.api,
        "status": job.status,
        "queueStart": ms(job.accepted_at),
        "jobStart": ms(job.started_at),
        "jobEnd": ms(job.finished_at or job.deleted_at),
        "cpuMillicores": job.cpu_millicores,
        "memoryMiB": job.memory_mib,
        "gpus": job.gpus,
    }
