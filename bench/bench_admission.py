"""Benchmark of the admission queue on a real dockerd: a mixed workload that allocates the memory
it asks for, run on a "host" smaller than the machine, with the queue on and with it off.

The host is a memory cgroup (``/sys/fs/cgroup/memory/pfcon-bench-<pid>``, cgroup v1, the
engine's cgroupfs driver) that every job container is put under (``--cgroup-parent``): when
its jobs together ask more than it has, the kernel's OOM killer picks victims among them,
as on a real host, without putting the rest of the machine at risk. The queue is given a
capacity below that host (``PFCON_CAPACITY_*``).

Printed, for each run: jobs that succeeded, OOM kills (exit 137, the engine's ``OOMKilled``
flag and the cgroup's own count), the peak of the limits running at once read from the engine
every 0.25 s, the cgroup's peak memory and the makespan (first submit to last container end).
The queue-on makespan is then set against the ideal packing of the same jobs (their measured
run times) on the same capacity, searched by OR-tools' CP-SAT: its optimum when it proves
one, else the best schedule it found and the bound it proved (no schedule finishes sooner),
which is the figure the makespan is divided by. Beside it, the area bound (CPU area / capacity,
memory area / capacity, longest job: a bound, not a schedule), the same policy simulated
without engine overhead, and the engine's own start latency (``docker run`` of an empty
container, measured in the same run), the physical reference for a job's hand-over.

Needs root (the cgroup), dockerd with the cgroupfs driver, ``debian:bookworm-slim`` (perl
allocates the memory) and OR-tools (``.venv/bin/pip install -e '.[bench]'``). About 5 minutes,
two of them the solver's (``--solver-seconds`` for each of its two problems). Run from the repository root::

    .venv/bin/python bench/bench_admission.py [--jobs 40] [--seed 7] [--scale 1] [--estimates]
        [--save-times FILE]

``--estimates`` runs the queue with ``PFCON_RUNTIME_ESTIMATES=yes`` after an unmeasured run of
the same workload (same commands, other jids), so every job has an estimate from the
history (about 3 minutes more). ``--save-times FILE`` keeps the queue-on run's run times,
makespan and the engine's start time; ``--times FILE`` compares that saved run's packing
again, without the engine (``--engine-start SECONDS``: the start time that run printed, for
files saved before it was kept).

Second, and not the figure for "within 1.1x": the ideal packing on this engine, the same
CP-SAT problem with each job's run time lengthened by the engine's own start time of the same
run, what a perfect scheduler could reach if every start cost what the engine needs.
"""

from __future__ import annotations

import argparse
import heapq
import importlib.util
import io
import json
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zipfile
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import docker

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pfcon.admission.policy import LOOKAHEAD_JOBS, AdmissionPolicy, Amount, Job  # noqa: E402
from pfcon.app import build_service, close_app, create_app  # noqa: E402
from pfcon.compute.dockerapi.docker import DockerBackend  # noqa: E402
from pfcon.settings import load_settings  # noqa: E402

IMAGE = "debian:bookworm-slim"
HOST_MEMORY_MIB = 4096  # the cgroup "host"
CAPACITY_CPUS = 2
CAPACITY_MEMORY_MIB = 3072  # below the host: room for the engine's and perl's overhead
OVERHEAD_MIB = 24  # what perl and the container take besides the allocation
ALLOCATE = '$x = ""; $x .= "a" x 1048576 for 1..$ARGV[0]; sleep $ARGV[1]'
CGROUP_ROOT = Path("/sys/fs/cgroup/memory")
ESTIMATE_MARGIN = 1.1  # the store's estimate: the longest earlier run of the job, plus 10 %
TERMINAL = {"finishedSuccessfully", "finishedWithError", "undefined"}


@dataclass(frozen=True)
class Spec:
    jid: str
    cpu_millicores: int
    memory_mib: int
    seconds: int
    auid: str


@dataclass
class Run:
    name: str
    ends: dict[str, tuple[float, float, int, bool]] = field(default_factory=dict)  # start, end, code, oom
    peak_cpus: float = 0.0
    peak_memory_mib: float = 0.0
    cgroup_peak_mib: float = 0.0
    cgroup_oom_kills: int = 0
    first_submit: float = 0.0
    unstarted: int = 0  # jobs the engine failed to start: no container, no run time

    @property
    def killed(self) -> int:
        """Jobs the kernel killed (SIGKILL, exit 137: nothing else sends one here)."""
        return sum(1 for _, _, code, _ in self.ends.values() if code == 137)

    @property
    def oom_flagged(self) -> int:
        """Jobs the engine flags ``OOMKilled`` (it also flags some whose process survived an
        OOM in the cgroup above them)."""
        return sum(1 for _, _, _, oom in self.ends.values() if oom)

    @property
    def succeeded(self) -> int:
        return sum(1 for _, _, code, _ in self.ends.values() if code == 0)

    @property
    def makespan(self) -> float:
        return max(end for _, end, _, _ in self.ends.values()) - self.first_submit


def workload(count: int, seed: int, scale: int = 1) -> list[Spec]:
    """1-4 CPUs and 0.5-4 GiB scaled by a quarter to this 2-core machine; 4-12 s each, times
    ``scale`` (the same jobs, users and order for a seed, only longer)."""
    rng = random.Random(seed)
    return [
        Spec(
            f"adm-{uuid.uuid4().hex[:8]}",
            rng.choice([250, 500, 750, 1000]),
            rng.choice([128, 256, 512, 768, 1024]),
            rng.randint(4, 12) * scale,
            f"user{rng.randint(1, 3)}",
        )
        for _ in range(count)
    ]


class HostCgroup:
    """A memory cgroup standing for the host the jobs share."""

    def __init__(self, memory_mib: int) -> None:
        self.name = f"pfcon-bench-{os.getpid()}"
        self.path = CGROUP_ROOT / self.name
        self.path.mkdir(exist_ok=True)
        (self.path / "memory.limit_in_bytes").write_text(str(memory_mib * 2**20))

    def reset_peak(self) -> None:
        (self.path / "memory.max_usage_in_bytes").write_text("0")

    def peak_mib(self) -> float:
        return int((self.path / "memory.max_usage_in_bytes").read_text()) / 2**20

    def oom_kills(self) -> int:
        for line in (self.path / "memory.oom_control").read_text().splitlines():
            if line.startswith("oom_kill "):
                return int(line.split()[1])
        return 0

    def remove(self) -> None:
        for child in self.path.iterdir():
            if child.is_dir():
                child.rmdir()
        self.path.rmdir()


class HostBackend(DockerBackend):
    """The real Docker backend, putting each job under the host cgroup."""

    def __init__(self, cgroup: str) -> None:
        super().__init__()
        self.cgroup = cgroup

    def _create_args(self, spec: Any) -> dict[str, Any]:
        return {**super()._create_args(spec), "cgroup_parent": f"/{self.cgroup}"}


def _zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("a.txt", "x")
    return buffer.getvalue()


def _form(spec: Spec) -> dict[str, Any]:
    return {
        "jid": spec.jid,
        "entrypoint": ["perl", "-e", ALLOCATE],
        "args": [str(spec.memory_mib - OVERHEAD_MIB), str(spec.seconds)],
        "auid": spec.auid,
        "number_of_workers": "1",
        "cpu_limit": str(spec.cpu_millicores),
        "memory_limit": str(spec.memory_mib),
        "gpu_limit": "0",
        "image": IMAGE,
        "type": "fs",
    }


def sample(client: docker.DockerClient, label: str, run: Run, stop: threading.Event) -> None:
    while not stop.wait(0.25):
        try:
            running = client.containers.list(filters={"label": label, "status": "running"})
        except docker.errors.DockerException:
            continue
        host = [c.attrs.get("HostConfig") or {} for c in running]
        run.peak_cpus = max(run.peak_cpus, sum(h.get("NanoCpus") or 0 for h in host) / 1e9)
        run.peak_memory_mib = max(run.peak_memory_mib, sum(h.get("Memory") or 0 for h in host) / 2**20)


def _when(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


def run_workload(
    name: str, specs: list[Spec], queue: bool, cgroup: HostCgroup, estimates: bool = False
) -> Run:
    """One run of the workload; with ``estimates``, the queue backfills by run-time estimates
    and the same workload (same commands, other jids) runs once before, unmeasured, so the
    history has a run of every command."""
    label = f"pfcon.bench={uuid.uuid4().hex[:12]}"
    run = Run(name)
    with tempfile.TemporaryDirectory(dir="/var/tmp", prefix="pfcon-bench-admission-") as folder:
        env = {
            "APPLICATION_MODE": "development",
            "STOREBASE": folder,
            "JOB_LABELS": label,
            "PFCON_QUEUE": "on" if queue else "off",
            "PFCON_CAPACITY_CPUS": str(CAPACITY_CPUS),
            "PFCON_CAPACITY_MEMORY_MIB": str(CAPACITY_MEMORY_MIB),
            "PFCON_START_WORKERS": "4",
            "PFCON_RUNTIME_ESTIMATES": "yes" if estimates else "no",
        }
        settings = load_settings(env)
        service = build_service(settings)
        service.backend = service.starter.backend = HostBackend(cgroup.name)
        app = create_app(settings, service)
        client = app.test_client()
        token = client.post(
            "/api/v1/auth-token/", json={"pfcon_user": "pfcon", "pfcon_password": "pfcon1234"}
        )
        auth = {"Authorization": f"Bearer {token.get_json()['token']}"}
        engine = docker.from_env(version="1.41")
        if estimates:
            history = [replace(spec, jid=f"{spec.jid}-h") for spec in specs]
            _run_all(client, auth, history)
            for spec in history:
                assert client.delete(f"/api/v1/jobs/{spec.jid}/", headers=auth).status_code == 204
        cgroup.reset_peak()
        kills_before = cgroup.oom_kills()
        stop = threading.Event()
        sampler = threading.Thread(target=sample, args=(engine, label, run, stop), daemon=True)
        sampler.start()
        run.first_submit = time.time()
        _run_all(client, auth, specs)
        stop.set()
        sampler.join()
        run.cgroup_peak_mib = cgroup.peak_mib()
        run.cgroup_oom_kills = cgroup.oom_kills() - kills_before
        for spec in specs:
            try:
                state = engine.containers.get(spec.jid).attrs["State"]
            except docker.errors.NotFound:  # the engine refused to start it (runc under OOM)
                run.unstarted += 1
                assert client.delete(f"/api/v1/jobs/{spec.jid}/", headers=auth).status_code == 204
                continue
            run.ends[spec.jid] = (
                _when(state["StartedAt"]),
                _when(state["FinishedAt"]),
                state["ExitCode"],
                bool(state["OOMKilled"]),
            )
            assert client.delete(f"/api/v1/jobs/{spec.jid}/", headers=auth).status_code == 204
        close_app(app)  # its feed and scheduler must not run on into the next mode's run
        engine.close()
    return run


def _run_all(client: Any, auth: dict[str, str], specs: list[Spec]) -> None:
    """Submit every job, then wait until each has ended."""
    data = _zip()
    for spec in specs:
        answer = client.post(
            "/api/v1/jobs/",
            data={**_form(spec), "data_file": (io.BytesIO(data), "in.zip")},
            headers=auth,
            content_type="multipart/form-data",
        )
        assert answer.status_code == 201, answer.get_json()
    waiting = {spec.jid for spec in specs}
    while waiting:
        time.sleep(1)
        for jid in list(waiting):
            status = client.get(f"/api/v1/jobs/{jid}/", headers=auth).get_json()["compute"]["status"]
            if status in TERMINAL:
                waiting.discard(jid)


def area_bound(specs: list[Spec], seconds: dict[str, float]) -> float:
    """A lower bound of the ideal packing (the areas over the capacity, the longest job): no
    schedule finishes sooner, but jobs do not pour like water, so the optimum may end later."""
    cpu_area = sum(spec.cpu_millicores * seconds[spec.jid] for spec in specs) / (CAPACITY_CPUS * 1000)
    memory_area = sum(spec.memory_mib * seconds[spec.jid] for spec in specs) / CAPACITY_MEMORY_MIB
    return max(cpu_area, memory_area, max(seconds.values()))


def simulated_makespan(
    specs: list[Spec],
    seconds: dict[str, float],
    fair_share: bool = False,
    estimates: dict[str, float] | None = None,
    lookahead: int = LOOKAHEAD_JOBS,
) -> float:
    """The same policy with instant starts and ends: what the rule itself costs. With
    ``estimates`` (run-time estimates by jid, as the store's history gives them), the policy
    uses them for the jobs that have one (rule 4 of docs/admission.md); ``lookahead`` 0
    backfills in queue order."""
    capacity = Amount(CAPACITY_CPUS * 1000, CAPACITY_MEMORY_MIB, 0)
    policy = AdmissionPolicy(capacity, fair_share, lookahead)
    known = estimates or {}
    queued = [
        Job(n, spec.auid, Amount(spec.cpu_millicores, spec.memory_mib, 0), runs_for=known.get(spec.jid))
        for n, spec in enumerate(specs)
    ]
    running: dict[int, Job] = {}
    ends: list[tuple[float, int]] = []
    now = 0.0
    while queued or running:
        decision = policy.decide(list(running.values()), queued, now=now if estimates else None)
        for job_id in decision.start:
            job = next(j for j in queued if j.id == job_id)
            queued.remove(job)
            running[job_id] = Job(job.id, job.auid, job.amount, ends_at=job.end_if_started(now))
            heapq.heappush(ends, (now + seconds[specs[job_id].jid], job_id))
        now, ended = heapq.heappop(ends)
        del running[ended]
    return now


@dataclass(frozen=True)
class Optimum:
    """What CP-SAT found for the ideal packing: no schedule of the jobs finishes before
    ``bound`` (proven), and one that finishes by ``best`` exists (found). When ``status`` is
    OPTIMAL they differ only by the solver's rounding to milliseconds."""

    status: str
    best: float
    bound: float
    solver_seconds: float


def optimal_makespan(
    jobs: list[tuple[float, int, int]],
    capacity: tuple[int, int],
    time_limit: float = 60.0,
    workers: int = 2,
    overhead: float = 0.0,
) -> Optimum:
    """The ideal packing itself: the shortest makespan of ``jobs`` (run time in seconds, CPU
    millicores, MiB), each run once without interruption, on ``capacity`` (millicores, MiB),
    searched by OR-tools' CP-SAT: one interval per job, one cumulative constraint per
    resource, the latest end minimised, within ``time_limit``. ``overhead`` seconds are added
    to every job's run time, holding its resources: with the engine's own start time, the
    packing a perfect scheduler could reach when each start costs what the engine needs.

    The solver counts in whole milliseconds, so run times are rounded *down*: any real
    schedule, its times rounded down, is a schedule of the rounded jobs, hence the solver's
    proven bound is a lower bound of the real optimum too. The other way, ``best`` is the
    solver's schedule with each job's real run time and its k-th start moved k ms later, room
    for the fractions dropped: jobs apart in the solver's schedule stay apart, so it is a
    real schedule (at most 1 ms per job longer; checked against the capacity below).
    The energy of each resource (run time x amount, summed) is stated to the solver as a
    redundant constraint: it then starts from the area bound rather than the longest job."""
    from ortools.sat.python import cp_model  # optional: pip install -e '.[bench]'

    jobs = [(seconds + overhead, cpu, memory) for seconds, cpu, memory in jobs]
    durations = [max(1, math.floor(seconds * 1000)) for seconds, _, _ in jobs]
    horizon = sum(durations)
    model = cp_model.CpModel()
    starts = [model.new_int_var(0, horizon - duration, f"start{n}") for n, duration in enumerate(durations)]
    intervals = [
        model.new_fixed_size_interval_var(start, duration, f"job{n}")
        for n, (start, duration) in enumerate(zip(starts, durations, strict=True))
    ]
    makespan = model.new_int_var(max(durations), horizon, "makespan")
    for resource, limit in enumerate(capacity):
        amounts = [job[resource + 1] for job in jobs]
        model.add_cumulative(intervals, amounts, limit)
        model.add(sum(d * a for d, a in zip(durations, amounts, strict=True)) <= limit * makespan)
    model.add_max_equality(makespan, [start + d for start, d in zip(starts, durations, strict=True)])
    model.minimize(makespan)
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = time_limit
    solver.parameters.num_workers = workers
    status = solver.solve(model)
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        raise RuntimeError(f"CP-SAT found no schedule: {solver.status_name(status)}")
    order = sorted(range(len(jobs)), key=lambda n: solver.value(starts[n]))
    began = {n: (solver.value(starts[n]) + rank) / 1000 for rank, n in enumerate(order)}
    for moment in began.values():  # what a schedule holds peaks at some start: check them all
        held = [n for n, start in began.items() if start <= moment < start + jobs[n][0]]
        assert all(sum(jobs[n][r + 1] for n in held) <= limit for r, limit in enumerate(capacity))
    return Optimum(
        solver.status_name(status),
        max(start + jobs[n][0] for n, start in began.items()),
        solver.best_objective_bound / 1000,
        solver.wall_time,
    )


def clairvoyant_makespan(specs: list[Spec], seconds: dict[str, float]) -> float:
    """A packer that knows every run time: longest job first, each started as soon as it fits
    (list scheduling), no engine overhead. A good packing no online rule can know in advance."""
    capacity = Amount(CAPACITY_CPUS * 1000, CAPACITY_MEMORY_MIB, 0)
    pending = sorted(specs, key=lambda spec: -seconds[spec.jid])
    free, ends, now = capacity, [], 0.0
    while pending:
        for spec in list(pending):
            amount = Amount(spec.cpu_millicores, spec.memory_mib, 0)
            if amount.fits_in(free):
                free = free - amount
                pending.remove(spec)
                heapq.heappush(ends, (now + seconds[spec.jid], spec.cpu_millicores, spec.memory_mib))
        now, cpu, memory = heapq.heappop(ends)
        free = free + Amount(cpu, memory, 0)
    return max([now, *(end for end, _, _ in ends)])


def handover_gaps(run: Run) -> list[float]:
    """For each job started after some job ended, the time from the last end before its start
    to its start: the feed's notice, the decision and the engine's start, end to end."""
    ends = sorted(end for _, end, _, _ in run.ends.values())
    gaps = []
    for began, _, _, _ in run.ends.values():
        before = [end for end in ends if end <= began]
        if before:
            gaps.append(began - before[-1])
    return gaps or [0.0]


def engine_start_seconds(client: docker.DockerClient, rounds: int = 5) -> float:
    """Median ``docker run -d`` (create + start) of an empty container: the engine's own pace."""
    times = []
    for _ in range(rounds):
        began = time.monotonic()
        container = client.containers.run(IMAGE, ["true"], detach=True)
        times.append(time.monotonic() - began)
        container.remove(force=True)
    return statistics.median(times)


def ideal_packing(
    specs: list[Spec], seconds: dict[str, float], limit: float, overhead: float = 0.0
) -> tuple[Optimum, float, float]:
    """CP-SAT's packing of the jobs, each holding its resources for its run time plus
    ``overhead``, with the area bound of the same durations and the larger of the two proven
    bounds (no schedule of these jobs finishes sooner)."""
    jobs = [(seconds[spec.jid], spec.cpu_millicores, spec.memory_mib) for spec in specs]
    capacity = (CAPACITY_CPUS * 1000, CAPACITY_MEMORY_MIB)
    optimum = optimal_makespan(jobs, capacity, time_limit=limit, overhead=overhead)
    area = area_bound(specs, {jid: took + overhead for jid, took in seconds.items()})
    return optimum, area, max(optimum.bound, area)


def compare_packings(
    specs: list[Spec],
    seconds: dict[str, float],
    makespan: float,
    limit: float,
    engine_start: float | None,
) -> None:
    """Print the queue's makespan against the ideal packing of the same jobs (their measured
    run times) on the same capacity, and the references that explain the gap; with
    ``engine_start`` (the engine's own start time, measured in the same run), also against
    the ideal packing on this engine, where each job costs its run time plus that start."""
    optimum, area, bound = ideal_packing(specs, seconds, limit)
    found = (
        f"optimum {bound:.2f}-{optimum.best:.2f} s (the solver's milliseconds)"
        if optimum.status == "OPTIMAL"
        else f"best schedule found {optimum.best:.2f} s, proven bound {bound:.2f} s"
    )
    print(
        f"ideal packing (CP-SAT, {optimum.status} after {optimum.solver_seconds:.0f} s, limit "
        f"{limit:g} s): {found}; area bound (CPU area / capacity, memory area / capacity, "
        f"longest job: a lower bound, not a schedule) {area:.2f} s"
    )
    print(
        f"queue on: makespan {makespan:.1f} s = {makespan / bound:.3f}x the proven bound of the "
        f"ideal packing (the figure for 'within 1.1x'), {makespan / optimum.best:.3f}x "
        f"{'the optimum' if optimum.status == 'OPTIMAL' else 'the best schedule found'}"
    )
    simulated = simulated_makespan(specs, seconds)
    clairvoyant = clairvoyant_makespan(specs, seconds)
    estimated = {jid: took * ESTIMATE_MARGIN for jid, took in seconds.items()}
    with_estimates = simulated_makespan(specs, seconds, estimates=estimated)
    in_order = simulated_makespan(specs, seconds, estimates=estimated, lookahead=0)
    with_half = simulated_makespan(specs, seconds, estimates=dict(list(estimated.items())[::2]))
    print(
        f"against the same bound, without engine overhead: the safe rule {simulated:.1f} s "
        f"({simulated / bound:.3f}x); run-time estimates (each run time x {ESTIMATE_MARGIN}) "
        f"{with_estimates:.1f} s ({with_estimates / bound:.3f}x; backfilling in queue order, "
        f"without the lookahead, {in_order:.1f} s = {in_order / bound:.3f}x), for every other job only "
        f"{with_half:.1f} s ({with_half / bound:.3f}x); longest first, each started once it "
        f"fits {clairvoyant:.1f} s ({clairvoyant / bound:.3f}x)"
    )
    if engine_start is None:
        print("ideal packing on this engine: not computed (no engine start time; --engine-start)")
        return
    on_engine, _, engine_bound = ideal_packing(specs, seconds, limit, overhead=engine_start)
    print(
        f"ideal packing on this engine (a second reference, not the 1.1x figure: each job's run "
        f"time + the engine's own start {engine_start:.3f} s; CP-SAT {on_engine.status} after "
        f"{on_engine.solver_seconds:.0f} s): proven bound {engine_bound:.2f} s, best schedule "
        f"found {on_engine.best:.2f} s; queue on: makespan {makespan:.1f} s = "
        f"{makespan / engine_bound:.3f}x that bound, {makespan / on_engine.best:.3f}x that schedule"
    )


def save_times(path: str, specs: list[Spec], run: Run, engine_start: float) -> None:
    """Write the workload, each job's measured run time, the makespan and the engine's own
    start time of the same run, for ``--times``."""
    jobs = [{**vars(spec), "took": run.ends[spec.jid][1] - run.ends[spec.jid][0]} for spec in specs]
    record = {"name": run.name, "makespan": run.makespan, "engine_start": engine_start, "jobs": jobs}
    Path(path).write_text(json.dumps(record, indent=1))


def saved_workload(record: dict[str, Any]) -> tuple[list[Spec], dict[str, float]]:
    """The jobs of a record written by :func:`save_times` and each one's measured run time."""
    specs = [Spec(**{key: value for key, value in job.items() if key != "took"}) for job in record["jobs"]]
    return specs, {job["jid"]: job["took"] for job in record["jobs"]}


def compare_saved(path: str, limit: float, engine_start: float | None) -> None:
    """The packing comparison of a saved run, without running anything on the engine. Files
    saved before the engine's start time was kept lack it: ``engine_start`` (the figure that
    run printed) stands in; given both, the file's own measurement wins."""
    record = json.loads(Path(path).read_text())
    specs, seconds = saved_workload(record)
    saved_start = record.get("engine_start")
    if saved_start is not None and engine_start is not None:
        print(f"--engine-start ignored: the file holds its run's own, {saved_start:.3f} s")
    start = saved_start if saved_start is not None else engine_start
    origin = "saved" if saved_start is not None else "given" if start is not None else "none"
    print(
        f"{path}: {record['name']}, {len(specs)} jobs, makespan {record['makespan']:.1f} s; "
        f"engine start ({origin}) {'-' if start is None else f'{start:.3f} s'}"
    )
    compare_packings(specs, seconds, record["makespan"], limit, start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=40)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--scale",
        type=int,
        default=1,
        help="each job's run time times this (4-12 s by default): the engine's fixed cost per start "
        "then weighs 1/scale as much against the run times",
    )
    parser.add_argument(
        "--estimates",
        action="store_true",
        help="queue on with PFCON_RUNTIME_ESTIMATES=yes, after an unmeasured run of the same workload",
    )
    parser.add_argument("--solver-seconds", type=float, default=60.0, help="CP-SAT's time limit")
    parser.add_argument("--save-times", metavar="FILE", help="save the queue-on run's run times")
    parser.add_argument("--times", metavar="FILE", help="compare a saved run's packing, run nothing")
    parser.add_argument(
        "--engine-start",
        type=float,
        metavar="SECONDS",
        help="with --times, for files saved without it: the engine's start time that run printed",
    )
    args = parser.parse_args()
    if importlib.util.find_spec("ortools") is None:
        sys.exit("needs OR-tools for the ideal packing: .venv/bin/pip install -e '.[bench]'")
    if args.times:
        compare_saved(args.times, args.solver_seconds, args.engine_start)
        return
    if os.geteuid() != 0 or not CGROUP_ROOT.is_dir():
        sys.exit("needs root and the cgroup v1 memory controller at /sys/fs/cgroup/memory")
    client = docker.from_env(version="1.41")
    if client.info().get("CgroupDriver") != "cgroupfs":
        sys.exit("needs dockerd with the cgroupfs driver (--cgroup-parent is a cgroup path)")
    subprocess.run(["docker", "image", "inspect", IMAGE], check=True, capture_output=True)
    specs = workload(args.jobs, args.seed, args.scale)
    asked_cpus = sum(s.cpu_millicores for s in specs) / 1000
    asked_gib = sum(s.memory_mib for s in specs) / 1024
    print(
        f"workload: {len(specs)} jobs of 0.25-1 CPUs, 128-1024 MiB (allocated), "
        f"{4 * args.scale}-{12 * args.scale} s; "
        f"{asked_cpus:g} CPUs and {asked_gib:.1f} GiB asked in all"
    )
    print(
        f"host (memory cgroup): {HOST_MEMORY_MIB} MiB; queue capacity {CAPACITY_CPUS} CPUs, "
        f"{CAPACITY_MEMORY_MIB} MiB"
    )
    start = engine_start_seconds(client)
    print(f"reference: the engine starts an empty container in {start:.2f} s (median of 5, this run)")
    on_name = "queue on, run-time estimates" if args.estimates else "queue on"
    cgroup = HostCgroup(HOST_MEMORY_MIB)
    try:
        on = run_workload(on_name, specs, True, cgroup, estimates=args.estimates)
        if args.save_times:  # before the queue-off run, which an overloaded engine may break
            save_times(args.save_times, specs, on, start)
        runs = [on, run_workload("queue off", specs, False, cgroup)]
    finally:
        cgroup.remove()
    for run in runs:
        print(
            f"{run.name:9}: {run.succeeded}/{len(specs)} succeeded, {run.unstarted} failed to start; "
            f"OOM-killed {run.killed} (flagged OOMKilled {run.oom_flagged}, "
            f"cgroup count {run.cgroup_oom_kills}); "
            f"peak at once {run.peak_cpus:.2f} CPUs, {run.peak_memory_mib:.0f} MiB of limits; "
            f"host peak {run.cgroup_peak_mib:.0f} MiB; makespan {run.makespan:.1f} s"
        )
    seconds = {jid: end - began for jid, (began, end, _, _) in on.ends.items()}
    compare_packings(specs, seconds, on.makespan, args.solver_seconds, start)
    gaps = handover_gaps(on)
    print(
        f"queue on: hand-over (a job's start after the last end before it), median "
        f"{statistics.median(gaps):.2f} s, max {max(gaps):.2f} s over {len(gaps)} starts; "
        f"engine's own start {start:.2f} s"
    )
    over = on.peak_cpus > CAPACITY_CPUS + 1e-9 or on.peak_memory_mib > CAPACITY_MEMORY_MIB + 1e-9
    print(
        f"queue on: never over capacity: {'PASS' if not over else 'MISS'}; zero OOM kills: "
        f"{'PASS' if on.killed == on.oom_flagged == on.cgroup_oom_kills == 0 else 'MISS'}"
    )


if __name__ == "__main__":
    main()
