"""The dashboard over HTTP (Flask's test client): its login, its guards and its data.

The browser tests (tests/test_dashboard_browser.py) drive the same pages in Chromium.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from pfcon.store import NewJob
from tests.api_helpers import login, submit, wait_terminal
from tests.helpers import job_form

pytestmark = pytest.mark.integration


def form_token(client, path: str = "/dashboard/login") -> str:
    page = client.get(path)
    return re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)


def log_in(client, password: str = "pfcon1234"):
    token = form_token(client)
    return client.post(
        "/dashboard/login",
        data={"csrf_token": token, "username": "pfcon", "password": password, "next": "/dashboard/"},
    )


def test_pages_and_data_need_a_login(make_app) -> None:
    client = make_app().test_client()
    page = client.get("/dashboard/timeline")
    assert page.status_code == 302 and page.headers["Location"].startswith("/dashboard/login?next=")
    assert client.get("/dashboard/api/jobs").status_code == 401
    style = client.get("/dashboard/static/dashboard.css")  # the login page's: served to anyone
    assert style.status_code == 200 and "max-age=604800" in style.headers["Cache-Control"]


def test_login_issues_a_strict_httponly_cookie_and_wrong_passwords_are_refused(make_app) -> None:
    client = make_app().test_client()
    wrong = log_in(client, password="wrong")
    assert wrong.status_code == 401 and "Wrong user name or password" in wrong.text
    assert client.get("/dashboard/api/jobs").status_code == 401
    right = log_in(client)
    assert right.status_code == 302 and right.headers["Location"] == "/dashboard/"
    cookie = right.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/dashboard" in cookie
    assert "token" not in right.headers["Location"]
    page = client.get("/dashboard/")
    assert page.status_code == 200 and "<h1>Jobs</h1>" in page.text
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert page.headers["Cache-Control"] == "no-store"


def test_forms_without_our_token_or_from_another_origin_are_refused(make_app) -> None:
    client = make_app().test_client()
    token = form_token(client)
    credentials = {"username": "pfcon", "password": "pfcon1234", "next": "/dashboard/"}
    assert client.post("/dashboard/login", data=credentials).status_code == 403
    assert client.post("/dashboard/login", data={**credentials, "csrf_token": "forged"}).status_code == 403
    other_site = client.post(
        "/dashboard/login",
        data={**credentials, "csrf_token": token},
        headers={"Origin": "https://evil.example"},
    )
    assert other_site.status_code == 403
    assert client.get("/dashboard/api/jobs").status_code == 401
    # a logged-in session cannot be logged out by a forged form either
    assert log_in(client).status_code == 302
    assert client.post("/dashboard/logout", data={"csrf_token": "forged"}).status_code == 403
    assert client.get("/dashboard/api/jobs").status_code == 200
    logout = client.post("/dashboard/logout", data={"csrf_token": form_token(client, "/dashboard/")})
    assert logout.status_code == 302
    assert client.get("/dashboard/api/jobs").status_code == 401


def test_an_expired_session_is_refused(make_app) -> None:
    client = make_app(PFCON_DASHBOARD_SESSION_SECONDS=1).test_client()
    assert log_in(client).status_code == 302
    assert client.get("/dashboard/api/jobs").status_code == 200
    time.sleep(1.2)
    refused = client.get("/dashboard/api/jobs")
    assert refused.status_code == 401 and "expired" in refused.get_json()["message"]
    page = client.get("/dashboard/")
    assert page.status_code == 302 and "expired=1" in page.headers["Location"]
    assert "session has expired" in client.get(page.headers["Location"]).text


def test_login_goes_back_only_to_dashboard_pages(make_app) -> None:
    client = make_app().test_client()
    for target, lands in [
        ("/dashboard/timeline", "/dashboard/timeline"),
        ("https://evil.example/", "/dashboard/"),
        ("//evil.example/dashboard/", "/dashboard/"),
    ]:
        token = form_token(client)
        data = {"csrf_token": token, "username": "pfcon", "password": "pfcon1234", "next": target}
        assert client.post("/dashboard/login", data=data).headers["Location"] == lands


def test_the_list_pages_filters_and_the_timeline_download(make_app, storebase: Path) -> None:
    app = make_app()
    app.extensions["pfcon"].starter.pause()  # these rows have no spec to start: the test moves them
    store = app.extensions["pfcon"].store
    for n in range(120):
        row = store.accept(
            NewJob(f"h-{n:03}", image=f"img-{n % 3}", auid=f"user-{n % 2}", cpu_millicores=1000)
        )
        store.queue(row.id, None)
        store.mark_started(row.id)
        if n == 7:
            store.mark_finished(row.id, "finishedWithError", "exit 1", exit_code=1)
    client = app.test_client()
    log_in(client)
    first = client.get("/dashboard/api/jobs").get_json()
    assert [job["jid"] for job in first["items"][:2]] == ["h-119", "h-118"] and len(first["items"]) == 50
    second = client.get("/dashboard/api/jobs", query_string={"cursor": first["next"]}).get_json()
    assert second["items"][0]["jid"] == "h-069"
    page = client.get("/dashboard/", query_string={"cursor": first["next"]})
    assert "h-069" in page.text and "h-119" not in page.text and "First page" in page.text
    failed = client.get("/dashboard/api/jobs", query_string={"status": "finishedWithError"}).get_json()
    assert [job["jid"] for job in failed["items"]] == ["h-007"]
    mine = client.get("/dashboard/api/jobs", query_string={"auid": "user-1", "q": "img-2", "limit": 200})
    assert {job["jid"] for job in mine.get_json()["items"]} == {f"h-{n:03}" for n in range(120) if n % 6 == 5}
    assert client.get("/dashboard/api/jobs", query_string={"q": "h_0"}).get_json()["items"] == []  # literal _
    assert client.get("/dashboard/api/jobs", query_string={"status": "bogus"}).status_code == 400
    assert client.get("/dashboard/api/jobs", query_string={"cursor": "bogus"}).status_code == 400

    download = client.get("/dashboard/timeline.jsonl")  # the last hour
    assert download.headers["Content-Disposition"].startswith("attachment;")
    records = [json.loads(line) for line in download.text.splitlines()]
    assert [r["jobId"] for r in records] == [f"h-{n:03}" for n in range(120)]  # oldest first
    failed_record = records[7]
    assert failed_record["jobEnd"] >= failed_record["jobStart"] >= failed_record["queueStart"]
    assert {k: failed_record[k] for k in ("workflowId", "name", "api", "status", "cpuMillicores")} == {
        "workflowId": "user-1", "name": "img-1", "api": "classic", "status": "finishedWithError",
        "cpuMillicores": 1000,
    }  # fmt: skip
    assert records[8]["jobEnd"] is None  # still running
    before = time.time() - 3600  # an hour before any of them was accepted
    empty = client.get("/dashboard/timeline.jsonl", query_string={"since": before - 60, "until": before})
    assert empty.text == ""


def test_a_real_job_from_submit_to_its_page(make_app, storebase: Path) -> None:
    app = make_app()
    client = app.test_client()
    auth = login(client)
    assert (
        submit(client, auth, job_form("dash-1"), files={"a.txt": "hello", "sub/b.txt": "x"}).status_code
        == 201
    )
    wait_terminal(client, auth, "dash-1")
    (storebase / "key-dash-1/outgoing/odd \udcff name").write_bytes(b"z")  # not UTF-8: still listed
    log_in(client)
    page = client.get("/dashboard/jobs/dash-1")
    assert page.status_code == 200
    for text in ("finishedSuccessfully", "Staged files</dt><dd>2", "out-a.txt", "odd \u00ff name"):
        assert text in page.text
    detail = client.get("/dashboard/api/jobs/dash-1").get_json()
    assert [e["label"] for e in detail["events"]] == [
        "accepted",
        "queued",
        "admitted",
        "started",
        "finishedSuccessfully",
    ]
    logs = client.get("/dashboard/api/jobs/dash-1/logs").get_json()
    assert logs["status"] == "finishedSuccessfully"
    assert client.get("/dashboard/jobs/never").status_code == 404


def test_out_of_range_windows_and_impossible_jids_are_400s(make_app) -> None:
    """Found by the fuzz (tests/test_openapi.py): these were a 500 and a 503."""
    client = make_app().test_client()
    log_in(client)
    windows = ({"until": "-3.7e16"}, {"since": "1", "until": "1e300"}, {"until": "inf"}, {"until": "nan"})
    for window in windows:
        for path in ("/dashboard/api/timeline", "/dashboard/timeline.jsonl"):
            answer = client.get(path, query_string=window)
            assert answer.status_code == 400, (path, window, answer.text)
    logs = client.get("/dashboard/api/jobs/%C2%84/logs")
    assert logs.status_code == 400 and "jid" in logs.get_json()["message"]
