"""``GET history/`` and ``GET history/<jid>/`` on SQLite and PostgreSQL, after real jobs ran."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import pytest

from tests.api_helpers import login, submit, wait_terminal
from tests.helpers import job_form

pytestmark = pytest.mark.integration


@pytest.fixture
def ran(make_app, docker_client, database_url: str, jid: str):
    """Three jobs: one succeeded and was deleted, one failed (exit 3), one still recorded."""
    client = make_app(PFCON_DATABASE_URL=database_url).test_client()
    auth = login(client)
    jobs = {
        "ok": job_form(f"{jid}-ok", auid="alice"),
        "failed": job_form(f"{jid}-failed", auid="bob", args=["--fail", "3"]),
        "kept": job_form(f"{jid}-kept", auid="alice"),
    }
    for form in jobs.values():
        assert submit(client, auth, form, {"a": "x"}).status_code == 201
    for form in jobs.values():
        wait_terminal(client, auth, form["jid"])
    assert client.delete(f"/api/v1/jobs/{jid}-ok/", headers=auth).status_code == 204
    return client, auth, jid


def _get(client, auth, url: str, status: int = 200) -> dict:
    parts = urlsplit(url)
    answer = client.get(parts.path + (f"?{parts.query}" if parts.query else ""), headers=auth)
    assert answer.status_code == status, answer.get_json()
    return answer.get_json()


def test_history_after_real_jobs(ran, docker_client) -> None:
    """One run of three jobs per database, read every way (each read is cheap, the jobs are not)."""
    _lists_newest_first_with_times_and_outcomes(*ran, docker_client)
    _filters_and_pages(*ran)
    _one_job_has_its_events(*ran)
    client, _, jid = ran
    assert client.get("/api/v1/history/").status_code == 401
    assert client.get(f"/api/v1/history/{jid}-ok/").status_code == 401


def _lists_newest_first_with_times_and_outcomes(client, auth, jid: str, docker_client) -> None:
    page = _get(client, auth, "/api/v1/history/")
    assert [item["jid"] for item in page["results"]] == [f"{jid}-kept", f"{jid}-failed", f"{jid}-ok"]
    assert page["next"] is None
    kept, failed, ok = page["results"]
    assert ok["state"] == "deleted" and ok["status"] == "finishedSuccessfully" and ok["deleted"]
    assert (
        failed["status"] == "finishedWithError" and failed["exit_code"] == 3 and "code 3" in failed["message"]
    )
    for item in (kept, failed, ok):
        accepted, started, finished = (
            datetime.fromisoformat(item[k]) for k in ("accepted", "started", "finished")
        )
        assert accepted <= started <= finished
        assert item["wait_seconds"] == pytest.approx((started - accepted).total_seconds(), abs=1e-3)
        assert item["run_seconds"] == pytest.approx((finished - started).total_seconds(), abs=1e-3)
        assert item["kind"] == "plugin" and item["api"] == "classic" and item["image"]
    # the engine's own id for the job: here the container's, full length
    assert re.fullmatch(r"[0-9a-f]{64}", kept["engine_id"]), kept["engine_id"]
    assert docker_client.containers.get(f"{jid}-kept").id == kept["engine_id"]


def _filters_and_pages(client, auth, jid: str) -> None:
    alice = _get(client, auth, "/api/v1/history/?auid=alice")["results"]
    assert [item["jid"] for item in alice] == [f"{jid}-kept", f"{jid}-ok"]
    failed = _get(client, auth, "/api/v1/history/?status=finishedWithError")["results"]
    assert [item["jid"] for item in failed] == [f"{jid}-failed"]
    deleted = _get(client, auth, "/api/v1/history/?state=deleted&auid=alice")["results"]
    assert [item["jid"] for item in deleted] == [f"{jid}-ok"]
    later = (datetime.now(UTC) + timedelta(minutes=1)).isoformat()
    assert _get(client, auth, f"/api/v1/history/?since={later.replace('+', '%2B')}")["results"] == []
    assert len(_get(client, auth, "/api/v1/history/?until=2999-01-01T00:00:00Z")["results"]) == 3
    seen, url = [], "/api/v1/history/?limit=1&auid=alice"
    while url:
        page = _get(client, auth, url)
        seen += [item["jid"] for item in page["results"]]
        url = page["next"]
    assert seen == [f"{jid}-kept", f"{jid}-ok"]


def _one_job_has_its_events(client, auth, jid: str) -> None:
    job = _get(client, auth, f"/api/v1/history/{jid}-ok/")
    assert [event["state"] for event in job["events"]] == [
        "accepted",
        "queued",
        "queued",  # admitted: the admission queue's turn (docs/admission.md)
        "started",
        "finished",
        "deleted",
    ]
    assert job["events"][2]["message"].startswith("admitted:")
    assert job["events"][-1]["at"] == job["deleted"]
    _get(client, auth, "/api/v1/history/never-ran/", status=404)


@pytest.mark.parametrize(
    "query",
    ["status=done", "limit=0", "limit=501", "since=yesterday", "cursor=abc", "colour=blue", "state=gone"],
)
def test_bad_history_queries_are_400(make_app, query: str) -> None:
    client = make_app().test_client()
    answer = _get(client, login(client), f"/api/v1/history/?{query}", status=400)
    assert answer["message"]
