"""Where a queue hand-over goes on dockerd: a chain of jobs that each need the whole capacity.

Each job can start only once the one before it ended, so every start is a hand-over. For each,
from the end of the job before (its container's ``FinishedAt``), when each step of the path
was done: the ``die`` event reached the feed, the feed's inspect of the ended container was
answered (dockerd answers once its exit handling is done), the end was recorded, the
scheduler's pass decided, the next container was created, then its ``StartedAt`` (the
hand-over, as ``bench_admission.py`` reports it) and the start's answer. Needs dockerd and
``debian:bookworm-slim``; about 30 s. Run from the repository root (another copy of pfcon with
``PYTHONPATH``)::

    flock /tmp/pfcon-bench.lock .venv/bin/python bench/probe_handover.py [--jobs 10]
"""

from __future__ import annotations

import argparse
import functools
import itertools
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
from pfcon.compute.base import EngineEvent
from pfcon.settings import load_settings

#: the steps of a hand-over, in path order: (what is done, the object's name, its method)
STEPS = (
    ("die event reaches the feed", "feed", "_changed"),
    ("feed's inspect answered", "backend", "info"),
    ("end recorded (log tail, store)", "store", "mark_finished"),
    ("scheduler's pass decided", "admission", "pick"),
    ("create answered, start asked", "api", "create_container"),
)


class Timeline:
    """When each wrapped call returned (wall clock), in order; the chain runs one job at a
    time, so the first of each step after a job's end belongs to that hand-over."""

    def __init__(self) -> None:
        self.done: list[tuple[float, str]] = []

    def wrap(self, owner: Any, method: str, step: str) -> None:
        call = getattr(owner, method)

        @functools.wraps(call)
        def timed(*args: Any, **kwargs: Any) -> Any:
            if method == "_changed" and args and isinstance(args[0], EngineEvent):
                if args[0].action == "die":
                    self.done.append((time.time(), step))  # its arrival, not its handling
                return call(*args, **kwargs)
            try:
                return call(*args, **kwargs)
            finally:
                self.done.append((time.time(), step))

        setattr(owner, method, timed)

    def after(self, moment: float, until: float) -> dict[str, float]:
        """Each step's first time in ``[moment, until]``, from ``moment``."""
        first: dict[str, float] = {}
        for at, step in sorted(self.done):
            if moment <= at <= until:
                first.setdefault(step, at - moment)
        return first


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10)
    args = parser.parse_args()
    timeline = Timeline()
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
        owners = {
            "feed": service.feed,
            "backend": service.backend,
            "store": service.store,
            "admission": service.admission,
            "api": service.backend.client.api,
        }
        for step, owner, method in STEPS:
            timeline.wrap(owners[owner], method, step)
        timeline.wrap(service.backend.client.api, "start", "start answered")
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
    rows: dict[str, list[float]] = {}
    for before, run in itertools.pairwise(runs):
        ended, began = _when(before["FinishedAt"]), _when(run["StartedAt"])
        steps = timeline.after(ended, began + 1.0)
        steps["next StartedAt (the hand-over)"] = began - ended
        for step, seconds in steps.items():
            rows.setdefault(step, []).append(seconds)
    print(f"from a job's end (FinishedAt), medians over {len(runs) - 1} hand-overs:")
    for step, values in sorted(rows.items(), key=lambda row: statistics.median(row[1])):
        low, high = min(values), max(values)
        print(f"  {step}: {statistics.median(values):.3f} s (min {low:.3f}, max {high:.3f}, n={len(values)})")


if __name__ == "__main__":
    main()
