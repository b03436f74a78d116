"""Engines of the tests' own, which failure tests may stop and restart at will.

Stopping the shared dockerd would kill every other test's containers (and anything else on
the machine), so the fault tests run a second dockerd with its own data root, exec root,
socket and bridge, and a second Podman API service on its own socket. Both are real.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from tests.helpers import TEST_LABEL

ROOT = Path(__file__).resolve().parent.parent
STATE = Path(os.environ.get("PFCON_FAULTS_DIR", "/var/lib/pfcon-faults"))
RUN = Path("/run/pfcon-faults")
BRIDGE, BRIDGE_ADDRESS = "pfconfault0", "10.231.0.1/24"


def _answers(url: str) -> bool:
    client = docker.DockerClient(base_url=url, version="1.41", timeout=5)
    try:
        client.ping()
        return True
    except Exception:
        return False
    finally:
        client.close()


def running(engine: PrivateEngine) -> Iterator[PrivateEngine]:
    """A module fixture's body: the engine started (a skip where it cannot run), then its
    test containers removed and the engine stopped."""
    if why := engine.available():
        pytest.skip(why)
    engine.start()
    yield engine
    client = docker.DockerClient(base_url=engine.url, version="1.41")
    for container in client.containers.list(all=True, filters={"label": TEST_LABEL}):
        container.remove(force=True)
    client.close()
    engine.stop()


class PrivateEngine:
    """A real engine process on a socket of its own, started and stopped by the tests."""

    name = "engine"

    def __init__(self) -> None:
        RUN.mkdir(parents=True, exist_ok=True)
        STATE.mkdir(parents=True, exist_ok=True)
        self.socket = RUN / f"{self.name}.sock"
        self.url = f"unix://{self.socket}"
        self.log = STATE / f"{self.name}.log"
        self.pidfile = RUN / f"{self.name}.test-pid"
        self.process: subprocess.Popen | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def environment(self) -> dict[str, str] | None:
        """The engine's environment (None: the tests' own)."""
        return None

    def available(self) -> str:
        """Why this engine cannot run here, or ``""``."""
        return "" if os.geteuid() == 0 and shutil.which(self.command()[0]) else f"{self.name} needs root"

    def start(self, timeout: float = 60) -> None:
        self._stop_leftover()
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, env=self.environment(),
            )  # fmt: skip
        self.pidfile.write_text(str(self.process.pid))
        deadline = time.monotonic() + timeout
        while not _answers(self.url):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not start: {self.log.read_text()[-1500:]}")
            time.sleep(0.3)

    def stop(self, timeout: float = 60) -> None:
        """A graceful stop (SIGTERM), waiting until the process is gone."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def _stop_leftover(self) -> None:
        """An engine a crashed test run left on this socket would answer in place of ours."""
        try:
            pid = int(self.pidfile.read_text())
        except (OSError, ValueError):
            return
        if self.process is not None and self.process.pid == pid:
            return
        try:  # only a process serving our socket: the pid may have been reused since
            if str(self.socket) not in Path(f"/proc/{pid}/cmdline").read_text():
                return
        except OSError:
            return
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
            time.sleep(0.2)

    def restart(self) -> None:
        self.stop()
        self.start()


class PrivateDockerd(PrivateEngine):
    """A second dockerd; without live-restore, stopping it stops its containers."""

    name = "dockerd"

    def command(self) -> list[str]:
        return [
            "dockerd",
            f"--data-root={STATE / 'docker'}",
            f"--exec-root={RUN / 'docker'}",
            f"--pidfile={RUN / 'dockerd.pid'}",
            f"--host={self.url}",
            f"--bridge={BRIDGE}",
            "--iptables=false",
            "--ip-masq=false",
        ]

    def start(self, timeout: float = 60) -> None:
        _ensure_bridge()
        super().start(timeout)
        env = {**os.environ, "DOCKER_HOST": self.url}
        subprocess.run(
            ["bash", str(ROOT / "scripts/build-test-image.sh"), "docker"], env=env, check=True,
            capture_output=True,
        )  # fmt: skip


class GpuDockerd(PrivateDockerd):
    """The second dockerd with two GPUs as far as dockerd can tell: it advertises them
    (``--node-generic-resource NVIDIA-GPU=<UUID>``, as a GPU host's daemon.json does) and
    finds an ``nvidia-container-runtime-hook`` on its PATH, so its own NVIDIA device driver
    serves GPU requests: it sets ``NVIDIA_VISIBLE_DEVICES`` in the container to the GPUs
    asked for and adds the hook as a prestart hook. Only the hook is ours, a script that
    accepts and does nothing (the real one needs NVIDIA's driver and a GPU). It shares the
    fault tests' data root: the two never run at once (module-scoped fixtures).
    """

    GPUS = ("GPU-5f1c0d2e-a", "GPU-5f1c0d2e-b")

    def __init__(self) -> None:
        super().__init__()
        self.hooks = RUN / "fake-nvidia"

    def command(self) -> list[str]:
        return [*super().command(), *(f"--node-generic-resource=NVIDIA-GPU={gpu}" for gpu in self.GPUS)]

    def environment(self) -> dict[str, str]:
        self.hooks.mkdir(parents=True, exist_ok=True)
        hook = self.hooks / "nvidia-container-runtime-hook"
        hook.write_text(
            "#!/bin/sh\n# a stand-in for NVIDIA's prestart hook: reads runc's state\ncat >/dev/null\n"
        )
        hook.chmod(0o755)
        return {**os.environ, "PATH": f"{self.hooks}:{os.environ.get('PATH', '/usr/bin:/bin')}"}


class PrivatePodmanService(PrivateEngine):
    """A second Podman API service over the machine's Podman (and its test image)."""

    name = "podman"

    def command(self) -> list[str]:
        return ["podman", "system", "service", "--time=0", self.url]


def _ensure_bridge() -> None:
    """The private dockerd's own bridge, so its containers never touch the shared docker0."""
    if Path(f"/sys/class/net/{BRIDGE}").exists():
        return
    for command in (
        ["ip", "link", "add", BRIDGE, "type", "bridge"],
        ["ip", "addr", "add", BRIDGE_ADDRESS, "dev", BRIDGE],
        ["ip", "link", "set", BRIDGE, "up"],
    ):
        subprocess.run(command, check=True, capture_output=True)
