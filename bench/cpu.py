"""CPU time and memory of processes, read from ``/proc`` (Linux), so a ratio on 2 shared
cores can be checked against what each side cost.

* :func:`sample` takes the CPU time (``utime + stime`` of ``/proc/<pid>/stat``, in seconds)
  of every process under a root process (the bench's driver: ``ray.init(address="local")``
  starts the GCS, the raylet and, under the raylet, every worker and Serve replica, so the
  descendants of the driver are exactly this bench's Ray processes, never another session's),
  and the machine's busy time from ``/proc/stat``;
* :func:`delta` is what happened between two samples: CPU seconds of those processes, of the
  whole machine, and the machine's steal (time a virtual machine waited for its host);
* :func:`find_replicas` finds a Serve replica's PID by its process title
  (``ray::ServeReplica:<app>:<deployment>``); :func:`rss_bytes` reads ``VmRSS``.

Processes that start between two samples count from zero; processes that end are lost
(Serve replicas live for the whole run, so neither happens in a measured window).

Example:
    >>> before = sample(os.getpid(), include_root=True)
    >>> _ = sum(i * i for i in range(200_000))
    >>> delta(before, sample(os.getpid(), include_root=True)).cpu_s >= 0.0
    True
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CpuDelta", "CpuSample", "delta", "find_replicas", "rss_bytes", "sample"]

TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")
PROC = Path("/proc")


def _stat(pid: int) -> tuple[int, float] | None:
    """``(ppid, cpu seconds)`` of one process, or None when it is gone."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses: split after the last ')'
    fields = text.rsplit(")", 1)[1].split()
    return int(fields[1]), (int(fields[11]) + int(fields[12])) * TICK_S


def _processes() -> dict[int, tuple[int, float]]:
    table = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            stat = _stat(int(entry.name))
            if stat is not None:
                table[int(entry.name)] = stat
    return table


def descendants(root: int, table: dict[int, tuple[int, float]] | None = None) -> set[int]:
    """Every process whose parent chain reaches ``root`` (``root`` itself excluded)."""
    table = _processes() if table is None else table
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found: set[int] = set()
    stack = list(children.get(root, ()))
    while stack:
        pid = stack.pop()
        if pid not in found:
            found.add(pid)
            stack.extend(children.get(pid, ()))
    return found


def _machine() -> tuple[float, float]:
    """``(busy, steal)`` seconds of all CPUs since boot, from the first line of /proc/stat."""
    values = [int(v) for v in (PROC / "stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (values + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) * TICK_S, steal * TICK_S


@dataclass(frozen=True)
class CpuSample:
    """CPU seconds per process under a root, and the machine's, at one instant."""

    at: float
    per_pid: dict[int, float]
    machine_busy_s: float
    machine_steal_s: float


@dataclass(frozen=True)
class CpuDelta:
    """What happened between two samples."""

    wall_s: float
    cpu_s: float
    machine_busy_s: float
    machine_steal_s: float

    @property
    def cores(self) -> float:
        """Average cores the sampled processes kept busy."""
        return self.cpu_s / self.wall_s if self.wall_s > 0 else 0.0


def sample(root: int, exclude: Iterable[int] = (), include_root: bool = False) -> CpuSample:
    """CPU seconds of every process under ``root`` except ``exclude`` (and of ``root``
    itself with ``include_root``)."""
    table = _processes()
    pids = descendants(root, table) - set(exclude)
    if include_root:
        pids.add(root)
    busy, steal = _machine()
    return CpuSample(
        time.perf_counter(), {pid: table[pid][1] for pid in pids if pid in table}, busy, steal
    )


def delta(before: CpuSample, after: CpuSample) -> CpuDelta:
    """CPU used between two samples by the processes of ``after`` (new ones from zero)."""
    used = sum(max(0.0, cpu - before.per_pid.get(pid, 0.0)) for pid, cpu in after.per_pid.items())
    return CpuDelta(
        wall_s=after.at - before.at,
        cpu_s=used,
        machine_busy_s=after.machine_busy_s - before.machine_busy_s,
        machine_steal_s=after.machine_steal_s - before.machine_steal_s,
    )


def cpu_seconds(pid: int) -> float:
    """CPU seconds one process used so far (0 when it is gone)."""
    stat = _stat(pid)
    return stat[1] if stat else 0.0


def find_replicas(root: int, app: str, deployment: str) -> list[int]:
    """PIDs of the Serve replicas of ``app``/``deployment`` under ``root`` (Ray sets each
    replica's process title to ``ray::ServeReplica:<app>:<deployment>``)."""
    title = f"ray::ServeReplica:{app}:{deployment}"
    found = []
    for pid in sorted(descendants(root)):
        try:
            cmdline = (PROC / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").strip()
        except OSError:
            continue
        if cmdline.decode(errors="replace").split(" ", 1)[0] == title:
            found.append(pid)
    return found


def rss_bytes(pid: int) -> int | None:
    """Resident set size (``VmRSS`` of ``/proc/<pid>/status``) in bytes; None when gone."""
    try:
        for line in (PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None
