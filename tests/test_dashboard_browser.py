"""The dashboard in a real browser: Debian's headless Chromium driven by Playwright, against a
live gunicorn on the real Docker engine.

Chromium comes from scripts/setup.d/80-chromium.sh (Playwright never downloads a browser).
Screenshots of every step are kept under tests/artifacts/dashboard/ (or $PFCON_TEST_ARTIFACTS),
printed at the end of the test, for a person to look at.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.helpers import TERMINAL, TEST_LABEL, job_form, make_zip
from tests.live import live_pfcon

pytestmark = pytest.mark.integration
os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
playwright_api = pytest.importorskip("playwright.sync_api")

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path(os.environ.get("PFCON_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = Path(os.environ.get("PFCON_TEST_ARTIFACTS", ROOT / "tests" / "artifacts")) / "dashboard"
#: runs about five seconds (two refreshes of the list), printing as it goes, and writes one file
TICKING = "for i in $(seq 10); do echo tick $i; sleep 0.5; done; echo done > $0/result.txt"


@pytest.fixture(scope="module")
def chromium() -> Path:
    if not CHROMIUM.exists():
        subprocess.run(["bash", str(ROOT / "scripts/system-setup.sh"), "chromium"], check=False)
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (scripts/setup.d/80-chromium.sh installs it)")
    return CHROMIUM


@pytest.fixture
def browser(chromium: Path) -> Iterator:
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), args=["--no-sandbox"])
        yield browser
        browser.close()


class Shots:
    """Numbered screenshots of one test, kept as artifacts."""

    def __init__(self, name: str) -> None:
        self.folder = ARTIFACTS / name
        self.folder.mkdir(parents=True, exist_ok=True)
        for old in self.folder.glob("*.png"):
            old.unlink()
        self.count = 0

    def __call__(self, page, what: str) -> None:
        self.count += 1
        page.screenshot(path=str(self.folder / f"{self.count:02}-{what}.png"), full_page=True)


def api_session(url: str) -> requests.Session:
    session = requests.Session()
    token = session.post(url + "auth-token/", json={"pfcon_user": "pfcon", "pfcon_password": "pfcon1234"})
    session.headers["Authorization"] = f"Bearer {token.json()['token']}"
    return session


def submit_ticking(session: requests.Session, url: str, jid: str) -> None:
    form = job_form(jid, entrypoint=["sh", "-c", TICKING], args=None, type="fs")
    answer = session.post(url + "jobs/", data=form, files={"data_file": ("in.zip", make_zip({"a.txt": "a"}))})
    assert answer.status_code == 201, answer.text


def poll_like_chris(session: requests.Session, url: str, jids: list[str], stop: threading.Event) -> None:
    """Poll each job's status until it ends, as ChRIS does; pfcon records what it learns."""
    pending = set(jids)
    while pending and not stop.wait(0.5):
        for jid in list(pending):
            if session.get(url + f"jobs/{jid}/", timeout=30).json()["compute"]["status"] in TERMINAL:
                pending.discard(jid)


def log_in(page, base: str, password: str = "pfcon1234") -> None:
    page.goto(base + "dashboard/")
    assert "/dashboard/login" in page.url
    page.get_by_label("User").fill("pfcon")
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()


def test_an_operator_follows_jobs_in_the_browser(
    browser, docker_client, storebase: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    expect = playwright_api.expect
    shots = Shots("follow-jobs")
    with live_pfcon(storebase, tmp_path / "pfcon.log", {"JOB_LABELS": TEST_LABEL}) as url:
        base = url.removesuffix("api/v1/")
        page = browser.new_page(viewport={"width": 1280, "height": 800})

        log_in(page, base, password="not-it")
        expect(page.get_by_role("alert")).to_have_text("Wrong user name or password.")
        shots(page, "wrong-password")
        log_in(page, base)
        expect(page.get_by_role("heading", name="Jobs", exact=True)).to_be_visible()
        expect(page.locator("#cap-queue")).to_have_text("0 waiting to start")
        page.evaluate("window.notReloaded = true")
        shots(page, "empty-list")

        api = api_session(url)
        jids = ["browser-1", "browser-2", "browser-3"]
        for jid in jids:
            submit_ticking(api, url, jid)
        stop = threading.Event()
        poller = threading.Thread(target=poll_like_chris, args=(api, url, jids, stop), daemon=True)
        poller.start()
        try:
            row = page.locator('tr[data-jid="browser-1"]')
            expect(row).to_be_visible(timeout=10_000)
            expect(row.locator(".status")).to_have_text("started", timeout=30_000)
            shots(page, "running")
            expect(row.locator(".status")).to_have_text("finishedSuccessfully", timeout=60_000)
            assert page.evaluate("window.notReloaded") is True, "the list was reloaded, not refreshed"
            shots(page, "finished")
        finally:
            poller.join(timeout=90)  # until ChRIS's polls have seen every job end
            stop.set()
            poller.join()

        # a job page, reached by the keyboard; its log opened and read
        submit_ticking(api, url, "browser-4")
        page.reload()
        link = page.get_by_role("link", name="browser-4")
        expect(link).to_be_visible(timeout=10_000)
        link.focus()
        page.keyboard.press("Enter")
        expect(page.get_by_role("heading", name="Job browser-4")).to_be_visible()
        page.locator("#logs summary").focus()
        page.keyboard.press("Enter")  # opens the log; it follows the job live until it ends
        expect(page.locator("#logs-status")).to_contain_text("Following the log live", timeout=10_000)
        shots(page, "log-following")
        expect(page.locator("#logs-text")).to_contain_text("tick 10", timeout=30_000)
        expect(page.locator("#job-status .status")).to_have_text("finishedSuccessfully", timeout=30_000)
        expect(page.locator("#logs-status")).to_contain_text("Final log")
        expect(page.locator("#events")).to_contain_text("finishedSuccessfully")
        expect(page.locator("table.outputs")).to_be_hidden()  # listed at load, before it wrote
        page.reload()
        expect(page.locator("table.outputs")).to_contain_text("result.txt")
        expect(page.locator(".details")).to_contain_text("1 CPUs")
        shots(page, "job-page")

        # the timeline draws one bar per job, and its data downloads as JSON lines
        page.get_by_role("link", name="Timeline").click()
        bars = page.locator("svg#timeline a.bar")
        expect(bars).to_have_count(4)
        for jid in [*jids, "browser-4"]:
            expect(page.locator(f'svg#timeline a.bar[data-jid="{jid}"] rect.ok')).to_have_count(1)
        shots(page, "timeline")
        page.get_by_role("button", name="15 min").click()
        expect(bars).to_have_count(4)
        with page.expect_download() as download_info:
            page.get_by_role("link", name="Download this range as JSON lines").click()
        lines = Path(download_info.value.path()).read_text().splitlines()
        records = {json.loads(line)["jobId"]: json.loads(line) for line in lines}
        assert set(records) == {*jids, "browser-4"}
        assert all(
            r["status"] == "finishedSuccessfully" and r["jobEnd"] > r["jobStart"] for r in records.values()
        )

        page.get_by_role("button", name="Log out").click()
        expect(page.get_by_role("heading", name="Log in to pfcon")).to_be_visible()
        page.goto(base + "dashboard/timeline")
        assert "/dashboard/login" in page.url
        shots(page, "logged-out")
    with capsys.disabled():
        print(f"\nscreenshots: {shots.folder}")


def test_an_expired_session_sends_the_browser_back_to_the_login(
    browser, docker_client, storebase: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    expect = playwright_api.expect
    shots = Shots("expired-session")
    env = {"JOB_LABELS": TEST_LABEL, "PFCON_DASHBOARD_SESSION_SECONDS": "2"}
    with live_pfcon(storebase, tmp_path / "pfcon.log", env) as url:
        base = url.removesuffix("api/v1/")
        page = browser.new_page()
        log_in(page, base)
        expect(page.get_by_role("heading", name="Jobs", exact=True)).to_be_visible()
        # the page's own refresh meets the expiry and goes back to the login, saying why
        page.wait_for_url("**/dashboard/login?expired=1**", timeout=15_000)
        expect(page.get_by_role("status").first).to_have_text(
            "Your session has expired; please log in again."
        )
        shots(page, "expired")
        assert requests.get(base + "dashboard/api/jobs", timeout=10).status_code == 401
    with capsys.disabled():
        print(f"\nscreenshots: {shots.folder}")
