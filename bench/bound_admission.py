"""A stronger lower bound for the ideal packing, tried: the configuration LP against the area bound.

The benchmark's figure divides the makespan by the bound CP-SAT proves, which has always been
the area bound (each resource's area over its capacity, or the longest job). The
configuration LP is the strongest bound of the preemptive relaxation in which the jobs running
at any moment must fit every resource *together*: choose how long each set of jobs that fits
runs, each job covered for its run time, total time least. Any schedule gives such a choice
(the time each set of jobs ran together), so its optimum is a valid lower bound; it beats the
area bound when jobs conflict in two resources at once. Solved by column generation: GLOP for
the master LP, and, for the set with the largest dual value that fits, an exact 0/1 knapsack
over the capacity counted in the amounts' common units (2 CPUs = 8 x 250 millicores,
3072 MiB = 24 x 128 MiB: 225 states). Printed, per workload (``bench_admission.py``'s
generator with seeds 1..N, as ``replay_admission.py`` draws its run times, and saved runs):
both bounds and their difference. Needs OR-tools (``.venv/bin/pip install -e '.[bench]'``);
a second or two. Run from the repository root::

    .venv/bin/python bench/bound_admission.py [--seeds 40] [FILE ...]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from functools import reduce
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_admission import CAPACITY_CPUS, CAPACITY_MEMORY_MIB, area_bound, saved_workload
from replay_admission import seeded

#: a column whose dual value exceeds 1 by less than this does not improve the LP
TOLERANCE = 1e-9

Jobs = Sequence[tuple[float, int, int]]  # run time (s), CPU millicores, MiB


def best_set(jobs: Jobs, values: Sequence[float], capacity: tuple[int, int]) -> tuple[float, tuple[int, ...]]:
    """The set of jobs that fits the capacity in both resources with the largest sum of
    ``values``: a 0/1 knapsack over (CPU, memory) in their common units."""
    units = [reduce(math.gcd, [limit, *(job[r + 1] for job in jobs)]) for r, limit in enumerate(capacity)]
    room = [limit // unit for limit, unit in zip(capacity, units, strict=True)]
    best: dict[tuple[int, int], tuple[float, tuple[int, ...]]] = {(0, 0): (0.0, ())}
    for n, (_, cpu, memory) in enumerate(jobs):
        if values[n] <= 0:
            continue
        need = (cpu // units[0], memory // units[1])
        for (c, m), (value, chosen) in list(best.items()):
            at = (c + need[0], m + need[1])
            if at[0] <= room[0] and at[1] <= room[1] and best.get(at, (-1.0,))[0] < value + values[n]:
                best[at] = (value + values[n], (*chosen, n))
    return max(best.values())


def configuration_bound(jobs: Jobs, capacity: tuple[int, int]) -> float:
    """The configuration LP's optimum: no schedule of ``jobs`` on ``capacity`` finishes sooner."""
    from ortools.linear_solver import pywraplp  # optional: pip install -e '.[bench]'

    columns: list[tuple[int, ...]] = [(n,) for n in range(len(jobs))]
    while True:
        solver = pywraplp.Solver.CreateSolver("GLOP")
        runs = [solver.NumVar(0, solver.infinity(), "") for _ in columns]
        covers = [
            solver.Add(sum(runs[k] for k, column in enumerate(columns) if n in column) >= seconds)
            for n, (seconds, _, _) in enumerate(jobs)
        ]
        solver.Minimize(sum(runs))
        if solver.Solve() != pywraplp.Solver.OPTIMAL:
            raise RuntimeError("GLOP found no optimum of the configuration LP")
        value, column = best_set(jobs, [cover.dual_value() for cover in covers], capacity)
        if value <= 1 + TOLERANCE:
            return solver.Objective().Value()
        columns.append(column)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=40)
    parser.add_argument("--jobs", type=int, default=40)
    parser.add_argument("files", nargs="*", help="runs saved with bench_admission.py --save-times")
    args = parser.parse_args()
    capacity = (CAPACITY_CPUS * 1000, CAPACITY_MEMORY_MIB)
    workloads = [(f"seed {seed}", *seeded(seed, args.jobs)) for seed in range(1, args.seeds + 1)]
    workloads += [(path, *saved_workload(json.loads(Path(path).read_text()))) for path in args.files]
    stronger = 0
    for name, specs, seconds in workloads:
        jobs = [(seconds[spec.jid], spec.cpu_millicores, spec.memory_mib) for spec in specs]
        area, configuration = area_bound(specs, seconds), configuration_bound(jobs, capacity)
        stronger += configuration > area * (1 + 1e-9)
        gain = configuration - area
        print(f"{name}: area bound {area:.3f} s, configuration LP {configuration:.3f} s (+{gain:.3f} s)")
    print(f"the configuration LP is above the area bound on {stronger} of {len(workloads)} workloads")


if __name__ == "__main__":
    main()
