"""The admission policy: which queued jobs start now, and why the others wait. Pure.

Given the capacity, the jobs holding resources (started, or claimed and being started) and
the queue, :meth:`AdmissionPolicy.decide` returns the jobs to start and, for every job left
waiting, a message saying why and where (``queued: 3 ahead; needs 2 CPUs, 8 GiB; free 1.5
CPUs, 6 GiB``). No clock, no database, no engine: the scheduler feeds it and acts on it.

The rule (documented in docs/admission.md):

1. **Order.** First come, first served (the store's queue order). With fair share, the queue is
   interleaved between ``auid``s by *dominant resource fairness*: the next place goes to the
   user whose running and already-placed jobs hold the smallest share of the capacity in their
   most used resource; between equal shares, to the user served least recently (then the
   older job), so a 500-job pipeline does not lock out a user who submits one job, even when
   only one job fits at a time.
2. **Start in order** while each job fits in what is free.
3. **The first job that does not fit is the head**: it gets a reservation, EASY-style, worked
   out from the running jobs' limits alone, whatever their run times. The head
   starts at the first moment some set of running jobs has ended and left enough free. A job
   behind it may *backfill* now only if it fits in what is free now *and* in the head's slack:
   for each resource, the least that can be left over at the moment the head first fits,
   whichever running jobs end first (so even a backfilled job that runs forever delays the
   head by nothing). Backfilled jobs share that slack.
4. **With run-time estimates** (``now`` given, and every job holding resources has an
   estimated end still ahead), the reservation is EASY's own: the head's *shadow time* is
   when, the running jobs ending as estimated, it first fits, and its *extra* what is left
   over then. A job behind it may also backfill if it fits now and is estimated to end by
   the shadow time, or fits in the extra (which the slack never exceeds). One job holding
   resources without an estimate, or past its estimated end, and the rule of 3 applies.
5. A job that cannot fit even in the whole capacity (the capacity shrank since it was
   queued) is named in :attr:`Decision.never` so the scheduler ends it instead of blocking the
   queue behind it forever.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

RESOURCES = ("cpu_millicores", "memory_mib", "gpus")
#: the submit form's field and the setting that sets each resource's capacity
FIELDS = {
    "cpu_millicores": ("cpu_limit", "PFCON_CAPACITY_CPUS times PFCON_CPU_OVERCOMMIT"),
    "memory_mib": ("memory_limit", "PFCON_CAPACITY_MEMORY_MIB"),
    "gpus": ("gpu_limit", "PFCON_CAPACITY_GPUS"),
}


@dataclass(frozen=True)
class Amount:
    """CPUs (millicores), memory (MiB) and GPUs: what a job asks for, or what is free."""

    cpu_millicores: int = 0
    memory_mib: int = 0
    gpus: int = 0

    def __add__(self, other: Amount) -> Amount:
        return Amount(*(a + b for a, b in zip(self.values(), other.values(), strict=True)))

    def __sub__(self, other: Amount) -> Amount:
        return Amount(*(a - b for a, b in zip(self.values(), other.values(), strict=True)))

    def values(self) -> tuple[int, int, int]:
        return (self.cpu_millicores, self.memory_mib, self.gpus)

    def fits_in(self, room: Amount) -> bool:
        return all(need <= free for need, free in zip(self.values(), room.values(), strict=True))

    def describe(self, gpus: bool = False) -> str:
        """``2 CPUs, 8 GiB`` (``, 1 GPU`` when the job asks for GPUs or ``gpus``)."""
        parts = [_cpus(self.cpu_millicores), _memory(self.memory_mib)]
        if self.gpus or gpus:
            parts.append(describe_one("gpus", self.gpus))
        return ", ".join(parts)


def total(amounts: Iterable[Amount]) -> Amount:
    result = Amount()
    for amount in amounts:
        result = result + amount
    return result


def describe_one(resource: str, value: int) -> str:
    """One resource in words: ``1.5 CPUs``, ``8 GiB``, ``2 GPUs``."""
    if resource == "cpu_millicores":
        return _cpus(value)
    if resource == "memory_mib":
        return _memory(value)
    return f"{value} GPU{'' if value == 1 else 's'}"


def _cpus(millicores: int) -> str:
    value = f"{millicores / 1000:.3f}".rstrip("0").rstrip(".")
    return f"{value} CPU{'' if millicores == 1000 else 's'}"


def _memory(mib: int) -> str:
    if abs(mib) >= 1024:
        return f"{mib / 1024:.2f}".rstrip("0").rstrip(".") + " GiB"
    return f"{mib} MiB"


@dataclass(frozen=True)
class Job:
    """A queued or running job as the policy sees it: its place (``id``), user and resources."""

    id: int
    auid: str
    amount: Amount
    #: estimated run time (seconds) of a queued job, from its earlier runs; None: unknown
    runs_for: float | None = None
    #: estimated end (same clock as ``decide``'s ``now``) of a job holding resources
    ends_at: float | None = None

    def end_if_started(self, now: float | None) -> float | None:
        """When the job is estimated to end if it starts ``now`` (None: no estimate)."""
        return None if now is None or self.runs_for is None else now + self.runs_for


@dataclass(frozen=True)
class Decision:
    """What to do now: jobs to start (in order), why each other job waits, jobs that never fit."""

    start: tuple[int, ...] = ()
    reasons: dict[int, str] = field(default_factory=dict)
    never: dict[int, str] = field(default_factory=dict)
    order: tuple[int, ...] = ()


@dataclass(frozen=True)
class AdmissionPolicy:
    """FCFS (or fair share between auids) with EASY-style backfill; see the module docstring."""

    capacity: Amount
    fair_share: bool = False

    def too_big(self, amount: Amount) -> str | None:
        """Why a job can never run here (naming the form field), or None."""
        for name, need, room in zip(RESOURCES, amount.values(), self.capacity.values(), strict=True):
            if need > room:
                form_field, setting = FIELDS[name]
                return (
                    f"{form_field}: the job asks for {describe_one(name, need)}, more than the whole "
                    f"capacity of this pfcon ({describe_one(name, room)}, {setting}); it could never start"
                )
        return None

    def free(self, running: Sequence[Job]) -> Amount:
        return self.capacity - total(job.amount for job in running)

    def decide(
        self,
        running: Sequence[Job],
        queued: Sequence[Job],
        served: Mapping[str, float] | None = None,
        now: float | None = None,
    ) -> Decision:
        """Which of ``queued`` (in queue order) start now, given ``running``.

        ``served`` is when each user last had a job admitted (fair share's tie-break);
        ``now`` turns on the run-time estimates (rule 4), None keeps to the limits alone.
        """
        never = {job.id: reason for job in queued if (reason := self.too_big(job.amount))}
        order = self.order(running, [job for job in queued if job.id not in never], served or {})
        free = self.free(running)
        holding = list(running)
        started: list[int] = []
        reservation: Reservation | None = None
        blocked: dict[int, bool] = {}
        for job in order:
            fits = job.amount.fits_in(free)
            if fits and (reservation is None or reservation.admits(job, now)):
                started.append(job.id)
            else:
                if reservation is None:  # the head: reserve for it
                    reservation = reserve(free, holding, job.amount, now)
                blocked[job.id] = fits
                continue
            free = free - job.amount
            holding.append(Job(job.id, job.auid, job.amount, ends_at=job.end_if_started(now)))
        reasons = self._reasons(order, set(started), blocked, free)
        return Decision(tuple(started), reasons, never, tuple(job.id for job in order))

    def order(
        self, running: Sequence[Job], queued: Sequence[Job], served: Mapping[str, float] | None = None
    ) -> list[Job]:
        """The queue in the order jobs get their turn."""
        if not self.fair_share:
            return list(queued)
        return dominant_share_order(self.capacity, running, queued, served)

    def _reasons(
        self, order: list[Job], started: set[int], blocked: dict[int, bool], free: Amount
    ) -> dict[int, str]:
        gpus = self.capacity.gpus > 0
        reasons: dict[int, str] = {}
        ahead = 0
        for job in order:
            if job.id in started:
                continue
            why = " (kept for the job ahead)" if blocked.get(job.id) else ""
            reasons[job.id] = (
                f"queued: {ahead} ahead; needs {job.amount.describe(gpus)}; free {free.describe(gpus)}{why}"
            )
            ahead += 1
        return reasons


@dataclass
class Reservation:
    """The head's reservation: what backfill may take without delaying it.

    ``slack`` is rule 3's (safe whatever ends first). With estimates, ``shadow`` is when the
    head is estimated to start and ``slack`` is the extra left over then (rule 4).
    """

    slack: Amount
    shadow: float | None = None

    def admits(self, job: Job, now: float | None) -> bool:
        """Whether ``job`` (which fits now) may backfill; takes its share of the slack if so."""
        ends_at = job.end_if_started(now)
        if self.shadow is not None and ends_at is not None and ends_at <= self.shadow:
            return True  # estimated to end before the head starts: leaves the slack alone
        if not job.amount.fits_in(self.slack):
            return False
        self.slack = self.slack - job.amount
        return True


def reserve(free: Amount, holding: Sequence[Job], head: Amount, now: float | None) -> Reservation:
    """The head's reservation: EASY's shadow time and extra when every holder has an estimated
    end ahead of ``now``, else the slack that holds whatever ends first."""
    ends = [job.ends_at for job in holding]
    if now is None or any(end is None or end <= now for end in ends):
        return Reservation(head_slack(free, [job.amount for job in holding], head))
    room, shadow = free, now
    for job in sorted(holding, key=lambda job: job.ends_at or now):
        if head.fits_in(room):
            break
        room, shadow = room + job.amount, job.ends_at or now
    if not head.fits_in(room):  # only a head bigger than the capacity; too_big keeps it out
        return Reservation(head_slack(free, [job.amount for job in holding], head))
    return Reservation(room - head, shadow)


def head_slack(free: Amount, holding: Sequence[Amount], head: Amount) -> Amount:
    """Per resource, the least left over when the head first fits, whatever ends first.

    The head fits once the jobs that ended freed at least its deficit in every resource. In
    resource ``r`` the least that can have been freed by then is at least the smallest sum of
    running jobs' ``r`` that reaches the deficit in ``r`` (a lower bound: it ignores the other
    resources' constraints, which only raise it). Using a lower bound keeps the rule safe.
    """
    slack = []
    for index, (room, need) in enumerate(zip(free.values(), head.values(), strict=True)):
        sizes = [amount.values()[index] for amount in holding]
        freed = smallest_sum_at_least(sizes, need - room)
        slack.append(0 if freed is None else max(0, room + freed - need))
    return Amount(*slack)


def smallest_sum_at_least(sizes: Sequence[int], target: int) -> int | None:
    """The smallest sum of a subset of ``sizes`` that is at least ``target`` (None: none is).

    Subset sums as the bits of one integer (bit ``s`` set: some subset sums to ``s``); the answer
    is below ``target + max(sizes)``, so no bit beyond that is kept.
    """
    if target <= 0:
        return 0
    positive = [size for size in sizes if size > 0]
    if sum(positive) < target:
        return None
    mask = (1 << (target + max(positive))) - 1
    reachable = 1
    for size in positive:
        reachable = (reachable | (reachable << size)) & mask
    above = reachable >> target
    return target + (above & -above).bit_length() - 1


def dominant_share_order(
    capacity: Amount, running: Sequence[Job], queued: Sequence[Job], served: Mapping[str, float] | None = None
) -> list[Job]:
    """Interleave ``queued`` between users by dominant resource fairness (see the module docstring)."""
    used: dict[str, Amount] = {}
    for job in running:
        used[job.auid] = used.get(job.auid, Amount()) + job.amount
    last = dict(served or {})
    turn = max(last.values(), default=0.0)
    pending: dict[str, list[Job]] = {}
    for job in queued:
        pending.setdefault(job.auid, []).append(job)
    position = dict.fromkeys(pending, 0)
    order: list[Job] = []

    def share(auid: str) -> float:
        amount = used.get(auid, Amount())
        fractions = zip(amount.values(), capacity.values(), strict=True)
        return max((value / room for value, room in fractions if room > 0), default=0.0)

    while len(order) < len(queued):
        auid = min(
            (user for user in pending if position[user] < len(pending[user])),
            key=lambda user: (share(user), last.get(user, float("-inf")), pending[user][position[user]].id),
        )
        job = pending[auid][position[auid]]
        position[auid] += 1
        used[auid] = used.get(auid, Amount()) + job.amount
        turn += 1.0
        last[auid] = turn
        order.append(job)
    return order
