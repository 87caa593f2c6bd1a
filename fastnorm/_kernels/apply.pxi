# ---------------------------------------------------------------------------------------
# apply engine

cdef extern from "_simd.h" nogil:
    float fn_fmaf(float a, float b, float c) noexcept
    double fn_fma(double a, double b, double c) noexcept
    enum: FN_ALIGN_ROW_MIN


cdef inline floating fmadd(floating a, floating b, floating c) noexcept nogil:
    """a*b + c, fused where the instruction set has FMA."""
    if floating is float:
        return fn_fmaf(a, b, c)
    else:
        return fn_fma(a, b, c)


cdef extern from "_apply.h" nogil:
    double fn_select_f64(bint c, double a, double b) noexcept
    void fn_apply_run_f32(const float* x, float* y, Py_ssize_t n, float hi, float a,
                          float c) noexcept
    void fn_apply_run_f64(const double* x, double* y, Py_ssize_t n, double hi, double a,
                          double c) noexcept
    void fn_apply_row_prefetch_f32(const float* x, float* y, Py_ssize_t n, float hi, float r,
                                   float c, const float* w, const float* b,
                                   const float* pf) noexcept
    void fn_apply_row_prefetch_f64(const double* x, double* y, Py_ssize_t n, double hi,
                                   double r, double c, const double* w, const double* b,
                                   const double* pf) noexcept
    void fn_apply_row_f32(const float* x, float* y, Py_ssize_t n, float hi, float r, float c,
                          const float* w, const float* b) noexcept
    void fn_apply_row_f64(const double* x, double* y, Py_ssize_t n, double hi, double r,
                          double c, const double* w, const double* b) noexcept
    void fn_apply_row_pair_f32(const float* x0, float* y0, const float* x1, float* y1,
                               Py_ssize_t n, float hi0, float r0, float c0, float hi1,
                               float r1, float c1, const float* w, const float* b) noexcept
    void fn_apply_row_pair_f64(const double* x0, double* y0, const double* x1, double* y1,
                               Py_ssize_t n, double hi0, double r0, double c0, double hi1,
                               double r1, double c1, const double* w,
                               const double* b) noexcept
    void fn_apply_rows_f32(const float* x, float* y, Py_ssize_t nrows, Py_ssize_t channels,
                           const float* hi, const float* a, const float* c,
                           Py_ssize_t ahead, Py_ssize_t avail) noexcept
    bint fn_apply_rows_in_registers(Py_ssize_t channels, Py_ssize_t itemsize) noexcept
    void fn_apply_column_rows_f32(const float* x, float* y, Py_ssize_t nrows, Py_ssize_t ld,
                                  Py_ssize_t width, const float* hi, const float* r,
                                  const float* c, const float* w, const float* b) noexcept
    void fn_apply_column_rows_f64(const double* x, double* y, Py_ssize_t nrows,
                                  Py_ssize_t ld, Py_ssize_t width, const double* hi,
                                  const double* r, const double* c, const double* w,
                                  const double* b) noexcept
    void fn_apply_rows_f64(const double* x, double* y, Py_ssize_t nrows, Py_ssize_t channels,
                           const double* hi, const double* a, const double* c,
                           Py_ssize_t ahead, Py_ssize_t avail) noexcept


cdef inline void apply_run_span(const floating* x, floating* y, Py_ssize_t n,
                                floating hi, floating a, floating c) noexcept nogil:
    """y = fma(x - hi, a, c) with scalar parameters (see mean_offset); x may be y
    (_apply.h: unrolled)."""
    if floating is float:
        fn_apply_run_f32(x, y, n, hi, a, c)
    else:
        fn_apply_run_f64(x, y, n, hi, a, c)


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


cdef inline void apply_run_prefetch(const floating* x, floating* y, Py_ssize_t n,
                                    floating hi, floating a, floating c,
                                    const floating* pf) noexcept nogil:
    """apply_run_span, with pf[0:n] (another run) asked into L2 a line at a time meanwhile
    (_apply.h: fn_apply_row_prefetch_* without w and b), from the first 64-byte boundary of
    y on as apply_run."""
    cdef Py_ssize_t h = aligned_head(y, n, sizeof(floating))
    apply_run_span(x, y, h, hi, a, c)
    if floating is float:
        fn_apply_row_prefetch_f32(x + h, y + h, n - h, hi, a, c, NULL, NULL, pf + h)
    else:
        fn_apply_row_prefetch_f64(x + h, y + h, n - h, hi, a, c, NULL, NULL, pf + h)
    if h:
        fn_prefetch_l2(pf, h * <Py_ssize_t>sizeof(floating))


cdef inline void apply_row_span(const floating* x, floating* y, Py_ssize_t n,
                                floating hi, floating r, floating c,
                                const floating* w, const floating* b) noexcept nogil:
    """y = fma(x - hi, r, c) * w[i] + b[i], the normalized value fma(x - hi, r, c) with
    c = mean_offset(mean, hi, r, -0.0) (with no low part, c = -0.0 and the fma is exactly
    (x - hi) * r). w and/or b may be NULL (_apply.h: unrolled)."""
    if floating is float:
        fn_apply_row_f32(x, y, n, hi, r, c, w, b)
    else:
        fn_apply_row_f64(x, y, n, hi, r, c, w, b)


cdef inline void apply_row(const floating* x, floating* y, Py_ssize_t n,
                           floating hi, floating r, floating c,
                           const floating* w, const floating* b) noexcept nogil:
    """apply_row_span from the first 64-byte boundary of y on (aligned_head), for rows of at
    least FN_ALIGN_ROW_MIN bytes (_simd.h)."""
    cdef Py_ssize_t h = 0
    if n * <Py_ssize_t>sizeof(floating) >= FN_ALIGN_ROW_MIN:
        h = aligned_head(y, n, sizeof(floating))
        apply_row_span(x, y, h, hi, r, c, w, b)
    apply_row_span(x + h, y + h, n - h, hi, r, c, (w + h) if w != NULL else NULL,
                   (b + h) if b != NULL else NULL)


cdef inline void apply_row_prefetch(const floating* x, floating* y, Py_ssize_t n,
                                    floating hi, floating r, floating c,
                                    const floating* w, const floating* b,
                                    const floating* pf) noexcept nogil:
    """apply_row, with pf[0:n] (another row) asked into L2 a line at a time meanwhile
    (_apply.h)."""
    cdef Py_ssize_t h = 0
    if n * <Py_ssize_t>sizeof(floating) >= FN_ALIGN_ROW_MIN:
        h = aligned_head(y, n, sizeof(floating))
        apply_row_span(x, y, h, hi, r, c, w, b)
        if h:
            fn_prefetch_l2(pf, h * <Py_ssize_t>sizeof(floating))
    if floating is float:
        fn_apply_row_prefetch_f32(x + h, y + h, n - h, hi, r, c, (w + h) if w != NULL else NULL,
                                  (b + h) if b != NULL else NULL, pf + h)
    else:
        fn_apply_row_prefetch_f64(x + h, y + h, n - h, hi, r, c, (w + h) if w != NULL else NULL,
                                  (b + h) if b != NULL else NULL, pf + h)


cdef inline void apply_row_pair(const floating* x0, floating* y0,
                                const floating* x1, floating* y1, Py_ssize_t n,
                                GroupParams p0, GroupParams p1,
                                const floating* w, const floating* b) noexcept nogil:
    """Two LayerNorm/RMSNorm rows with the same w and/or b (not both NULL), each value as
    apply_row (and apply_group_span's parameters) give it, the parameters loaded once for
    both rows (_apply.h); rows whose peels to a 64-byte boundary differ go one at a time."""
    cdef floating hi0 = <floating>p0.mean, hi1 = <floating>p1.mean
    cdef floating c0 = mean_offset(p0.mean, hi0, p0.rstd, -0.0)
    cdef floating c1 = mean_offset(p1.mean, hi1, p1.rstd, -0.0)
    cdef Py_ssize_t h = 0
    if n * <Py_ssize_t>sizeof(floating) >= FN_ALIGN_ROW_MIN:
        h = aligned_head(y0, n, sizeof(floating))
        if h != aligned_head(y1, n, sizeof(floating)):
            apply_row(x0, y0, n, hi0, <floating>p0.rstd, c0, w, b)
            apply_row(x1, y1, n, hi1, <floating>p1.rstd, c1, w, b)
            return
        apply_row_span(x0, y0, h, hi0, <floating>p0.rstd, c0, w, b)
        apply_row_span(x1, y1, h, hi1, <floating>p1.rstd, c1, w, b)
    if floating is float:
        fn_apply_row_pair_f32(x0 + h, y0 + h, x1 + h, y1 + h, n - h, hi0, <floating>p0.rstd,
                              c0, hi1, <floating>p1.rstd, c1, (w + h) if w != NULL else NULL,
                              (b + h) if b != NULL else NULL)
    else:
        fn_apply_row_pair_f64(x0 + h, y0 + h, x1 + h, y1 + h, n - h, hi0, <floating>p0.rstd,
                              c0, hi1, <floating>p1.rstd, c1, (w + h) if w != NULL else NULL,
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
    return <floating>fn_select_f64(lo == 0, b, b - lo * a)     # (vectorizes: _apply.h)



cdef inline GroupParams group_params(Stat st, double eps, bint rms) noexcept nogil:
    """mean and 1/sqrt(var + eps); for RMS norm mean 0 and 1/sqrt(mean(x^2) + eps)."""
    cdef GroupParams p
    cdef double var = st.m2 / st.n
    if rms:
        p.mean = 0.0
        p.rstd = 1.0 / sqrt(var + stat_mean(st) * stat_mean(st) + eps)
    else:
        p.mean = stat_mean(st)
        p.rstd = 1.0 / sqrt(var + eps)
    return p


cdef inline void channel_param(double mean, double var, const floating* w, const floating* b,
                               Py_ssize_t k, double eps,
                               floating* hi, floating* a, floating* c) noexcept nogil:
    """hi[k], a[k], c[k] of channel k's apply fma(x - hi, a, c) = (x - mean) * rstd * w + b
    from its statistics, in float64 (mean_offset folds the mean's low part into c); w
    and/or b may be NULL."""
    cdef double scale = 1.0 / sqrt(var + eps)
    if w != NULL:
        scale = scale * <double>w[k]
    hi[k] = <floating>mean
    a[k] = <floating>scale
    c[k] = mean_offset(mean, hi[k], scale, <double>b[k] if b != NULL else 0.0)


cdef void channel_params(const stat_float* mean, const stat_float* var,  # IN  (channels,)
                         const floating* w, const floating* b,           # IN  or NULL
                         double eps, Py_ssize_t channels,
                         floating* hi, floating* a, floating* c) noexcept nogil:  # OUT
    """channel_param of every channel from given statistics."""
    cdef Py_ssize_t k
    for k in range(channels):
        channel_param(<double>mean[k], <double>var[k], w, b, k, eps, hi, a, c)


cdef inline Py_ssize_t span_rows_of(Py_ssize_t channels, Py_ssize_t rows_per_set) noexcept nogil:
    """Rows of channels per apply_row_spans span (the unit shared between threads): at
    least APPLY_SPAN_MIN values, in whole sweeps of four rows (_apply.h), within one set."""
    return min(4 * ceil_div(APPLY_SPAN_MIN, 4 * max(channels, <Py_ssize_t>1)),
               max(rows_per_set, <Py_ssize_t>1))


cdef inline void apply_columns_aligned(const floating* x, floating* y, Py_ssize_t n,
                                       const floating* hi, const floating* a,
                                       const floating* c) noexcept nogil:
    """apply_columns from the first 64-byte boundary of y on (aligned_head)."""
    cdef Py_ssize_t h = aligned_head(y, n, sizeof(floating))
    apply_columns(x, y, h, hi, a, c)
    apply_columns(x + h, y + h, n - h, hi + h, a + h, c + h)


cdef inline void apply_rows_of_channels(const floating* x, floating* y,   # IN/OUT nrows rows
                                        Py_ssize_t nrows, Py_ssize_t channels,
                                        const floating* hi, const floating* a,
                                        const floating* c,                   # (channels,)
                                        Py_ssize_t ahead,     # rows to prefetch (0: none)
                                        Py_ssize_t avail) noexcept nogil:
    """y = fma(x - hi[j], a[j], c[j]) over rows of channels (_apply.h: four rows per
    parameter load). ahead > 0 prefetches rows after x's, ahead < 0 rows before them;
    avail: the rows that exist beyond x's nrows in the prefetch's direction."""
    if floating is float:
        fn_apply_rows_f32(x, y, nrows, channels, hi, a, c, ahead, avail)
    else:
        fn_apply_rows_f64(x, y, nrows, channels, hi, a, c, ahead, avail)


cdef inline Py_ssize_t apply_prefetch_rows(Py_ssize_t values, Py_ssize_t channels,
                                           Py_ssize_t itemsize, int nt) noexcept nogil:
    """Rows ahead that a rows-of-channels apply prefetches: COL_PREFETCH_BYTES, in sweeps
    of four rows, when a thread's share is large enough to come from memory."""
    if values * itemsize <= max(nt, 1) * tuning.prefetch_min_per_thread:
        return 0
    return 4 * ceil_div(COL_PREFETCH_BYTES, 4 * channels * itemsize)


cdef inline Py_ssize_t rows_head(const void* y, Py_ssize_t channels, Py_ssize_t rows,
                                  Py_ssize_t itemsize) noexcept nogil:
    """Channels before the first 64-byte boundary of every row of y, when rows are whole
    cache lines long (so all start at the same offset in a line) and there are enough of
    them for the rotation to pay; else 0. See rotate_params."""
    if (channels * itemsize) % 64 or rows < 8:
        return 0
    return aligned_head(y, channels, itemsize)


cdef inline void rotate_left(floating* p, Py_ssize_t sets, Py_ssize_t channels,
                             Py_ssize_t head) noexcept nogil:
    """Each set's `channels` values rotated left by head (< 64 bytes of them) in place:
    p[j] becomes p[(j + head) % channels]."""
    cdef floating saved[64]
    cdef Py_ssize_t o, j
    cdef floating* q
    for o in range(sets):
        q = p + o * channels
        for j in range(head):
            saved[j] = q[j]
        memmove(q, q + head, (channels - head) * sizeof(floating))
        for j in range(head):
            q[channels - head + j] = saved[j]


cdef inline void rotate_params(floating* hi, floating* a, floating* c, Py_ssize_t sets,
                               Py_ssize_t channels, Py_ssize_t head) noexcept nogil:
    """The apply parameters hi, a, c of `sets` sets rotated to rows shifted by head
    (apply_row_spans)."""
    if head:
        rotate_left(hi, sets, channels, head)
        rotate_left(a, sets, channels, head)
        rotate_left(c, sets, channels, head)


cdef inline bint apply_backward(Py_ssize_t channels, Py_ssize_t itemsize,
                                Py_ssize_t nbytes, Py_ssize_t ahead) noexcept nogil:
    """Whether a thread's apply of nbytes of rows of channels that follows their statistics
    runs last to first (apply_row_spans): when the apply prefetches them (ahead > 0; rows it
    takes in registers it never does), or they all fit L2. Else the rows need the forward
    stream the hardware prefetchers follow (channels-last BatchNorm training of
    (32, 64, 56, 56), 12.8 MB a thread in registers: 1.5x the time backward). Zen 4,
    2 threads, rows of 256 channels: InstanceNorm (8, 256, 56, 56) 3-5% faster backward; of
    64 channels, samples of 800 KB: InstanceNorm and GroupNorm (32, 64, 56, 56) 5-12%."""
    return ((ahead > 0 and not fn_apply_rows_in_registers(channels, itemsize))
            or nbytes <= 2 * tuning.prefetch_channel_max)      # (L2: _cache.py)


cdef inline void apply_row_spans(const floating* xp, floating* yp,   # IN/OUT rows of channels
                                 Py_ssize_t t0, Py_ssize_t t1,        # spans t0 <= t < t1
                                 Py_ssize_t channels, Py_ssize_t rows_per_set,
                                 Py_ssize_t span_rows,
                                 const floating* hi, const floating* a,
                                 const floating* c,                  # (sets, channels)
                                 Py_ssize_t head,                    # rows_head (params rotated)
                                 Py_ssize_t ahead,                   # rows to prefetch ahead
                                 bint backward) noexcept nogil:
    """Spans of span_rows rows of channels (never across a set's end), each with its set's
    parameters (apply_rows_of_channels); the prefetch runs on within the range. backward:
    the spans last to first (each still row by row), each row prefetching its place in the
    span before (whole spans back, at least `ahead` rows): after statistics over the same
    rows, the first spans applied are the ones still in L2 (apply_backward says when).

    With head > 0 (NumPy's buffers start 16 bytes past a cache line) the rows are applied
    shifted by head channels, each "row" the end of one row and the start of the next, with
    parameters rotated to match (rotate_params): the four-row loop then reads and writes
    whole lines (Zen 4, rows of 256 channels in cache: 1.15-1.25x the time otherwise). A
    span is whole shifted rows (sweeps of four) from its first row's head on; only a set's
    first `head` and last channels - head values are applied apart (the shifted rows never
    cross into another set's parameters). Elementwise, each value written once: the same
    bits in any order."""
    cdef Py_ssize_t i, t, o, row0, nrows, spans, first, last, avail, shifted
    cdef Py_ssize_t rest = channels - head
    cdef Py_ssize_t step
    cdef const floating* xr
    cdef floating* yr
    if t0 >= t1 or rows_per_set <= 0 or span_rows <= 0:    # nothing (callers skip it too)
        return
    step = -span_rows * ceil_div(ahead, span_rows) if backward else ahead
    spans = ceil_div(rows_per_set, span_rows)
    first = (t0 // spans) * rows_per_set + (t0 % spans) * span_rows
    last = (t1 // spans) * rows_per_set + min((t1 % spans) * span_rows, rows_per_set)
    for i in range(t1 - t0):
        t = t1 - 1 - i if backward else t0 + i
        o = t // spans
        row0 = o * rows_per_set + (t - o * spans) * span_rows
        nrows = min(span_rows, (o + 1) * rows_per_set - row0)
        avail = row0 - first if backward else last - row0 - nrows
        xr = xp + row0 * channels
        yr = yp + row0 * channels
        if head == 0:
            apply_rows_of_channels(xr, yr, nrows, channels, hi + o * channels,
                                   a + o * channels, c + o * channels, step, avail)
            continue
        shifted = nrows
        if row0 == o * rows_per_set:        # the set's first `head` values
            apply_columns(xr, yr, head, hi + o * channels + rest, a + o * channels + rest,
                          c + o * channels + rest)
        if row0 + nrows == (o + 1) * rows_per_set:    # the set's last `rest` values
            shifted = nrows - 1
            apply_rows_of_channels(xr + shifted * channels + head,
                                   yr + shifted * channels + head, 1, rest,
                                   hi + o * channels, a + o * channels, c + o * channels, 0, 0)
        apply_rows_of_channels(xr + head, yr + head, shifted, channels, hi + o * channels,
                               a + o * channels, c + o * channels, step, avail)


cdef inline Py_ssize_t span_at_row(Py_ssize_t row, Py_ssize_t rows_per_set,
                                    Py_ssize_t span_rows) noexcept nogil:
    """The first apply_row_spans span that starts at or after `row` (of sets of
    rows_per_set rows)."""
    cdef Py_ssize_t o = row // rows_per_set
    return o * ceil_div(rows_per_set, span_rows) + ceil_div(row - o * rows_per_set, span_rows)


cdef void apply_all_row_spans(const floating* xp, floating* yp,   # IN/OUT sets*rows_per_set rows
                              Py_ssize_t sets, Py_ssize_t rows_per_set, Py_ssize_t channels,
                              Py_ssize_t span_rows,
                              floating* hi, floating* a, floating* c,   # IN, rotated here
                              int nt, bint after_chunk_stats) noexcept nogil:
    """apply_row_spans over every set, a contiguous range of spans per thread. The
    parameters are rotated in place to the rows' alignment (rows_head). after_chunk_stats:
    the rows' statistics were just taken by column_stats' chunk path; with a few chunks a
    thread (an even split otherwise), each thread applies the rows it summed
    (chunk_task_row), last to first where apply_backward says, beginning with the rows
    still in its L2. The same bits in any order."""
    cdef Py_ssize_t t, spans = sets * ceil_div(rows_per_set, span_rows)
    cdef Py_ssize_t ahead = apply_prefetch_rows(sets * rows_per_set * channels, channels,
                                                sizeof(floating), nt)
    cdef Py_ssize_t head = rows_head(yp, channels, rows_per_set, sizeof(floating))
    cdef Py_ssize_t itemsize = sizeof(floating)
    cdef ColumnShape s
    cdef bint matched, backward
    s.outer, s.rows, s.cols = sets, rows_per_set, channels
    matched = (after_chunk_stats and nt > 1
               and sets * ceil_div(rows_per_set, ROW_CHUNK) >= 4 * nt)
    backward = matched and apply_backward(channels, itemsize,
                                          sets * rows_per_set * channels * itemsize // nt,
                                          ahead)
    rotate_params(hi, a, c, sets, channels, head)
    if nt == 1:     # (not even an inactive parallel region: it costs tiny calls ~0.4 us)
        apply_row_spans(xp, yp, 0, spans, channels, rows_per_set, span_rows, hi, a, c, head,
                        ahead, False)
        return
    for t in prange(nt, schedule='static', chunksize=1, num_threads=nt):
        if matched:
            apply_row_spans(xp, yp, span_at_row(chunk_task_row(s, t, nt), rows_per_set,
                                                span_rows),
                            span_at_row(chunk_task_row(s, t + 1, nt), rows_per_set, span_rows),
                            channels, rows_per_set, span_rows, hi, a, c, head, ahead,
                            backward)
        else:
            apply_row_spans(xp, yp, t * spans // nt, (t + 1) * spans // nt, channels,
                            rows_per_set, span_rows, hi, a, c, head, ahead, False)


cdef int apply_channels_body(const floating* xp,   # IN  (n, channels, inner) buffer
                             floating* yp,         # OUT same size; may be xp itself
                             ChannelShape s,
                             Py_ssize_t sets,      # parameter sets (inner == 1 only)
                             const stat_float* mean, const stat_float* var,  # IN  (sets*channels,)
                             const floating* w, const floating* b,   # IN  (channels,) or NULL
                             double eps, int nt) noexcept nogil:
    """Per-channel apply y = (x - mean) / sqrt(var + eps) * w + b with given statistics
    (BatchNorm and InstanceNorm on running stats, BatchNorm of (N, C) input; the general
    path and the fast path). With inner == 1 (rows of channels: (N, C) data, channels-last
    data) the rows come in `sets` equal parts, each with its own statistics (channels-last
    InstanceNorm, GroupNorm: one set per sample), applied in spans of rows
    (apply_row_spans). Returns -1, having written nothing, without memory; else 0."""
    cdef Py_ssize_t rows_per_set = s.n // sets if sets > 0 else 0
    cdef Py_ssize_t span_rows = span_rows_of(s.channels, rows_per_set) if s.inner == 1 else 1
    cdef Py_ssize_t nparams = sets * s.channels
    cdef floating* hi = <floating*>malloc(max(3 * nparams, <Py_ssize_t>1) * sizeof(floating))
    cdef floating* a
    cdef floating* c
    cdef Py_ssize_t t, k, o
    if hi == NULL:
        return -1
    a = hi + nparams
    c = hi + 2 * nparams
    for o in range(sets):
        k = o * s.channels
        channel_params(mean + k, var + k, w, b, eps, s.channels, hi + k, a + k, c + k)
    if s.inner == 1:
        apply_all_row_spans(xp, yp, sets, rows_per_set, s.channels, span_rows, hi, a, c, nt,
                            False)
    elif nt == 1:
        for t in range(s.n * s.channels):
            k = t % s.channels
            apply_run(xp + t * s.inner, yp + t * s.inner, s.inner, hi[k], a[k], c[k])
    else:
        for t in prange(s.n * s.channels, schedule='static', num_threads=nt):
            k = t % s.channels
            apply_run(xp + t * s.inner, yp + t * s.inner, s.inner, hi[k], a[k], c[k])
    free(hi)
    return 0


def apply_channels(const floating[::1] x,     # IN  flat (n, channels, inner) buffer
                   floating[::1] out,         # OUT same size; may be x itself
                   object shape,              # a ChannelShape
                   const double[::1] mean,    # IN  (sets*channels,)
                   const double[::1] var,     # IN  (sets*channels,)
                   const floating[::1] weight,  # IN  (channels,) or None
                   const floating[::1] bias,    # IN  (channels,) or None
                   double eps, int num_threads, Py_ssize_t sets=1):
    """Per-channel apply with given float64 statistics (apply_channels_body)."""
    cdef ChannelShape s = channel_shape(shape)
    check_extent(s.n * s.channels * s.inner, x.shape[0], out.shape[0])
    check_extent(sets * s.channels, mean.shape[0], var.shape[0])
    if sets < 1 or (sets > 1 and (s.inner != 1 or s.n % sets)):
        raise ValueError(f"{sets} parameter sets do not fit shape {shape}")
    cdef int nt = effective_threads(s.n * s.channels * s.inner, num_threads)
    cdef const floating* w = optional_ptr(weight)
    cdef const floating* b = optional_ptr(bias)
    cdef int rc
    with nogil:
        rc = apply_channels_body(&x[0], &out[0], s, sets, &mean[0], &var[0], w, b, eps, nt)
    if rc < 0:
        raise MemoryError()
