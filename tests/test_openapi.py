"""The API description: current in docs/, complete, and true of a live pfcon (schemathesis).

The fuzz runs against real gunicorn on the real Docker engine with zipfile storage: every
operation of the document, with a token (and a dashboard session) and without, checked for
no 5xx and answers (status, content type, body) the document allows. Job submissions name
images the engine does not have (a 400: pfcon never pulls during a request), so the fuzz starts
no container; the known-good flows at the end submit real jobs (zipfile through both APIs, and
in-network filesystem) and check those answers too.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from openapi_spec_validator import validate
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from pfcon.api.openapi import ROUTES, document, document_text
from pfcon.api.schemas import LIST_FIELDS
from tests import test_dashboard_browser as in_chromium
from tests.helpers import RUN_ID, TERMINAL, TEST_LABEL, job_form, make_zip, wait_for
from tests.live import live_pfcon

ROOT = Path(__file__).resolve().parent.parent
CHECKED_IN = ROOT / "docs" / "openapi.json"
FORMS = ("application/x-www-form-urlencoded", "multipart/form-data")
#: without credentials, auth comes first (401, or the dashboard's redirect), whatever the input
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
chromium, browser = in_chromium.chromium, in_chromium.browser  # their fixtures: Debian's Chromium
#: per operation and credential: the whole fuzz stays well under 90 s (raise it for a deeper run)
EXAMPLES = int(os.environ.get("PFCON_FUZZ_EXAMPLES", "8"))


def test_checked_in_document_is_current() -> None:
    assert CHECKED_IN.read_text(encoding="utf-8") == document_text(), (
        "docs/openapi.json is out of date: run `pfcon openapi --output docs/openapi.json`"
    )


@pytest.mark.integration
def test_every_route_is_described(app) -> None:
    served = {
        (method, re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule))
        for rule in app.url_map.iter_rules()
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    described = {(route.method, route.path) for route in ROUTES}
    assert served == described


def test_document_is_openapi_31() -> None:
    doc = json.loads(document_text())  # as served and checked in
    assert doc["openapi"] == "3.1.0"
    validate(doc)  # against OpenAPI 3.1's own schema
    tags = {op["tags"][0] for path in doc["paths"].values() for op in path.values()}
    assert tags == {"classic", "pfcon6", "history", "operations", "dashboard"}


# -- the fuzz -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def live(docker_client, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("openapi")
    (tmp / "storeBase").mkdir()
    env = {"JOB_LABELS": TEST_LABEL, "PFCON_METRICS": "token"}
    with live_pfcon(tmp / "storeBase", tmp / "pfcon.log", env) as url:
        yield url.removesuffix("/api/v1/")


@pytest.fixture(scope="module")
def credentials(live: str) -> dict[str, dict[str, dict[str, str]]]:
    """Per mode, the headers and cookies a client sends: a token and a dashboard session, or none."""
    login = {"pfcon_user": "pfcon", "pfcon_password": "pfcon1234"}
    token = requests.post(f"{live}/api/v1/auth-token/", json=login, timeout=10).json()["token"]
    board = requests.Session()
    form = board.get(f"{live}/dashboard/login", timeout=10).text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)
    answer = board.post(
        f"{live}/dashboard/login",
        data={"username": "pfcon", "password": "pfcon1234", "csrf_token": csrf, "next": "/dashboard/"},
        allow_redirects=False,
        timeout=10,
    )
    assert answer.status_code == 302, answer.text
    return {
        "with": {"headers": {"Authorization": f"Bearer {token}"}, "cookies": board.cookies.get_dict()},
        "without": {"headers": {}, "cookies": {}},
    }


#: the document is built from the code, so it is loaded at collection; each call names the live URL
fuzzed = schemathesis.openapi.from_dict(document())


FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)


@schemathesis.check
def rejects_negative_data(ctx, response, case) -> bool | None:
    """schemathesis' negative_data_rejection, less one case no server can tell (a form's lone
    value for a list field and a list of one are the same on the wire: one part, which
    schemathesis reads back as a lone value, never valid for a list), and with gunicorn's 414
    a refusal too."""
    if response.status_code == 414:
        return None
    body = case.body if case.media_type in FORMS and isinstance(case.body, dict) else {}
    if any(not isinstance(value := body.get(name, []), list) or len(value) == 1 for name in LIST_FIELDS):
        return None
    return negative_data_rejection(ctx, response, case)


def _call(case, base_url: str, sent: dict[str, dict[str, str]], checks: list) -> None:
    case.headers = {**(case.headers or {}), **sent["headers"]}
    case.cookies = {**(case.cookies or {}), **sent["cookies"]}
    case.call_and_validate(base_url=base_url, checks=checks, timeout=30, allow_redirects=False)


@pytest.mark.integration
@fuzzed.parametrize()
@FUZZ_SETTINGS
def test_fuzz_with_credentials(case, live: str, credentials) -> None:
    _call(case, live, credentials["with"], [*CHECKS, rejects_negative_data])


@pytest.mark.integration
@fuzzed.parametrize()
@FUZZ_SETTINGS
def test_fuzz_without_credentials(case, live: str, credentials) -> None:
    _call(case, live, credentials["without"], CHECKS)


def _validated(base_url: str, sent: dict, method: str, path: str, **case_args):
    """Call one operation with the given input and check the answer against the document."""
    operation = fuzzed[path][method]
    case = operation.Case(**case_args)
    case.headers = {**(case.headers or {}), **sent["headers"]}
    case.cookies = sent["cookies"]
    return case.call_and_validate(base_url=base_url, checks=CHECKS, timeout=60, allow_redirects=False)


@pytest.mark.integration
def test_real_jobs_answer_as_documented(live: str, credentials) -> None:
    """The answers the fuzz rarely reaches (a job accepted, run, listed, zipped, deleted), through
    both APIs, each checked against the document."""
    sent = credentials["with"]

    def call(method: str, path: str, **args):
        return _validated(live, sent, method, path, **args)

    upload = make_zip({"in.txt": "hello"})
    for api, submit_path in (("classic", "/api/v1/jobs/"), ("pfcon6", "/api/v1/pluginjobs/")):
        jid = f"oa-{api}-{RUN_ID}"
        base = submit_path + "{jid}/"
        if api == "pfcon6":
            call("POST", "/api/v1/copyjobs/", body={"jid": jid, "output_dir": "out"}, media_type=FORMS[0])
        form = {**job_form(jid), "data_file": upload}
        assert call("POST", submit_path, body=form, media_type=FORMS[1]).status_code == 201
        wait_for(
            lambda jid=jid, base=base: (
                call("GET", base, path_parameters={"jid": jid}).json()["compute"]["status"] in TERMINAL
            )
        )
        output = call("GET", base + "file/", path_parameters={"jid": jid})
        assert output.status_code == 200 and output.content.startswith(b"PK")  # the zip
        assert call("GET", "/api/v1/history/{jid}/", path_parameters={"jid": jid}).status_code == 200
        if api == "pfcon6":
            for kind in ("uploadjobs", "deletejobs"):
                form = {"jid": jid, "job_output_path": "out"} if kind == "uploadjobs" else {"jid": jid}
                call("POST", f"/api/v1/{kind}/", body=form, media_type=FORMS[0])
                call("GET", f"/api/v1/{kind}/{{jid}}/", path_parameters={"jid": jid})
                call("DELETE", f"/api/v1/{kind}/{{jid}}/", path_parameters={"jid": jid})
        assert call("DELETE", base, path_parameters={"jid": jid}).status_code == 204
    page = call("GET", "/api/v1/history/", query={"limit": 1})
    assert page.json()["results"] and page.json()["next"]
    assert call("GET", "/metrics").status_code == 200
    assert call("GET", "/dashboard/api/jobs").json()["items"]


@pytest.mark.integration
def test_the_reference_page_works_offline_in_a_browser(live: str, browser) -> None:
    """Chromium shows every operation and runs one, asking nothing of any other host."""
    elsewhere: list[str] = []
    problems: list[str] = []
    page = browser.new_page()
    page.on("request", lambda sent: None if sent.url.startswith(live) else elsewhere.append(sent.url))
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.goto(f"{live}/api/v1/docs/")
    page.wait_for_selector(".opblock-summary")
    assert page.locator(".opblock").count() == len(ROUTES)
    health = page.locator("#operations-operations-getHealth")
    health.locator(".opblock-summary").click()
    health.locator(".try-out__btn").click()
    health.locator(".execute").click()
    status = health.locator(".live-responses-table tbody .response-col_status").first
    status.wait_for()
    assert status.inner_text().strip() == "200"
    in_chromium.ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(in_chromium.ARTIFACTS / "openapi-reference.png"))
    assert not elsewhere, elsewhere
    assert not problems, problems


@pytest.mark.integration
def test_in_network_answers_as_documented(docker_client, tmp_path: Path) -> None:
    """In-network storage answers its own shapes (server info, the output listing): filesystem."""
    storebase = tmp_path / "storeBase"
    (storebase / "home/me/in").mkdir(parents=True)
    (storebase / "home/me/in/a.txt").write_text("a")
    env = {"JOB_LABELS": TEST_LABEL, "PFCON_INNETWORK": "true", "STORAGE_ENV": "filesystem"}
    with live_pfcon(storebase, tmp_path / "pfcon.log", env) as url:
        base = url.removesuffix("/api/v1/")
        login = {"pfcon_user": "pfcon", "pfcon_password": "pfcon1234"}
        token = requests.post(f"{url}auth-token/", json=login, timeout=10).json()["token"]
        sent = {"headers": {"Authorization": f"Bearer {token}"}, "cookies": {}}
        jid = f"oa-fs-{RUN_ID}"
        form = job_form(jid, input_dirs=["home/me/in"], output_dir="home/me/out")
        for info in ("/api/v1/jobs/", "/api/v1/pluginjobs/"):
            assert _validated(base, sent, "GET", info).json()["pfcon_innetwork"] is True
        _validated(base, sent, "POST", "/api/v1/jobs/", body=form, media_type=FORMS[0])
        status = "/api/v1/jobs/{jid}/"
        wait_for(
            lambda: (
                _validated(base, sent, "GET", status, path_parameters={"jid": jid}).json()["compute"][
                    "status"
                ]
                in TERMINAL
            )
        )
        listing = _validated(
            base,
            sent,
            "GET",
            status + "file/",
            path_parameters={"jid": jid},
            query={"job_output_path": "home/me/out"},
        )
        assert listing.json()["rel_file_paths"]
        _validated(base, sent, "DELETE", status, path_parameters={"jid": jid})
