/* The hot loops of the apply engine (apply.pxi): a run or a row with scalar parameters
 * (fn_apply_run_*, fn_apply_row_*: below), and rows of channels (channels-last data,
 * BatchNorm of (N, C)): per-channel parameters, y = fma(x - hi[j], a[j], c[j]) at channel j
 * of every row.
 *
 * fn_apply_rows_{f32,f64}(x, y, nrows, channels, hi, a, c, ahead, avail): four rows per
 * sweep, so that each parameter vector, loaded once, serves four rows (a row at a time
 * needs three parameter loads per data load: 1.1-2.2x the time on cache-resident rows of
 * 64-256 channels, Zen 3). y may be x (in place). Written in C for `GCC ivdep`: without it
 * GCC cannot prove the four rows' loads and stores independent when x is y and leaves the
 * loop scalar; the rows of one sweep are distinct, so there is no dependence.
 * ahead > 0: each sweep prefetches the four rows `ahead` rows on into L2, within the
 * nrows + avail rows that exist from x on (rows of whole vectors: line by line, interleaved
 * with the apply, fn_apply_sweep_*); ahead < 0, for spans applied last to first: the rows
 * -ahead rows back, within the avail rows before x (FN_PREFETCH_ROWS_OK). The hardware
 * prefetchers fall behind these sweeps: from memory, 16 KB ahead made the apply 2-2.8x
 * faster (Zen 3, 1 thread, C harness, (16384, 256) and (65536, 64) float32); from cache it
 * costs up to ~20%, so callers ask for it only for large data.
 */
#ifndef FASTNORM_APPLY_H
#define FASTNORM_APPLY_H

#include <stddef.h>
#include "_simd.h"

/* c ? a : b by bit masks, no branch: a loop of these vectorizes (GCC, under its default
 * -ftrapping-math, leaves a compare-and-select of doubles as a branch, so the loop of
 * channel parameters of channel_layer_norm, mean_offset per column, stayed scalar) */
static inline double fn_select_f64(int c, double a, double b) {
    unsigned long long ua, ub, m = 0ULL - (unsigned long long)(c != 0);
    memcpy(&ua, &a, sizeof ua);
    memcpy(&ub, &b, sizeof ub);
    ua = (ua & m) | (ub & ~m);
    memcpy(&a, &ua, sizeof a);
    return a;
}

/* whether the sweep at row r of nrows may prefetch the four rows `ahead` rows from it */
#define FN_PREFETCH_ROWS_OK(r, ahead, nrows, avail)                                       \
    ((ahead) > 0 ? (r) + (ahead) + 4 <= (nrows) + (avail)                                 \
                 : (ahead) < 0 && (r) + (ahead) >= -(avail))

#if defined(__GNUC__) && !defined(__clang__)
#define FN_IVDEP _Pragma("GCC ivdep")
#elif defined(__clang__)
#define FN_IVDEP _Pragma("clang loop vectorize(assume_safety)")
#else
#define FN_IVDEP
#endif

/* The apply of one contiguous run or row: y = fma(x - hi, a, c) with scalar parameters
 * (fn_apply_run_*), and the LayerNorm row y = fma(x - hi, r, c) * w[i] + b[i] (fn_apply_row_*;
 * w and/or b may be NULL). y may be x. Unrolled four vectors deep: GCC left these loops at one
 * vector per iteration, three of its seven instructions the loop's own; unrolled, on
 * x86-64-v3 LayerNorm (8, 512, 768) takes 11% fewer instructions per value (callgrind) and
 * the row-local normalizations 14-21% less time (Zen 4, 1 thread). With AVX-512 (16 values
 * a vector) it measured even: 0-4% either way, so not there. */
#if defined(__AVX512F__)
#define FN_UNROLL
#elif defined(__GNUC__) && !defined(__clang__)
#define FN_UNROLL _Pragma("GCC unroll 4")
#elif defined(__clang__)
#define FN_UNROLL _Pragma("clang loop unroll_count(4)")
#else
#define FN_UNROLL
#endif

#define FN_DEFINE_APPLY_RUN(NAME, T, FMA)                                                 \
static inline void NAME(const T *x, T *y, ptrdiff_t n, T hi, T a, T c) {                 \
    ptrdiff_t i;                                                                          \
    FN_IVDEP FN_UNROLL                                                                    \
    for (i = 0; i < n; i++)                                                               \
        y[i] = FMA(x[i] - hi, a, c);                                                      \
}

#define FN_DEFINE_APPLY_ROW(NAME, T, FMA)                                                 \
static inline void NAME(const T *x, T *y, ptrdiff_t n, T hi, T r, T c,                   \
                        const T *w, const T *b) {                                         \
    ptrdiff_t i;                                                                          \
    if (w != NULL && b != NULL) {                                                         \
        FN_IVDEP FN_UNROLL                                                                \
        for (i = 0; i < n; i++)                                                           \
            y[i] = FMA(FMA(x[i] - hi, r, c), w[i], b[i]);                                 \
    } else if (w != NULL) {                                                               \
        FN_IVDEP FN_UNROLL                                                                \
        for (i = 0; i < n; i++)                                                           \
            y[i] = FMA(x[i] - hi, r, c) * w[i];                                           \
    } else if (b != NULL) {                                                               \
        FN_IVDEP FN_UNROLL                                                                \
        for (i = 0; i < n; i++)                                                           \
            y[i] = FMA(x[i] - hi, r, c) + b[i];                                           \
    } else {                                                                              \
        FN_IVDEP FN_UNROLL                                                                \
        for (i = 0; i < n; i++)                                                           \
            y[i] = FMA(x[i] - hi, r, c);                                                  \
    }                                                                                     \
}

/* Two rows of n values with their own hi, r, c and the same w and/or b (not both NULL),
 * each value as fn_apply_row_* computes it: the weight and bias loaded once for both rows
 * (the affine apply is bound by its loads: three per vector, one store; C harness, Zen 4,
 * rows of 768 in cache: 48-54 -> 36-44 ns a row). */
#define FN_DEFINE_APPLY_ROW_PAIR(NAME, T, FMA)                                            \
static inline void NAME(const T *x0, T *y0, const T *x1, T *y1, ptrdiff_t n,              \
                        T hi0, T r0, T c0, T hi1, T r1, T c1,                             \
                        const T *w, const T *b) {                                         \
    ptrdiff_t i;                                                                          \
    if (w != NULL && b != NULL) {                                                         \
        FN_IVDEP FN_UNROLL                                                                \
        for (i = 0; i < n; i++) {                                                         \
            T wi = w[i], bi = b[i];                                                       \
            y0[i] = FMA(FMA(x0[i] - hi0, r0, c0), wi, bi);                                \
            y1[i] = FMA(FMA(x1[i] - hi1, r1, c1), wi, bi);                                \
        }                                                                                 \
    } else if (w != NULL) {                                                               \
        FN_IVDEP FN_UNROLL                                                                \
        for (i = 0; i < n; i++) {                                                         \
            T wi = w[i];                                                                  \
            y0[i] = FMA(x0[i] - hi0, r0, c0) * wi;                                        \
            y1[i] = FMA(x1[i] - hi1, r1, c1) * wi;                                        \
        }                                                                                 \
    } else {                                                                              \
        FN_IVDEP FN_UNROLL                                                                \
        for (i = 0; i < n; i++) {                                                         \
            T bi = b[i];                                                                  \
            y0[i] = FMA(x0[i] - hi0, r0, c0) + bi;                                        \
            y1[i] = FMA(x1[i] - hi1, r1, c1) + bi;                                        \
        }                                                                                 \
    }                                                                                     \
}

/* The rows of a column block (channels-first LayerNorm, columns.pxi): nrows rows of width
 * values, ld apart, row k with scalars w[k], b[k] (1 and 0 where NULL), each value
 * y = fma(fma(x - hi[j], r[j], c[j]), w[k], b[k]). Four rows a sweep, so that the three
 * per-column parameters, loaded once, serve four rows (one row at a time, four loads a
 * value: Zen 4, AVX-512, rows of 512 in L2, the apply took 0.8 cycles a value). y may be x;
 * the rows of a sweep are distinct (FN_IVDEP). */
#define FN_DEFINE_APPLY_COLUMN_ROWS(NAME, T, FMA)                                         \
static inline void NAME(const T *x, T *y, ptrdiff_t nrows, ptrdiff_t ld, ptrdiff_t width, \
                        const T *hi, const T *r, const T *c, const T *w, const T *b) {    \
    ptrdiff_t k = 0, j;                                                                   \
    for (; k + 4 <= nrows; k += 4) {                                                      \
        const T *x0 = x + k * ld;                                                         \
        T *y0 = y + k * ld;                                                               \
        T w0 = w ? w[k] : 1, w1 = w ? w[k + 1] : 1, w2 = w ? w[k + 2] : 1,                \
          w3 = w ? w[k + 3] : 1;                                                          \
        T b0 = b ? b[k] : 0, b1 = b ? b[k + 1] : 0, b2 = b ? b[k + 2] : 0,                \
          b3 = b ? b[k + 3] : 0;                                                          \
        FN_IVDEP                                                                          \
        for (j = 0; j < width; j++) {                                                     \
            T h = hi[j], m = r[j], o = c[j];                                              \
            T v0 = x0[j], v1 = x0[j + ld], v2 = x0[j + 2 * ld], v3 = x0[j + 3 * ld];     \
            y0[j] = FMA(FMA(v0 - h, m, o), w0, b0);                                       \
            y0[j + ld] = FMA(FMA(v1 - h, m, o), w1, b1);                                  \
            y0[j + 2 * ld] = FMA(FMA(v2 - h, m, o), w2, b2);                              \
            y0[j + 3 * ld] = FMA(FMA(v3 - h, m, o), w3, b3);                              \
        }                                                                                 \
    }                                                                                     \
    for (; k < nrows; k++) {                                                              \
        const T *xr = x + k * ld;                                                         \
        T *yr = y + k * ld;                                                               \
        T wk = w ? w[k] : 1, bk = b ? b[k] : 0;                                           \
        FN_IVDEP                                                                          \
        for (j = 0; j < width; j++)                                                       \
            yr[j] = FMA(FMA(xr[j] - hi[j], r[j], c[j]), wk, bk);                          \
    }                                                                                     \
}

FN_DEFINE_APPLY_RUN(fn_apply_run_f32, float, fn_fmaf)
FN_DEFINE_APPLY_RUN(fn_apply_run_f64, double, fn_fma)
FN_DEFINE_APPLY_ROW(fn_apply_row_f32, float, fn_fmaf)
FN_DEFINE_APPLY_COLUMN_ROWS(fn_apply_column_rows_f32, float, fn_fmaf)
FN_DEFINE_APPLY_COLUMN_ROWS(fn_apply_column_rows_f64, double, fn_fma)
FN_DEFINE_APPLY_ROW(fn_apply_row_f64, double, fn_fma)
FN_DEFINE_APPLY_ROW_PAIR(fn_apply_row_pair_f32, float, fn_fmaf)
FN_DEFINE_APPLY_ROW_PAIR(fn_apply_row_pair_f64, double, fn_fma)

/* Rows of a few vectors of channels (ch a multiple of the vector width, at most
 * FN_REG_VECTORS vectors: 128 float32 channels with AVX-512, 32 with AVX2): the parameters
 * of a row are loaded into registers once and the rows stream through in memory order, one
 * load and one store per vector like a contiguous run (the four-row sweep below needs three
 * parameter loads per four data vectors and reads four rows as interleaved streams, which
 * the hardware prefetchers follow worse). Measured on Zen 4, AVX-512, in place, float32,
 * rows of 64 channels: 1.5-1.6x faster than the sweep with its prefetch, from cache and from
 * memory, 1 and 2 threads; the same time as a contiguous run. The same fma as the scalar
 * form (FN_VFMA_*: fused exactly where fn_fmaf is), so the same bits. */
#if FN_REG_VECTORS > 0 && defined(FN_VFMA_F32)

#define FN_ROWS_IN_REGISTERS(T, V, LANES, VFMA, NV)                                       \
    {                                                                                     \
        V h_[NV], m_[NV], k_[NV], v_;                                                     \
        int q_;                                                                           \
        ptrdiff_t r_;                                                                     \
        for (q_ = 0; q_ < NV; q_++) {                                                     \
            memcpy(&h_[q_], hi + q_ * LANES, sizeof v_);                                  \
            memcpy(&m_[q_], a + q_ * LANES, sizeof v_);                                   \
            memcpy(&k_[q_], c + q_ * LANES, sizeof v_);                                   \
        }                                                                                 \
        for (r_ = 0; r_ < nrows; r_++) {                                                  \
            const T *xr_ = x + r_ * (NV * LANES);                                         \
            T *yr_ = y + r_ * (NV * LANES);                                               \
            for (q_ = 0; q_ < NV; q_++) {                                                 \
                memcpy(&v_, xr_ + q_ * LANES, sizeof v_);                                 \
                v_ = VFMA(v_ - h_[q_], m_[q_], k_[q_]);                                   \
                memcpy(yr_ + q_ * LANES, &v_, sizeof v_);                                 \
            }                                                                             \
        }                                                                                 \
        return 1;                                                                         \
    }

#define FN_DEFINE_APPLY_ROWS_IN_REGISTERS(NAME, T, V, LANES, VFMA)                        \
static inline int NAME(const T *x, T *y, ptrdiff_t nrows, ptrdiff_t ch,                   \
                       const T *hi, const T *a, const T *c) {                             \
    if (ch % LANES)                                                                       \
        return 0;                                                                         \
    switch (ch / LANES) {                                                                 \
    case 1: FN_ROWS_IN_REGISTERS(T, V, LANES, VFMA, 1)                                    \
    case 2: FN_ROWS_IN_REGISTERS(T, V, LANES, VFMA, 2)                                    \
    case 3: FN_ROWS_IN_REGISTERS(T, V, LANES, VFMA, 3)                                    \
    case 4: FN_ROWS_IN_REGISTERS(T, V, LANES, VFMA, 4)                                    \
    FN_ROWS_IN_REGISTERS_WIDE(T, V, LANES, VFMA)                                          \
    default: return 0;                                                                    \
    }                                                                                     \
}

#if FN_REG_VECTORS == 8
#define FN_ROWS_IN_REGISTERS_WIDE(T, V, LANES, VFMA)                                      \
    case 5: FN_ROWS_IN_REGISTERS(T, V, LANES, VFMA, 5)                                    \
    case 6: FN_ROWS_IN_REGISTERS(T, V, LANES, VFMA, 6)                                    \
    case 7: FN_ROWS_IN_REGISTERS(T, V, LANES, VFMA, 7)                                    \
    case 8: FN_ROWS_IN_REGISTERS(T, V, LANES, VFMA, 8)
#else
#define FN_ROWS_IN_REGISTERS_WIDE(T, V, LANES, VFMA)
#endif

FN_DEFINE_APPLY_ROWS_IN_REGISTERS(fn_apply_rows_reg_f32, float, fn_vf, FN_VF, FN_VFMA_F32)
FN_DEFINE_APPLY_ROWS_IN_REGISTERS(fn_apply_rows_reg_f64, double, fn_vd, FN_VD, FN_VFMA_F64)

/* whether fn_apply_rows_* takes rows of ch channels of itemsize bytes in registers: those
 * rows are not prefetched, they stream forward for the hardware prefetchers */
static inline int fn_apply_rows_in_registers(ptrdiff_t ch, ptrdiff_t itemsize) {
    ptrdiff_t lanes = itemsize == (ptrdiff_t)sizeof(float) ? FN_VF : FN_VD;
    return ch % lanes == 0 && ch / lanes >= 1 && ch / lanes <= FN_REG_VECTORS;
}
#else
static inline int fn_apply_rows_in_registers(ptrdiff_t ch, ptrdiff_t itemsize) {
    (void)ch; (void)itemsize;
    return 0;
}
static inline int fn_apply_rows_reg_f32(const float *x, float *y, ptrdiff_t nrows,
                                        ptrdiff_t ch, const float *hi, const float *a,
                                        const float *c) {
    (void)x; (void)y; (void)nrows; (void)ch; (void)hi; (void)a; (void)c;
    return 0;
}
static inline int fn_apply_rows_reg_f64(const double *x, double *y, ptrdiff_t nrows,
                                        ptrdiff_t ch, const double *hi, const double *a,
                                        const double *c) {
    (void)x; (void)y; (void)nrows; (void)ch; (void)hi; (void)a; (void)c;
    return 0;
}
#endif

/* one vector of parameters at q for the four rows from xr (into yr), of the sweep
 * FN_DEFINE_APPLY_SWEEP defines */
#define FN_APPLY_FOUR_ROWS(VFMA, q)                                                       \
    {                                                                                     \
        memcpy(&h, hi + (q), sizeof h);                                                   \
        memcpy(&m, a + (q), sizeof m);                                                    \
        memcpy(&k, c + (q), sizeof k);                                                    \
        memcpy(&v0, xr + (q), sizeof v0);                                                 \
        memcpy(&v1, xr + ch + (q), sizeof v1);                                            \
        memcpy(&v2, xr + 2 * ch + (q), sizeof v2);                                        \
        memcpy(&v3, xr + 3 * ch + (q), sizeof v3);                                        \
        v0 = VFMA(v0 - h, m, k);                                                          \
        v1 = VFMA(v1 - h, m, k);                                                          \
        v2 = VFMA(v2 - h, m, k);                                                          \
        v3 = VFMA(v3 - h, m, k);                                                          \
        memcpy(yr + (q), &v0, sizeof v0);                                                 \
        memcpy(yr + ch + (q), &v1, sizeof v1);                                            \
        memcpy(yr + 2 * ch + (q), &v2, sizeof v2);                                        \
        memcpy(yr + 3 * ch + (q), &v3, sizeof v3);                                        \
    }

/* The four-row sweep in vectors, for rows of whole vectors too wide for registers: the
 * same operations as the scalar sweep below (FN_VFMA_*: fused exactly where fn_fmaf is), so
 * the same bits, with its prefetch interleaved: ahead > 0 asks for the four rows `ahead`
 * rows on into L2, one cache line per line applied. Measured on Zen 4, AVX-512, 1 thread,
 * in place, (25088, 256) float32 from L3: the prefetch as a burst into L1 at the start of
 * each sweep left the apply 1.4-1.5x slower than a contiguous run over the same bytes; line
 * by line into L2, 32 rows on: as fast as the run (from cache: 1.15x the run, where the
 * burst was 1.5x). Whole lines go through a constant count of vectors (unrolled): with
 * AVX2, two vectors a line, the loop bounded by both the line and the row had cost, for
 * rows of 64 float32 channels, 1.31 instructions a value where it now takes 0.95
 * (callgrind, channels-last BatchNorm eval (32, 64, 56, 56)); Zen 4, 2 threads, x86-64-v3,
 * channels-last (32, 64, 56, 56) BatchNorm eval, InstanceNorm and GroupNorm took 0.87-0.92
 * of the time, BatchNorm training (8, 256, 56, 56) 0.92 (x86-64-v4, one vector a line, is
 * unchanged). Returns 0, having done nothing, for other rows. */
#define FN_DEFINE_APPLY_SWEEP(NAME, T, V, LANES, VFMA, LINE)                              \
static inline int NAME(const T *x, T *y, ptrdiff_t nrows, ptrdiff_t ch,                   \
                       const T *hi, const T *a, const T *c, ptrdiff_t ahead,              \
                       ptrdiff_t avail) {                                                 \
    ptrdiff_t r, j, q;                                                                    \
    V h, m, k, v0, v1, v2, v3;                                                            \
    if (ch % LANES)                                                                       \
        return 0;                                                                         \
    for (r = 0; r + 4 <= nrows; r += 4) {                                                 \
        const T *xr = x + r * ch;                                                         \
        T *yr = y + r * ch;                                                               \
        const T *pf = FN_PREFETCH_ROWS_OK(r, ahead, nrows, avail) ? xr + ahead * ch : NULL; \
        /* whole lines (a constant count of vectors each: unrolled), then the last part */ \
        for (j = 0; j < ch; j += LINE) {                                                  \
            if (pf != NULL) {                                                             \
                fn_prefetch_line_l2(pf + j);                                              \
                fn_prefetch_line_l2(pf + j + ch);                                         \
                fn_prefetch_line_l2(pf + j + 2 * ch);                                     \
                fn_prefetch_line_l2(pf + j + 3 * ch);                                     \
            }                                                                             \
            if (j + LINE <= ch) {                                                         \
                for (q = j; q < j + LINE; q += LANES)                                     \
                    FN_APPLY_FOUR_ROWS(VFMA, q)                                           \
            } else {                                                                      \
                for (q = j; q < ch; q += LANES)                                           \
                    FN_APPLY_FOUR_ROWS(VFMA, q)                                           \
            }                                                                             \
        }                                                                                 \
    }                                                                                     \
    for (; r < nrows; r++)                                                                \
        for (q = 0; q < ch; q += LANES) {                                                 \
            memcpy(&h, hi + q, sizeof h);                                                 \
            memcpy(&m, a + q, sizeof m);                                                  \
            memcpy(&k, c + q, sizeof k);                                                  \
            memcpy(&v0, x + r * ch + q, sizeof v0);                                       \
            v0 = VFMA(v0 - h, m, k);                                                      \
            memcpy(y + r * ch + q, &v0, sizeof v0);                                       \
        }                                                                                 \
    return 1;                                                                             \
}

#if FN_REG_VECTORS > 0 && defined(FN_VFMA_F32)
FN_DEFINE_APPLY_SWEEP(fn_apply_sweep_f32, float, fn_vf, FN_VF, FN_VFMA_F32, FN_LINE_F32)
FN_DEFINE_APPLY_SWEEP(fn_apply_sweep_f64, double, fn_vd, FN_VD, FN_VFMA_F64, FN_LINE_F64)
#else
#define fn_apply_sweep_f32(x, y, nrows, ch, hi, a, c, ahead, avail) 0
#define fn_apply_sweep_f64(x, y, nrows, ch, hi, a, c, ahead, avail) 0
#endif

/* fn_apply_row_* (w and/or b may be NULL; with neither, fn_apply_run_*: r is a) with
 * another run's same span asked into L2 meanwhile, one cache line per line applied (pf:
 * the start of the run to prefetch, as long as this one), in vectors: spread over the
 * apply, the prefetches do not stall it the way a burst does (BatchNorm training
 * (8, 512, 28, 28), Zen 4, AVX-512: bursts of 4 KB a block took half the samples). The same
 * values as fn_apply_row_*. (Compilers without vector extensions: the span asked for up
 * front, where fn_prefetch_l2 does nothing.) */
#define FN_DEFINE_APPLY_ROW_PREFETCH(NAME, T, V, LANES, VFMA, LINE, FMA)                  \
static inline void NAME(const T *x, T *y, ptrdiff_t n, T hi, T r, T c, const T *w,        \
                        const T *b, const T *pf) {                                        \
    ptrdiff_t i = 0, q;                                                                   \
    V h, m, k, v, wv, bv;                                                                 \
    T u;                                                                                  \
    for (q = 0; q < LANES; q++) {                                                         \
        h[q] = hi;                                                                        \
        m[q] = r;                                                                         \
        k[q] = c;                                                                         \
    }                                                                                     \
    for (; i + LINE <= n; i += LINE) {                                                    \
        fn_prefetch_line_l2(pf + i);                                                      \
        for (q = i; q < i + LINE; q += LANES) {                                           \
            memcpy(&v, x + q, sizeof v);                                                  \
            v = VFMA(v - h, m, k);                                                        \
            if (w != NULL && b != NULL) {                                                 \
                memcpy(&wv, w + q, sizeof wv);                                            \
                memcpy(&bv, b + q, sizeof bv);                                            \
                v = VFMA(v, wv, bv);                                                      \
            } else if (w != NULL) {                                                       \
                memcpy(&wv, w + q, sizeof wv);                                            \
                v = v * wv;                                                               \
            } else if (b != NULL) {                                                       \
                memcpy(&bv, b + q, sizeof bv);                                            \
                v = v + bv;                                                               \
            }                                                                             \
            memcpy(y + q, &v, sizeof v);                                                  \
        }                                                                                 \
    }                                                                                     \
    if (i < n)      /* the lines the steps leave (two, when pf is not on a line) */     \
        fn_prefetch_line_l2(pf + i);                                                      \
    if (n > 0)                                                                            \
        fn_prefetch_line_l2(pf + n - 1);                                                  \
    for (; i < n; i++) {                                                                  \
        u = FMA(x[i] - hi, r, c);                                                         \
        y[i] = w != NULL && b != NULL ? FMA(u, w[i], b[i])                                \
             : w != NULL ? u * w[i] : b != NULL ? u + b[i] : u;                           \
    }                                                                                     \
}

#if FN_REG_VECTORS > 0 && defined(FN_VFMA_F32)
FN_DEFINE_APPLY_ROW_PREFETCH(fn_apply_row_prefetch_f32, float, fn_vf, FN_VF, FN_VFMA_F32,
                             FN_LINE_F32, fn_fmaf)
FN_DEFINE_APPLY_ROW_PREFETCH(fn_apply_row_prefetch_f64, double, fn_vd, FN_VD, FN_VFMA_F64,
                             FN_LINE_F64, fn_fma)
#else
static inline void fn_apply_row_prefetch_f32(const float *x, float *y, ptrdiff_t n, float hi,
                                             float r, float c, const float *w, const float *b,
                                             const float *pf) {
    fn_prefetch_l2(pf, n * (ptrdiff_t)sizeof(float));
    fn_apply_row_f32(x, y, n, hi, r, c, w, b);
}
static inline void fn_apply_row_prefetch_f64(const double *x, double *y, ptrdiff_t n,
                                             double hi, double r, double c, const double *w,
                                             const double *b, const double *pf) {
    fn_prefetch_l2(pf, n * (ptrdiff_t)sizeof(double));
    fn_apply_row_f64(x, y, n, hi, r, c, w, b);
}
#endif

#define FN_DEFINE_APPLY_ROWS(NAME, T, FMA, IN_REGISTERS, SWEEP)                           \
static inline void NAME(const T *x, T *y, ptrdiff_t nrows, ptrdiff_t ch,                 \
                        const T *hi, const T *a, const T *c,                              \
                        ptrdiff_t ahead, ptrdiff_t avail) {                               \
    ptrdiff_t r = 0, j;                                                                   \
    if (IN_REGISTERS(x, y, nrows, ch, hi, a, c))                                          \
        return;                                                                           \
    if (SWEEP(x, y, nrows, ch, hi, a, c, ahead, avail))                                   \
        return;                                                                           \
    for (; r + 4 <= nrows; r += 4) {                                                      \
        const T *xr = x + r * ch;                                                         \
        T *yr = y + r * ch;                                                               \
        if (FN_PREFETCH_ROWS_OK(r, ahead, nrows, avail))                                  \
            fn_prefetch_l2(xr + ahead * ch, 4 * ch * (ptrdiff_t)sizeof(T));               \
        FN_IVDEP                                                                          \
        for (j = 0; j < ch; j++) {                                                        \
            T h = hi[j], m = a[j], k = c[j];                                              \
            T v0 = xr[j], v1 = xr[j + ch], v2 = xr[j + 2 * ch], v3 = xr[j + 3 * ch];     \
            yr[j] = FMA(v0 - h, m, k);                                                    \
            yr[j + ch] = FMA(v1 - h, m, k);                                               \
            yr[j + 2 * ch] = FMA(v2 - h, m, k);                                           \
            yr[j + 3 * ch] = FMA(v3 - h, m, k);                                           \
        }                                                                                 \
    }                                                                                     \
    for (; r < nrows; r++) {                                                              \
        const T *xr = x + r * ch;                                                         \
        T *yr = y + r * ch;                                                               \
        FN_IVDEP                                                                          \
        for (j = 0; j < ch; j++)                                                          \
            yr[j] = FMA(xr[j] - hi[j], a[j], c[j]);                                       \
    }                                                                                     \
}

FN_DEFINE_APPLY_ROWS(fn_apply_rows_f32, float, fn_fmaf, fn_apply_rows_reg_f32,
                     fn_apply_sweep_f32)
FN_DEFINE_APPLY_ROWS(fn_apply_rows_f64, double, fn_fma, fn_apply_rows_reg_f64,
                     fn_apply_sweep_f64)

#endif
