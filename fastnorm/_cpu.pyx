# cython: language_level=3
"""CPU feature probe used to choose a kernel variant at import."""

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
