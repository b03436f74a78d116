"""Helpers for tests that drive the Flask app."""

from __future__ import annotations

import io

from tests.helpers import TERMINAL, job_form, make_zip, wait_for


def login(client) -> dict[str, str]:
    answer = client.post("/api/v1/auth-token/", json={"pfcon_user": "pfcon", "pfcon_password": "pfcon1234"})
    assert answer.status_code == 200, answer.get_json()
    return {"Authorization": f"Bearer {answer.get_json()['token']}"}


def submit(client, auth, form, files=None):
    data = dict(form)
    if files is not None:
        data["data_file"] = (io.BytesIO(make_zip(files)), "input.zip")
    return client.post("/api/v1/jobs/", data=data, headers=auth, content_type="multipart/form-data")


def status_of(client, auth, jid: str) -> str:
    return client.get(f"/api/v1/jobs/{jid}/", headers=auth).get_json()["compute"]["status"]


def wait_started(client, auth, jid: str, timeout: float = 30) -> None:
    wait_for(lambda: status_of(client, auth, jid) == "started", timeout=timeout)


def wait_terminal(client, auth, jid: str, timeout: float = 60) -> dict:
    def poll():
        answer = client.get(f"/api/v1/jobs/{jid}/", headers=auth)
        body = answer.get_json()
        assert answer.status_code == 200, (answer.status_code, body)
        return body if body["compute"]["status"] in TERMINAL else None

    return wait_for(poll, timeout=timeout)


def submit_ticking_job(client, auth, jid: str, storebase, timeout: float = 60) -> None:
    """Submit a job that writes into its output until stopped, and wait until it does."""
    script = "while :; do date >> /share/outgoing/tick; sleep 0.1; done"
    form = job_form(jid, entrypoint=["sh"], args=["-c", script], type="fs")
    assert submit(client, auth, form, {"a": "1"}).status_code == 201
    wait_for(lambda: (storebase / f"key-{jid}/outgoing/tick").exists(), timeout=timeout)
    wait_started(client, auth, jid, timeout)  # recorded as started: a DELETE is not racing the start
