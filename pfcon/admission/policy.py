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
   Which jobs backfill: those behind the head in queue order, each that is still allowed;
   but when the whole queue from the head on (at most :data:`LOOKAHEAD_JOBS` jobs) has
   estimates, the *lookahead* tries each allowed job first (the others following in queue
   order) and keeps the backfill after which the queue, run on by this rule in queue order
   with every job lasting as estimated, ends first (queue order between equals). Every
   option is allowed by the same reservation, so the head's start does not move.
5. A job that cannot fit even in the whole capacity (the capacity shrank since it was
   queued) is named in :attr:`Decision.never` so the scheduler ends it instead of blocking the
   queue behind it forever.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

#: rule 4 chooses between backfills by simulating the queue only when it is at most this long
#: from the head on (each option costs one simulation; the estimates cover the first 32 anyway)
LOOKAHEAD_JOBS = 32

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

    # spelled out, not zipped: rule 4's lookahead calls these some 10^5 times a decision
    def __add__(self, other: Amount) -> Amount:
        return Amount(
            self.cpu_millicores + other.cpu_millicores,
            self.memory_mib + other.memory_mib,
            self.gpus + other.gpus,
        )

    def __sub__(self, other: Amount) -> Amount:
        return Amount(
            self.cpu_millicores - other.cpu_millicores,
            self.memory_mib - other.memory_mib,
            self.gpus - other.gpus,
        )

    def values(self) -> tuple[int, int, int]:
        return (self.cpu_millicores, self.memory_mib, self.gpus)

    def fits_in(self, room: Amount) -> bool:
        return (
            self.cpu_millicores <= room.cpu_millicores
            and self.memory_mib <= room.memory_mib
            and self.gpus <= room.gpus
        )

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

    def holding(self, now: float | None) -> Job:
        """This queued job once started ``now``: holding its resources until its estimated end."""
        return Job(self.id, self.auid, self.amount, ends_at=self.end_if_started(now))


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
    #: rule 4's lookahead: the longest queue (from the head on) it simulates; 0 turns it off
    lookahead: int = LOOKAHEAD_JOBS

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
        started, free, blocked = self._pass(running, order, now, choose=True)
        reasons = self._reasons(order, {job.id for job in started}, blocked, free)
        return Decision(tuple(job.id for job in started), reasons, never, tuple(job.id for job in order))

    def _pass(
        self, running: Sequence[Job], order: Sequence[Job], now: float | None, choose: bool
    ) -> tuple[list[Job], Amount, set[int]]:
        """Rules 2-4 over ``order``: the jobs to start, what is free after them, and the jobs
        left waiting that fit in it (kept for the head). ``choose``: with the lookahead."""
        free = self.free(running)
        holding = list(running)
        started: list[Job] = []
        for job in order:  # rule 2: in order while each fits
            if not job.amount.fits_in(free):
                break
            started.append(job)
            free = free - job.amount
            holding.append(job.holding(now))
        if len(started) == len(order):
            return started, free, set()
        head, behind = order[len(started)], order[len(started) + 1 :]
        reservation = reserve(free, holding, head.amount, now)
        backfill = reservation.backfill(free, behind, now)
        if choose and reservation.shadow is not None:
            backfill = self._best_backfill(reservation, free, holding, order[len(started) :], backfill, now)
        for job in backfill:
            free = free - job.amount
        if not choose:  # a step of the lookahead's simulation: no one reads why jobs wait
            return started + backfill, free, set()
        chosen = {job.id for job in backfill}
        blocked = {job.id for job in behind if job.id not in chosen and job.amount.fits_in(free)}
        return started + backfill, free, blocked

    def _best_backfill(
        self,
        reservation: Reservation,
        free: Amount,
        holding: Sequence[Job],
        waiting: Sequence[Job],
        in_order: list[Job],
        now: float | None,
    ) -> list[Job]:
        """Rule 4's choice between backfills that all leave the head's shadow time alone: when
        the whole queue from the head on (at most :attr:`lookahead` jobs) has estimates, the
        one after which the queue, run on by the rule in queue order, is estimated to end
        first; between equals, and otherwise, queue order.

        Each candidate is tried first, the others following in queue order, so the options
        are at most the queue's length, each costing one simulation of the queue."""
        if now is None or len(waiting) > self.lookahead or any(job.runs_for is None for job in waiting):
            return in_order
        behind = waiting[1:]
        options = {tuple(job.id for job in in_order): in_order}
        for first in behind:
            option = reservation.backfill(free, [first, *(job for job in behind if job is not first)], now)
            if option and option[0] is first:
                options.setdefault(tuple(job.id for job in option), option)
        if len(options) == 1:
            return in_order

        def estimated_end(option: list[Job]) -> float:
            chosen = {job.id for job in option}
            return self.estimated_end(
                [*holding, *(job.holding(now) for job in option)],
                [job for job in waiting if job.id not in chosen],
                now,
            )

        return min(options.values(), key=estimated_end)  # the first of equals: queue order

    def estimated_end(self, holding: Sequence[Job], waiting: Sequence[Job], now: float) -> float:
        """When the last of ``holding`` and ``waiting`` ends if every job lasts as estimated
        and the queue runs on by rules 2-4 in this order (without the lookahead)."""
        running = list(holding)
        queue = list(waiting)

        def end(job: Job) -> float:  # every job has one here (rule 4 holds): None is moot
            return now if job.ends_at is None else job.ends_at

        while queue:
            started, _, _ = self._pass(running, queue, now, choose=False)
            chosen = {job.id for job in started}
            queue = [job for job in queue if job.id not in chosen]
            running += [job.holding(now) for job in started]
            if not queue:
                break
            now = min(end(job) for job in running)
            running = [job for job in running if end(job) > now]
        return max((end(job) for job in running), default=now)

    def order(
        self, running: Sequence[Job], queued: Sequence[Job], served: Mapping[str, float] | None = None
    ) -> list[Job]:
        """The queue in the order jobs get their turn."""
        if not self.fair_share:
            return list(queued)
        return dominant_share_order(self.capacity, running, queued, served)

    def _reasons(
        self, order: list[Job], started: set[int], blocked: set[int], free: Amount
    ) -> dict[int, str]:
        gpus = self.capacity.gpus > 0
        reasons: dict[int, str] = {}
        ahead = 0
        for job in order:
            if job.id in started:
                continue
            why = " (kept for the job ahead)" if job.id in blocked else ""
            reasons[job.id] = (
                f"queued: {ahead} ahead; needs {job.amount.describe(gpus)}; free {free.describe(gpus)}{why}"
            )
            ahead += 1
        return reasons


@dataclass(frozen=True)
class Reservation:
    """The head's reservation: what backfill may take without delaying it.

    ``slack`` is rule 3's (safe whatever ends first). With estimates, ``shadow`` is when the
    head is estimated to start and ``slack`` is the extra left over then (rule 4).
    """

    slack: Amount
    shadow: float | None = None

    def backfill(self, free: Amount, candidates: Iterable[Job], now: float | None) -> list[Job]:
        """The candidates, in this order, that fit in what is free and may backfill: each
        estimated to end by the shadow time, or fitting in the slack, which it then takes."""
        slack, chosen = self.slack, []
        for job in candidates:
            if not job.amount.fits_in(free):
                continue
            ends_at = job.end_if_started(now)
            if self.shadow is None or ends_at is None or ends_at > self.shadow:
                if not job.amount.fits_in(slack):
                    continue
                slack = slack - job.amount  # may run past the head's start: takes the slack
            chosen.append(job)
            free = free - job.amount
        return chosen


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
