"""How busy the machine was while a group was timed: load average, CPUs, other processes' CPU use.

The 1-minute load average against the CPUs this process may run on, and the CPU time other
processes took on those CPUs during the group (``/proc/stat``, Linux only); docs/bench.md says why both.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

PROC_STAT = Path("/proc/stat")
_BUSY_FIELDS = (0, 1, 2, 5, 6, 7)  # user nice system [idle iowait] irq softirq steal (guest time is inside user)


@dataclass(frozen=True)
class MachineLoad:
    """The machine's load at one moment."""

    loadavg: tuple[float, float, float] | None  # 1-, 5- and 15-minute load averages (None where the OS has none)
    cpu_count: int | None  # CPUs of the machine
    cpus_available: int  # CPUs this process may run on (its affinity mask)

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "loadavg": list(self.loadavg) if self.loadavg else None}


@dataclass(frozen=True)
class MachineSnapshot:
    """:class:`MachineLoad` plus the counters that give other processes' CPU use between two snapshots."""

    load: MachineLoad
    wall_s: float
    process_cpu_s: float
    cpus_busy_s: float | None  # busy seconds since boot of the CPUs in the affinity mask (/proc/stat)


@dataclass(frozen=True)
class MachineUsage:
    """The machine around one timed group: its load when the group started and ended, the wall time between."""

    before: MachineLoad
    after: MachineLoad
    seconds: float
    own_cpu: float  # cores' worth of CPU this process used meanwhile (2.0: two cores busy)
    others_cpu: float | None  # cores' worth other processes used on the same CPUs (None: not measurable here)

    @property
    def cpus_available(self) -> int:
        return min(self.before.cpus_available, self.after.cpus_available)

    @property
    def peak_load(self) -> float | None:
        """The higher 1-minute load average of the two moments."""
        loads = [m.loadavg[0] for m in (self.before, self.after) if m.loadavg]
        return max(loads) if loads else None

    def loads(self, separator: str = " -> ") -> str:
        """The 1-minute load average before and after, e.g. ``1.20 -> 1.40`` (``-`` where the OS has none)."""
        return separator.join(f"{m.loadavg[0]:.2f}" if m.loadavg else "-" for m in (self.before, self.after))

    def describe(self) -> str:
        """E.g. ``load 1.20 -> 1.40, others' CPU 0.31 of 2``."""
        load = f"load {self.loads()}" if self.before.loadavg and self.after.loadavg else "load unknown"
        others = f", others' CPU {self.others_cpu:.2f} of {self.cpus_available}" if self.others_cpu is not None else ""
        return load + others

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "before": self.before.to_dict(), "after": self.after.to_dict()}


def _cpus_busy_seconds(cpus: set[int] | None) -> float | None:
    """Busy seconds of the given CPUs (all when None) since boot, from /proc/stat; None where unreadable."""
    try:
        lines = PROC_STAT.read_text().splitlines()
        ticks = os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, AttributeError):
        return None
    busy = 0
    for line in lines:
        name, *fields = line.split()
        if name.startswith("cpu") and name != "cpu" and (cpus is None or int(name[3:]) in cpus):
            values = [int(v) for v in fields]
            busy += sum(values[i] for i in _BUSY_FIELDS if i < len(values))
    return busy / ticks


def snapshot() -> MachineSnapshot:
    """The machine's load and CPU counters now."""
    cpus: set[int] | None = None
    loadavg: tuple[float, float, float] | None = None
    with contextlib.suppress(AttributeError, OSError):  # not on Linux
        cpus = os.sched_getaffinity(0)
    with contextlib.suppress(AttributeError, OSError):
        loadavg = os.getloadavg()
    load = MachineLoad(loadavg, os.cpu_count(), len(cpus) if cpus else (os.cpu_count() or 1))
    return MachineSnapshot(load, time.perf_counter(), time.process_time(), _cpus_busy_seconds(cpus))


def usage_between(before: MachineSnapshot, after: MachineSnapshot) -> MachineUsage:
    """What this process and the others used of the CPUs between two snapshots."""
    seconds = max(after.wall_s - before.wall_s, 1e-9)
    own = max(after.process_cpu_s - before.process_cpu_s, 0.0)
    others = None
    if before.cpus_busy_s is not None and after.cpus_busy_s is not None:
        others = max(after.cpus_busy_s - before.cpus_busy_s - own, 0.0) / seconds
    return MachineUsage(before=before.load, after=after.load, seconds=seconds, own_cpu=own / seconds, others_cpu=others)
