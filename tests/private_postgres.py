"""A PostgreSQL server of the test's own (Debian's binaries, a throw-away cluster on a free
loopback port, trust authentication), so a test may stop and start it without touching the
shared server that scripts/setup.d/45-postgresql.sh runs."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.live import free_port


def _bin_dir() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    return found[-1].parent if found else None


class PrivatePostgres:
    def __init__(self) -> None:
        self.port = free_port()
        self.bin = _bin_dir()
        self.root: Path | None = None

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def available(self) -> str | None:
        """Why it cannot run here, or None."""
        if self.bin is None:
            return "no PostgreSQL server binaries (scripts/setup.d/45-postgresql.sh installs them)"
        if os.geteuid() != 0 or not shutil.which("runuser"):
            return "needs root to run the server as the postgres user"
        return None

    def _as_postgres(self, *command: str) -> None:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", *command],
            check=True,
            capture_output=True,
            cwd="/",
            timeout=60,
        )

    def create(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="pfcon-pg-"))
        shutil.chown(self.root, "postgres")
        self._as_postgres(str(self.bin / "initdb"), "-D", str(self.root / "data"), "-A", "trust", "--no-sync")
        self.start()

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._as_postgres(
            str(self.bin / "pg_ctl"), "-D", str(self.root / "data"), "-o", options,
            "-l", str(self.root / "server.log"), "-w", "start",
        )  # fmt: skip

    def stop(self) -> None:
        self._as_postgres(str(self.bin / "pg_ctl"), "-D", str(self.root / "data"), "-m", "fast", "-w", "stop")

    def destroy(self) -> None:
        if self.root is None:
            return
        subprocess.run(
            ["runuser", "-u", "postgres", "--", str(self.bin / "pg_ctl"), "-D", str(self.root / "data"),
             "-m", "immediate", "-w", "stop"],
            capture_output=True, cwd="/", timeout=60,
        )  # fmt: skip
        shutil.rmtree(self.root, ignore_errors=True)
