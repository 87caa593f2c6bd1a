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
    """apply_row_span from the first 64-byte boundary of y on (aligned_head), for rows of at
    least FN_ALIGN_ROW_MIN bytes (_simd.h)."""
    cdef Py_ssize_t h = 0
    if n * <Py_ssize_t>sizeof(floating) >= FN_ALIGN_ROW_MIN:
        h = aligned_head(y, n, sizeof(floating))
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


cdef void channel_params(const stat_float* mean, const stat_float* var,  # IN  (channels,)
                         const floating* w, const floating* b,           # IN  or NULL
                         double eps, Py_ssize_t channels,
                         floating* hi, floating* a, floating* c) noexcept nogil:  # OUT
    """hi, a, c of each channel's apply fma(x - hi, a, c) = (x - mean) * rstd * w + b from
    given statistics, in float64 (mean_offset folds the mean's low part into c)."""
    cdef Py_ssize_t k
    cdef double scale
    for k in range(channels):
        scale = 1.0 / sqrt(<double>var[k] + eps)
        if w != NULL:
            scale = scale * <double>w[k]
        hi[k] = <floating>mean[k]
        a[k] = <floating>scale
        c[k] = mean_offset(<double>mean[k], hi[k], scale, <double>b[k] if b != NULL else 0.0)


cdef inline void apply_columns_aligned(const floating* x, floating* y, Py_ssize_t n,
                                       const floating* hi, const floating* a,
                                       const floating* c) noexcept nogil:
    """apply_columns from the first 64-byte boundary of y on (aligned_head)."""
    cdef Py_ssize_t h = aligned_head(y, n, sizeof(floating))
    apply_columns(x, y, h, hi, a, c)
    apply_columns(x + h, y + h, n - h, hi + h, a + h, c + h)


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
    InstanceNorm, GroupNorm: one set per sample). Returns -1, having written nothing,
    without memory; else 0."""
    cdef Py_ssize_t nparams = sets * s.channels
    cdef floating* hi = <floating*>malloc(max(3 * nparams, <Py_ssize_t>1) * sizeof(floating))
    cdef floating* a
    cdef floating* c
    cdef Py_ssize_t t, k, o, rows_per_set = s.n // sets if sets > 0 else 0
    if hi == NULL:
        return -1
    a = hi + nparams
    c = hi + 2 * nparams
    for o in range(sets):
        channel_params(mean + o * s.channels, var + o * s.channels, w, b, eps, s.channels,
                       hi + o * s.channels, a + o * s.channels, c + o * s.channels)
    if nt == 1:     # (not even an inactive parallel region: it costs tiny calls ~0.4 us)
        if s.inner == 1:
            for t in range(s.n):
                k = (t // rows_per_set) * s.channels
                apply_columns_aligned(xp + t * s.channels, yp + t * s.channels, s.channels,
                                      hi + k, a + k, c + k)
        else:
            for t in range(s.n * s.channels):
                k = t % s.channels
                apply_run(xp + t * s.inner, yp + t * s.inner, s.inner, hi[k], a[k], c[k])
    elif s.inner == 1:
        for t in prange(s.n, schedule='static', num_threads=nt):
            k = (t // rows_per_set) * s.channels
            apply_columns_aligned(xp + t * s.channels, yp + t * s.channels, s.channels,
                                  hi + k, a + k, c + k)
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
