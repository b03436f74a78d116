"""The admission rule replayed without an engine: what the rule's own packing costs, over
many workloads, in a second or two and without root, dockerd or OR-tools.

Each workload is ``bench_admission.py``'s generator (40 jobs of 0.25-1 CPUs, 128-1024 MiB,
4-12 s) with another seed, its run times each job's seconds plus 0.05-1.2 s (what a start,
perl's allocation and an exit added in the measured runs), or a run saved with
``bench_admission.py --save-times``. Every job's estimate is its run time plus 10 %, as the
store's would be after an earlier run of the same command, optionally blurred (``--noise``:
the earlier run's time differs by a normal error of that many seconds; two measured runs of
the same workload differ by 0.10-0.21 s). Printed, per workload, the makespan over the area
bound (CPU area / capacity, memory area / capacity, longest job: in every measured run the
bound CP-SAT proved, see docs/admission.md) for the safe rule (3), rule 4 backfilling in queue
order, and rule 4 with its lookahead; then the means and how often the lookahead wins.
Run from the repository root::

    .venv/bin/python bench/replay_admission.py [--seeds 40] [--jobs 40] [--noise 0.15] [FILE ...]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_admission import (
    ESTIMATE_MARGIN,
    Spec,
    area_bound,
    saved_workload,
    simulated_makespan,
    workload,
)


def seeded(seed: int, jobs: int) -> tuple[list[Spec], dict[str, float]]:
    specs = workload(jobs, seed)
    rng = random.Random(1000 + seed)
    return specs, {spec.jid: spec.seconds + rng.uniform(0.05, 1.2) for spec in specs}


def replay(specs: list[Spec], seconds: dict[str, float], noise: float, seed: int) -> tuple[float, ...]:
    """The safe rule, rule 4 in queue order and rule 4 with the lookahead, over the area bound."""
    rng = random.Random(seed)
    estimates = {jid: max(0.1, took + rng.gauss(0, noise)) * ESTIMATE_MARGIN for jid, took in seconds.items()}
    bound = area_bound(specs, seconds)
    return (
        simulated_makespan(specs, seconds) / bound,
        simulated_makespan(specs, seconds, estimates=estimates, lookahead=0) / bound,
        simulated_makespan(specs, seconds, estimates=estimates) / bound,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", help="runs saved by bench_admission.py --save-times")
    parser.add_argument("--seeds", type=int, default=40, help="workloads of seeds 1..N")
    parser.add_argument("--jobs", type=int, default=40)
    parser.add_argument("--noise", type=float, default=0.0, help="estimates' error, seconds (normal)")
    args = parser.parse_args()
    cases = [(Path(path).name, *saved_workload(json.loads(Path(path).read_text()))) for path in args.files]
    cases += [(f"seed {seed}", *seeded(seed, args.jobs)) for seed in range(1, args.seeds + 1)]
    began = time.perf_counter()
    print("workload: safe rule / rule 4 in queue order / rule 4 with lookahead (x the area bound)")
    rows = []
    for index, (name, specs, seconds) in enumerate(cases):
        rows.append(replay(specs, seconds, args.noise, index))
        print(f"{name}: " + " / ".join(f"{value:.3f}" for value in rows[-1]))
    safe, in_order, lookahead = (list(column) for column in zip(*rows, strict=True))
    wins = sum(new < old - 1e-9 for old, new in zip(in_order, lookahead, strict=True))
    losses = sum(new > old + 1e-9 for old, new in zip(in_order, lookahead, strict=True))
    print(
        f"mean over {len(rows)} ({args.jobs} jobs a seed, noise {args.noise:g} s): safe rule "
        f"{statistics.mean(safe):.4f}x, rule 4 in queue order {statistics.mean(in_order):.4f}x, "
        f"with lookahead {statistics.mean(lookahead):.4f}x (worst {max(lookahead):.3f}x against "
        f"{max(in_order):.3f}x); the lookahead shorter in {wins}, longer in {losses}; "
        f"{time.perf_counter() - began:.1f} s"
    )


if __name__ == "__main__":
    main()
