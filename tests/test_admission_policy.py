"""The admission policy alone: order, backfill that never delays the head, fair share, messages."""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pfcon.admission import devices
from pfcon.admission.policy import (
    AdmissionPolicy,
    Amount,
    Decision,
    Job,
    dominant_share_order,
    head_slack,
    reserve,
    smallest_sum_at_least,
    total,
)
from pfcon.admission.queue import Capacity
from pfcon.compute.base import EngineCapacity
from pfcon.compute.dockerapi.docker import advertised_gpus
from pfcon.settings import AdmissionSettings

GiB = 1024


def job(id_: int, cpus: float, gib: float, auid: str = "cube", gpus: int = 0) -> Job:
    return Job(id_, auid, Amount(round(cpus * 1000), round(gib * GiB), gpus))


CAPACITY = Amount(4000, 16 * GiB, 0)


def test_fcfs_starts_in_order_while_jobs_fit() -> None:
    policy = AdmissionPolicy(CAPACITY)
    queued = [job(1, 2, 4), job(2, 1, 4), job(3, 1, 4), job(4, 1, 1)]
    decision = policy.decide([], queued)
    assert decision.start == (1, 2, 3)
    assert decision.reasons == {4: "queued: 0 ahead; needs 1 CPU, 1 GiB; free 0 CPUs, 4 GiB"}


def test_the_message_says_why_and_where() -> None:
    policy = AdmissionPolicy(Amount(4000, 16 * GiB))
    running = [job(1, 2.5, 10)]
    queued = [job(2, 2, 8), job(3, 2, 8), job(4, 2, 8), job(5, 2, 8)]
    decision = policy.decide(running, queued)
    assert decision.start == ()
    assert decision.reasons[5] == "queued: 3 ahead; needs 2 CPUs, 8 GiB; free 1.5 CPUs, 6 GiB"
    assert decision.reasons[2].startswith("queued: 0 ahead;")


def test_no_backfill_that_could_delay_the_head() -> None:
    """Head needs 8 GiB, 6 free; a 2 GiB running job could end first and let it start, so a
    1 GiB job behind it must wait (it might still run then)."""
    policy = AdmissionPolicy(Amount(8000, 16 * GiB))
    running = [job(1, 1, 2), job(2, 1, 8)]
    decision = policy.decide(running, [job(3, 1, 8), job(4, 1, 1)])
    assert decision.start == ()
    assert "(kept for the job ahead)" in decision.reasons[4]


def test_backfill_into_the_slack_the_running_jobs_leave() -> None:
    """Both running jobs hold 4 GiB: whichever ends first, the head (10 GiB, 8 free) then has
    12 GiB, so 2 GiB can backfill now without delaying it; one more GiB cannot."""
    policy = AdmissionPolicy(Amount(8000, 16 * GiB))
    running = [job(1, 1, 4), job(2, 1, 4)]
    decision = policy.decide(running, [job(10, 1, 10), job(11, 1, 2), job(12, 1, 1)])
    assert decision.start == (11,)
    assert decision.reasons[12].endswith("(kept for the job ahead)")


def test_backfill_uses_resources_the_head_does_not_need() -> None:
    """The head waits for memory; CPUs beyond what it needs can go to a job behind it."""
    policy = AdmissionPolicy(Amount(8000, 16 * GiB))
    running = [job(1, 2, 12)]  # free: 6 CPUs, 4 GiB
    decision = policy.decide(running, [job(2, 2, 8), job(3, 3, 0.004)])
    # memory: deficit 4 GiB, the only running job frees 12 -> slack 8 GiB; CPUs: 6 - 2 = 4
    assert decision.start == (3,)


def test_a_job_that_can_never_fit_is_named_not_blocking() -> None:
    policy = AdmissionPolicy(Amount(2000, 4 * GiB))
    decision = policy.decide([], [job(1, 4, 1), job(2, 1, 1)])
    assert decision.start == (2,)
    assert decision.never[1].startswith("cpu_limit: the job asks for 4 CPUs, more than the whole capacity")


@pytest.mark.parametrize(
    ("amount", "field", "words"),
    [
        (Amount(3000, 1, 0), "cpu_limit", "3 CPUs"),
        (Amount(1000, 5 * GiB, 0), "memory_limit", "5 GiB"),
        (Amount(1000, 1, 1), "gpu_limit", "1 GPU"),
    ],
)
def test_too_big_names_the_resource(amount: Amount, field: str, words: str) -> None:
    reason = AdmissionPolicy(Amount(2000, 4 * GiB, 0)).too_big(amount)
    assert reason is not None and reason.startswith(f"{field}: the job asks for {words}, more than")


def test_fair_share_interleaves_users_by_dominant_share() -> None:
    """One user's pipeline of 6 queued before another user's 2 does not lock them out."""
    capacity = Amount(4000, 16 * GiB)
    pipeline = [job(i, 1, 1, "alice") for i in range(1, 7)]
    late = [job(7, 1, 1, "bob"), job(8, 1, 1, "bob")]
    order = [j.id for j in dominant_share_order(capacity, [], pipeline + late)]
    assert order == [1, 7, 2, 8, 3, 4, 5, 6]
    decision = AdmissionPolicy(capacity, fair_share=True).decide([], pipeline + late)
    assert decision.start == (1, 7, 2, 8)
    assert AdmissionPolicy(capacity).decide([], pipeline + late).start == (1, 2, 3, 4)


def test_fair_share_counts_what_users_already_run() -> None:
    capacity = Amount(4000, 16 * GiB)
    running = [job(1, 2, 1, "alice")]
    order = dominant_share_order(capacity, running, [job(2, 1, 1, "alice"), job(3, 1, 1, "bob")])
    assert [j.id for j in order] == [3, 2]


def test_smallest_sum_at_least() -> None:
    assert smallest_sum_at_least([4, 4, 2], 3) == 4
    assert smallest_sum_at_least([4, 4, 2], 5) == 6
    assert smallest_sum_at_least([4, 4, 2], 11) is None
    assert smallest_sum_at_least([], 0) == 0
    assert smallest_sum_at_least([7], -3) == 0


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.integers(1, 40), max_size=8),
    st.integers(-5, 120),
)
def test_smallest_sum_matches_brute_force(sizes: list[int], target: int) -> None:
    sums = {sum(c) for r in range(len(sizes) + 1) for c in itertools.combinations(sizes, r)}
    reaching = [s for s in sums if s >= target]
    assert smallest_sum_at_least(sizes, target) == (min(reaching) if reaching else None)


def _earliest_head_start(free: Amount, running_ends: list[tuple[Amount, int]], head: Amount) -> int | None:
    """When the head first fits if running jobs end at the given times (None: never)."""
    for moment in sorted({0, *(end for _, end in running_ends)}):
        room = free
        for amount, end in running_ends:
            if end <= moment:
                room = room + amount
        if head.fits_in(room):
            return moment
    return None


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_backfill_never_delays_the_head_whatever_ends_first(data: st.DataObject) -> None:
    """Brute force over end orders: with every backfilled job running forever, the head
    starts no later than it would have without them."""
    rng = random.Random(data.draw(st.integers(0, 10**6)))
    capacity = Amount(8000, 32 * GiB, 2)

    def amount() -> Amount:
        return Amount(
            rng.choice([250, 500, 1000, 2000]), rng.choice([256, 1024, 2048, 4096]), rng.choice([0, 0, 1])
        )

    running: list[Job] = []
    for index in range(rng.randint(0, 6)):
        candidate = Job(index, "a", amount())
        if candidate.amount.fits_in(capacity - sum((j.amount for j in running), Amount())):
            running.append(candidate)
    queued = [Job(100 + index, "a", amount()) for index in range(rng.randint(1, 8))]
    policy = AdmissionPolicy(capacity)
    decision = policy.decide(running, queued)
    started = set(decision.start)
    head = next((j for j in queued if j.id not in started), None)
    if head is None:
        return
    in_order = [j for j in queued if j.id in started and j.id < head.id]
    backfilled = [j for j in queued if j.id in started and j.id > head.id]
    before = running + in_order
    free_without = capacity - sum((j.amount for j in before), Amount())
    free_with = free_without - sum((j.amount for j in backfilled), Amount())
    assert all(v >= 0 for v in free_with.values())
    for ends in itertools.islice(itertools.permutations(range(len(before))), 60):
        timeline = [(job_.amount, ends[i] + 1) for i, job_ in enumerate(before)]
        assert _earliest_head_start(free_with, timeline, head.amount) == _earliest_head_start(
            free_without, timeline, head.amount
        )


def test_head_slack_is_surplus_where_the_head_already_fits() -> None:
    slack = head_slack(Amount(3000, 1 * GiB, 0), [Amount(1000, 4 * GiB, 0)], Amount(1000, 2 * GiB, 0))
    assert slack == Amount(2000, 3 * GiB, 0)


def test_describe() -> None:
    assert Amount(1500, 6 * GiB).describe() == "1.5 CPUs, 6 GiB"
    assert Amount(1000, 512, 1).describe() == "1 CPU, 512 MiB, 1 GPU"
    assert Amount(250, 1536).describe(gpus=True) == "0.25 CPUs, 1.5 GiB, 0 GPUs"


def test_fair_share_between_equal_shares_serves_the_user_served_least_recently() -> None:
    """One job fits at a time, so nobody runs when the next is chosen: the tie goes to bob,
    who was never served, not to alice's older queued job."""
    capacity = Amount(1000, 16 * GiB)
    queued = [job(2, 1, 1, "alice"), job(3, 1, 1, "alice"), job(4, 1, 1, "bob")]
    policy = AdmissionPolicy(capacity, fair_share=True)
    assert policy.decide([], queued, served={"alice": 100.0}).start == (4,)
    assert [j.id for j in policy.order([], queued, {"alice": 100.0})] == [4, 2, 3]
    assert policy.decide([], queued, served={"alice": 100.0, "bob": 200.0}).start == (2,)


def test_capacity_from_the_engine_with_overrides_and_cpu_overcommit() -> None:
    asked: list[int] = []

    def host() -> EngineCapacity:
        asked.append(1)
        return EngineCapacity(cpus=2, memory_bytes=24 * GiB * 2**20, gpus=1)

    overridden = Capacity(AdmissionSettings(True, None, 8 * GiB, None, 1.5), host)
    assert overridden.get() == Amount(3000, 8 * GiB, 1) and overridden.get() == Amount(3000, 8 * GiB, 1)
    assert asked == [1]  # read once
    assert Capacity(AdmissionSettings(True, 1.5, 1024, 0), host).get() == Amount(1500, 1024, 0)
    assert asked == [1]  # all three set: the engine is not asked


def test_gpus_are_what_the_engine_advertises_named_by_uuid_or_counted_by_index() -> None:
    named = {
        "GenericResources": [
            {"NamedResourceSpec": {"Kind": "NVIDIA-GPU", "Value": "GPU-aa"}},
            {"NamedResourceSpec": {"Kind": "NVIDIA-GPU", "Value": "GPU-bb"}},
            {"DiscreteResourceSpec": {"Kind": "SSD", "Value": 1}},
        ]
    }
    assert advertised_gpus(named) == ("GPU-aa", "GPU-bb")
    counted = {"GenericResources": [{"DiscreteResourceSpec": {"Kind": "gpu", "Value": 3}}]}
    assert advertised_gpus(counted) == ("0", "1", "2")
    assert advertised_gpus({"GenericResources": None}) == ()


def test_gpu_ids_from_the_setting_else_the_engine_else_indices() -> None:
    def host() -> EngineCapacity:
        return EngineCapacity(cpus=2, memory_bytes=GiB * 2**20, gpus=2, gpu_devices=("GPU-aa", "GPU-bb"))

    assert Capacity(AdmissionSettings(True), host).gpu_devices() == ("GPU-aa", "GPU-bb")
    listed = AdmissionSettings(True, gpus=2, gpu_devices=("1", "3"))
    assert Capacity(listed, host).gpu_devices() == ("1", "3")
    # fewer than the engine names: which of them is not said, so the first ones by index
    assert Capacity(AdmissionSettings(True, gpus=1), host).gpu_devices() == ("0",)
    assert Capacity(AdmissionSettings(True, 2, 1024, 2), host).gpu_devices() == ("0", "1")


def test_a_starting_job_gets_gpus_no_holder_has() -> None:
    inventory = ("GPU-aa", "GPU-bb", "GPU-cc", "GPU-dd")
    holders = [(1, 1, ("GPU-bb",)), (2, 0, ())]
    given = devices.assign(inventory, holders, [(3, 2), (4, 0), (5, 1), (6, 1)])
    assert given == {3: ("GPU-aa", "GPU-cc"), 5: ("GPU-dd",)}  # 6 finds none left: it waits


def test_a_holder_started_by_count_holds_the_first_gpus() -> None:
    """Docker gives a job asked for N GPUs by count the first N of the host (moby's
    countToDevices), which a job started with the queue off, or before pfcon named GPUs, has."""
    inventory = ("0", "1", "2")
    assert devices.taken(inventory, [(1, 2, ())]) == {"0", "1"}
    assert devices.assign(inventory, [(1, 2, ())], [(2, 1)]) == {2: ("2",)}
    assert devices.assign(inventory, [(1, 2, ()), (2, 1, ("2",))], [(3, 1)]) == {}


def test_the_gpus_a_recorded_spec_names() -> None:
    assert devices.devices_of({"resources": {"gpus": 2, "gpu_devices": ["0", "1"]}}) == ("0", "1")
    assert devices.devices_of({"resources": {"gpus": 1}}) == ()  # recorded before GPUs were named
    assert devices.devices_of(None) == ()
    assert devices.devices_of({"resources": {"gpu_devices": "0"}}) == ()  # not a list: names none


def timed(
    id_: int, cpus: float, gib: float, runs_for: float | None = None, ends_at: float | None = None
) -> Job:
    return Job(id_, "cube", Amount(round(cpus * 1000), round(gib * GiB), 0), runs_for, ends_at)


def test_an_estimate_lets_a_short_job_backfill_before_the_head_starts() -> None:
    policy = AdmissionPolicy(CAPACITY)
    running = [timed(1, 2, 2, ends_at=100.0), timed(2, 1, 2, ends_at=130.0)]
    queued = [timed(3, 3, 2, runs_for=50.0), timed(4, 1, 2, runs_for=20.0), timed(5, 1, 2, runs_for=60.0)]
    # without estimates: the head (3 CPUs) needs job 1's or both jobs' CPUs; no slack for 4 or 5
    assert policy.decide(running, queued).start == ()
    # the head is estimated to start at 100 (job 1 ends); job 4 ends by 80, job 5 only at 120
    decision = policy.decide(running, queued, now=60.0)
    assert decision.start == (4,)


# The head (3 CPUs) is estimated to start at 100, when job 1 ends; 1 CPU is free until then.
# Job 4 (20 s) and job 5 (40 s) would each end by 100, but only one fits now.
RUNNING = [timed(1, 2, 2, ends_at=100.0), timed(2, 1, 2, ends_at=130.0)]
QUEUED = [timed(3, 3, 2, runs_for=50.0), timed(4, 1, 2, runs_for=20.0), timed(5, 1, 2, runs_for=40.0)]


def test_the_lookahead_backfills_the_job_after_which_the_queue_ends_first() -> None:
    """Job 4 first: the head runs 100-150, and job 5 waits for job 2's CPU (130-170). Job 5
    first: it ends at 100 with job 1, the head runs 100-150 and job 4 130-150."""
    policy = AdmissionPolicy(CAPACITY)
    head, four, five = QUEUED
    assert policy.estimated_end([*RUNNING, four.holding(60.0)], [head, five], 60.0) == 170.0
    assert policy.estimated_end([*RUNNING, five.holding(60.0)], [head, four], 60.0) == 150.0
    assert policy.decide(RUNNING, QUEUED, now=60.0).start == (5,)
    # queue order without the lookahead, or when a job in the queue has no estimate
    assert AdmissionPolicy(CAPACITY, lookahead=0).decide(RUNNING, QUEUED, now=60.0).start == (4,)
    assert policy.decide(RUNNING, [*QUEUED, timed(6, 1, 2)], now=60.0).start == (4,)


def test_the_lookahead_only_looks_at_a_queue_it_can_simulate() -> None:
    """From the head on the queue is 3 jobs: a lookahead of 2 does not simulate it."""
    assert AdmissionPolicy(CAPACITY, lookahead=2).decide(RUNNING, QUEUED, now=60.0).start == (4,)
    assert AdmissionPolicy(CAPACITY, lookahead=3).decide(RUNNING, QUEUED, now=60.0).start == (5,)


def test_between_backfills_estimated_to_end_the_queue_alike_queue_order_wins() -> None:
    policy = AdmissionPolicy(CAPACITY)
    twins = [QUEUED[0], timed(4, 1, 2, runs_for=40.0), timed(5, 1, 2, runs_for=40.0)]
    assert policy.decide(RUNNING, twins, now=60.0).start == (4,)


def test_estimates_fall_back_to_the_safe_rule_when_one_holder_has_none_or_overran() -> None:
    policy = AdmissionPolicy(CAPACITY)
    queued = [timed(3, 3, 2, runs_for=50.0), timed(4, 1, 2, runs_for=20.0)]
    unknown = [timed(1, 2, 2, ends_at=100.0), timed(2, 1, 2)]
    assert policy.decide(unknown, queued, now=60.0).start == ()
    overran = [timed(1, 2, 2, ends_at=100.0), timed(2, 1, 2, ends_at=50.0)]
    assert policy.decide(overran, queued, now=60.0).start == ()


def test_without_its_own_estimate_a_job_backfills_only_into_the_extra() -> None:
    policy = AdmissionPolicy(CAPACITY)
    running = [timed(1, 3, 2, ends_at=100.0)]
    # the head needs 3 CPUs; at 100, 4 are free: 1 CPU of extra, for any job, however long
    queued = [timed(2, 3, 2, runs_for=50.0), timed(3, 1, 2), timed(4, 1, 2, runs_for=500.0)]
    assert policy.decide(running, queued, now=60.0).start == (3,)


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_a_backfill_by_estimate_never_delays_the_head_when_estimates_hold(data: st.DataObject) -> None:
    """Jobs end exactly as estimated: the head starts no later than with no backfill at all."""
    capacity = Amount(4000, 8 * GiB, 0)
    policy = AdmissionPolicy(capacity)
    sizes = st.tuples(st.integers(1, 4), st.integers(1, 8))
    jobs = st.lists(st.tuples(sizes, st.integers(1, 12)), max_size=5)
    running = [
        timed(n, cpu, gib, ends_at=float(end)) for n, ((cpu, gib), end) in enumerate(data.draw(jobs)[:4])
    ]
    free = policy.free(running)
    if not all(value >= 0 for value in free.values()):
        return
    queued = [
        timed(100 + n, cpu, gib, runs_for=float(took)) for n, ((cpu, gib), took) in enumerate(data.draw(jobs))
    ]
    decision = policy.decide(running, queued, now=0.0)
    started = [job for job in queued if job.id in decision.start]
    head = next((job for job in policy.order(running, queued) if job.id not in decision.start), None)
    if head is None:
        return

    def head_start(extra: list[Job]) -> float:
        holders = [(job.ends_at or 0.0, job.amount) for job in running]
        holders += [(job.runs_for or 0.0, job.amount) for job in extra]
        room = capacity - total(amount for _, amount in holders)
        when = 0.0
        for end, amount in sorted(holders, key=lambda holder: holder[0]):
            if head.amount.fits_in(room):
                break
            room, when = room + amount, end
        return when

    in_order = [job for job in started if job.id < head.id]
    assert head_start(started) <= head_start(in_order)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_the_lookahead_never_delays_the_head_nor_ends_the_queue_later(data: st.DataObject) -> None:
    """Every backfill the lookahead may pick (the candidates in any order, each admitted by the
    reservation) leaves the head's estimated start where the jobs ahead of it alone put it,
    and the one it picks is estimated to end the queue no later than queue order's."""
    capacity = Amount(4000, 8 * GiB, 0)
    policy, in_order = AdmissionPolicy(capacity), AdmissionPolicy(capacity, lookahead=0)
    running = [
        timed(n, cpu, gib, ends_at=float(end))
        for n, (cpu, gib, end) in enumerate(
            data.draw(
                st.lists(st.tuples(st.integers(1, 4), st.integers(1, 8), st.integers(1, 12)), max_size=4)
            )
        )
    ]
    free = policy.free(running)
    if not all(value >= 0 for value in free.values()):
        return
    queued = [
        timed(100 + n, cpu, gib, runs_for=float(took))
        for n, (cpu, gib, took) in enumerate(
            data.draw(
                st.lists(st.tuples(st.integers(1, 3), st.integers(1, 4), st.integers(1, 12)), max_size=8)
            )
        )
    ]
    plain = in_order.decide(running, queued, now=0.0)
    waiting = [job for job in queued if job.id not in plain.start]
    if not waiting:
        return
    head, behind = waiting[0], waiting[1:]
    ahead = [job for job in queued if job.id < head.id]  # started in order
    holding = [*running, *(job.holding(0.0) for job in ahead)]
    room = free - total(job.amount for job in ahead)

    def head_start(holders: list[Job]) -> float:
        left, when = capacity - total(job.amount for job in holders), 0.0
        for job in sorted(holders, key=lambda job: job.ends_at or 0.0):
            if head.amount.fits_in(left):
                break
            left, when = left + job.amount, job.ends_at or 0.0
        return when

    reservation = reserve(room, holding, head.amount, 0.0)
    shuffled = data.draw(st.permutations(behind))
    backfill = reservation.backfill(room, shuffled, 0.0)
    assert head_start([*holding, *(job.holding(0.0) for job in backfill)]) <= head_start(holding)

    def queue_end(decision: Decision) -> float:
        started = [job.holding(0.0) for job in queued if job.id in decision.start]
        return policy.estimated_end(
            [*running, *started], [job for job in queued if job.id not in decision.start], 0.0
        )

    chosen = policy.decide(running, queued, now=0.0)
    assert next(job for job in queued if job.id not in chosen.start) == head
    assert queue_end(chosen) <= queue_end(plain)
