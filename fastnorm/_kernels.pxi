# Kernel source shared by every instruction-set variant: each _kernels_<variant>.pyx is one
# `include` of this file, compiled with its own -march flags (see setup.py).
#
# Two engines (DESIGN.md section 1):
#   statistics: (count, mean, M2) of fixed-size chunks from shifted sums (_simd.h), merged
#               with Chan's formula in float64 in a fixed order;
#   apply:      y = fma(x - hi, a, c), hi the float64 mean rounded to the data's type and
#               its low part folded into the offset c (mean_offset).
# Every public op is a plan (fastnorm/_norms.py, fastnorm/_stats.py) over the def functions
# below; the fast paths at the end run the same kernel bodies.
#
# Determinism: chunk boundaries are fixed constants and chunk results are always folded
# left to right, so results are bit-identical whatever the thread count or the parallel
# strategy (over groups, or over chunks of few groups).
#
# Validation happens in Python before these run (the entry points only re-check extents);
# nothing here can fail half way.

from cython.parallel cimport prange
from libc.math cimport INFINITY, isfinite, sqrt
from libc.stdlib cimport malloc, free

ctypedef fused floating:
    float
    double

cdef enum:
    CHUNK = 2048              # elements of a contiguous segment per statistics chunk
    ROW_CHUNK = 256           # rows per chunk in column statistics
    COL_BLOCK = 512           # widest column block (cache blocking only, no effect on results)
    MIN_COL_BLOCK = 64
    APPLY_BLOCK = 32768       # elements per task when few large groups are applied in parallel
    PARALLEL_MIN_ELEMENTS = 32768  # below this a call runs serially (a parallel region costs us)
    PREFETCH_BYTES = 16384    # of the next segment of a group, while folding this one
    PREFETCH_BLOCK = 1024     # elements applied per prefetch of the next group's same span
    # The next group (BatchNorm: channel) is prefetched into L2 while one is applied, up to
    # these sizes (bytes). Measured side by side (2 threads): LayerNorm rows of 3 KB 1.7x ->
    # 1.2x the roof, BatchNorm training channels of 400 KB 1.64x -> 1.50x; InstanceNorm and
    # GroupNorm groups of 64-100 KB lose 5-15%, and prefetching 2 groups ahead loses too.
    # Nor when a thread's share is under half an L2: a call that small mostly finds its data
    # in cache (LayerNorm (1, 197, 768): 8% faster without).
    PREFETCH_GROUP_MAX = 32768
    PREFETCH_CHANNEL_MAX = 524288
    PREFETCH_MIN_PER_THREAD = 1048576
    PIPELINE_GROUP_MAX = 8192     # bytes: see normalize_group_range




cdef struct Stat:
    double n
    double mean
    double m2


# ---------------------------------------------------------------------------------------
# statistics engine

cdef inline Py_ssize_t ceil_div(Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    return (a + b - 1) // b


cdef inline double m2_from_sums(double n, double s1, double s2) noexcept nogil:
    """M2 = s2 - s1^2/n from sums of d = x - shift and of d*d (written as conditional
    expressions, so that loops over columns still vectorize)."""
    cdef double m2 = s2 - s1 * (s1 / n)
    m2 = 0.0 if m2 < 0 else m2              # rounding guard; NaN stays NaN
    # finite data whose squares overflow: inf, not inf - inf
    return INFINITY if s2 == INFINITY and s1 == s1 else m2


cdef inline Stat stat_from_sums(double n, double shift, double s1, double s2) noexcept nogil:
    """Chunk statistics from sums of d = x - shift and of d*d."""
    cdef Stat r
    r.n = n
    r.mean = shift + s1 / n
    r.m2 = m2_from_sums(n, s1, s2)
    return r


cdef inline void stat_merge(Stat* acc, Stat b) noexcept nogil:
    """Chan et al.'s pairwise merge of b into acc, in float64."""
    cdef double n, delta
    if acc.n == 0:
        acc[0] = b
        return
    if b.n == 0:
        return
    n = acc.n + b.n
    delta = b.mean - acc.mean
    acc.mean = acc.mean + delta * (b.n / n)
    acc.m2 = acc.m2 + b.m2 + delta * delta * (acc.n / n) * b.n
    acc.n = n


cdef extern from "_simd.h" nogil:
    void fn_chunk_sums_f32(const float* x, Py_ssize_t n, int precise, double* shift,
                           double* s1, double* s2) noexcept
    void fn_chunk_sums_f64(const double* x, Py_ssize_t n, int precise, double* shift,
                           double* s1, double* s2) noexcept
    void fn_prefetch(const void* p, Py_ssize_t nbytes) noexcept
    void fn_prefetch_l2(const void* p, Py_ssize_t nbytes) noexcept


cdef inline Stat chunk_stat(const floating* x, Py_ssize_t n, bint precise) noexcept nogil:
    """(n, mean, M2) of x[0:n], 0 < n <= CHUNK, from sums of deviations from a shift near
    the mean (_simd.h): no catastrophic cancellation, and squares that cannot overflow.
    precise: float64 lanes for float32 data too (moments); else float32 lanes where safe
    (normalizations, whose float32 output cannot show the difference)."""
    cdef double shift, s1, s2
    if floating is float:
        fn_chunk_sums_f32(x, n, precise, &shift, &s1, &s2)
    else:
        fn_chunk_sums_f64(x, n, precise, &shift, &s1, &s2)
    return stat_from_sums(<double>n, shift, s1, s2)


cdef inline void segment_fold(const floating* x, Py_ssize_t n, bint precise,
                              Stat* acc) noexcept nogil:
    """Merge the chunks of the contiguous segment x[0:n] into acc, in order."""
    cdef Py_ssize_t k, start
    for k in range(ceil_div(n, CHUNK)):
        start = k * CHUNK
        stat_merge(acc, chunk_stat(x + start, min(<Py_ssize_t>CHUNK, n - start), precise))


cdef inline Stat group_stat(const floating* x, Py_ssize_t nseg, Py_ssize_t seg_len,
                            Py_ssize_t seg_stride, bint precise,
                            bint prefetch_segments) noexcept nogil:
    """Statistics of one group of nseg segments, chunks folded in order. prefetch_segments:
    ask for the start of each next segment (hardware prefetchers stop at the strided jump);
    callers that had the whole group prefetched into L2 beforehand pass False, as the
    burst of prefetches then only stalls the loop (measured: 20% of BatchNorm training)."""
    cdef Stat acc
    cdef Py_ssize_t s
    acc.n = 0
    acc.mean = 0
    acc.m2 = 0
    for s in range(nseg):
        if prefetch_segments and s + 1 < nseg:
            fn_prefetch(x + (s + 1) * seg_stride, min(seg_len * <Py_ssize_t>sizeof(floating),
                                                      PREFETCH_BYTES))
        segment_fold(x + s * seg_stride, seg_len, precise, &acc)
    return acc


cdef inline Stat fold_stats(const Stat* parts, Py_ssize_t n, Py_ssize_t stride) noexcept nogil:
    """Left-to-right merge of parts[0], parts[stride], ... (n of them)."""
    cdef Stat acc
    cdef Py_ssize_t i
    acc.n = 0
    acc.mean = 0
    acc.m2 = 0
    for i in range(n):
        stat_merge(&acc, parts[i * stride])
    return acc


cdef void grouped_stats(const floating* x,        # IN  buffer
                        Py_ssize_t groups, Py_ssize_t nseg, Py_ssize_t seg_len,
                        Py_ssize_t group_stride, Py_ssize_t seg_stride, bint precise,
                        Stat* out,                # OUT one Stat per group
                        Stat* chunk_buf,          # scratch of groups*nseg*ceil(seg_len/CHUNK), or NULL
                        int num_threads) noexcept nogil:
    """Statistics of groups of nseg equal segments: group g, segment s starts at
    g*group_stride + s*seg_stride. With chunk_buf, chunks are computed in parallel and
    folded afterwards (for few, large groups); the result is the same to the bit."""
    cdef Py_ssize_t g, s, t, k, rem, start
    cdef Py_ssize_t cps = ceil_div(seg_len, CHUNK)
    cdef Py_ssize_t per_group = nseg * cps
    if chunk_buf == NULL:
        for g in prange(groups, nogil=True, schedule='static', num_threads=num_threads,
                        use_threads_if=num_threads > 1):
            out[g] = group_stat(x + g * group_stride, nseg, seg_len, seg_stride, precise,
                                True)
        return
    for t in prange(groups * per_group, nogil=True, schedule='static',
                    num_threads=num_threads, use_threads_if=num_threads > 1):
        g = t // per_group
        rem = t - g * per_group
        s = rem // cps
        k = rem - s * cps
        start = k * CHUNK
        chunk_buf[t] = chunk_stat(x + g * group_stride + s * seg_stride + start,
                                  min(<Py_ssize_t>CHUNK, seg_len - start), precise)
    for g in range(groups):
        out[g] = fold_stats(chunk_buf + g * per_group, per_group, 1)


cdef void column_chunk_sums(const floating* x,   # IN  nr rows of `width` columns, stride ld
                            Py_ssize_t nr, Py_ssize_t ld, Py_ssize_t width,
                            double* shift,        # OUT (width,) the first row
                            double* s1,           # OUT (width,) sum of x - shift
                            double* s2) noexcept nogil:   # OUT (width,) sum of (x - shift)^2
    """Shifted sums of each column over nr <= ROW_CHUNK rows, vectorized across the
    contiguous columns, in float64 (the shift is a single sample, so float32 lanes would
    lose too much to s2 - s1^2/n)."""
    cdef double d, d0, d1, d2, d3
    cdef Py_ssize_t r, j
    cdef const floating* row = x
    for j in range(width):
        shift[j] = row[j]
        s1[j] = 0.0
        s2[j] = 0.0
    r = 1
    while r + 4 <= nr:           # four rows per sweep: fewer loads/stores of s1, s2
        row = x + r * ld
        for j in range(width):
            d0 = <double>row[j] - shift[j]
            d1 = <double>row[j + ld] - shift[j]
            d2 = <double>row[j + 2 * ld] - shift[j]
            d3 = <double>row[j + 3 * ld] - shift[j]
            s1[j] += (d0 + d1) + (d2 + d3)
            s2[j] += (d0 * d0 + d1 * d1) + (d2 * d2 + d3 * d3)
        r += 4
    while r < nr:
        row = x + r * ld
        for j in range(width):
            d = <double>row[j] - shift[j]
            s1[j] += d
            s2[j] += d * d
        r += 1


cdef void column_block_stats(const floating* x,   # IN  matrix of `rows` rows, row stride ld
                             Py_ssize_t rows, Py_ssize_t ld,
                             Py_ssize_t width,     # columns in this block, <= COL_BLOCK
                             Stat* out) noexcept nogil:   # OUT width Stats (merged into)
    """Per-column statistics over rows; rows are folded in chunks of ROW_CHUNK with the
    chunk's first row as the shift."""
    cdef double shift[COL_BLOCK]
    cdef double s1[COL_BLOCK]
    cdef double s2[COL_BLOCK]
    cdef Py_ssize_t rc, r0, j, nr
    for rc in range(ceil_div(rows, ROW_CHUNK)):
        r0 = rc * ROW_CHUNK
        nr = min(<Py_ssize_t>ROW_CHUNK, rows - r0)
        column_chunk_sums(x + r0 * ld, nr, ld, width, shift, s1, s2)
        for j in range(width):
            stat_merge(&out[j], stat_from_sums(<double>nr, shift[j], s1[j], s2[j]))


cdef inline Py_ssize_t column_block_width(Py_ssize_t outer, Py_ssize_t cols,
                                          int num_threads) noexcept nogil:
    """Narrow the column blocks until there are enough tasks for the threads."""
    cdef Py_ssize_t width = COL_BLOCK
    while width > MIN_COL_BLOCK and outer * ceil_div(cols, width) < 4 * num_threads:
        width //= 2
    return width


cdef void column_stats(const floating* x,          # IN  (outer, rows, cols) buffer
                       Py_ssize_t outer, Py_ssize_t rows, Py_ssize_t cols,
                       Stat* out,                  # OUT outer*cols Stats
                       Stat* chunk_buf,            # scratch outer*ceil(rows/ROW_CHUNK)*cols, or NULL
                       int num_threads) noexcept nogil:
    cdef Py_ssize_t width = column_block_width(outer, cols, num_threads)
    cdef Py_ssize_t nblocks = ceil_div(cols, width)
    cdef Py_ssize_t nrc = ceil_div(rows, ROW_CHUNK)
    cdef Py_ssize_t t, o, jb, j, rc, oj, rest
    for t in range(outer * cols):
        out[t].n = 0
    if chunk_buf == NULL:
        for t in prange(outer * nblocks, nogil=True, schedule='static',
                        num_threads=num_threads, use_threads_if=num_threads > 1):
            o = t // nblocks
            jb = (t - o * nblocks) * width
            column_block_stats(x + o * rows * cols + jb, rows, cols,
                               min(width, cols - jb), out + o * cols + jb)
        return
    # few column blocks but many rows: one task per (outer, row chunk, block), folded after
    for t in range(outer * nrc * cols):
        chunk_buf[t].n = 0
    for t in prange(outer * nrc * nblocks, nogil=True, schedule='static',
                    num_threads=num_threads, use_threads_if=num_threads > 1):
        o = t // (nrc * nblocks)
        rest = t - o * nrc * nblocks
        rc = rest // nblocks
        jb = (rest - rc * nblocks) * width
        column_block_stats(x + (o * rows + rc * ROW_CHUNK) * cols + jb,
                           min(<Py_ssize_t>ROW_CHUNK, rows - rc * ROW_CHUNK), cols,
                           min(width, cols - jb), chunk_buf + (o * nrc + rc) * cols + jb)
    for oj in range(outer * cols):
        o = oj // cols
        j = oj - o * cols
        out[oj] = fold_stats(chunk_buf + o * nrc * cols + j, nrc, cols)


# ---------------------------------------------------------------------------------------
# apply engine

cdef extern from "_simd.h" nogil:
    float fn_fmaf(float a, float b, float c) noexcept
    double fn_fma(double a, double b, double c) noexcept


cdef inline floating fmadd(floating a, floating b, floating c) noexcept nogil:
    """a*b + c, fused where the instruction set has FMA."""
    if floating is float:
        return fn_fmaf(a, b, c)
    else:
        return fn_fma(a, b, c)


cdef inline void apply_run_span(const floating* x, floating* y, Py_ssize_t n,
                                floating hi, floating a, floating c) noexcept nogil:
    """y = fma(x - hi, a, c) with scalar parameters (see mean_offset); x may be y."""
    cdef Py_ssize_t i
    for i in range(n):
        y[i] = fmadd(x[i] - hi, a, c)


cdef inline Py_ssize_t aligned_head(const void* y, Py_ssize_t n,
                                    Py_ssize_t itemsize) noexcept nogil:
    """Elements before y + head is 64-byte aligned (at most n). NumPy's large buffers start
    16 bytes past a cache line, so without this peel every 512-bit access of an apply loop
    splits two lines (up to twice the time on cache-resident data); in place, x and y align
    together. Elementwise loops give the same bits whatever the split."""
    cdef Py_ssize_t head = <Py_ssize_t>((<size_t>0 - <size_t>y) & 63) // itemsize
    return min(head, n)


cdef inline void apply_run(const floating* x, floating* y, Py_ssize_t n,
                           floating hi, floating a, floating c) noexcept nogil:
    """apply_run_span from the first 64-byte boundary of y on (aligned_head)."""
    cdef Py_ssize_t h = aligned_head(y, n, sizeof(floating))
    apply_run_span(x, y, h, hi, a, c)
    apply_run_span(x + h, y + h, n - h, hi, a, c)


cdef inline void apply_row_span(const floating* x, floating* y, Py_ssize_t n,
                                floating hi, floating r, floating c,
                                const floating* w, const floating* b) noexcept nogil:
    """y = fma(x - hi, r, c) * w[i] + b[i], the normalized value fma(x - hi, r, c) with
    c = mean_offset(mean, hi, r, -0.0) (with no low part, c = -0.0 and the fma is exactly
    (x - hi) * r). w and/or b may be NULL."""
    cdef Py_ssize_t i
    if w != NULL and b != NULL:
        for i in range(n):
            y[i] = fmadd(fmadd(x[i] - hi, r, c), w[i], b[i])
    elif w != NULL:
        for i in range(n):
            y[i] = fmadd(x[i] - hi, r, c) * w[i]
    elif b != NULL:
        for i in range(n):
            y[i] = fmadd(x[i] - hi, r, c) + b[i]
    else:
        for i in range(n):
            y[i] = fmadd(x[i] - hi, r, c)


cdef inline void apply_row(const floating* x, floating* y, Py_ssize_t n,
                           floating hi, floating r, floating c,
                           const floating* w, const floating* b) noexcept nogil:
    """apply_row_span from the first 64-byte boundary of y on (aligned_head)."""
    cdef Py_ssize_t h = aligned_head(y, n, sizeof(floating))
    apply_row_span(x, y, h, hi, r, c, w, b)
    apply_row_span(x + h, y + h, n - h, hi, r, c, (w + h) if w != NULL else NULL,
                   (b + h) if b != NULL else NULL)


cdef inline void apply_columns(const floating* x, floating* y, Py_ssize_t n,
                               const floating* hi, const floating* a,
                               const floating* c) noexcept nogil:
    """y[j] = fma(x[j] - hi[j], a[j], c[j]) along one row."""
    cdef Py_ssize_t j
    for j in range(n):
        y[j] = fmadd(x[j] - hi[j], a[j], c[j])


cdef inline floating mean_offset(double mean, floating hi, double a, double b) noexcept nogil:
    """c of the apply y = fma(x - hi, a, c) = (x - mean) * a + b, hi the mean rounded to the
    data's type: c = b - (mean - hi) * a, the low part of the mean (exact in float64) folded
    into the offset, so x - hi is exact near the mean and the apply costs one subtraction and
    one fma whatever the mean (DESIGN.md section 2). b alone when there is no low part."""
    cdef double lo = mean - <double>hi
    if lo == 0:
        return <floating>b
    return <floating>(b - lo * a)


cdef struct GroupParams:
    double mean
    double rstd


cdef inline GroupParams group_params(Stat st, double eps, bint rms) noexcept nogil:
    """mean and 1/sqrt(var + eps); for RMS norm mean 0 and 1/sqrt(mean(x^2) + eps)."""
    cdef GroupParams p
    cdef double var = st.m2 / st.n
    if rms:
        p.mean = 0.0
        p.rstd = 1.0 / sqrt(var + st.mean * st.mean + eps)
    else:
        p.mean = st.mean
        p.rstd = 1.0 / sqrt(var + eps)
    return p


cdef inline GroupParams row_group_params(Stat st, const floating* xg, Py_ssize_t glen,
                                         double eps, bint rms) noexcept nogil:
    """group_params of a contiguous group. With an infinite value (and no NaN) mean(x^2) is
    inf although M2 is NaN: for RMS norm that case is summed directly, as the formula does
    (finite values then normalize to 0, infinite ones to NaN)."""
    cdef GroupParams p = group_params(st, eps, rms)
    cdef double ms = 0.0
    cdef Py_ssize_t i
    if rms and not isfinite(p.rstd):
        for i in range(glen):
            ms += <double>xg[i] * <double>xg[i]
        p.rstd = 1.0 / sqrt(ms / glen + eps)
    return p


cdef inline void apply_group_span(const floating* xg, floating* yg,   # IN/OUT one group
                                  Py_ssize_t begin, Py_ssize_t end,   # span within the group
                                  Py_ssize_t run_len, Py_ssize_t channel0,
                                  bint per_element, GroupParams p,
                                  const floating* w, const floating* b,
                                  const floating* next_xg) noexcept nogil:
    """Normalize xg[begin:end] of one group. per_element: w/b indexed by position in the
    group (LayerNorm); else by channel channel0 + position // run_len. next_xg (or NULL):
    the group normalized next, whose same span is prefetched PREFETCH_BLOCK elements at a
    time meanwhile, so that its statistics pass reads from cache: the apply's compute then
    overlaps the memory traffic instead of following it."""
    cdef floating hi = <floating>p.mean
    cdef floating c = mean_offset(p.mean, hi, p.rstd, -0.0)
    cdef Py_ssize_t pos = begin, stop, k
    cdef double a
    while pos < end:
        stop = min(pos + PREFETCH_BLOCK, end) if next_xg != NULL else end
        if not per_element:
            k = pos // run_len
            stop = min((k + 1) * run_len, stop)
        if next_xg != NULL:
            fn_prefetch_l2(next_xg + pos, (stop - pos) * <Py_ssize_t>sizeof(floating))
        if per_element:
            apply_row(xg + pos, yg + pos, stop - pos, hi, <floating>p.rstd, c,
                      (w + pos) if w != NULL else NULL, (b + pos) if b != NULL else NULL)
        else:
            a = p.rstd * w[channel0 + k] if w != NULL else p.rstd
            apply_run(xg + pos, yg + pos, stop - pos, hi, <floating>a,
                      mean_offset(p.mean, hi, a, b[channel0 + k] if b != NULL else 0.0))
        pos = stop


# ---------------------------------------------------------------------------------------
# entry points (called by the plans with validated, contiguous, flattened buffers)

cdef inline const floating* optional_ptr(const floating[::1] v) noexcept:
    return &v[0] if v is not None and v.shape[0] > 0 else NULL


cdef inline int check_extent(Py_ssize_t needed, Py_ssize_t have_x, Py_ssize_t have_out) except -1:
    """The plans pass consistent shapes; this keeps a wrong call from touching memory it
    does not own."""
    if needed < 0 or needed > have_x or needed > have_out:
        raise ValueError(f"kernel extent {needed} exceeds the buffers ({have_x}, {have_out})")
    return 0


cdef inline int effective_threads(Py_ssize_t elements, int num_threads) noexcept:
    return num_threads if elements >= PARALLEL_MIN_ELEMENTS else 1


cdef Stat* alloc_stats(Py_ssize_t n) except NULL:
    cdef Stat* p = <Stat*>malloc(max(n, <Py_ssize_t>1) * sizeof(Stat))
    if p == NULL:
        raise MemoryError()
    return p


cdef inline void store_stats(const Stat* st, Py_ssize_t n, double[::1] mean,
                             double[::1] m2) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        mean[i] = st[i].mean
        m2[i] = st[i].m2


def segment_moments(const floating[::1] x,    # IN  flat buffer
                    Py_ssize_t groups, Py_ssize_t nseg, Py_ssize_t seg_len,
                    Py_ssize_t group_stride, Py_ssize_t seg_stride,
                    double[::1] mean,           # OUT (groups,)
                    double[::1] m2,             # OUT (groups,)
                    int num_threads):
    """Mean and M2 of groups of nseg contiguous segments of seg_len (see grouped_stats)."""
    check_extent((groups - 1) * group_stride + (nseg - 1) * seg_stride + seg_len if groups and nseg else 0,
                 x.shape[0], x.shape[0])
    check_extent(groups, mean.shape[0], m2.shape[0])
    cdef int nt = effective_threads(groups * nseg * seg_len, num_threads)
    cdef Stat* out = alloc_stats(groups)
    cdef Stat* buf = NULL
    if nt > 1 and groups < 4 * nt:
        buf = <Stat*>malloc(max(groups * nseg * ceil_div(seg_len, CHUNK), <Py_ssize_t>1)
                            * sizeof(Stat))
        if buf == NULL:
            free(out)
            raise MemoryError()
    with nogil:
        grouped_stats(&x[0], groups, nseg, seg_len, group_stride, seg_stride, True, out, buf,
                      nt)
        store_stats(out, groups, mean, m2)
    free(buf)
    free(out)


def column_moments(const floating[::1] x,     # IN  flat (outer, rows, cols) buffer
                   Py_ssize_t outer, Py_ssize_t rows, Py_ssize_t cols,
                   double[::1] mean,            # OUT (outer*cols,)
                   double[::1] m2,              # OUT (outer*cols,)
                   int num_threads):
    """Mean and M2 over the rows of each (outer, column)."""
    check_extent(outer * rows * cols, x.shape[0], x.shape[0])
    check_extent(outer * cols, mean.shape[0], m2.shape[0])
    cdef int nt = effective_threads(outer * rows * cols, num_threads)
    cdef Stat* out = alloc_stats(outer * cols)
    cdef Stat* buf = NULL
    cdef Py_ssize_t width = column_block_width(outer, cols, nt)
    if nt > 1 and outer * ceil_div(cols, width) < 2 * nt and rows > ROW_CHUNK:
        buf = <Stat*>malloc(outer * ceil_div(rows, ROW_CHUNK) * cols * sizeof(Stat))
        if buf == NULL:
            free(out)
            raise MemoryError()
    with nogil:
        column_stats(&x[0], outer, rows, cols, out, buf, nt)
        store_stats(out, outer * cols, mean, m2)
    free(buf)
    free(out)


cdef void normalize_group_range(const floating* xp, floating* yp,
                                Py_ssize_t g0, Py_ssize_t g1,      # groups g0 <= g < g1
                                Py_ssize_t glen, Py_ssize_t runs,
                                Py_ssize_t run_len, Py_ssize_t param_period,
                                bint per_element, const floating* w, const floating* b,
                                double eps, bint rms, bint prefetch,
                                double* mp, double* vp) noexcept nogil:
    """Groups g0..g1-1 of groups_body, each normalized right after its statistics, while it
    is in cache; with `prefetch`, the next group not yet read is prefetched meanwhile
    (within this range: the next range is another thread's, whose cache may hold it
    modified). Statistics are stored when mp is not NULL.

    Short groups are software-pipelined: group g+1's statistics are taken before group g is
    applied, so that the latency of their tail (reductions, division, square root) overlaps
    g's apply. Measured side by side: 3-10% faster up to 8 KB groups, 13% slower at 16 KB,
    where two groups and the affine parameters no longer fit L1."""
    cdef bint pipelined = glen * <Py_ssize_t>sizeof(floating) <= PIPELINE_GROUP_MAX
    cdef Stat st, nxt
    cdef Py_ssize_t g, ahead = 2 if pipelined else 1
    if pipelined and g0 < g1:
        nxt = group_stat(xp + g0 * glen, 1, glen, 0, False, False)
    for g in range(g0, g1):
        if pipelined:
            st = nxt
            if g + 1 < g1:
                nxt = group_stat(xp + (g + 1) * glen, 1, glen, 0, False, False)
        else:
            st = group_stat(xp + g * glen, 1, glen, 0, False, False)
        apply_group_span(xp + g * glen, yp + g * glen, 0, glen, run_len,
                         (g % param_period) * runs, per_element,
                         row_group_params(st, xp + g * glen, glen, eps, rms), w, b,
                         (xp + (g + ahead) * glen) if prefetch and g + ahead < g1 else NULL)
        if mp != NULL:
            mp[g] = st.mean
            vp[g] = st.m2 / st.n


cdef int groups_body(const floating* xp,         # IN  (groups, runs*run_len) buffer
                     floating* yp,               # OUT same size; may be xp itself
                     Py_ssize_t groups, Py_ssize_t runs, Py_ssize_t run_len,
                     Py_ssize_t param_period, bint per_element,
                     const floating* w, const floating* b,   # IN  or NULL
                     double eps, bint rms,
                     double* mp, double* vp,     # OUT (groups,) mean, biased variance, or NULL
                     int nt) noexcept nogil:
    """normalize_groups on raw pointers (the entry point and the fast path share it).
    Returns -1, having written nothing, when scratch memory cannot be had; else 0."""
    cdef Py_ssize_t glen = runs * run_len
    cdef Py_ssize_t g, t, blocks, begin
    cdef Stat* st
    cdef GroupParams* gp
    cdef Stat* buf
    cdef bint prefetch = (glen * <Py_ssize_t>sizeof(floating) <= PREFETCH_GROUP_MAX
                          and groups * glen * <Py_ssize_t>sizeof(floating)
                          > nt * PREFETCH_MIN_PER_THREAD)
    if nt == 1:     # (not even an inactive parallel region: it costs tiny calls ~0.4 us)
        normalize_group_range(xp, yp, 0, groups, glen, runs, run_len, param_period,
                              per_element, w, b, eps, rms, prefetch, mp, vp)
        return 0
    if groups >= 2 * nt:    # one contiguous range of groups per thread
        for t in prange(nt, schedule='static', chunksize=1, num_threads=nt):
            normalize_group_range(xp, yp, t * groups // nt, (t + 1) * groups // nt, glen,
                                  runs, run_len, param_period, per_element, w, b, eps, rms,
                                  prefetch, mp, vp)
        return 0
    # few large groups: chunk-parallel statistics, then block-parallel apply (same bits)
    st = <Stat*>malloc(groups * sizeof(Stat))
    gp = <GroupParams*>malloc(groups * sizeof(GroupParams))
    buf = <Stat*>malloc(groups * ceil_div(glen, CHUNK) * sizeof(Stat))
    if st == NULL or gp == NULL or buf == NULL:
        free(st)
        free(gp)
        free(buf)
        return -1
    blocks = ceil_div(glen, APPLY_BLOCK)
    grouped_stats(xp, groups, 1, glen, glen, 0, False, st, buf, nt)
    for g in range(groups):     # before any block is written: row_group_params may re-read x
        gp[g] = row_group_params(st[g], xp + g * glen, glen, eps, rms)
        if mp != NULL:
            mp[g] = st[g].mean
            vp[g] = st[g].m2 / st[g].n
    for t in prange(groups * blocks, schedule='static', num_threads=nt,
                    use_threads_if=nt > 1):
        g = t // blocks
        begin = (t - g * blocks) * APPLY_BLOCK
        apply_group_span(xp + g * glen, yp + g * glen, begin,
                         min(begin + APPLY_BLOCK, glen), run_len,
                         (g % param_period) * runs, per_element, gp[g], w, b, NULL)
    free(buf)
    free(gp)
    free(st)
    return 0


def normalize_groups(const floating[::1] x,       # IN  flat (groups, runs*run_len) buffer
                     floating[::1] out,           # OUT same size; may be x itself
                     Py_ssize_t groups, Py_ssize_t runs, Py_ssize_t run_len,
                     Py_ssize_t param_period,     # channel of run k in group g: (g % period)*runs + k
                     bint per_element,            # weight/bias indexed per element of the group
                     const floating[::1] weight,  # IN  or None
                     const floating[::1] bias,    # IN  or None
                     double eps, bint rms,
                     double[::1] mean_out,        # OUT (groups,) mean, or None
                     double[::1] var_out,         # OUT (groups,) biased variance, or None
                     int num_threads):
    """Row-local normalization (LayerNorm, RMSNorm, InstanceNorm, GroupNorm): statistics of
    each contiguous group and its normalization while the group is in cache."""
    check_extent(groups * runs * run_len, x.shape[0], out.shape[0])
    if mean_out is not None:
        check_extent(groups, mean_out.shape[0], var_out.shape[0])
    cdef int nt = effective_threads(groups * runs * run_len, num_threads)
    cdef const floating* w = optional_ptr(weight)
    cdef const floating* b = optional_ptr(bias)
    cdef double* mp = &mean_out[0] if mean_out is not None else NULL
    cdef double* vp = &var_out[0] if var_out is not None else NULL
    cdef int rc
    with nogil:
        rc = groups_body(&x[0], &out[0], groups, runs, run_len, param_period, per_element,
                         w, b, eps, rms, mp, vp, nt)
    if rc < 0:
        raise MemoryError()


cdef inline void apply_column_row_span(const floating* x, floating* y, Py_ssize_t n,
                                       const floating* hi, const floating* r,
                                       const floating* c, floating wr,
                                       floating br) noexcept nogil:
    """y[j] = fma(x[j] - hi[j], r[j], c[j]) * wr + br along one row of a column block (the
    mean's low part folded into c as in apply_row_span)."""
    cdef Py_ssize_t j
    for j in range(n):
        y[j] = fmadd(fmadd(x[j] - hi[j], r[j], c[j]), wr, br)


cdef void normalize_column_block(const floating* x, floating* y,   # IN/OUT block origin
                                 Py_ssize_t rows, Py_ssize_t ld, Py_ssize_t width,
                                 const floating* w, const floating* b,  # (rows,) or NULL
                                 double eps,
                                 double* mean_out, double* var_out) noexcept nogil:  # OUT (width,) or NULL
    """Statistics of `width` columns over `rows` rows, then their normalization. With few
    rows (ConvNeXt's 96-768 channels) the per-column work weighs as much as the sweeps, so
    it is done in vectorizable loops over the columns, from the sums directly when the
    rows fit one chunk."""
    cdef double shift[COL_BLOCK]
    cdef double mean[COL_BLOCK]     # s1, then the mean
    cdef double var[COL_BLOCK]      # s2, then the biased variance
    cdef Stat st[COL_BLOCK]
    cdef floating hi[COL_BLOCK]
    cdef floating c[COL_BLOCK]
    cdef floating rstd[COL_BLOCK]
    cdef double n = <double>rows, m2, r
    cdef floating wr, br
    cdef Py_ssize_t j, k, h
    if rows <= ROW_CHUNK:      # the formulas of stat_from_sums and group_params, per column
        column_chunk_sums(x, rows, ld, width, shift, mean, var)
        for j in range(width):
            m2 = m2_from_sums(n, mean[j], var[j])
            mean[j] = shift[j] + mean[j] / n
            var[j] = m2 / n
    else:
        for j in range(width):
            st[j].n = 0
        column_block_stats(x, rows, ld, width, st)
        for j in range(width):
            mean[j] = st[j].mean
            var[j] = st[j].m2 / st[j].n
    for j in range(width):
        r = 1.0 / sqrt(var[j] + eps)
        hi[j] = <floating>mean[j]
        rstd[j] = <floating>r
        c[j] = mean_offset(mean[j], hi[j], r, -0.0)
    if mean_out != NULL:
        for j in range(width):
            mean_out[j] = mean[j]
            var_out[j] = var[j]
    for k in range(rows):      # one pass per row: the row's weight/bias are scalars
        wr = w[k] if w != NULL else 1
        br = b[k] if b != NULL else 0
        h = aligned_head(y + k * ld, width, sizeof(floating))
        apply_column_row_span(x + k * ld, y + k * ld, h, hi, rstd, c, wr, br)
        apply_column_row_span(x + k * ld + h, y + k * ld + h, width - h, hi + h, rstd + h,
                              c + h, wr, br)


def normalize_columns(const floating[::1] x,      # IN  flat (outer, rows, cols) buffer
                      floating[::1] out,          # OUT same size; may be x itself
                      Py_ssize_t outer, Py_ssize_t rows, Py_ssize_t cols,
                      const floating[::1] weight, # IN  (rows,) or None
                      const floating[::1] bias,   # IN  (rows,) or None
                      double eps,
                      double[::1] mean_out,       # OUT (outer*cols,), or None
                      double[::1] var_out,        # OUT (outer*cols,) biased variance, or None
                      int num_threads):
    """Normalization across the rows at every (outer, column): channels-first LayerNorm."""
    check_extent(outer * rows * cols, x.shape[0], out.shape[0])
    cdef int nt = effective_threads(outer * rows * cols, num_threads)
    cdef const floating* xp = &x[0]
    cdef floating* yp = &out[0]
    cdef const floating* w = optional_ptr(weight)
    cdef const floating* b = optional_ptr(bias)
    cdef double* mp = &mean_out[0] if mean_out is not None else NULL
    cdef double* vp = &var_out[0] if var_out is not None else NULL
    cdef Py_ssize_t width = column_block_width(outer, cols, nt)
    if mean_out is not None:
        check_extent(outer * cols, mean_out.shape[0], var_out.shape[0])
    cdef Py_ssize_t nblocks = ceil_div(cols, width)
    cdef Py_ssize_t t, o, j0
    with nogil:
        for t in prange(outer * nblocks, schedule='static', num_threads=nt,
                        use_threads_if=nt > 1):
            o = t // nblocks
            j0 = (t - o * nblocks) * width
            normalize_column_block(xp + o * rows * cols + j0, yp + o * rows * cols + j0,
                                   rows, cols, min(width, cols - j0), w, b, eps,
                                   (mp + o * cols + j0) if mp != NULL else NULL,
                                   (vp + o * cols + j0) if vp != NULL else NULL)


cdef inline Stat normalize_channel(const floating* x, floating* y,  # IN/OUT channel origin
                                   Py_ssize_t n, Py_ssize_t stride, Py_ssize_t inner,
                                   double w, floating b, double eps,
                                   bint prefetched, bint prefetch_next) noexcept nogil:
    """BatchNorm of one channel (n runs of `inner` values, `stride` apart): statistics, then
    the apply while the channel's data is still in cache. prefetch_next: the next channel
    (run i of which follows run i of this one) is prefetched meanwhile, as in
    normalize_group_range; prefetched: this one was (its statistics then skip their own
    prefetches)."""
    cdef Stat st = group_stat(x, n, inner, stride, False, not prefetched)
    cdef GroupParams p = group_params(st, eps, False)
    cdef floating hi = <floating>p.mean
    cdef floating a = <floating>(p.rstd * w)
    cdef floating c = mean_offset(p.mean, hi, p.rstd * w, b)
    cdef Py_ssize_t i, begin, end
    for i in range(n):
        if not prefetch_next:
            apply_run(x + i * stride, y + i * stride, inner, hi, a, c)
            continue
        begin = 0
        while begin < inner:
            end = min(begin + PREFETCH_BLOCK, inner)
            fn_prefetch_l2(x + i * stride + inner + begin,
                           (end - begin) * <Py_ssize_t>sizeof(floating))
            apply_run(x + i * stride + begin, y + i * stride + begin, end - begin, hi, a, c)
            begin = end
    return st


cdef void normalize_channel_range(const floating* xp, floating* yp,
                                  Py_ssize_t c0, Py_ssize_t c1,     # channels c0 <= c < c1
                                  Py_ssize_t n, Py_ssize_t channels, Py_ssize_t inner,
                                  const floating* w, const floating* b, double eps,
                                  bint prefetch,
                                  double* mp, double* vp) noexcept nogil:   # OUT (channels,)
    """Channels c0..c1-1 of normalize_channels, one after the other; each but the last
    prefetches the next (within this range: the next range is another thread's)."""
    cdef Py_ssize_t c
    cdef Stat st
    for c in range(c0, c1):
        st = normalize_channel(xp + c * inner, yp + c * inner, n, channels * inner, inner,
                               w[c] if w != NULL else 1.0, b[c] if b != NULL else 0, eps,
                               prefetch and c > c0, prefetch and c + 1 < c1)
        mp[c] = st.mean
        vp[c] = st.m2 / st.n


def normalize_channels(const floating[::1] x,      # IN  flat (n, channels, inner) buffer
                       floating[::1] out,          # OUT same size; may be x itself
                       Py_ssize_t n, Py_ssize_t channels, Py_ssize_t inner,
                       const floating[::1] weight, # IN  (channels,) or None
                       const floating[::1] bias,   # IN  (channels,) or None
                       double eps,
                       double[::1] mean_out,       # OUT (channels,)
                       double[::1] var_out,        # OUT (channels,) biased variance
                       int num_threads):
    """BatchNorm with batch statistics: per channel over n and inner, channel by channel so
    that each channel is normalized from cache right after its statistics."""
    check_extent(n * channels * inner, x.shape[0], out.shape[0])
    check_extent(channels, mean_out.shape[0], var_out.shape[0])
    cdef int nt = effective_threads(n * channels * inner, num_threads)
    cdef const floating* xp = &x[0]
    cdef floating* yp = &out[0]
    cdef const floating* w = optional_ptr(weight)
    cdef const floating* b = optional_ptr(bias)
    cdef Py_ssize_t c, t
    cdef Stat* sts = NULL
    cdef Stat* buf = NULL
    cdef GroupParams p
    cdef floating hi
    cdef double ac
    cdef bint prefetch = (n * inner * <Py_ssize_t>sizeof(floating) <= PREFETCH_CHANNEL_MAX
                          and n * channels * inner * <Py_ssize_t>sizeof(floating)
                          > nt * PREFETCH_MIN_PER_THREAD)
    cdef double* mp = &mean_out[0]
    cdef double* vp = &var_out[0]
    if nt == 1:
        with nogil:
            normalize_channel_range(xp, yp, 0, channels, n, channels, inner, w, b, eps,
                                    prefetch, mp, vp)
        return
    if channels >= 2 * nt:      # one contiguous range of channels per thread
        with nogil:
            for t in prange(nt, schedule='static', chunksize=1, num_threads=nt):
                normalize_channel_range(xp, yp, t * channels // nt, (t + 1) * channels // nt,
                                        n, channels, inner, w, b, eps, prefetch, mp, vp)
        return
    # few channels: chunk-parallel statistics, then run-parallel apply (same bits)
    sts = alloc_stats(channels)
    buf = <Stat*>malloc(channels * n * ceil_div(inner, CHUNK) * sizeof(Stat))
    if buf == NULL:
        free(sts)
        raise MemoryError()
    with nogil:
        grouped_stats(xp, channels, n, inner, inner, channels * inner, False, sts, buf, nt)
        for c in range(channels):
            mean_out[c] = sts[c].mean
            var_out[c] = sts[c].m2 / sts[c].n
        for t in prange(n * channels, schedule='static', num_threads=nt, use_threads_if=nt > 1):
            c = t % channels
            p = group_params(sts[c], eps, False)
            hi = <floating>p.mean
            ac = p.rstd * (w[c] if w != NULL else 1.0)
            apply_run(xp + t * inner, yp + t * inner, inner, hi, <floating>ac,
                      mean_offset(p.mean, hi, ac, b[c] if b != NULL else 0.0))
    free(buf)
    free(sts)


def apply_channels(const floating[::1] x,     # IN  flat (n, channels, inner) buffer
                   floating[::1] out,         # OUT same size; may be x itself
                   Py_ssize_t n, Py_ssize_t channels, Py_ssize_t inner,
                   const double[::1] mean,    # IN  (channels,)
                   const double[::1] scale,   # IN  (channels,) rstd * weight
                   const double[::1] bias,    # IN  (channels,)
                   int num_threads):
    """Per-channel apply y = (x - mean) * scale + bias with given float64 statistics
    (BatchNorm and InstanceNorm on running stats, BatchNorm of (N, C) input), computed as
    fma(x - hi, a, c) like every apply (mean_offset)."""
    check_extent(n * channels * inner, x.shape[0], out.shape[0])
    check_extent(channels, mean.shape[0], min(scale.shape[0], bias.shape[0]))
    cdef int nt = effective_threads(n * channels * inner, num_threads)
    cdef const floating* xp = &x[0]
    cdef floating* yp = &out[0]
    cdef floating* hi = <floating*>malloc(max(3 * channels, <Py_ssize_t>1) * sizeof(floating))
    cdef floating* a
    cdef floating* c
    cdef Py_ssize_t t, k
    if hi == NULL:
        raise MemoryError()
    a = hi + channels
    c = hi + 2 * channels
    with nogil:
        for k in range(channels):
            hi[k] = <floating>mean[k]
            a[k] = <floating>scale[k]
            c[k] = mean_offset(mean[k], hi[k], scale[k], bias[k])
        if inner == 1:
            for t in prange(n, schedule='static', num_threads=nt, use_threads_if=nt > 1):
                apply_columns(xp + t * channels, yp + t * channels, channels, hi, a, c)
        else:
            for t in prange(n * channels, schedule='static', num_threads=nt,
                            use_threads_if=nt > 1):
                k = t % channels
                apply_run(xp + t * inner, yp + t * inner, inner, hi[k], a[k], c[k])
    free(hi)


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


# ---------------------------------------------------------------------------------------
# fast paths: a short path with no NumPy temporaries and no Python-level planning, for
# calls with plain arguments (most of the time of a small call goes to that planning). They
# only *recognize* simple arguments; anything else returns None and the general path (which
# validates and raises the errors) runs instead. They run the same kernel bodies as the
# general path, so they give the same bits.

from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_C_CONTIGUOUS
from cpython.buffer cimport PyBUF_WRITABLE
import numpy as _np
from . import _threads

cdef object _NDARRAY = _np.ndarray
cdef object _F32 = _np.dtype(_np.float32)
cdef object _F64 = _np.dtype(_np.float64)
cdef double _F32_EPS = _np.finfo(_np.float32).eps
cdef double _F64_EPS = _np.finfo(_np.float64).eps


cdef inline bint fast_param(object p, object dtype, Py_ssize_t n):
    """p is None, or a 1-D ndarray of `dtype` and length n (contiguity is checked when the
    buffer is taken)."""
    if p is None:
        return True
    if type(p) is not _NDARRAY or p.dtype is not dtype:
        return False
    shape = p.shape
    return len(shape) == 1 and shape[0] == n


cdef inline int take_buffer(object obj, Py_buffer* view, int flags):
    """1 and a filled view; 0 for None (view.buf = NULL); -1 when obj cannot give that
    buffer (not C-contiguous, read-only for a write, ...)."""
    view.buf = NULL
    if obj is None:
        return 0
    try:
        PyObject_GetBuffer(obj, view, flags)
    except Exception:      # NumPy raises ValueError or BufferError, by case
        return -1
    return 1


cdef enum:
    OP_LAYER = 0    # LayerNorm over the last dim: a0 = row length; p0 weight, p1 bias
    OP_RMS = 1      # RMSNorm over the last dim: a0 = row length; p0 weight
    OP_CHANNELS = 2 # BatchNorm eval: a0 = channels, a1 = inner; p0..p3 = mean, var, w, b


cdef inline floating eval_scale(Py_ssize_t c, const floating* var, const floating* w,
                                double eps) noexcept nogil:
    """rstd * weight of channel c, in float64 as the general path computes it."""
    cdef double a = 1.0 / sqrt(<double>var[c] + eps)
    if w != NULL:
        a = a * <double>w[c]
    return <floating>a


cdef void batch_norm_eval_body(const floating* xp,  # IN  (n, channels, inner) buffer
                               floating* yp,        # OUT same size; may be xp itself
                               Py_ssize_t n, Py_ssize_t channels, Py_ssize_t inner,
                               const floating* mean, const floating* var,  # IN  (channels,)
                               const floating* w, const floating* b,       # IN  or NULL
                               double eps, int nt) noexcept nogil:
    """BatchNorm with running statistics of the data's dtype, as the general path computes
    it (the mean is exact in the data's type, so the offset is the bias)."""
    cdef Py_ssize_t t, c, i
    cdef floating a
    if nt == 1:     # channel by channel, each scale once (no inactive parallel region)
        for c in range(channels):
            a = eval_scale(c, var, w, eps)
            for i in range(n):
                t = i * channels + c
                apply_run(xp + t * inner, yp + t * inner, inner, mean[c], a,
                          b[c] if b != NULL else 0)
        return
    for t in prange(n * channels, schedule='static', num_threads=nt):
        c = t % channels
        apply_run(xp + t * inner, yp + t * inner, inner, mean[c], eval_scale(c, var, w, eps),
                  b[c] if b != NULL else 0)


cdef int fast_op(const floating* x, floating* y, Py_ssize_t n,
                 const floating* p0, const floating* p1, const floating* p2,
                 const floating* p3, int op, Py_ssize_t a0, Py_ssize_t a1,
                 double eps, int nt) noexcept nogil:
    """The computation of a fast-path call; -1 when out of memory (nothing written)."""
    if op == OP_LAYER or op == OP_RMS:
        return groups_body(x, y, n // a0, 1, a0, 1, True, p0, p1 if op == OP_LAYER else NULL,
                           eps, op == OP_RMS, NULL, NULL, nt)
    batch_norm_eval_body(x, y, n // (a0 * a1), a0, a1, p0, p1, p2, p3, eps, nt)
    return 0


cdef int fast_run(bint f32, const void* x, void* y, Py_ssize_t n,
                  const void* p0, const void* p1, const void* p2, const void* p3,
                  int op, Py_ssize_t a0, Py_ssize_t a1, double eps, int nt) noexcept nogil:
    """fast_op on untyped buffers of float32 (f32) or float64 data."""
    if f32:
        return fast_op[float](<const float*>x, <float*>y, n, <const float*>p0,
                              <const float*>p1, <const float*>p2, <const float*>p3, op, a0, a1,
                              eps, nt)
    return fast_op[double](<const double*>x, <double*>y, n, <const double*>p0,
                           <const double*>p1, <const double*>p2, <const double*>p3, op, a0,
                           a1, eps, nt)


cdef inline bint overlaps(const Py_buffer* a, const Py_buffer* b) noexcept:
    cdef const char* pa = <const char*>a.buf
    cdef const char* pb = <const char*>b.buf
    return pa < pb + b.len and pb < pa + a.len


cdef object fast_call(object x, object out, object p0, object p1, object p2, object p3,
                      object dtype, int op, Py_ssize_t a0, Py_ssize_t a1, double eps,
                      object num_threads):
    """Take the buffers of x, out and up to four parameters, run `op`, release them. None
    when a buffer cannot be had as needed (the general path then explains)."""
    cdef Py_buffer views[6]
    cdef int taken[6]
    cdef int i, ok = 1, rc = 0, nt = 1
    cdef bint in_place = out is x
    cdef Py_ssize_t size = x.size
    cdef bint release_gil = size >= PARALLEL_MIN_ELEMENTS
    if release_gil:    # threads resolved once, as the general path does (before any buffer)
        nt = _threads.resolve(num_threads)
    cdef object y = _np.empty(x.shape, dtype) if out is None else out
    cdef void* yb
    objs = (x, None if in_place else y, p0, p1, p2, p3)
    for i in range(6):
        taken[i] = 0
    for i in range(6):
        flags = PyBUF_C_CONTIGUOUS
        if i == 1 or (i == 0 and in_place):
            flags = flags | PyBUF_WRITABLE
        taken[i] = take_buffer(objs[i], &views[i], flags)
        if taken[i] < 0:
            ok = 0
            break
    if ok and in_place:   # a parameter inside x would change while x is written
        for i in range(2, 6):
            if taken[i] > 0 and overlaps(&views[i], &views[0]):
                ok = 0
    if ok:
        yb = views[0].buf if in_place else views[1].buf
        if release_gil:
            with nogil:
                rc = fast_run(dtype is _F32, views[0].buf, yb, size, views[2].buf,
                              views[3].buf, views[4].buf, views[5].buf, op, a0, a1, eps, nt)
        else:
            rc = fast_run(dtype is _F32, views[0].buf, yb, size, views[2].buf, views[3].buf,
                          views[4].buf, views[5].buf, op, a0, a1, eps, nt)
    for i in range(6):
        if taken[i] > 0:
            PyBuffer_Release(&views[i])
    if rc < 0:
        raise MemoryError()
    return y if ok else None


cdef inline bint fast_x(object x):
    """x is a non-empty float32/float64 ndarray (contiguity is checked with its buffer)."""
    return type(x) is _NDARRAY and (x.dtype is _F32 or x.dtype is _F64) and x.size > 0


def rows_fast(x, object normalized_shape, weight, bias, object eps, bint rms, out,
              object num_threads):
    """Fast path of layer_norm / rms_norm over the last dim (None: use the general path).
    normalized_shape: an int or a 1-tuple; num_threads: None or a positive int."""
    cdef double e
    cdef Py_ssize_t row_len
    if not (num_threads is None or num_threads > 0) or not (out is None or out is x):
        return None
    if type(normalized_shape) is tuple:
        if len(normalized_shape) != 1:
            return None
        normalized_shape = normalized_shape[0]
    if type(normalized_shape) is not int or not fast_x(x) or x.ndim == 0:
        return None
    shape = x.shape
    row_len = shape[x.ndim - 1]
    if row_len != normalized_shape:
        return None
    dtype = x.dtype
    if eps is None and rms:
        e = _F32_EPS if dtype is _F32 else _F64_EPS
    elif type(eps) is float and isfinite(<double>eps) and <double>eps >= 0:
        e = eps
    else:
        return None
    if not (fast_param(weight, dtype, row_len) and fast_param(bias, dtype, row_len)):
        return None
    return fast_call(x, out, weight, bias, None, None, dtype,
                     OP_RMS if rms else OP_LAYER, row_len, 0, e, num_threads)


def batch_norm_eval_fast(x, running_mean, running_var, weight, bias, double eps, out,
                         object num_threads):
    """Fast path of batch_norm in eval mode with running statistics (None: general path).
    num_threads: None or a positive int."""
    if not fast_x(x) or x.ndim < 2 or not (out is None or out is x) or running_mean is None \
            or running_var is None or not (isfinite(eps) and eps >= 0):
        return None
    dtype = x.dtype
    channels = x.shape[1]
    inner = x.size // (x.shape[0] * channels)
    if inner == 1 and x.size >= PARALLEL_MIN_ELEMENTS:
        return None    # (N, C): the general path's row-vector apply is the fast one
    if not (fast_param(running_mean, dtype, channels) and fast_param(running_var, dtype, channels)
            and fast_param(weight, dtype, channels) and fast_param(bias, dtype, channels)):
        return None
    return fast_call(x, out, running_mean, running_var, weight, bias, dtype, OP_CHANNELS,
                     channels, inner, eps, num_threads)
