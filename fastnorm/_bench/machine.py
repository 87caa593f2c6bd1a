"""What the benchmark ran on: CPU model, cache sizes, fastnorm's kernel variant, and the
versions of the peers (read from package metadata, without importing the peers)."""
import importlib.metadata
import os
import platform
import subprocess
from typing import Any

import numpy as np

from .. import _cache, _dispatch
from .runners import PEERS, installed

_CPUINFO_KEYS = ("model name", "Model", "Hardware", "cpu model")   # x86, ARM, MIPS


def cpu_model() -> str:
    """The CPU's model name, or the best the platform says."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in _CPUINFO_KEYS and value.strip():
                    return value.strip()
    except OSError:
        pass
    if platform.system() == "Darwin":
        try:
            out = subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"],
                                 capture_output=True, text=True, timeout=2).stdout.strip()
            if out:
                return out
        except (OSError, subprocess.SubprocessError):
            pass
    return platform.processor() or platform.machine() or "unknown"


caches = _cache.sysfs_caches


def fmt_bytes(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n} B"


def describe_caches(sizes: dict[str, dict[str, int]]) -> str:
    """"L2 2 MiB per CPU, L3 300 MiB shared by 2 CPUs" (the L2 and L3 of `caches()`)."""
    parts = []
    for name in ("L2", "L3"):
        if name in sizes:
            k = sizes[name]["shared_by"]
            parts.append(f"{name} {fmt_bytes(sizes[name]['bytes'])} "
                         + ("per CPU" if k == 1 else f"shared by {k} CPUs"))
    return ", ".join(parts)


def _version(module: str) -> str:
    """The installed version of the distribution providing `module`, without importing it."""
    for dist in importlib.metadata.packages_distributions().get(module, [module]):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return "?"


def versions() -> dict[str, str | None]:
    """numpy and each peer's version (None: not installed)."""
    out: dict[str, str | None] = {"numpy": np.__version__}
    for impl, module in PEERS.items():
        out[impl] = _version(module) if installed(impl) else None
    return out


def machine_info() -> dict[str, Any]:
    """The CPU, its caches, the kernel variant fastnorm runs and the thresholds it derived
    from the caches (the table's header, JSON)."""
    return {"cpu_model": cpu_model(), "machine": platform.machine(),
            "cpu_count": os.cpu_count(), "caches": caches(),
            "kernel_variant": _dispatch.current_variant(),
            "cache_tuning": _dispatch.kernels().cache_tuning()}
