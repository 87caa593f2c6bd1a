# ---------------------------------------------------------------------------------------
# normalization across the rows at every column: channels-first LayerNorm (ColumnShape)

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
    cdef bint precise = mean_out != NULL     # statistics the caller keeps: float64 lanes
    if rows <= ROW_CHUNK:      # the formulas of stat_from_sums and group_params, per column
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
    cdef Py_ssize_t t, o, j0, start
    with nogil:
        for t in prange(s.outer * nblocks, schedule='static', num_threads=nt,
                        use_threads_if=nt > 1):
            o = t // nblocks
            j0 = (t - o * nblocks) * width
            start = o * s.rows * s.cols + j0
            normalize_column_block(xp + start, yp + start, s.rows, s.cols,
                                   min(width, s.cols - j0), w, b, eps,
                                   (stats.mean + o * s.cols + j0) if stats.mean != NULL else NULL,
                                   (stats.var + o * s.cols + j0) if stats.var != NULL else NULL)
