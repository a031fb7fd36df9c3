"""Facts about the host that every result carries: CPU, cores, memory, kernel, Python."""

from __future__ import annotations

import os
import platform
from functools import lru_cache
from typing import Any


@lru_cache(maxsize=1)
def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith(("model name", "Hardware", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def mem_available_bytes() -> int:
    """MemAvailable from /proc/meminfo: the kernel's estimate of memory free for new work."""
    with open("/proc/meminfo", encoding="utf-8") as meminfo:
        for line in meminfo:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    raise OSError("MemAvailable missing from /proc/meminfo")


def host_facts() -> dict[str, Any]:
    import psutil

    return {
        "cpu_model": cpu_model(),
        "cpu_cores_logical": os.cpu_count(),
        "memory_total_bytes": psutil.virtual_memory().total,
        "kernel": platform.release(),
        "machine": platform.machine(),
        "python": platform.python_version(),
    }
