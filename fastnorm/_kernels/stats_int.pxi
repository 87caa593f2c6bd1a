# ---------------------------------------------------------------------------------------
# statistics engine, integer data: exact sums of x and x*x (_intstats.h)
#
# The reduction of moments / Moments.update on integer arrays, in the shape of one
# (rep, outer, rows, cols) record: element (r, o, i, j) at ((r * outer + o) * rows + i) *
# cols + j, reduced over r and i for each (o, j). Every plan of _stats.raw_moments fits it:
# contiguous groups are columns of width 1 (rows = the group), BatchNorm's layout repeats
# them `rep` times. Integer sums are exact, so blocks, tasks and threads may be split any
# way: every split gives the same sums (so tasks are handed out dynamically).

from libc.stdint cimport int8_t, int16_t, int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t

cdef extern from "_intstats.h" nogil:
    ctypedef struct fn_isum:
        uint64_t s1_lo
        uint64_t s1_hi
        uint64_t s2_w0
        uint64_t s2_w1
        uint64_t s2_w2
    int FN_ISUM_LANES
    int FN_ISUM_MAX_WIDTH
    void fn_isum_zero(fn_isum* a) noexcept
    void fn_isum_merge(fn_isum* a, const fn_isum* b) noexcept
    void fn_isums_u8(const uint8_t* x, Py_ssize_t rows, Py_ssize_t ld, Py_ssize_t width,
                     fn_isum* out) noexcept
    void fn_isums_i8(const int8_t* x, Py_ssize_t rows, Py_ssize_t ld, Py_ssize_t width,
                     fn_isum* out) noexcept
    void fn_isums_u16(const uint16_t* x, Py_ssize_t rows, Py_ssize_t ld, Py_ssize_t width,
                      fn_isum* out) noexcept
    void fn_isums_i16(const int16_t* x, Py_ssize_t rows, Py_ssize_t ld, Py_ssize_t width,
                      fn_isum* out) noexcept
    void fn_isums_u32(const uint32_t* x, Py_ssize_t rows, Py_ssize_t ld, Py_ssize_t width,
                      fn_isum* out) noexcept
    void fn_isums_i32(const int32_t* x, Py_ssize_t rows, Py_ssize_t ld, Py_ssize_t width,
                      fn_isum* out) noexcept
    void fn_isums_i64(const int64_t* x, Py_ssize_t rows, Py_ssize_t ld, Py_ssize_t width,
                      fn_isum* out) noexcept

ctypedef fused int_data:
    uint8_t
    int8_t
    uint16_t
    int16_t
    uint32_t
    int32_t
    int64_t

cdef extern from "_intstats.h" nogil:
    int ISUM_TASK "FN_ISUM_BLOCK"   # values (and rows) per task: no lane sum can overflow


cdef inline void int_block_sums(const int_data* x, Py_ssize_t rows, Py_ssize_t ld,
                                Py_ssize_t width, fn_isum* out) noexcept nogil:
    """Add the sums of `width` columns over `rows` rows (row stride ld) into out."""
    if int_data is uint8_t:
        fn_isums_u8(x, rows, ld, width, out)
    elif int_data is int8_t:
        fn_isums_i8(x, rows, ld, width, out)
    elif int_data is uint16_t:
        fn_isums_u16(x, rows, ld, width, out)
    elif int_data is int16_t:
        fn_isums_i16(x, rows, ld, width, out)
    elif int_data is uint32_t:
        fn_isums_u32(x, rows, ld, width, out)
    elif int_data is int32_t:
        fn_isums_i32(x, rows, ld, width, out)
    else:
        fn_isums_i64(x, rows, ld, width, out)


cdef inline void int_unit_sums(const int_data* x, Py_ssize_t rep, Py_ssize_t outer,
                               Py_ssize_t rows, Py_ssize_t cols, Py_ssize_t o, Py_ssize_t j0,
                               Py_ssize_t width, Py_ssize_t r, Py_ssize_t i0, Py_ssize_t nr,
                               fn_isum* out) noexcept nogil:
    """Rows i0:i0+nr of repetition r of sample o, columns j0:j0+width, into out[0:width]."""
    int_block_sums(x + ((r * outer + o) * rows + i0) * cols + j0, nr, cols, width, out)


def integer_moments(const int_data[::1] x,      # IN  flat (rep, outer, rows, cols) buffer
                    Py_ssize_t rep, Py_ssize_t outer, Py_ssize_t rows, Py_ssize_t cols,
                    uint64_t[:, ::1] sums,      # OUT (outer*cols, 5): an fn_isum per column
                    int num_threads):
    """Exact sums of x and x*x of each (o, j) over r and i (see the section comment)."""
    check_extent(rep * outer * rows * cols, x.shape[0], x.shape[0])
    check_extent(outer * cols, sums.shape[0], sums.shape[0])
    if sums.shape[1] != 5:
        raise ValueError("sums must have 5 words per column")
    cdef fn_isum* out = <fn_isum*>&sums[0, 0] if outer * cols else NULL
    cdef Py_ssize_t width = cols if cols < FN_ISUM_LANES else min(cols, <Py_ssize_t>FN_ISUM_MAX_WIDTH)
    cdef Py_ssize_t nblk = ceil_div(cols, width) if cols else 0
    cdef Py_ssize_t rc = max(<Py_ssize_t>1, <Py_ssize_t>ISUM_TASK // max(width, <Py_ssize_t>1))
    cdef Py_ssize_t nrc = ceil_div(rows, rc) if rows else 0
    cdef Py_ssize_t units = outer * nblk, per_unit = rep * nrc
    cdef int nt = effective_threads(rep * outer * rows * cols, num_threads)
    cdef const int_data* xp = &x[0] if x.shape[0] else NULL
    cdef fn_isum* buf = NULL
    cdef Py_ssize_t t, u, o, j0, w, r, k, i0, g
    for g in range(outer * cols):
        fn_isum_zero(&out[g])
    if xp == NULL or units == 0 or per_unit == 0:
        return
    if nt > 1 and units < 4 * nt:     # few columns: share the rows out, fold after
        buf = <fn_isum*>malloc(units * per_unit * width * sizeof(fn_isum))
        if buf == NULL:
            raise MemoryError()
    with nogil:
        if buf == NULL:
            for u in prange(units, schedule='dynamic', num_threads=nt, use_threads_if=nt > 1):
                o = u // nblk
                j0 = (u - o * nblk) * width
                w = min(width, cols - j0)
                for r in range(rep):
                    for k in range(nrc):
                        i0 = k * rc
                        int_unit_sums(xp, rep, outer, rows, cols, o, j0, w, r, i0,
                                      min(rc, rows - i0), out + o * cols + j0)
        else:
            for t in prange(units * per_unit, schedule='dynamic', num_threads=nt):
                u = t // per_unit
                o = u // nblk
                j0 = (u - o * nblk) * width
                w = min(width, cols - j0)
                r = (t - u * per_unit) // nrc
                i0 = (t - u * per_unit - r * nrc) * rc
                for g in range(w):
                    fn_isum_zero(&buf[t * width + g])
                int_unit_sums(xp, rep, outer, rows, cols, o, j0, w, r, i0,
                              min(rc, rows - i0), buf + t * width)
            for t in range(units * per_unit):
                u = t // per_unit
                o = u // nblk
                j0 = (u - o * nblk) * width
                w = min(width, cols - j0)
                for g in range(w):
                    fn_isum_merge(&out[o * cols + j0 + g], &buf[t * width + g])
    free(buf)
