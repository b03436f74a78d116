"""Where a queue hand-over goes on dockerd: a chain of jobs that each need the whole capacity.

Each job can start only once the one before it ended, so every start is a hand-over. For each,
from the end of the job before (its container's ``FinishedAt``): when the scheduler asked the
engine to create and start the next container, how long that took, and the next container's
``StartedAt`` (the hand-over, as ``bench_admission.py`` reports it). Needs dockerd and
``debian:bookworm-slim``; about 30 s. Run from the repository root (another copy of pfcon with
``PYTHONPATH``)::

    flock /tmp/pfcon-bench.lock .venv/bin/python bench/probe_handover.py [--jobs 10]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import docker

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_admission import Spec, _run_all, _when

from pfcon.app import build_service, close_app, create_app
from pfcon.compute.base import JobSpec
from pfcon.settings import load_settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10)
    args = parser.parse_args()
    asked: dict[str, tuple[float, float]] = {}  # jid -> create+start asked, answered
    with tempfile.TemporaryDirectory(dir="/var/tmp", prefix="pfcon-bench-handover-") as folder:
        env = {
            "APPLICATION_MODE": "development",
            "STOREBASE": folder,
            "JOB_LABELS": f"pfcon.bench={uuid.uuid4().hex[:12]}",
            "PFCON_QUEUE": "on",
            "PFCON_CAPACITY_CPUS": "2",
            "PFCON_CAPACITY_MEMORY_MIB": "3072",
        }
        settings = load_settings(env)
        service = build_service(settings)
        submit = service.starter.backend.submit

        def timed_submit(spec: JobSpec) -> Any:
            began = time.time()
            info = submit(spec)
            asked[spec.jid] = (began, time.time())
            return info

        service.starter.backend.submit = timed_submit  # type: ignore[method-assign]
        app = create_app(settings, service)
        client = app.test_client()
        login = {"pfcon_user": "pfcon", "pfcon_password": "pfcon1234"}
        token = client.post("/api/v1/auth-token/", json=login).get_json()["token"]
        auth = {"Authorization": f"Bearer {token}"}
        specs = [Spec(f"hand-{uuid.uuid4().hex[:8]}", 2000, 64, 1, "u") for _ in range(args.jobs)]
        _run_all(client, auth, specs)
        engine = docker.from_env(version="1.41")
        runs = [engine.containers.get(spec.jid).attrs["State"] for spec in specs]
        for spec in specs:
            assert client.delete(f"/api/v1/jobs/{spec.jid}/", headers=auth).status_code == 204
        close_app(app)
        engine.close()
    rows = []
    for before, spec, run in zip(runs, specs[1:], runs[1:], strict=False):
        ended = _when(before["FinishedAt"])
        began, answered = asked[spec.jid]
        rows.append((began - ended, answered - began, _when(run["StartedAt"]) - ended))
    for name, values in zip(
        ("end -> create+start asked", "create+start took", "end -> next StartedAt (hand-over)"),
        zip(*rows, strict=True),
        strict=True,
    ):
        low, high = min(values), max(values)
        print(f"{name}: median {statistics.median(values):.3f} s (min {low:.3f}, max {high:.3f})")


if __name__ == "__main__":
    main()
