"""The running machine's cache sizes, and the kernel thresholds derived from them.

The kernels prefetch the next group while applying one, software-pipeline short groups and
prefetch rows ahead in the column kernels; whether each pays depends on what fits which
cache, so the thresholds are derived here from the sizes this machine reports (Linux sysfs,
else the C library: glibc's CPUID reading, macOS sysctl), with defaults of a common core
where nothing is reported. Only prefetching and pipelining follow them: results never do.
"""
import glob
import os
from dataclasses import dataclass

from . import _cpu

_SYSFS = "/sys/devices/system/cpu/cpu0/cache"
_SIZE_UNITS = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
_DEFAULTS = {1: 32 * 1024, 2: 1024 * 1024, 3: 8 * 1024 * 1024}
# Bounds against a value no real cache has (a VM reporting nonsense must not make every
# call prefetch, or none).
_BOUNDS = {1: (8 * 1024, 1024 * 1024), 2: (64 * 1024, 64 * 1024 * 1024),
           3: (0, 4096 * 1024 * 1024)}


@dataclass(frozen=True)
class CacheSizes:
    """Bytes of cache one thread can count on: L1d and L2 of its core (divided between the
    hardware threads that share it), L3 of its group of cores (likewise)."""
    l1d: int
    l2: int
    l3: int
    source: str     # "sysfs", "libc", "default" (the first level reported decides)


def _cpu_count(cpu_list: str) -> int:
    """Number of CPUs in a sysfs list such as "0-3,8"."""
    n = 0
    for part in cpu_list.split(","):
        lo, _, hi = part.partition("-")
        n += int(hi or lo) - int(lo) + 1
    return n


def _read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def sysfs_caches(root: str = _SYSFS) -> dict[str, dict[str, int]]:
    """{"L1d": {"bytes": .., "shared_by": CPUs}, "L2": .., "L3": ..} of the first CPU, from
    Linux sysfs; {} where it is not available (the benchmark's header shows it too)."""
    out: dict[str, dict[str, int]] = {}
    for index in sorted(glob.glob(os.path.join(root, "index*"))):
        try:
            kind = _read(os.path.join(index, "type"))
            if kind not in ("Data", "Unified"):
                continue
            size = _read(os.path.join(index, "size"))
            try:
                shared_by = _cpu_count(_read(os.path.join(index, "shared_cpu_list")))
            except OSError:
                shared_by = 1
            name = "L" + _read(os.path.join(index, "level")) + ("d" if kind == "Data" else "")
            out[name] = {"bytes": int(size.rstrip("KMG")) * _SIZE_UNITS.get(size[-1:], 1),
                         "shared_by": max(shared_by, 1)}
        except (OSError, ValueError):
            continue
    return out


def _from_sysfs(root: str) -> dict[int, int]:
    """{level: bytes per sharing CPU} of the data caches sysfs lists."""
    sizes, found = {}, sysfs_caches(root)
    for level, name in ((1, "L1d"), (2, "L2"), (3, "L3")):
        cache = found.get(name)
        if cache and cache["bytes"] > 0:
            sizes[level] = cache["bytes"] // cache["shared_by"]
    return sizes


def detect(sysfs_root: str = _SYSFS) -> CacheSizes:
    """The cache sizes of this machine (per thread), with where they came from."""
    found = _from_sysfs(sysfs_root)
    source = "sysfs"
    if 1 not in found:
        found = {level: size for level in (1, 2, 3) if (size := _cpu.cache_size(level)) > 0}
        source = "libc"
        if 3 in found:      # the C library gives the whole L3 (glibc on a Zen 4 VM: the
            # socket's 320 MiB), no sharing: take one CPU's share of it
            found[3] //= max(os.cpu_count() or 1, 1)
    if 1 not in found:
        source = "default"
    sizes = {}
    for level in (1, 2, 3):
        lo, hi = _BOUNDS[level]
        sizes[level] = min(max(found.get(level, _DEFAULTS[level]), lo), hi)
    return CacheSizes(sizes[1], sizes[2], sizes[3], source)


def tuning_for(caches: CacheSizes) -> dict[str, int]:
    """The kernels' thresholds (bytes) for these caches (each variant's set_cache_tuning)."""
    return {
        # the group applied and the next one prefetched fit half of L1d (AMD cores take
        # prefetcht1 into L1 as well: on Zen 4, 1 and 2 threads, LayerNorm rows from memory
        # up to 8 KB gained 0-23% by the prefetch in bursts, rows of 12 KB or more lost
        # 25-45%; a line per line applied, rows up to twice this gain: rows.pxi groups_body)
        "prefetch_group_max": caches.l1d // 4,
        # BatchNorm channels, InstanceNorm/GroupNorm groups (prefetched a line per line
        # applied): the one applied and the next one fit L2
        "prefetch_channel_max": caches.l2 // 2,
        # a thread's share of the data below this is mostly found in cache (L2, or near
        # L3): no prefetch. Zen 4 (1 MiB L2, 16 MiB of L3 per thread), channels-last
        # BatchNorm and InstanceNorm: 3 MiB per thread lost 8-29% by the prefetches, 12 MiB
        # and more gained up to 1.4-1.7x (BatchNorm eval, C=256)
        "prefetch_min_per_thread": max(caches.l2, caches.l3 // 4),
        # the row engine's prefetch (LayerNorm/RMSNorm rows, read as one stream): Zen 4, rows
        # of 768, side by side, without / with it: 4.7-6.3 MiB per thread 0.89-0.91 (1 and 2
        # threads), 9.4 MiB 0.98 (1 thread) and 1.31 (2), 12.6 MiB 1.41 and 1.76; the column
        # sweeps above at 6 MiB per thread needed theirs (1.9-2.3x slower without)
        "prefetch_rows_min_per_thread": max(caches.l2, caches.l3 // 2),
        # the statistics of a group ask for the next one too (rows.pxi groups_body) beyond a
        # thread's L3 share (from memory: 0.72-0.88 of the time; groups of 12-25 KB from L3
        # lost up to 1.13x) or for groups larger than L1d (64-100 KB from L3: 0.70-0.87)
        "stats_prefetch_min_per_thread": caches.l3,
        "stats_prefetch_group_min": caches.l1d,
        # two pipelined groups and their parameters fit in L1
        "pipeline_group_max": caches.l1d // 4,
    }


CACHES = detect()
TUNING = tuning_for(CACHES)
