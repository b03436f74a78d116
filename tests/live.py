"""A real pfcon (gunicorn, threaded workers) in a subprocess on a free loopback port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent


class LiveUrl(str):
    """The service's base URL, also carrying the gunicorn master's process id."""

    master_pid: int

    def worker_pids(self) -> list[int]:
        """The master's children (the gunicorn workers), from /proc."""
        children = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == self.master_pid:
                children.append(int(stat.parent.name))
        return sorted(children)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def live_pfcon(
    storebase: Path,
    log_path: Path,
    env: Mapping[str, str] | None = None,
    command: Sequence[str] = ("-m", "pfcon"),
) -> Iterator[LiveUrl]:
    """Yield the base URL (``http://127.0.0.1:PORT/api/v1/``) of a pfcon started by ``python COMMAND``."""
    port = free_port()
    environment = {
        **os.environ,
        "APPLICATION_MODE": "development",
        "STOREBASE": str(storebase),
        "PFCON_BIND": f"127.0.0.1:{port}",
        **(env or {}),
    }
    command = [sys.executable, *command]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, env=environment, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    url = LiveUrl(f"http://127.0.0.1:{port}/api/v1/")
    url.master_pid = process.pid
    try:
        _wait_healthy(url, process, log_path)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _wait_healthy(url: str, process: subprocess.Popen, log_path: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"pfcon exited with {process.returncode}: {log_path.read_text()[-2000:]}")
        try:
            if requests.get(url + "health/", timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"pfcon did not become healthy: {log_path.read_text()[-2000:]}")
