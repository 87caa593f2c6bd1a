# ---------------------------------------------------------------------------------------
# normalization across the rows at every column: channels-first LayerNorm (ColumnShape)

cdef void normalize_column_block(const floating* x, floating* y,   # IN/OUT block origin
                                 Py_ssize_t rows, Py_ssize_t ld, Py_ssize_t width,
                                 const floating* w, const floating* b,  # (rows,) or NULL
                                 double eps,
                                 double* mean_out, double* var_out,  # OUT (width,) or NULL
                                 const floating* next,     # IN  the next block to prefetch, or NULL
                                 Py_ssize_t next_width) noexcept nogil:
    """Statistics of `width` columns over `rows` rows, then their normalization. With few
    rows (ConvNeXt's 96-768 channels) the per-column work weighs as much as the sweeps, so
    it is done in vectorizable loops over the columns, from the sums directly when the
    rows fit one chunk. next: the rows of the next block (next_width columns) are asked
    into L2, the first half through this block's statistics (float32 lanes), the rest (or
    all) through its apply: the block's rows are short runs far apart, which the hardware
    prefetchers do not follow, so its statistics would wait on L3/DRAM. (Through the apply
    alone memory was idle during the statistics: Zen 4, 2 threads, (32, 96, 56, 56) float32
    from memory, the split took 0.96-0.97 of the time.)"""
    cdef double shift[COL_BLOCK]    # the sums' shifts, then 1/sqrt(var + eps)
    cdef double mean[COL_BLOCK]     # s1, then the mean
    cdef double var[COL_BLOCK]      # s2, then the biased variance
    cdef Stat st[COL_BLOCK]
    cdef floating hi[COL_BLOCK]
    cdef floating c[COL_BLOCK]
    cdef floating rstd[COL_BLOCK]
    cdef double n = <double>rows, m2
    cdef Py_ssize_t j, k
    cdef bint precise = mean_out != NULL     # statistics the caller keeps: float64 lanes
    cdef bint split = floating is float and not precise and next != NULL and rows <= ROW_CHUNK
    cdef Py_ssize_t half = (rows + 1) // 2 if split else 0
    if rows <= ROW_CHUNK:      # the formulas of stat_from_sums and group_params, per column
        if floating is float:
            column_sums_checked(x, rows, ld, width, precise, shift, mean, var, 0,
                                next if split else NULL, next_width)
        else:
            column_sums_checked(x, rows, ld, width, precise, shift, mean, var, 0)
        for j in range(width):
            m2 = m2_from_sums(n, mean[j], var[j])
            mean[j] = shift[j] + mean[j] / n
            var[j] = m2 / n
    else:
        for j in range(width):
            st[j].n = 0
        column_block_stats(x, rows, ld, width, precise, st, 0, 0)
        for j in range(width):
            mean[j] = stat_mean(st[j])
            var[j] = st[j].m2 / st[j].n
    for j in range(width):      # (alone: a loop of packed square roots and divisions)
        shift[j] = 1.0 / sqrt(var[j] + eps)
    for j in range(width):
        hi[j] = <floating>mean[j]
        rstd[j] = <floating>shift[j]
        c[j] = mean_offset(mean[j], hi[j], shift[j], -0.0)
    if mean_out != NULL:
        for j in range(width):
            mean_out[j] = mean[j]
            var_out[j] = var[j]
    # the rows four at a time (the row's weight/bias are scalars: _apply.h)
    for k in range(0, rows, 4):
        if split:
            prefetch_rows(next + (half + k // 2) * ld,
                          max(min(<Py_ssize_t>2, rows - half - k // 2), <Py_ssize_t>0),
                          ld * <Py_ssize_t>sizeof(floating),
                          next_width * <Py_ssize_t>sizeof(floating))
        elif next != NULL:
            prefetch_rows(next + k * ld, min(<Py_ssize_t>4, rows - k),
                          ld * <Py_ssize_t>sizeof(floating),
                          next_width * <Py_ssize_t>sizeof(floating))
        if floating is float:
            fn_apply_column_rows_f32(x + k * ld, y + k * ld, min(<Py_ssize_t>4, rows - k), ld,
                                     width, hi, rstd, c, w + k if w != NULL else NULL,
                                     b + k if b != NULL else NULL)
        else:
            fn_apply_column_rows_f64(x + k * ld, y + k * ld, min(<Py_ssize_t>4, rows - k), ld,
                                     width, hi, rstd, c, w + k if w != NULL else NULL,
                                     b + k if b != NULL else NULL)


def normalize_columns(const floating[::1] x,      # IN  flat (outer, rows, cols) buffer
                      floating[::1] out,          # OUT same size; may be x itself
                      object shape,               # a ColumnShape
                      const floating[::1] weight, # IN  (rows,) or None
                      const floating[::1] bias,   # IN  (rows,) or None
                      double eps,
                      double[::1] mean_out,       # OUT (outer*cols,), or None
                      double[::1] var_out,        # OUT (outer*cols,) biased variance, or None
                      int num_threads):
    """Normalization across the rows at every (outer, column): channels-first LayerNorm."""
    cdef ColumnShape s = column_shape(shape)
    check_extent(s.outer * s.rows * s.cols, x.shape[0], out.shape[0])
    cdef StatsOut stats = stats_out(mean_out, var_out, s.outer * s.cols, True)
    cdef int nt = effective_threads(s.outer * s.rows * s.cols, num_threads)
    cdef const floating* xp = &x[0]
    cdef floating* yp = &out[0]
    cdef const floating* w = optional_ptr(weight)
    cdef const floating* b = optional_ptr(bias)
    cdef Py_ssize_t width = column_block_width(s.outer, s.cols, nt, True)
    cdef Py_ssize_t nblocks = ceil_div(s.cols, width)
    cdef Py_ssize_t tasks = s.outer * nblocks
    cdef Py_ssize_t t, o, j0, start, o1, j1, t1
    cdef int th
    # the next block is prefetched when a thread's share is large enough to come from L3/DRAM
    # and two blocks fit L2 (as prefetch_channel_max: measured, (8, 384, 28, 28) 5% slower
    # with its blocks of 786 KB prefetched, (32, 96, 56, 56) 0.83-0.89 of the time with
    # blocks of 196 KB)
    cdef bint prefetch = (s.outer * s.rows * s.cols * <Py_ssize_t>sizeof(floating)
                          > max(nt, 1) * tuning.prefetch_min_per_thread
                          and s.rows * min(width, s.cols) * <Py_ssize_t>sizeof(floating)
                          <= tuning.prefetch_channel_max)
    with nogil:
        # a contiguous range of (outer, block) tasks per thread, each block prefetching the
        # next within the range (the next range is another thread's, written meanwhile)
        for th in prange(nt, schedule='static', chunksize=1, num_threads=nt,
                         use_threads_if=nt > 1):
            t1 = (th + 1) * tasks // nt
            for t in range(th * tasks // nt, t1):
                o = t // nblocks
                j0 = (t - o * nblocks) * width
                start = o * s.rows * s.cols + j0
                o1 = (t + 1) // nblocks
                j1 = (t + 1 - o1 * nblocks) * width
                normalize_column_block(
                    xp + start, yp + start, s.rows, s.cols, min(width, s.cols - j0), w, b, eps,
                    (stats.mean + o * s.cols + j0) if stats.mean != NULL else NULL,
                    (stats.var + o * s.cols + j0) if stats.var != NULL else NULL,
                    (xp + o1 * s.rows * s.cols + j1) if prefetch and t + 1 < t1 else NULL,
                    min(width, s.cols - j1))


# ---------------------------------------------------------------------------------------
# channels-last InstanceNorm and GroupNorm: sets (samples) of rows of channels, statistics
# down each channel's column, merged over groups of adjacent channels

cdef void set_column_stats(const floating* x,      # IN  one set: rows of cols values
                           Py_ssize_t rows, Py_ssize_t cols, bint precise,
                           Stat* st,               # OUT (cols,)
                           Py_ssize_t ahead) noexcept nogil:
    """column_stats of one set, by blocks of COL_BLOCK columns (the same bits as every
    scheduling of column_stats: each column's chunks are folded in order)."""
    cdef Py_ssize_t jb, j
    for j in range(cols):
        st[j].n = 0
    for j in range(ceil_div(cols, COL_BLOCK)):
        jb = j * COL_BLOCK
        column_block_stats(x + jb, rows, cols, min(<Py_ssize_t>COL_BLOCK, cols - jb), precise,
                           st + jb, ahead, 0)


cdef void set_params(const Stat* st,              # IN  (cols,) one set's column statistics
                     Py_ssize_t cols, Py_ssize_t per_group,
                     const floating* w, const floating* b, double eps,
                     floating* hi, floating* a, floating* c,   # OUT (cols,)
                     double* mean, double* var) noexcept nogil:  # OUT (cols/per_group,)
    """The apply parameters of one set: the statistics of each group of per_group adjacent
    columns (merged in order), per channel."""
    cdef Py_ssize_t g, k
    cdef Stat acc
    for g in range(cols // per_group):
        acc = fold_stats(st + g * per_group, per_group, 1)
        mean[g] = stat_mean(acc)
        var[g] = acc.m2 / acc.n
        for k in range(g * per_group, (g + 1) * per_group):
            channel_param(mean[g], var[g], w, b, k, eps, hi, a, c)


def normalize_column_sets(const floating[::1] x,       # IN  flat (sets, rows, cols) buffer
                          floating[::1] out,           # OUT same size; may be x itself
                          object shape,                # a ColumnShape (sets, rows, cols)
                          Py_ssize_t per_group,        # adjacent columns per group
                          const floating[::1] weight,  # IN  (cols,) or None
                          const floating[::1] bias,    # IN  (cols,) or None
                          double eps,
                          double[::1] mean_out not None,  # OUT (sets*cols/per_group,)
                          double[::1] var_out not None,   # OUT same, biased variance
                          int num_threads, bint precise=False):
    """Normalization of each set's groups of per_group adjacent columns over its rows:
    channels-last InstanceNorm (per_group 1) and GroupNorm (C/G) of (N, *spatial, C) memory.
    With enough sets for the threads, each set is normalized right after its statistics,
    while it is in cache (L2, or L3: then its apply prefetches); else column_stats shares
    out chunks of rows first. The same bits either way. precise: float64 lanes for float32
    data (statistics kept in float64)."""
    cdef ColumnShape s = column_shape(shape)
    check_extent(s.outer * s.rows * s.cols, x.shape[0], out.shape[0])
    if per_group < 1 or s.cols % per_group:
        raise ValueError(f"groups of {per_group} columns do not divide {s.cols}")
    cdef Py_ssize_t groups = s.cols // per_group
    check_extent(s.outer * groups, mean_out.shape[0], var_out.shape[0])
    cdef int nt = effective_threads(s.outer * s.rows * s.cols, num_threads)
    cdef bint by_sets = nt == 1 or s.outer >= 2 * nt
    cdef Py_ssize_t span_rows = span_rows_of(s.cols, s.rows)
    cdef Py_ssize_t nparams = s.outer * s.cols
    cdef Py_ssize_t ahead = column_prefetch_rows(s, min(s.cols, <Py_ssize_t>COL_BLOCK), nt)
    # (a set's apply run in pieces inside the next set's statistics sweep was 5-25% slower,
    # the next set prefetched through the apply 3-12%: Zen 4, README "Channels-last")
    # a set larger than half of L2 is read again from L3 by its apply: prefetched as there
    # (in strips of columns that fit L2, statistics then apply, the strided passes were
    # 2.4-4.4x slower for strips of 16-128 columns: Zen 4, (8, 256, 56, 56) InstanceNorm;
    # a strip's apply right after its statistics ran no faster than with none before it,
    # from L3: rows 1 KB apart keep little of a strip in L2)
    cdef Py_ssize_t apply_ahead = (
        apply_prefetch_rows(s.outer * s.rows * s.cols, s.cols, sizeof(floating), nt)
        if s.rows * s.cols * <Py_ssize_t>sizeof(floating) > tuning.prefetch_channel_max else 0)
    cdef const floating* xp = &x[0]
    cdef floating* yp = &out[0]
    cdef const floating* w = optional_ptr(weight)
    cdef const floating* b = optional_ptr(bias)
    cdef double* mp = &mean_out[0]
    cdef double* vp = &var_out[0]
    cdef Stat* st = <Stat*>malloc(max(s.outer * s.cols, <Py_ssize_t>1) * sizeof(Stat))
    cdef floating* hi = <floating*>malloc(max(3 * nparams, <Py_ssize_t>1) * sizeof(floating))
    cdef Stat* buf = NULL if by_sets else column_stats_scratch(s, nt)
    cdef Py_ssize_t o, spans = ceil_div(s.rows, span_rows)
    cdef Py_ssize_t head = rows_head(yp, s.cols, s.rows, sizeof(floating))
    if st == NULL or hi == NULL or (buf == NULL and not by_sets and columns_by_row_chunks(s, nt)):
        free(st)
        free(hi)
        free(buf)
        raise MemoryError()
    cdef floating* a = hi + nparams
    cdef floating* c = hi + 2 * nparams
    with nogil:
        if by_sets:
            for o in prange(s.outer, schedule='static', num_threads=nt, use_threads_if=nt > 1):
                set_column_stats(xp + o * s.rows * s.cols, s.rows, s.cols, precise,
                                 st + o * s.cols, ahead)
                set_params(st + o * s.cols, s.cols, per_group, w, b, eps, hi + o * s.cols,
                           a + o * s.cols, c + o * s.cols, mp + o * groups, vp + o * groups)
                rotate_params(hi + o * s.cols, a + o * s.cols, c + o * s.cols, 1, s.cols, head)
                apply_row_spans(xp, yp, o * spans, (o + 1) * spans, s.cols, s.rows,
                                span_rows, hi, a, c, head, apply_ahead,
                                apply_backward(s.cols, sizeof(floating),
                                               s.rows * s.cols * <Py_ssize_t>sizeof(floating),
                                               apply_ahead))
        else:
            column_stats(xp, s, precise, st, buf, nt)
            for o in range(s.outer):
                set_params(st + o * s.cols, s.cols, per_group, w, b, eps, hi + o * s.cols,
                           a + o * s.cols, c + o * s.cols, mp + o * groups, vp + o * groups)
            apply_all_row_spans(xp, yp, s.outer, s.rows, s.cols, span_rows, hi, a, c, nt,
                                buf != NULL)
    free(buf)
    free(hi)
    free(st)
