"""Threads: how many cores this process may use, and holding NumPy's/SciPy's BLAS to one thread.

Shared by the simple-match search (many small dense solves) and activation extraction (reductions
split over Python threads next to torch's OpenMP threads).
"""

from __future__ import annotations

import contextlib
import math
import os
import sys


def single_threaded_blas():
    """Hold NumPy's and SciPy's BLAS to one thread for a ``with`` block (threadpoolctl, when installed).

    Small dense solves run faster on one BLAS thread than on several, far faster when the machine
    is busy (idle BLAS threads spin), and spinning BLAS threads slow torch's OpenMP threads down.
    A BLAS inside torch's own directory (and OpenMP, which torch's convolutions use) is left alone.
    threadpoolctl comes with scikit-learn; without it the BLAS is left alone.
    """
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # pragma: no cover - optional dependency
        return contextlib.nullcontext()
    controller = ThreadpoolController()
    torch = sys.modules.get("torch")
    torch_dir = os.path.dirname(torch.__file__) if torch is not None and getattr(torch, "__file__", None) else None
    paths = [lib.filepath for lib in controller.lib_controllers
             if lib.user_api == "blas" and not (torch_dir and os.path.abspath(lib.filepath).startswith(torch_dir))]
    if not paths:
        return contextlib.nullcontext()
    return controller.select(filepath=paths).limit(limits=1)


def available_cores() -> int:
    """Physical cores this process may use: the CPUs of its affinity mask with hyperthread siblings
    counted once, capped by a cgroup CPU quota (containers); torch's default thread count is also
    one per physical core."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return os.cpu_count() or 1
    cores = set()
    for c in cpus:
        try:
            with open(f"/sys/devices/system/cpu/cpu{c}/topology/thread_siblings_list") as fh:
                cores.add(fh.read().strip())
        except OSError:
            cores.add(str(c))
    n = max(1, len(cores))
    quota = _cgroup_cpu_quota()
    return max(1, min(n, quota)) if quota else n


def _cgroup_cpu_quota():
    """CPUs allowed by a cgroup quota (rounded up), or None when unlimited or unknown."""
    try:
        with open("/sys/fs/cgroup/cpu.max") as fh:  # cgroup v2: "max 100000" or "200000 100000"
            quota, period = fh.read().split()[:2]
        if quota != "max":
            return math.ceil(int(quota) / int(period))
        return None
    except (OSError, ValueError):
        pass
    try:  # cgroup v1
        with open("/sys/fs/cgroup/cpu/cpu.cfs_quota_us") as fq, open("/sys/fs/cgroup/cpu/cpu.cfs_period_us") as fp:
            quota, period = int(fq.read()), int(fp.read())
        return math.ceil(quota / period) if quota > 0 else None
    except (OSError, ValueError):
        return None
