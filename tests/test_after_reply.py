"""The scheduler's wake-up after a submit waits for the answer to be sent (pfcon.api.afterreply)."""

from __future__ import annotations

from flask import Flask

from pfcon.api.afterreply import SERVER_CLOSES_ANSWERS, after_reply

#: what gunicorn puts in every request's environ (the value is its socket; never used here)
UNDER_GUNICORN = {SERVER_CLOSES_ANSWERS: object()}


def _app(done: list[str], fail: bool = False) -> Flask:
    app = Flask("after-reply-test")

    @app.post("/")
    def submit() -> tuple[str, int]:
        after_reply(lambda: done.append("woken"))
        if fail:
            raise RuntimeError("the answer failed after the job was queued")
        return "queued", 201

    return app


def test_under_gunicorn_the_work_runs_once_the_answer_is_closed() -> None:
    done: list[str] = []
    answer = _app(done).test_client().post("/", environ_base=UNDER_GUNICORN)
    assert (answer.status_code, answer.text, done) == (201, "queued", [])
    answer.close()  # what gunicorn does once it has written the last byte
    assert done == ["woken"]


def test_an_error_answer_still_runs_the_work() -> None:
    done: list[str] = []
    answer = _app(done, fail=True).test_client().post("/", environ_base=UNDER_GUNICORN)
    assert answer.status_code == 500 and done == []
    answer.close()
    assert done == ["woken"]


def test_a_server_that_may_not_close_the_answer_runs_the_work_at_once() -> None:
    done: list[str] = []
    answer = _app(done).test_client().post("/")  # the test client leaves the close to its caller
    assert answer.status_code == 201 and done == ["woken"]


def test_outside_a_request_the_work_runs_at_once() -> None:
    done: list[str] = []
    after_reply(lambda: done.append("woken"))
    assert done == ["woken"]
