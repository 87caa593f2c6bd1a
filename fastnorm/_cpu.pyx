# cython: language_level=3
"""CPU probes used at import: the x86-64 level (which kernel variant) and the cache sizes
(the kernels' prefetch and pipelining thresholds, fastnorm/_cache.py)."""

cdef extern from *:
    """
    static int fn_cpu_level(void) {
    #if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
        __builtin_cpu_init();
        int v3 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")
                 && __builtin_cpu_supports("bmi2") && __builtin_cpu_supports("avx");
        int v4 = v3 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")
                 && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
        return v4 ? 4 : (v3 ? 3 : 1);
    #else
        return 0;
    #endif
    }
    """
    int fn_cpu_level() noexcept nogil


def x86_64_level():
    """x86-64 micro-architecture level the CPU and OS support (1, 3 or 4); 0 off x86."""
    return fn_cpu_level()


cdef extern from *:
    """
    #if defined(__APPLE__)
    #include <sys/sysctl.h>
    #elif defined(__linux__)
    #include <unistd.h>
    #endif
    /* Bytes of the level-`level` data cache (1: L1d, 2, 3) as the C library reports it;
       0 when it does not (glibc reads CPUID; macOS sysctl; elsewhere unknown). */
    static long long fn_cache_size(int level) {
    #if defined(__APPLE__)
        static const char* names[] = {"hw.l1dcachesize", "hw.l2cachesize", "hw.l3cachesize"};
        long long v = 0;
        size_t len = sizeof(v);
        if (level < 1 || level > 3 || sysctlbyname(names[level - 1], &v, &len, NULL, 0) != 0)
            return 0;
        return v > 0 ? v : 0;
    #elif defined(__linux__) && defined(_SC_LEVEL1_DCACHE_SIZE)
        long v = sysconf(level == 1 ? _SC_LEVEL1_DCACHE_SIZE
                         : level == 2 ? _SC_LEVEL2_CACHE_SIZE : _SC_LEVEL3_CACHE_SIZE);
        return (level >= 1 && level <= 3 && v > 0) ? v : 0;
    #else
        (void)level;
        return 0;
    #endif
    }
    """
    long long fn_cache_size(int level) noexcept nogil


def cache_size(int level):
    """Bytes of the level-`level` data cache (1, 2 or 3) the C library reports; 0 if unknown."""
    return fn_cache_size(level)
