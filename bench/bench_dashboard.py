"""Benchmark of the dashboard over 10 000 history records; prints figures, asserts nothing.

What it measures (target: the first page of the job list rendered in under 300 ms):

1. ``GET /dashboard/`` (the first page of 50, rendered by the server), a filtered and searched
   page, and a page deep in the cursor chain: median and p95 of 30 requests each, beside a
   static asset of the same server (the floor: what any answer costs here);
2. the same first page in headless Chromium (Debian's, driven by Playwright): navigation start
   to DOMContentLoaded and to load, median of 10, beside the tiny login page;
3. ``GET /metrics`` with the state gauges read from the 10 000 records.

It starts its own ``pfcon serve`` on a free port with a fresh STOREBASE under /var/tmp (a real
dockerd must answer: the service checks it at start), fills the history with 10 000 jobs, and
removes everything at the end. Run it from the repository root with::

    .venv/bin/python bench/bench_dashboard.py
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pfcon.settings import load_settings  # noqa: E402
from pfcon.store import JobStore, NewJob, open_store, prepare  # noqa: E402

RECORDS = 10_000
ROUNDS = 30
BROWSER_ROUNDS = 10
TARGET_MS = 300.0
CHROMIUM = os.environ.get("PFCON_CHROMIUM", "/usr/bin/chromium")
STATUSES = ("finishedSuccessfully", "finishedSuccessfully", "finishedSuccessfully", "finishedWithError")


def fill(store: JobStore, count: int) -> None:
    """``count`` jobs, most finished (one in four with an error), the newest five still running."""
    for n in range(count):
        jid = f"bench-{n:05}"
        image, user, cpu = f"fnndsc/pl-app{n % 7}:1.0", f"user{n % 13}", 1000 * (1 + n % 4)
        row = store.accept(NewJob(jid, image=image, auid=user, cmd="app", cpu_millicores=cpu, memory_mib=512))
        store.mark_started(row.id)
        if n < count - 5:
            store.mark_finished(row.id, STATUSES[n % 4], "exited")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def timed(call: Callable[[], object], rounds: int) -> list[float]:
    times = []
    for _ in range(rounds):
        began = time.perf_counter()
        call()
        times.append((time.perf_counter() - began) * 1000)
    return times


def summary(times: list[float]) -> str:
    ordered = sorted(times)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return f"median {statistics.median(times):7.1f} ms   p95 {p95:7.1f} ms"


def dashboard_session(base: str) -> requests.Session:
    session = requests.Session()
    form = session.get(base + "/dashboard/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)
    answer = session.post(
        base + "/dashboard/login",
        data={"csrf_token": token, "username": "pfcon", "password": "pfcon1234", "next": "/dashboard/"},
        allow_redirects=False,
    )
    assert answer.status_code == 302, answer.text
    return session


def browser_figures(base: str, cookies: requests.cookies.RequestsCookieJar) -> None:
    os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        print("browser: playwright is not installed (pip install -e '.[test]')")
        return
    if not Path(CHROMIUM).exists():
        print(f"browser: no Chromium at {CHROMIUM} (scripts/setup.d/80-chromium.sh)")
        return
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        context = browser.new_context()
        host = base.split("//", 1)[1].split(":")[0]
        context.add_cookies(
            [{"name": c.name, "value": c.value, "domain": host, "path": c.path} for c in cookies]
        )
        page = context.new_page()

        def navigation(path: str) -> tuple[float, float]:
            page.goto(base + path)
            entry = page.evaluate("performance.getEntriesByType('navigation')[0].toJSON()")
            return entry["domContentLoadedEventEnd"], entry["loadEventEnd"]

        navigation("/dashboard/")  # warm the browser's cache of the static assets
        for label, path in (
            ("first page of 10 000", "/dashboard/"),
            ("login page (reference)", "/dashboard/login"),
        ):
            figures = [navigation(path) for _ in range(BROWSER_ROUNDS)]
            ready = statistics.median(f[0] for f in figures)
            loaded = statistics.median(f[1] for f in figures)
            verdict = "" if "reference" in label else ("PASS" if loaded < TARGET_MS else "MISS")
            print(f"browser  {label:28} DOMContentLoaded {ready:6.1f} ms   load {loaded:6.1f} ms  {verdict}")
        browser.close()


def main() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="pfcon-bench-dashboard-", dir="/var/tmp"))
    storebase = workdir / "storeBase"
    storebase.mkdir()
    settings = load_settings({"APPLICATION_MODE": "development", "STOREBASE": str(storebase)})
    prepare(settings)
    store = open_store(settings)
    began = time.perf_counter()
    fill(store, RECORDS)
    store.close()
    print(f"job store: {RECORDS} jobs written in {time.perf_counter() - began:.1f} s")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "APPLICATION_MODE": "development",
        "STOREBASE": str(storebase),
        "PFCON_BIND": f"127.0.0.1:{port}",
        "PFCON_METRICS": "open",
    }
    log = (workdir / "pfcon.log").open("wb")
    service = subprocess.Popen(
        [sys.executable, "-m", "pfcon"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(base + "/api/v1/health/", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("pfcon did not start:\n" + (workdir / "pfcon.log").read_text()[-3000:])
            time.sleep(0.2)
        session = dashboard_session(base)
        first = session.get(base + "/dashboard/")
        assert first.status_code == 200 and first.text.count("<tr data-jid=") == 50
        cursor = None
        for _ in range(100):  # 100 pages in: a cursor 5 000 records deep
            page = session.get(
                base + "/dashboard/api/jobs", params={"cursor": cursor} if cursor else {}
            ).json()
            cursor = page["next"]
        cases = {
            "static asset (reference)": lambda: session.get(base + "/dashboard/static/dashboard.css"),
            "first page of 10 000": lambda: session.get(base + "/dashboard/"),
            "filtered and searched": lambda: session.get(
                base + "/dashboard/", params={"status": "finishedWithError", "q": "app3"}
            ),
            "page 101 (cursor)": lambda: session.get(base + "/dashboard/", params={"cursor": cursor}),
            "JSON refresh of page 1": lambda: session.get(base + "/dashboard/api/jobs"),
            "GET /metrics": lambda: requests.get(base + "/metrics"),
        }
        for label, call in cases.items():
            times = timed(call, ROUNDS)
            verdict = (
                ""
                if "reference" in label or "metrics" in label
                else ("PASS" if statistics.median(times) < TARGET_MS else "MISS")
            )
            print(f"server   {label:28} {summary(times)}  {verdict}")
        browser_figures(base, session.cookies)
    finally:
        os.killpg(service.pid, signal.SIGTERM)
        service.wait(timeout=30)
        log.close()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
