# ---------------------------------------------------------------------------------------
# statistics engine

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
    r.shift = shift
    r.dev = s1 / n
    r.m2 = m2_from_sums(n, s1, s2)
    return r


cdef inline void stat_merge(Stat* acc, Stat b) noexcept nogil:
    """Chan et al.'s pairwise merge of b into acc, in float64, on deviations from acc's
    shift: the chunk means of data at 1e9 with unit spread differ by ~1 and are known to
    ~1e-16 of that, where their float64 values would be known to only ~1e-7 of it (the
    shifts are values of the data, whose difference is exact). The shift stays that of the
    first part merged, so the order of merges fixes every bit."""
    cdef double n, bdev, delta
    if acc.n == 0:
        acc[0] = b
        return
    if b.n == 0:
        return
    n = acc.n + b.n
    bdev = (b.shift - acc.shift) + b.dev
    delta = bdev - acc.dev
    if isfinite(delta):
        acc.dev = acc.dev + delta * (b.n / n)
    else:       # infinite data: the weighted mean gives NumPy's inf, -inf or NaN
        acc.dev = acc.dev * (acc.n / n) + bdev * (b.n / n)
    acc.m2 = acc.m2 + b.m2 + delta * delta * (acc.n / n) * b.n
    acc.n = n


cdef Stat nonfinite_stat(const floating* x, Py_ssize_t n, Py_ssize_t stride,
                         Stat sums) noexcept nogil:
    """Statistics of n values x[0], x[stride], ... whose shifted sums are not finite: with
    an infinite or NaN value among them, NumPy's results (mean = sum / n: inf, -inf or NaN;
    M2 NaN); finite data whose squares overflowed keeps `sums`."""
    cdef double total = 0.0
    cdef Py_ssize_t i, bad = 0
    for i in range(n):
        total += <double>x[i * stride]
        bad += not isfinite(x[i * stride])
    if bad == 0:
        return sums
    sums.shift = 0.0
    sums.dev = total / n
    sums.m2 = NAN
    return sums


cdef extern from "_simd.h" nogil:
    void fn_chunk_sums_f32(const float* x, Py_ssize_t n, int precise, double* shift,
                           double* s1, double* s2) noexcept
    void fn_chunk_sums_f32_pf(const float* x, Py_ssize_t n, int precise, double* shift,
                              double* s1, double* s2, const char* pf,
                              const char* pf_end) noexcept
    void fn_chunk_sums_f64(const double* x, Py_ssize_t n, int precise, double* shift,
                           double* s1, double* s2) noexcept
    void fn_chunk_sums_f32_pair(const float* xa, const float* xb, Py_ssize_t n,
                                double* shift, double* s1, double* s2) noexcept
    enum: FN_PAIR_MAX       # chunks shorter than this may be summed in pairs
    enum: FN_SWEEP_MAX      # widest block of fn_column_sums_sweep_f32 (>= COL_BLOCK)
    Py_ssize_t fn_sweep_rows(Py_ssize_t ld)   # rows a step of its sweep (4 or 8)
    int fn_column_sums_sweep_f32(const float* x, Py_ssize_t nr, Py_ssize_t ld,
                                 Py_ssize_t width, Py_ssize_t flush, const float* c,
                                 double* s1, double* s2, const float* pf,
                                 Py_ssize_t pf_rows, Py_ssize_t pf_step,
                                 Py_ssize_t pf_width) noexcept
    void fn_prefetch(const void* p, Py_ssize_t nbytes) noexcept
    void fn_prefetch_l2(const void* p, Py_ssize_t nbytes) noexcept
    # where float32 lanes are not safe (the row sums' limits, shared by column_sums_checked)
    const double FN_F32_SUM_SQUARES_MAX
    const double FN_F32_MEAN_SQUARE_MIN


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
    return chunk_stat_from_sums(x, n, shift, s1, s2)


cdef inline Stat chunk_stat_from_sums(const floating* x, Py_ssize_t n, double shift,
                                      double s1, double s2) noexcept nogil:
    cdef Stat r = stat_from_sums(<double>n, shift, s1, s2)
    if not isfinite(shift + s1 + s2):
        r = nonfinite_stat(x, n, 1, r)
    return r


cdef inline void row_pair_stats(const float* xa, const float* xb, Py_ssize_t n,
                                Stat* a, Stat* b) noexcept nogil:
    """chunk_stat of two short rows (n < FN_PAIR_MAX, float32 lanes), to the same bits,
    their sums interleaved (fn_chunk_sums_f32_pair)."""
    cdef double shift[2]
    cdef double s1[2]
    cdef double s2[2]
    fn_chunk_sums_f32_pair(xa, xb, n, shift, s1, s2)
    a[0] = chunk_stat_from_sums(xa, n, shift[0], s1[0], s2[0])
    b[0] = chunk_stat_from_sums(xb, n, shift[1], s1[1], s2[1])


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
    acc.shift = 0
    acc.dev = 0
    acc.m2 = 0
    for s in range(nseg):
        if prefetch_segments and s + 1 < nseg:
            fn_prefetch(x + (s + 1) * seg_stride, min(seg_len * <Py_ssize_t>sizeof(floating),
                                                      PREFETCH_BYTES))
        segment_fold(x + s * seg_stride, seg_len, precise, &acc)
    return acc


cdef inline Stat group_stat_prefetching(const float* x, Py_ssize_t n,
                                        const float* nxt) noexcept nogil:
    """group_stat(x, 1, n, 0, False, False) of a contiguous float32 group, to the same bits,
    asking meanwhile for the first half of the group at nxt into L2, a cache line per two
    lines summed (fn_chunk_sums_f32_lanes_pf), each chunk its share."""
    cdef Stat acc
    cdef Py_ssize_t k, start, m
    cdef double shift, s1, s2
    cdef const char* pf = <const char*>nxt
    acc.n = 0
    acc.shift = 0
    acc.dev = 0
    acc.m2 = 0
    for k in range(ceil_div(n, CHUNK)):
        start = k * CHUNK
        m = min(<Py_ssize_t>CHUNK, n - start)
        fn_chunk_sums_f32_pf(x + start, m, 0, &shift, &s1, &s2,
                             pf + start // 2 * <Py_ssize_t>sizeof(float),
                             pf + (start + m) // 2 * <Py_ssize_t>sizeof(float))
        stat_merge(&acc, chunk_stat_from_sums(x + start, m, shift, s1, s2))
    return acc


cdef inline Stat fold_stats(const Stat* parts, Py_ssize_t n, Py_ssize_t stride) noexcept nogil:
    """Left-to-right merge of parts[0], parts[stride], ... (n of them)."""
    cdef Stat acc
    cdef Py_ssize_t i
    acc.n = 0
    acc.shift = 0
    acc.dev = 0
    acc.m2 = 0
    for i in range(n):
        stat_merge(&acc, parts[i * stride])
    return acc


cdef void grouped_stats(const floating* x,        # IN  buffer
                        SegmentShape s, bint precise,
                        Stat* out,                # OUT one Stat per group
                        Stat* chunk_buf,          # scratch of groups*nseg*ceil(seg_len/CHUNK), or NULL
                        int num_threads) noexcept nogil:
    """Statistics of groups of s.nseg equal segments (SegmentShape). With chunk_buf, chunks
    are computed in parallel and folded afterwards (for few, large groups); the result is
    the same to the bit."""
    cdef Py_ssize_t g, seg, t, k, rem, start
    cdef Py_ssize_t cps = ceil_div(s.seg_len, CHUNK)
    cdef Py_ssize_t per_group = s.nseg * cps
    if chunk_buf == NULL:
        for g in prange(s.groups, nogil=True, schedule='static', num_threads=num_threads,
                        use_threads_if=num_threads > 1):
            out[g] = group_stat(x + g * s.group_stride, s.nseg, s.seg_len, s.seg_stride,
                                precise, True)
        return
    for t in prange(s.groups * per_group, nogil=True, schedule='static',
                    num_threads=num_threads, use_threads_if=num_threads > 1):
        g = t // per_group
        rem = t - g * per_group
        seg = rem // cps
        k = rem - seg * cps
        start = k * CHUNK
        chunk_buf[t] = chunk_stat(x + g * s.group_stride + seg * s.seg_stride + start,
                                  min(<Py_ssize_t>CHUNK, s.seg_len - start), precise)
    for g in range(s.groups):
        out[g] = fold_stats(chunk_buf + g * per_group, per_group, 1)


cdef Stat* grouped_stats_scratch(SegmentShape s, int num_threads) noexcept nogil:
    """Scratch for chunk-parallel statistics when there are too few groups to share out
    (NULL: none needed, or no memory; grouped_stats then runs over groups)."""
    if num_threads <= 1 or s.groups >= 4 * num_threads:
        return NULL
    return <Stat*>malloc(max(s.groups * s.nseg * ceil_div(s.seg_len, CHUNK), <Py_ssize_t>1)
                         * sizeof(Stat))


cdef inline void prefetch_rows(const void* row, Py_ssize_t count, Py_ssize_t row_bytes,
                               Py_ssize_t bytes) noexcept nogil:
    """Ask for the first `bytes` of each of `count` rows, row_bytes apart, into L2 (into L1,
    the sweeps from L3 were slower: _simd.h, fn_column_sums_sweep_f32)."""
    cdef Py_ssize_t k
    for k in range(count):
        fn_prefetch_l2(<const char*>row + k * row_bytes, bytes)


cdef void column_chunk_sums(const floating* x,   # IN  nr rows of `width` columns, stride ld
                            Py_ssize_t nr, Py_ssize_t ld, Py_ssize_t width,
                            double* shift,        # OUT (width,) the first row
                            double* s1,           # OUT (width,) sum of x - shift
                            double* s2,           # OUT (width,) sum of (x - shift)^2
                            Py_ssize_t ahead) noexcept nogil:   # rows to prefetch ahead (0: none)
    """Shifted sums of each column over nr <= ROW_CHUNK rows, vectorized across the
    contiguous columns, in float64 (the shift is a single sample, so float32 lanes would
    lose too much to s2 - s1^2/n). Rows x[nr:nr + ahead] must exist when ahead > 0."""
    cdef double d, d0, d1, d2, d3
    cdef Py_ssize_t r, j
    cdef Py_ssize_t row_bytes = ld * <Py_ssize_t>sizeof(floating)
    cdef Py_ssize_t width_bytes = width * <Py_ssize_t>sizeof(floating)
    cdef const floating* row = x
    for j in range(width):
        shift[j] = row[j]
        s1[j] = 0.0
        s2[j] = 0.0
    r = 1
    while r + 4 <= nr:           # four rows per sweep: fewer loads/stores of s1, s2
        row = x + r * ld
        if ahead:
            prefetch_rows(row + ahead * ld, 4, row_bytes, width_bytes)
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


cdef void column_chunk_sums_f32(const float* x,   # IN  nr rows of `width` columns, stride ld
                                Py_ssize_t nr, Py_ssize_t ld, Py_ssize_t width,
                                double* shift,    # OUT (width,) mean of the first rows
                                double* s1,       # OUT (width,) sum of x - shift
                                double* s2,       # OUT (width,) sum of (x - shift)^2
                                Py_ssize_t ahead,  # as column_chunk_sums
                                const float* next=NULL,     # rows of another block to ask
                                Py_ssize_t next_width=0) noexcept nogil:  # for, or NULL
    """column_chunk_sums in float32 lanes (normalizations of float32 data, whose output
    cannot show the difference): the shift is the mean of the first COL_SHIFT_ROWS rows
    (rounded to float32, so x - shift is exact near the mean), each lane sums COL_FLUSH rows
    before the float64 add: twice the values per vector of the float64 lanes and no
    conversions; column_sums_checked redoes the rare columns where float32 is not safe.
    next (else NULL): the first half of the rows of another block (next_width columns, the
    same stride) is asked into L2, a row per two summed, instead of the rows ahead."""
    cdef float c[COL_BLOCK]
    cdef float f1[COL_BLOCK]
    cdef float f2[COL_BLOCK]
    cdef float d, d0, d1, d2, d3, t1, t2
    cdef Py_ssize_t step = fn_sweep_rows(ld)
    cdef Py_ssize_t r, j, stop, ns = min(nr, <Py_ssize_t>COL_SHIFT_ROWS)
    cdef bint found
    cdef Py_ssize_t row_bytes = ld * <Py_ssize_t>sizeof(float)
    cdef Py_ssize_t width_bytes = width * <Py_ssize_t>sizeof(float)
    cdef const float* row
    for j in range(width):
        shift[j] = 0.0
        s1[j] = 0.0
        s2[j] = 0.0
    for r in range(ns):
        row = x + r * ld
        for j in range(width):
            shift[j] += row[j]
    for j in range(width):
        c[j] = <float>(shift[j] / ns)
        shift[j] = c[j]
    # whole vectors: the sweep below in C, its prefetch interleaved (with `next`, the first
    # half of its rows, half a step's rows per step; else the rows `ahead` on, a step's)
    if next != NULL:
        found = fn_column_sums_sweep_f32(x, nr, ld, width, COL_FLUSH, c, s1, s2,
                                         next, (nr + 1) // 2, step // 2, next_width)
    else:
        found = fn_column_sums_sweep_f32(x, nr, ld, width, COL_FLUSH, c, s1, s2,
                                         (x + ahead * ld) if ahead > 0 else NULL, nr, step,
                                         width)
    if found:
        return
    r = 0
    while r < nr:
        stop = min(r + COL_FLUSH, nr)
        for j in range(width):
            f1[j] = 0
            f2[j] = 0
        while r + step <= stop:
            row = x + r * ld
            if ahead:
                prefetch_rows(row + ahead * ld, step, row_bytes, width_bytes)
            elif next != NULL and r // 2 < (nr + 1) // 2:     # (as the sweep in C)
                prefetch_rows(next + (r // 2) * ld, min(step // 2, (nr + 1) // 2 - r // 2),
                              row_bytes, next_width * <Py_ssize_t>sizeof(float))
            for j in range(width):
                d0 = row[j] - c[j]
                d1 = row[j + ld] - c[j]
                d2 = row[j + 2 * ld] - c[j]
                d3 = row[j + 3 * ld] - c[j]
                t1 = (d0 + d1) + (d2 + d3)
                t2 = (d0 * d0 + d1 * d1) + (d2 * d2 + d3 * d3)
                if step == 8:
                    d0 = row[j + 4 * ld] - c[j]
                    d1 = row[j + 5 * ld] - c[j]
                    d2 = row[j + 6 * ld] - c[j]
                    d3 = row[j + 7 * ld] - c[j]
                    t1 = t1 + ((d0 + d1) + (d2 + d3))
                    t2 = t2 + ((d0 * d0 + d1 * d1) + (d2 * d2 + d3 * d3))
                f1[j] += t1
                f2[j] += t2
            r += step
        while r < stop:
            row = x + r * ld
            for j in range(width):
                d = row[j] - c[j]
                f1[j] += d
                f2[j] += d * d
            r += 1
        for j in range(width):
            s1[j] += f1[j]
            s2[j] += f2[j]


cdef inline bint f32_sums_unsafe(double n, double s1, double s2) noexcept nogil:
    """Whether float32-lane sums may have lost digits, by _simd.h's rules for rows: squares
    that overflowed or came near it (or NaN/Inf data), squares that may have underflowed
    (constant columns too), or a shift far from the mean (FN_FAR_SHIFT: the round-off of
    M2 = s2 - s1^2/n grows with s2/M2)."""
    # (no short-circuit: branch-free, so a loop over columns vectorizes)
    return ((not (s2 >= n * FN_F32_MEAN_SQUARE_MIN)) | (not (s2 <= FN_F32_SUM_SQUARES_MAX))
            | (s1 * s1 > s2 * n / 3.0))


cdef void column_sums_checked(const floating* x, Py_ssize_t nr, Py_ssize_t ld,
                              Py_ssize_t width, bint precise,
                              double* shift, double* s1, double* s2,   # OUT (width,)
                              Py_ssize_t ahead,
                              const float* next=NULL,
                              Py_ssize_t next_width=0) noexcept nogil:
    """column_chunk_sums, in float32 lanes for float32 data unless `precise` (statistics the
    caller keeps in float64); a column whose float32 sums are not safe is summed again in
    float64 lanes (the same bits as the float64 path would give it). next: as
    column_chunk_sums_f32 (float32 lanes only)."""
    cdef Py_ssize_t j
    cdef bint unsafe = False
    if floating is double or precise:
        column_chunk_sums(x, nr, ld, width, shift, s1, s2, ahead)
        return
    column_chunk_sums_f32(x, nr, ld, width, shift, s1, s2, ahead, next, next_width)
    for j in range(width):      # (a vectorized test first: the redo is rare)
        unsafe |= f32_sums_unsafe(<double>nr, s1[j], s2[j])
    if not unsafe:
        return
    for j in range(width):
        if f32_sums_unsafe(<double>nr, s1[j], s2[j]):
            column_chunk_sums(x + j, nr, ld, 1, shift + j, s1 + j, s2 + j, 0)


cdef void column_block_stats(const floating* x,   # IN  matrix of `rows` rows, row stride ld
                             Py_ssize_t rows, Py_ssize_t ld,
                             Py_ssize_t width,     # columns in this block, <= COL_BLOCK
                             bint precise,
                             Stat* out,            # OUT width Stats (merged into)
                             Py_ssize_t ahead,     # rows to prefetch ahead (0: none)
                             Py_ssize_t after) noexcept nogil:   # rows that follow x's `rows`
    """Per-column statistics over rows; rows are folded in chunks of ROW_CHUNK, each chunk
    summed around its own shift (column_sums_checked)."""
    cdef double shift[COL_BLOCK]
    cdef double s1[COL_BLOCK]
    cdef double s2[COL_BLOCK]
    cdef Py_ssize_t rc, r0, j, nr
    cdef Stat st
    for rc in range(ceil_div(rows, ROW_CHUNK)):
        r0 = rc * ROW_CHUNK
        nr = min(<Py_ssize_t>ROW_CHUNK, rows - r0)
        column_sums_checked(x + r0 * ld, nr, ld, width, precise, shift, s1, s2,
                            min(ahead, rows - r0 - nr + after))
        for j in range(width):
            st = stat_from_sums(<double>nr, shift[j], s1[j], s2[j])
            if not isfinite(shift[j] + s1[j] + s2[j]):
                st = nonfinite_stat(x + r0 * ld + j, nr, ld, st)
            stat_merge(&out[j], st)


cdef inline Py_ssize_t column_block_width(Py_ssize_t outer, Py_ssize_t cols, int num_threads,
                                          bint narrow) noexcept nogil:
    """With `narrow`, narrow the column blocks until there are enough tasks for the threads.
    column_stats narrows only when the rows are too few to share out instead
    (columns_by_row_chunks): narrow blocks over many rows have each thread read every line
    of the buffer for a part of it."""
    cdef Py_ssize_t width = COL_BLOCK
    while (narrow and num_threads > 1 and width > MIN_COL_BLOCK
           and outer * ceil_div(cols, width) < 4 * num_threads):
        width //= 2
    return width


cdef inline bint columns_by_row_chunks(ColumnShape s, int num_threads) noexcept nogil:
    """Whether column_stats shares out chunks of rows (a scratch Stat per chunk and column,
    folded after) rather than (outer, column block) pairs: when there are few of those and
    many rows. (Narrowing the blocks instead had BatchNorm training on channels-last
    (8, 256, 56, 56) take 4.6x its NCHW time.)"""
    return (num_threads > 1 and s.rows > ROW_CHUNK
            and s.outer * ceil_div(s.cols, COL_BLOCK) < 4 * num_threads)


cdef inline Py_ssize_t column_prefetch_rows(ColumnShape s, Py_ssize_t width,
                                            int num_threads) noexcept nogil:
    """Rows ahead that column statistics prefetch: COL_PREFETCH_BYTES of the block's
    columns, when a thread's share of the buffer is large enough to come from memory
    (prefetching data already in cache only costs instructions)."""
    if (s.outer * s.rows * s.cols * <Py_ssize_t>sizeof(float)
            <= max(num_threads, 1) * tuning.prefetch_min_per_thread):
        return 0
    return 4 * ceil_div(COL_PREFETCH_BYTES, 4 * width * <Py_ssize_t>sizeof(float))


cdef Stat* column_stats_scratch(ColumnShape s, int num_threads) noexcept nogil:
    """Scratch of column_stats (NULL: none needed, or no memory)."""
    if not columns_by_row_chunks(s, num_threads):
        return NULL
    return <Stat*>malloc(s.outer * ceil_div(s.rows, ROW_CHUNK) * s.cols * sizeof(Stat))


if COL_BLOCK > FN_SWEEP_MAX:      # (blocks wider than the C sweep's would take the loop)
    raise ImportError("COL_BLOCK (common.pxi) exceeds FN_SWEEP_MAX (_simd.h)")


cdef inline Py_ssize_t chunk_blocks(ColumnShape s, int num_threads) noexcept nogil:
    """Column blocks of column_stats' chunk path (its rows exceed ROW_CHUNK: no narrowing)."""
    return ceil_div(s.cols, column_block_width(s.outer, s.cols, num_threads, False))


cdef inline Py_ssize_t chunk_task_start(ColumnShape s, Py_ssize_t th,
                                         int num_threads) noexcept nogil:
    """The first (outer, row chunk, column block) task of thread th in column_stats' chunk
    path (th == num_threads: the end); the tasks run in row order, so a thread's tasks are
    a contiguous range of rows."""
    cdef Py_ssize_t tasks = s.outer * ceil_div(s.rows, ROW_CHUNK) * chunk_blocks(s, num_threads)
    return tasks * th // max(num_threads, 1)


cdef inline Py_ssize_t chunk_task_row(ColumnShape s, Py_ssize_t th,
                                       int num_threads) noexcept nogil:
    """The first row (of all outer * rows) of thread th's tasks in column_stats' chunk
    path."""
    cdef Py_ssize_t k = chunk_task_start(s, th, num_threads) // chunk_blocks(s, num_threads)
    cdef Py_ssize_t nrc = ceil_div(s.rows, ROW_CHUNK)
    return (k // nrc) * s.rows + (k % nrc) * ROW_CHUNK


cdef void column_stats(const floating* x,          # IN  (outer, rows, cols) buffer
                       ColumnShape s, bint precise,
                       Stat* out,                  # OUT outer*cols Stats
                       Stat* chunk_buf,            # column_stats_scratch(s, num_threads)
                       int num_threads) noexcept nogil:
    """Statistics down each column of each of `outer` matrices; the same bits whichever
    way the work is shared out (chunks of ROW_CHUNK rows, folded in order)."""
    cdef Py_ssize_t outer = s.outer, rows = s.rows, cols = s.cols
    cdef Py_ssize_t width = column_block_width(outer, cols, num_threads, rows <= ROW_CHUNK)
    cdef Py_ssize_t nblocks = ceil_div(cols, width)
    cdef Py_ssize_t nrc = ceil_div(rows, ROW_CHUNK)
    cdef Py_ssize_t ahead = column_prefetch_rows(s, min(width, cols), num_threads)
    cdef Py_ssize_t t, o, jb, j, rc, oj, rest
    cdef int th
    for t in range(outer * cols):
        out[t].n = 0
    if chunk_buf == NULL:
        for t in prange(outer * nblocks, nogil=True, schedule='static',
                        num_threads=num_threads, use_threads_if=num_threads > 1):
            o = t // nblocks
            jb = (t - o * nblocks) * width
            column_block_stats(x + o * rows * cols + jb, rows, cols,
                               min(width, cols - jb), precise, out + o * cols + jb, ahead, 0)
        return
    # few column blocks but many rows: one task per (outer, row chunk, block), folded after;
    # thread th takes the tasks from chunk_task_start (a range of rows: an apply to follow
    # may take the same rows on the same thread)
    for t in range(outer * nrc * cols):
        chunk_buf[t].n = 0
    for th in prange(num_threads, nogil=True, schedule='static', chunksize=1,
                     num_threads=num_threads, use_threads_if=num_threads > 1):
        for t in range(chunk_task_start(s, th, num_threads),
                       chunk_task_start(s, th + 1, num_threads)):
            o = t // (nrc * nblocks)
            rest = t - o * nrc * nblocks
            rc = rest // nblocks
            jb = (rest - rc * nblocks) * width
            column_block_stats(x + (o * rows + rc * ROW_CHUNK) * cols + jb,
                               min(<Py_ssize_t>ROW_CHUNK, rows - rc * ROW_CHUNK), cols,
                               min(width, cols - jb), precise,
                               chunk_buf + (o * nrc + rc) * cols + jb, ahead,
                               max(rows - (rc + 1) * ROW_CHUNK, <Py_ssize_t>0))
    for oj in range(outer * cols):
        o = oj // cols
        j = oj - o * cols
        out[oj] = fold_stats(chunk_buf + o * nrc * cols + j, nrc, cols)


# ---------------------------------------------------------------------------------------
# entry points of moments (fastnorm/_stats.py)

def segment_moments(const floating[::1] x,    # IN  flat buffer
                    object shape,               # a SegmentShape
                    double[::1] shift,          # OUT (groups,) mean = shift + dev
                    double[::1] dev,            # OUT (groups,)
                    double[::1] m2,             # OUT (groups,)
                    int num_threads):
    """Mean (as shift + dev, see Stat) and M2 of groups of contiguous segments
    (SegmentShape, grouped_stats)."""
    cdef SegmentShape s = segment_shape(shape)
    check_extent((s.groups - 1) * s.group_stride + (s.nseg - 1) * s.seg_stride + s.seg_len
                 if s.groups and s.nseg else 0, x.shape[0], x.shape[0])
    check_extent(s.groups, min(shift.shape[0], dev.shape[0]), m2.shape[0])
    cdef int nt = effective_threads(s.groups * s.nseg * s.seg_len, num_threads)
    cdef Stat* out = alloc_stats(s.groups)
    cdef Stat* buf = grouped_stats_scratch(s, nt)
    if buf == NULL and nt > 1 and s.groups < 4 * nt:
        free(out)
        raise MemoryError()
    with nogil:
        grouped_stats(&x[0], s, True, out, buf, nt)
        store_stats(out, s.groups, shift, dev, m2)
    free(buf)
    free(out)


def column_moments(const floating[::1] x,     # IN  flat (outer, rows, cols) buffer
                   object shape,                # a ColumnShape
                   double[::1] shift,           # OUT (outer*cols,) mean = shift + dev
                   double[::1] dev,             # OUT (outer*cols,)
                   double[::1] m2,              # OUT (outer*cols,)
                   int num_threads, bint precise=True):
    """Mean (as shift + dev) and M2 over the rows of each (outer, column). precise=False:
    float32 lanes for float32 data where safe (statistics only a normalization uses)."""
    cdef ColumnShape s = column_shape(shape)
    check_extent(s.outer * s.rows * s.cols, x.shape[0], x.shape[0])
    check_extent(s.outer * s.cols, min(shift.shape[0], dev.shape[0]), m2.shape[0])
    cdef int nt = effective_threads(s.outer * s.rows * s.cols, num_threads)
    cdef Stat* out = alloc_stats(s.outer * s.cols)
    cdef Stat* buf = column_stats_scratch(s, nt)
    if buf == NULL and columns_by_row_chunks(s, nt):
        free(out)
        raise MemoryError()
    with nogil:
        column_stats(&x[0], s, precise, out, buf, nt)
        store_stats(out, s.outer * s.cols, shift, dev, m2)
    free(buf)
    free(out)
