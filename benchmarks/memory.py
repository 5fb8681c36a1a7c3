"""A process's memory as Linux reports it (/proc), for the benchmarks that measure a part of a
process rather than the whole of it."""

from __future__ import annotations

from pathlib import Path


def rss_mb(pid: int | str = "self") -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process in MB: now, and its peak since it started or `reset_peak`."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            key, value = line.split(":", 1)
            values[key] = int(value.split()[0]) / 1024
    return values.get("VmRSS", 0.0), values.get("VmHWM", 0.0)


def reset_peak() -> bool:
    """Start this process's peak (VmHWM) afresh, so that a step's own peak is told apart from
    what ran before it; False where the kernel does not allow it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False
