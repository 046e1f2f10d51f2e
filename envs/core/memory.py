"""How much memory an env may spend on precomputed observation tables (standard library only).

An engine precomputes every row's market observation when the tables fit its budget, else it
gathers windows per step (:mod:`envs.core.features`; the same floats, slower per step).
``precompute_max_mb`` in the env config sets the budget; left unset (None) it is
:data:`AUTO_FRACTION` of the memory available when the env is built: what the OS reports as
available (``MemAvailable``), or less where a cgroup (a container) limits the process.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

#: share of the available memory an env with ``precompute_max_mb=None`` may fill with tables.
#: Each env process decides on its own when it is built, on what is left by then (RLlib env
#: runners on one machine share it, and the learner needs room too).
AUTO_FRACTION = 0.25
MB = 2**20


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None  # "max": no limit


def _meminfo_available(meminfo: Path) -> int | None:
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _cgroup_headroom(root: Path) -> int | None:
    """Limit minus usage of the process's memory cgroup (v2, else v1); None without a limit."""
    for limit_file, usage_file in (("memory.max", "memory.current"),
                                   ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes")):
        limit, usage = _read_int(root / limit_file), _read_int(root / usage_file)
        if limit is not None and usage is not None and limit < 2**60:  # v1 reports "no limit" as ~2**63
            return max(limit - usage, 0)
    return None


def available_bytes(proc: Path = Path("/proc"), cgroup: Path = Path("/sys/fs/cgroup")) -> int | None:
    """Memory this process could still use, in bytes: the smaller of the OS's available memory
    and the cgroup's headroom; None where neither can be read (not Linux, no sysconf)."""
    found = [v for v in (_meminfo_available(proc / "meminfo"), _cgroup_headroom(cgroup)) if v is not None]
    if not found:
        try:
            found = [os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")]
        except (AttributeError, ValueError, OSError):
            return None
    return min(found)


#: budget when the available memory cannot be read at all (the former fixed default)
FALLBACK_MB = 512.0


def precompute_budget_mb(configured: float | None) -> tuple[float, str]:
    """``(budget in MB, why)``: ``configured`` if set, else :data:`AUTO_FRACTION` of
    :func:`available_bytes` (:data:`FALLBACK_MB` where that is unknown)."""
    if configured is not None:
        return float(configured), "set by precompute_max_mb"
    available = available_bytes()
    if available is None:
        return FALLBACK_MB, "precompute_max_mb unset and available memory unknown: the fallback"
    return AUTO_FRACTION * available / MB, (f"{AUTO_FRACTION:.0%} of {available / MB:,.0f} MB available "
                                            f"(precompute_max_mb unset)")
