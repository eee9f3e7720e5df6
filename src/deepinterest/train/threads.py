"""How many CPU threads training should use: the cores that are free for it.

torch's default is every core of the machine. When another job keeps some
of them busy, that oversubscribes: OpenMP threads wait on each other, and a
default-dataset epoch went from 5 s to 37 s with two other jobs running. So
the default here is the cores this process may run on (its CPU affinity)
less those other processes keep busy, measured over a short window from
``/proc/stat`` with this process's own CPU time taken out (it sleeps during
the window, but a load average would count its own earlier work, e.g. the
embedding that precedes training in ``di run``). Elsewhere (no
``/proc/stat``) it is the affinity count. An explicit ``threads`` wins.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

WINDOW_S = 0.3


def usable_cores() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _cpu_times() -> tuple[float, float] | None:
    """(busy, total) jiffies of all CPUs from /proc/stat, or None where it does not exist."""
    try:
        with open("/proc/stat", encoding="ascii") as handle:
            fields = [float(v) for v in handle.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


def busy_elsewhere(window: float = WINDOW_S, *,
                   sample: Callable[[], tuple[float, float] | None] = _cpu_times,
                   own_time: Callable[[], float] = time.process_time,
                   cores: int | None = None) -> float | None:
    """Cores kept busy by other processes over ``window`` seconds (None when unknown)."""
    first, own = sample(), own_time()
    if first is None:
        return None
    time.sleep(window)
    second, own = sample(), own_time() - own
    if second is None or second[1] <= first[1]:
        return None
    cores = cores or os.cpu_count() or 1
    busy = (second[0] - first[0]) / (second[1] - first[1]) * cores
    return max(0.0, busy - own / max(window, 1e-6))


def default_threads(**probe) -> int:
    """Free usable cores (module docstring), at least 1."""
    usable = usable_cores()
    busy = busy_elsewhere(**probe)
    if busy is None:
        return usable
    return max(1, min(usable, usable - int(busy + 0.5)))


def set_threads(requested: int | None) -> int:
    """Set torch's intra-op threads to ``requested``, or to :func:`default_threads`; returns it."""
    import torch

    threads = requested or default_threads()
    torch.set_num_threads(threads)
    return threads
