# ---------------------------------------------------------------------------------------
# the roof: what the benchmarks measure fastnorm against (DESIGN.md section 3)

def roof(floating[::1] x,          # IN/OUT flat buffer
         double a, double b, int num_threads):
    """The memory roof benchmarks compare with: one in-place pass x = a*x + b over the same
    bytes, with the same threads and blocking as the normalization kernels."""
    cdef Py_ssize_t n = x.shape[0]
    cdef int nt = effective_threads(n, num_threads)
    cdef Py_ssize_t blocks = ceil_div(n, APPLY_BLOCK)
    cdef floating* xp = &x[0] if n else NULL
    cdef Py_ssize_t t, begin
    with nogil:
        for t in prange(blocks, schedule='static', num_threads=nt, use_threads_if=nt > 1):
            begin = t * APPLY_BLOCK
            apply_run(xp + begin, xp + begin, min(<Py_ssize_t>APPLY_BLOCK, n - begin),
                      <floating>0, <floating>a, <floating>b)


