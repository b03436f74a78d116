"""Slow clients against live gunicorn: they cannot delay health or status, and are dropped.

Forty connections that sent their headers and then trickled a body one byte at a time once
held every gthread thread and left ``GET health/`` unanswered for two minutes.
"""

from __future__ import annotations

import os
import select
import socket
import statistics
import threading
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from urllib.parse import urlsplit

import pytest
import requests

from tests.helpers import job_form, make_zip
from tests.live import live_pfcon

pytestmark = pytest.mark.integration

LOGIN = {"pfcon_user": "pfcon", "pfcon_password": "pfcon1234"}


def _connect(url: str) -> socket.socket:
    parts = urlsplit(url)
    return socket.create_connection((parts.hostname, parts.port), timeout=30)


def _request_head(path: str, headers: dict[str, str]) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: pfcon", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _token(url: str) -> str:
    return requests.post(url + "auth-token/", json=LOGIN, timeout=10).json()["token"]


@contextmanager
def _tricklers(url: str, token: str, count: int, every: float) -> Iterator[list[socket.socket]]:
    """``count`` connections sending headers then one body byte every ``every`` seconds."""
    socks = []
    for number in range(count):
        sock = _connect(url)
        if number % 2:
            head = _request_head(
                "/api/v1/auth-token/", {"Content-Type": "application/json", "Content-Length": "4000"}
            )
        else:
            head = _request_head(
                "/api/v1/jobs/",
                {
                    "Authorization": f"Bearer {token}",
                    "Content-Type": "multipart/form-data; boundary=b0",
                    "Content-Length": "1000000",
                },
            )
        sock.sendall(head)
        socks.append(sock)
    stop = threading.Event()

    def trickle() -> None:
        while not stop.wait(every):
            for sock in socks:
                with suppress(OSError):
                    sock.send(b"-")

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    try:
        yield socks
    finally:
        stop.set()
        thread.join()
        for sock in socks:
            sock.close()


def _latencies(url: str, token: str, jid: str, seconds: float) -> tuple[list[float], list[float]]:
    health, status = [], []
    auth = {"Authorization": f"Bearer {token}"}
    deadline = time.monotonic() + seconds
    with requests.Session() as session:
        while time.monotonic() < deadline:
            started = time.monotonic()
            assert session.get(url + "health/", timeout=30).status_code == 200
            health.append(time.monotonic() - started)
            started = time.monotonic()
            assert session.get(url + f"jobs/{jid}/", headers=auth, timeout=30).status_code == 200
            status.append(time.monotonic() - started)
            time.sleep(0.05)
    return health, status


def _p95(values: list[float]) -> float:
    return sorted(values)[int(0.95 * (len(values) - 1))]


def test_forty_trickling_bodies_do_not_delay_health_or_status(tmp_path, docker_client, jid) -> None:
    storebase = tmp_path / "sb"
    storebase.mkdir()
    env = {"PFCON_CLIENT_TIMEOUT": "120"}  # trickles stay open the whole test: the slots must hold
    with live_pfcon(storebase, tmp_path / "log", env) as url:
        token = _token(url)
        form = job_form(jid, args=["--prefix", "x-"])
        files = {"data_file": ("in.zip", make_zip({"a.txt": "1"}))}
        reply = requests.post(
            url + "jobs/", data=form, files=files, headers={"Authorization": f"Bearer {token}"}, timeout=30
        )
        assert reply.status_code == 201, reply.text
        quiet_health, quiet_status = _latencies(url, token, jid, 2)
        with _tricklers(url, token, 40, every=0.5):
            time.sleep(1)  # all forty are in
            health, status = _latencies(url, token, jid, 8)
        usual = max(statistics.median(quiet_health + quiet_status), 0.02)
        assert len(health) >= 5  # (without the guards, the first poll waits for minutes)
        assert _p95(health) < max(20 * usual, 1.0), (health, usual)  # floor: a loaded CI machine
        assert _p95(status) < max(20 * usual, 1.0), (status, usual)
        requests.delete(url + f"jobs/{jid}/", headers={"Authorization": f"Bearer {token}"}, timeout=30)
        deadline = time.monotonic() + 20
        while list((storebase / ".pfcon-uploads").iterdir()) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert list((storebase / ".pfcon-uploads").iterdir()) == []


def _answer(sock: socket.socket, timeout: float) -> tuple[bytes, float]:
    """What the server sends until it closes, and when it closed."""
    sock.settimeout(timeout)
    started, received = time.monotonic(), b""
    with suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            received += chunk
    return received, time.monotonic() - started


def _trickle_until_answered(sock: socket.socket, every: float, limit: float) -> float:
    """Send a byte every ``every`` seconds until the server answers or closes; seconds taken."""
    started = time.monotonic()
    readable = select.poll()  # not select(): a long test session's descriptors pass FD_SETSIZE
    readable.register(sock, select.POLLIN)
    with suppress(OSError):
        while time.monotonic() - started < limit:
            if readable.poll(every * 1000):
                break
            sock.send(b" ")
    return time.monotonic() - started


def test_a_stalled_upload_is_dropped_after_the_idle_time(tmp_path, docker_client, jid) -> None:
    storebase = tmp_path / "sb"
    storebase.mkdir()
    env = {"PFCON_CLIENT_TIMEOUT": "2", "PFCON_HEADER_TIMEOUT": "2"}
    with live_pfcon(storebase, tmp_path / "log", env) as url:
        token = _token(url)
        part = (
            b'--b0\r\nContent-Disposition: form-data; name="data_file"; filename="in.zip"\r\n\r\n'
            + make_zip({"big.bin": os.urandom(3 << 20)}, zipfile.ZIP_STORED)[: 3 << 19]
        )  # 1.5 MiB: more than one read of the parser, so extraction has begun
        head = _request_head(
            "/api/v1/jobs/",
            {
                "Authorization": f"Bearer {token}",
                "Content-Type": "multipart/form-data; boundary=b0",
                "Content-Length": str(4 << 20),
            },
        )
        stalled = _connect(url)
        stalled.sendall(head + part)  # then nothing
        deadline = time.monotonic() + 5
        while not list((storebase / ".pfcon-uploads").iterdir()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert list((storebase / ".pfcon-uploads").iterdir()), "the upload was being extracted"
        answer, waited = _answer(stalled, 15)
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        assert 1.5 < waited < 8
        assert list((storebase / ".pfcon-uploads").iterdir()) == []

        slow_headers = _connect(url)
        slow_headers.sendall(b"GET /api/v1/health/ HTTP/1.1\r\nX-Slow: ")
        waited = _trickle_until_answered(slow_headers, 0.25, 10)
        answer, _ = _answer(slow_headers, 10)
        assert waited < 6 and answer == b"", answer[:200]  # closed at the header deadline

        trickle = _connect(url)
        trickle.sendall(
            _request_head(
                "/api/v1/auth-token/", {"Content-Type": "application/json", "Content-Length": "4000"}
            )
        )
        waited = _trickle_until_answered(trickle, 0.1, 10)  # 10 bytes/s: under 1 KiB/s
        answer, _ = _answer(trickle, 10)
        assert answer.startswith(b"HTTP/1.1 408") and waited < 6, answer[:200]
        assert requests.get(url + "health/", timeout=5).status_code == 200
