# ---------------------------------------------------------------------------------------
# BatchNorm with batch statistics, channel by channel (ChannelShape)

cdef inline Stat normalize_channel(const floating* x, floating* y,  # IN/OUT channel origin
                                   Py_ssize_t n, Py_ssize_t stride, Py_ssize_t inner,
                                   double w, floating b, double eps, bint precise,
                                   bint prefetched, bint prefetch_next) noexcept nogil:
    """BatchNorm of one channel (n runs of `inner` values, `stride` apart): statistics, then
    the apply while the channel's data is still in cache. prefetch_next: the next channel
    (run i of which follows run i of this one) is prefetched meanwhile, as in
    normalize_group_range; prefetched: this one was (its statistics then skip their own
    prefetches)."""
    cdef Stat st = group_stat(x, n, inner, stride, precise, not prefetched)
    cdef GroupParams p = group_params(st, eps, False)
    cdef floating hi = <floating>p.mean
    cdef floating a = <floating>(p.rstd * w)
    cdef floating c = mean_offset(p.mean, hi, p.rstd * w, b)
    cdef Py_ssize_t i
    for i in range(n):
        if prefetch_next:
            apply_run_prefetch(x + i * stride, y + i * stride, inner, hi, a, c,
                               x + i * stride + inner)
        else:
            apply_run(x + i * stride, y + i * stride, inner, hi, a, c)
    return st


cdef void normalize_channel_range(const floating* xp, floating* yp,
                                  Py_ssize_t c0, Py_ssize_t c1,     # channels c0 <= c < c1
                                  const ChannelShape* s,
                                  const floating* w, const floating* b, double eps,
                                  bint prefetch, StatsOut stats) noexcept nogil:
    """Channels c0..c1-1 of normalize_channels, one after the other; each but the last
    prefetches the next (within this range: the next range is another thread's)."""
    cdef Py_ssize_t c
    cdef Stat st
    for c in range(c0, c1):
        st = normalize_channel(xp + c * s.inner, yp + c * s.inner, s.n, s.channels * s.inner,
                               s.inner, w[c] if w != NULL else 1.0, b[c] if b != NULL else 0,
                               eps, stats.precise, prefetch and c > c0, prefetch and c + 1 < c1)
        store_group_stats(stats, c, st)


def normalize_channels(const floating[::1] x,      # IN  flat (n, channels, inner) buffer
                       floating[::1] out,          # OUT same size; may be x itself
                       object shape,               # a ChannelShape
                       const floating[::1] weight, # IN  (channels,) or None
                       const floating[::1] bias,   # IN  (channels,) or None
                       double eps,
                       double[::1] mean_out not None,  # OUT (channels,)
                       double[::1] var_out not None,   # OUT (channels,) biased variance
                       int num_threads, bint precise=False):
    """BatchNorm with batch statistics: per channel over n and inner, channel by channel so
    that each channel is normalized from cache right after its statistics. precise: float64
    lanes for float32 data (running statistics kept in float64)."""
    cdef ChannelShape s = channel_shape(shape)
    cdef Py_ssize_t n = s.n, channels = s.channels, inner = s.inner
    check_extent(n * channels * inner, x.shape[0], out.shape[0])
    cdef StatsOut stats = stats_out(mean_out, var_out, channels, precise)
    cdef int nt = effective_threads(n * channels * inner, num_threads)
    cdef const floating* xp = &x[0]
    cdef floating* yp = &out[0]
    cdef const floating* w = optional_ptr(weight)
    cdef const floating* b = optional_ptr(bias)
    cdef Py_ssize_t c, t
    cdef Stat* sts = NULL
    cdef Stat* buf = NULL
    cdef SegmentShape seg
    cdef int rc = 0
    cdef Py_ssize_t itemsize = sizeof(floating)
    cdef bint prefetch = (n * inner * itemsize <= tuning.prefetch_channel_max
                          and n * channels * inner * itemsize > nt * tuning.prefetch_min_per_thread)
    if nt == 1:
        with nogil:
            normalize_channel_range(xp, yp, 0, channels, &s, w, b, eps, prefetch, stats)
        return
    if channels >= 2 * nt:      # one contiguous range of channels per thread
        with nogil:
            for t in prange(nt, schedule='static', chunksize=1, num_threads=nt):
                normalize_channel_range(xp, yp, t * channels // nt, (t + 1) * channels // nt,
                                        &s, w, b, eps, prefetch, stats)
        return
    # few channels: chunk-parallel statistics, then the per-channel apply (same bits)
    seg.groups, seg.nseg, seg.seg_len = channels, n, inner
    seg.group_stride, seg.seg_stride = inner, channels * inner
    sts = alloc_stats(channels)
    buf = <Stat*>malloc(channels * n * ceil_div(inner, CHUNK) * sizeof(Stat))
    if buf == NULL:
        free(sts)
        raise MemoryError()
    with nogil:
        grouped_stats(xp, seg, stats.precise, sts, buf, nt)
        for c in range(channels):
            store_group_stats(stats, c, sts[c])
        rc = apply_channels_body(xp, yp, s, 1, stats.mean, stats.var, w, b, eps, nt)
    free(buf)
    free(sts)
    if rc < 0:
        raise MemoryError()
