# ---------------------------------------------------------------------------------------
# row-local normalizations: LayerNorm, RMSNorm, InstanceNorm, GroupNorm (RowShape)

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


cdef inline void apply_group_span(const floating* xg, floating* yg,   # IN/OUT group g
                                  Py_ssize_t begin, Py_ssize_t end,   # span within the group
                                  const RowShape* s, Py_ssize_t g, GroupParams p,
                                  const floating* w, const floating* b,
                                  const floating* next_xg) noexcept nogil:
    """Normalize xg[begin:end] of group g. s.per_element: w/b indexed by position in the
    group (LayerNorm); else by channel (see RowShape.param_period). next_xg (or NULL):
    the group normalized next, whose same span is prefetched meanwhile (rows up to
    prefetch_group_max: PREFETCH_BLOCK elements at a time; longer rows and runs: a line per
    line applied), so that its statistics pass reads
    from cache: the apply's compute then overlaps the memory traffic instead of following
    it."""
    cdef floating hi = <floating>p.mean
    cdef floating c = mean_offset(p.mean, hi, p.rstd, -0.0)
    cdef Py_ssize_t pos = begin, stop, k
    cdef Py_ssize_t run_len = s.run_len, channel0 = (g % s.param_period) * s.runs
    cdef double a
    while pos < end:
        if (s.per_element and next_xg != NULL and s.runs * s.run_len * <Py_ssize_t>sizeof(floating)
                > tuning.prefetch_group_max):       # long rows: a line per line applied
            stop = end
            apply_row_prefetch(xg + pos, yg + pos, stop - pos, hi, <floating>p.rstd, c,
                               (w + pos) if w != NULL else NULL,
                               (b + pos) if b != NULL else NULL, next_xg + pos)
        elif s.per_element:
            stop = min(pos + PREFETCH_BLOCK, end) if next_xg != NULL else end
            if next_xg != NULL:
                fn_prefetch_l2(next_xg + pos, (stop - pos) * <Py_ssize_t>sizeof(floating))
            apply_row(xg + pos, yg + pos, stop - pos, hi, <floating>p.rstd, c,
                      (w + pos) if w != NULL else NULL, (b + pos) if b != NULL else NULL)
        else:       # a run (channel) at a time, the prefetch a line per line applied
            k = pos // run_len
            stop = min((k + 1) * run_len, end)
            a = p.rstd * w[channel0 + k] if w != NULL else p.rstd
            if next_xg != NULL:
                apply_run_prefetch(xg + pos, yg + pos, stop - pos, hi, <floating>a,
                                   mean_offset(p.mean, hi, a,
                                               b[channel0 + k] if b != NULL else 0.0),
                                   next_xg + pos)
            else:
                apply_run(xg + pos, yg + pos, stop - pos, hi, <floating>a,
                          mean_offset(p.mean, hi, a, b[channel0 + k] if b != NULL else 0.0))
        pos = stop


cdef inline void row_stats_from(const float* xp, Py_ssize_t g, Py_ssize_t g1,
                                Py_ssize_t glen, Stat* out) noexcept nogil:
    """Statistics of rows g and g+1 (out[0], out[1]) as a pair, or of row g alone when it is
    the last (the same bits either way)."""
    if g + 1 < g1:
        row_pair_stats(xp + g * glen, xp + (g + 1) * glen, glen, &out[0], &out[1])
    else:
        out[0] = group_stat(xp + g * glen, 1, glen, 0, False, False)


cdef inline Py_ssize_t groups_ahead(Py_ssize_t group_bytes, Py_ssize_t least) noexcept nogil:
    """How many groups ahead of the one applied to prefetch: PREFETCH_AHEAD_BYTES, and at
    least `least` (the groups whose statistics are taken before it is applied)."""
    return max(least, ceil_div(PREFETCH_AHEAD_BYTES, max(group_bytes, <Py_ssize_t>1)))


cdef extern from "_rows.h" nogil:
    enum: FN_ROW_BLOCK      # rows per fn_row_block_f32 call (0: none on this variant)
    enum: FN_ROW_LANES      # the rows' length must be a multiple of this
    int fn_row_block_f32(const float* x, float* y, Py_ssize_t n, const float* w,
                         const float* b, double eps, int rms, double* mean,
                         double* var) noexcept


cdef Py_ssize_t normalize_row_blocks(const float* xp, float* yp,
                                     Py_ssize_t g0, Py_ssize_t g1,    # groups g0 <= g < g1
                                     const RowShape* s, const float* w, const float* b,
                                     double eps, bint rms, StatsOut stats) noexcept nogil:
    """Float32 LayerNorm/RMSNorm rows of whole vectors, short ones (those of
    normalize_row_pairs) or up to ROW_BLOCK_BYTES, FN_ROW_BLOCK at a time (_rows.h: each
    row's bits as on its own), when the variant has the block kernel; rows the block leaves
    go the way of one row. Returns the first row not done (the caller does the rest).

    No software prefetch: the blocks read one contiguous stream, which the hardware
    prefetchers follow. Asking for the next blocks' rows (as a burst per block, or one row
    per row applied) cost time from L3 and from memory alike (Zen 4, 2 threads, rows of 256:
    channels-last channel_layer_norm (8, 256, 56, 56) 12%, (100352, 256) LayerNorm from
    memory 30% with AVX-512; rows of 64 and 128: 4-26%; with AVX2 even to 38%)."""
    cdef Py_ssize_t glen = s.runs * s.run_len, g = g0, j
    cdef double mean[8]      # FN_ROW_BLOCK values (_rows.h: at most 8)
    cdef double var[8]
    cdef Stat st
    cdef int undone
    if (FN_ROW_BLOCK == 0 or s.runs != 1 or not s.per_element or glen % FN_ROW_LANES
            or glen == 0):
        return g0
    while g + FN_ROW_BLOCK <= g1:
        undone = fn_row_block_f32(xp + g * glen, yp + g * glen, glen, w, b, eps, rms,
                                  mean, var)
        for j in range(FN_ROW_BLOCK):
            if undone >> j & 1:
                st = group_stat(xp + (g + j) * glen, 1, glen, 0, False, False)
                apply_group_span(xp + (g + j) * glen, yp + (g + j) * glen, 0, glen, s, g + j,
                                 row_group_params(st, xp + (g + j) * glen, glen, eps, rms),
                                 w, b, NULL)
                store_group_stats(stats, g + j, st)
            elif stats.mean != NULL:
                stats.mean[g + j] = mean[j]
                stats.var[g + j] = var[j]
        g += FN_ROW_BLOCK
    return g


cdef void normalize_row_pairs(const float* xp, float* yp,
                              Py_ssize_t g0, Py_ssize_t g1,        # groups g0 <= g < g1
                              const RowShape* s, const float* w, const float* b,
                              double eps, bint rms, bint prefetch,
                              StatsOut stats) noexcept nogil:
    """normalize_group_range for short float32 groups (fewer than FN_PAIR_MAX values,
    float32 lanes): statistics two groups at a time (row_pair_stats: the same bits as one
    at a time, so the split into thread ranges changes nothing), a pair ahead of the apply
    (software-pipelined as in normalize_group_range); the prefetch runs PREFETCH_AHEAD_BYTES ahead."""
    cdef Py_ssize_t glen = s.runs * s.run_len
    cdef Stat st[4]          # the pair being applied, then the next pair
    cdef Py_ssize_t g = g0, j, nb, ahead = groups_ahead(glen * <Py_ssize_t>sizeof(float), 4)
    if g0 < g1:
        row_stats_from(xp, g0, g1, glen, &st[0])
    while g < g1:
        nb = min(<Py_ssize_t>2, g1 - g)
        if g + nb < g1:
            row_stats_from(xp, g + nb, g1, glen, &st[2])
        for j in range(nb):
            apply_group_span(xp + (g + j) * glen, yp + (g + j) * glen, 0, glen, s, g + j,
                             row_group_params(st[j], xp + (g + j) * glen, glen, eps, rms),
                             w, b, (xp + (g + j + ahead) * glen)
                             if prefetch and g + j + ahead < g1 else NULL)
            store_group_stats(stats, g + j, st[j])
        st[0] = st[2]
        st[1] = st[3]
        g += nb


cdef void normalize_affine_row_pairs(const floating* xp, floating* yp,
                                     Py_ssize_t g0, Py_ssize_t g1,    # groups g0 <= g < g1
                                     const RowShape* s, const floating* w,
                                     const floating* b, double eps, bint rms,
                                     bint pipelined, StatsOut stats) noexcept nogil:
    """normalize_group_range's rows of an affine LayerNorm/RMSNorm without prefetch, two at
    a time, applied together (apply_row_pair: w and b loaded once for both; the affine
    apply is bound by its loads). pipelined (short rows): the statistics of the next two
    rows are taken before these two are applied; else (long rows: w and b come from L2 or
    L3) right before them (A/B, Zen 4, 2 threads: LayerNorm over (C, H, W) of
    (32, 64, 56, 56) 0.91 of the time one at a time, rows of 2560-65536 0.78-0.95). Each
    row's statistics and values as one at a time."""
    cdef Py_ssize_t glen = s.runs * s.run_len, g = g0, j, nb
    cdef Stat st[4]          # the two rows being applied, then the next two
    for j in range(min(<Py_ssize_t>2, g1 - g0) if pipelined else 0):
        st[j] = group_stat(xp + (g0 + j) * glen, 1, glen, 0, stats.precise, False)
    while g < g1:
        nb = min(<Py_ssize_t>2, g1 - g)
        if pipelined:
            for j in range(min(<Py_ssize_t>2, g1 - g - nb)):
                st[2 + j] = group_stat(xp + (g + nb + j) * glen, 1, glen, 0, stats.precise,
                                       False)
        else:
            for j in range(nb):
                st[j] = group_stat(xp + (g + j) * glen, 1, glen, 0, stats.precise, False)
        if nb == 2:
            apply_row_pair(xp + g * glen, yp + g * glen, xp + (g + 1) * glen,
                           yp + (g + 1) * glen, glen,
                           row_group_params(st[0], xp + g * glen, glen, eps, rms),
                           row_group_params(st[1], xp + (g + 1) * glen, glen, eps, rms), w, b)
        else:
            apply_group_span(xp + g * glen, yp + g * glen, 0, glen, s, g,
                             row_group_params(st[0], xp + g * glen, glen, eps, rms), w, b,
                             NULL)
        for j in range(nb):
            store_group_stats(stats, g + j, st[j])
        if pipelined:
            st[0] = st[2]
            st[1] = st[3]
        g += nb


cdef void normalize_group_range(const floating* xp, floating* yp,
                                Py_ssize_t g0, Py_ssize_t g1,      # groups g0 <= g < g1
                                const RowShape* s,
                                const floating* w, const floating* b,
                                double eps, bint rms, bint prefetch,
                                bint prefetch_in_stats,
                                StatsOut stats) noexcept nogil:
    """Groups g0..g1-1 of groups_body, each normalized right after its statistics, while it
    is in cache; with `prefetch`, the next group not yet read is prefetched meanwhile
    (within this range: the next range is another thread's, whose cache may hold it
    modified). With prefetch_in_stats too (float32 groups beyond the pipelined size), the
    statistics of a group ask for the first half of the next one and its apply for the
    rest, so that memory is busy through both passes (groups_body says when).

    Short groups are software-pipelined: group g+1's statistics are taken before group g is
    applied, so that the latency of their tail (reductions, division, square root) overlaps
    g's apply. Measured side by side: 3-10% faster up to 8 KB groups, 13% slower at 16 KB,
    where two groups and the affine parameters no longer fit L1. Groups shorter than one
    block of the float32 lanes go eight at a time where the variant can (LayerNorm/RMSNorm
    rows of whole vectors: normalize_row_blocks), else in pairs (normalize_row_pairs)."""
    cdef Py_ssize_t glen = s.runs * s.run_len
    cdef bint pipelined = glen * <Py_ssize_t>sizeof(floating) <= tuning.pipeline_group_max
    cdef Stat st, nxt
    cdef GroupParams p
    cdef Py_ssize_t half
    cdef const floating* next_xg
    cdef bint split
    cdef Py_ssize_t g, ahead = (groups_ahead(glen * <Py_ssize_t>sizeof(floating), 2)
                                if pipelined else 1)
    if floating is float:
        if glen < FN_PAIR_MAX and not stats.precise:
            g = normalize_row_blocks(xp, yp, g0, g1, s, w, b, eps, rms, stats)
            normalize_row_pairs(xp, yp, g, g1, s, w, b, eps, rms, prefetch, stats)
            return
        # longer rows up to ROW_BLOCK_BYTES too, eight at a time, without the prefetch of
        # the path below (common.pxi); the rest as below
        if glen * <Py_ssize_t>sizeof(float) <= ROW_BLOCK_BYTES and not stats.precise:
            g0 = normalize_row_blocks(xp, yp, g0, g1, s, w, b, eps, rms, stats)
    if s.per_element and (w != NULL or b != NULL) and not prefetch:
        normalize_affine_row_pairs(xp, yp, g0, g1, s, w, b, eps, rms, pipelined, stats)
        return
    if pipelined and g0 < g1:
        nxt = group_stat(xp + g0 * glen, 1, glen, 0, stats.precise, False)
    for g in range(g0, g1):
        next_xg = (xp + (g + ahead) * glen) if prefetch and g + ahead < g1 else NULL
        split = False
        if floating is float:
            split = (prefetch_in_stats and not pipelined and not stats.precise
                     and next_xg != NULL)
        if pipelined:
            st = nxt
            if g + 1 < g1:
                nxt = group_stat(xp + (g + 1) * glen, 1, glen, 0, stats.precise, False)
        elif split:
            if floating is float:
                st = group_stat_prefetching(xp + g * glen, glen, next_xg)
        else:
            st = group_stat(xp + g * glen, 1, glen, 0, stats.precise, False)
        p = row_group_params(st, xp + g * glen, glen, eps, rms)
        if split:       # the next group's first half was asked for by the statistics
            half = glen // 2
            apply_group_span(xp + g * glen, yp + g * glen, 0, half, s, g, p, w, b,
                             next_xg + half)
            apply_group_span(xp + g * glen, yp + g * glen, half, glen, s, g, p, w, b, NULL)
        else:
            apply_group_span(xp + g * glen, yp + g * glen, 0, glen, s, g, p, w, b, next_xg)
        store_group_stats(stats, g, st)


cdef int groups_body(const floating* xp,         # IN  (groups, runs*run_len) buffer
                     floating* yp,               # OUT same size; may be xp itself
                     RowShape s,
                     const floating* w, const floating* b,   # IN  or NULL
                     double eps, bint rms,
                     StatsOut stats,             # OUT (groups,) mean, biased variance
                     int nt) noexcept nogil:
    """normalize_groups on raw pointers (the entry point and the fast path share it).
    Returns -1, having written nothing, when scratch memory cannot be had; else 0."""
    cdef Py_ssize_t groups = s.groups, glen = s.runs * s.run_len
    cdef Py_ssize_t g, t, blocks, begin
    cdef Stat* st
    cdef GroupParams* gp
    cdef Stat* buf
    cdef SegmentShape seg
    # groups of runs (InstanceNorm, GroupNorm) prefetch a line per line applied
    # (apply_run_prefetch) and gain up to groups of half L2, as BatchNorm's channels: A/B,
    # Zen 4, 2 threads, (8, 256, 56, 56) GroupNorm 0.70 of the time, InstanceNorm 0.74,
    # (32, 256, 56, 56) 0.80 (in bursts they had lost 5-15%). LayerNorm/RMSNorm rows: in
    # bursts up to prefetch_group_max (a line at a time, short rows lost 5-17%), a line at a
    # time up to twice that (half L1d; AMD cores take prefetcht1 into L1 too): rows of 12-16
    # KB 0.61-0.90 of the time, of 32 KB and more 1.07-1.47.
    cdef Py_ssize_t group_max = (2 * tuning.prefetch_group_max if s.per_element
                                 else tuning.prefetch_channel_max)
    cdef bint prefetch = (glen * <Py_ssize_t>sizeof(floating) <= group_max
                          and groups * glen * <Py_ssize_t>sizeof(floating)
                          > nt * tuning.prefetch_rows_min_per_thread)
    # the next group asked for through the statistics pass as well as the apply: from
    # memory (a thread's share beyond its L3 share) or for groups beyond L1d. A/B, Zen 4,
    # float32, 2 threads, x86-64-v4 (v3): from memory RMSNorm (16, 256, 4096) 0.73-0.88
    # (0.86) of the time, LayerNorm with weight and bias 0.79-0.88 (0.85), InstanceNorm
    # (32, 256, 56, 56) 0.87, GroupNorm 0.81; groups of 64-100 KB from L3: InstanceNorm
    # (8, 64, 128, 128) 0.74-0.78 (0.70-0.73), GroupNorm (8, 256, 56, 56) 0.82-1.00
    # (0.70-1.10); 1 thread 0.72-0.76. Groups of 12-25 KB from L3 lost: InstanceNorm
    # (8, 256, 56, 56) 1.04-1.13, GroupNorm (32, 64, 56, 56) 1.06.
    cdef bint prefetch_in_stats = prefetch and (
        glen * <Py_ssize_t>sizeof(floating) > tuning.stats_prefetch_group_min
        or groups * glen * <Py_ssize_t>sizeof(floating)
        > nt * tuning.stats_prefetch_min_per_thread)
    if nt == 1:     # (not even an inactive parallel region: it costs tiny calls ~0.4 us)
        normalize_group_range(xp, yp, 0, groups, &s, w, b, eps, rms, prefetch,
                              prefetch_in_stats, stats)
        return 0
    if groups >= 2 * nt:    # one contiguous range of groups per thread
        for t in prange(nt, schedule='static', chunksize=1, num_threads=nt):
            normalize_group_range(xp, yp, t * groups // nt, (t + 1) * groups // nt, &s,
                                  w, b, eps, rms, prefetch, prefetch_in_stats, stats)
        return 0
    # few large groups: chunk-parallel statistics, then block-parallel apply (same bits)
    seg.groups, seg.nseg, seg.seg_len, seg.group_stride, seg.seg_stride = groups, 1, glen, glen, 0
    st = <Stat*>malloc(groups * sizeof(Stat))
    gp = <GroupParams*>malloc(groups * sizeof(GroupParams))
    buf = <Stat*>malloc(groups * ceil_div(glen, CHUNK) * sizeof(Stat))
    if st == NULL or gp == NULL or buf == NULL:
        free(st)
        free(gp)
        free(buf)
        return -1
    blocks = ceil_div(glen, APPLY_BLOCK)
    grouped_stats(xp, seg, stats.precise, st, buf, nt)
    for g in range(groups):     # before any block is written: row_group_params may re-read x
        gp[g] = row_group_params(st[g], xp + g * glen, glen, eps, rms)
        store_group_stats(stats, g, st[g])
    for t in prange(groups * blocks, schedule='static', num_threads=nt):
        g = t // blocks
        begin = (t - g * blocks) * APPLY_BLOCK
        apply_group_span(xp + g * glen, yp + g * glen, begin,
                         min(begin + APPLY_BLOCK, glen), &s, g, gp[g], w, b, NULL)
    free(buf)
    free(gp)
    free(st)
    return 0


def normalize_groups(const floating[::1] x,       # IN  flat (groups, runs*run_len) buffer
                     floating[::1] out,           # OUT same size; may be x itself
                     object shape,                # a RowShape
                     const floating[::1] weight,  # IN  or None
                     const floating[::1] bias,    # IN  or None
                     double eps, bint rms,
                     double[::1] mean_out,        # OUT (groups,) mean, or None
                     double[::1] var_out,         # OUT (groups,) biased variance, or None
                     int num_threads, bint precise=False):
    """Row-local normalization (LayerNorm, RMSNorm, InstanceNorm, GroupNorm): statistics of
    each contiguous group and its normalization while the group is in cache. precise:
    float64 lanes for float32 data (statistics the caller keeps in float64)."""
    cdef RowShape s = row_shape(shape)
    check_extent(s.groups * s.runs * s.run_len, x.shape[0], out.shape[0])
    cdef StatsOut stats = stats_out(mean_out, var_out, s.groups, precise)
    cdef int nt = effective_threads(s.groups * s.runs * s.run_len, num_threads)
    cdef const floating* w = optional_ptr(weight)
    cdef const floating* b = optional_ptr(bias)
    cdef int rc
    with nogil:
        rc = groups_body(&x[0], &out[0], s, w, b, eps, rms, stats, nt)
    if rc < 0:
        raise MemoryError()
