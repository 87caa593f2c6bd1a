/* Short rows of float32 (LayerNorm / RMSNorm over a last dim of 16-496 values: ConvNeXt's
 * channel LayerNorm of channels-last data, attention heads) eight at a time: the
 * statistics, parameters and apply of fn_row_block_f32 give each row the bits of the row
 * engine's path for one row (rows.pxi: row_pair_stats, row_group_params, apply_group_span),
 * with the per-row work that is not vector work done once per block.
 *
 * Why: a row of 64 values is four AVX-512 vectors of sums and four of apply, but the path
 * for one row adds its reductions to scalars, the float64 statistics and parameters
 * (two divisions, a square root) and their checks, and the calls around them: ~40 ns a
 * row on Zen 4, whether it holds 32 or 64 values. Here the rows' lane sums stay per row
 * (fn_row_lanes_f32: as fn_chunk_sums_f32_lanes sums a short row, whose bits the pairs
 * have too), then the horizontal sums of eight rows are
 * one transposing reduction (fn_hsum8: lane r = fn_hsum of row r, the same tree), and the
 * statistics and parameters of the eight rows are float64 vector operations: the same
 * IEEE operations in the same order as the scalar forms, so the same bits.
 *
 * AVX-512 only (x86-64-v4: FN_VF == 16); elsewhere FN_ROW_BLOCK is 0 and the row engine
 * keeps its pairs. */
#ifndef FASTNORM_ROWS_H
#define FASTNORM_ROWS_H

#include <stddef.h>
#include <string.h>
#include "_simd.h"
#include "_apply.h"

#if FN_X86_HALVES == 512 && FN_VF == 16 && defined(FN_VFMA_F32)
#define FN_ROW_BLOCK 8

/* The lane sums of one row of n values (n a multiple of FN_VF, below FN_PAIR_MAX) around
 * c64, before their horizontal sums: fn_rest_sums from zero sums, as fn_chunk_sums_f32_lanes
 * sums a short row (the same macros and function attribute, so the same bits), with its
 * sums in locals returned by value (fn_rest_sums' updates through pointers took 1.3-1.5x
 * the time of the block here). */
FN_FMA_FUNCTION
static inline void fn_row_lanes_f32(const float *x, ptrdiff_t n, double c64, fn_vd *w1,
                                    fn_vd *w2) {
    FN_CONTRACT_FMA
    float f = (float)c64;
    fn_vf cv, r[8], v0, v1, v2, v3;
    fn_vd a1, a2;
    ptrdiff_t i = 0;
    int k;
    for (k = 0; k < FN_VF; k++) cv[k] = f;
    for (k = 0; k < 8; k++) r[k] = cv - cv;
    for (k = 0; k < FN_VD; k++) { a1[k] = 0.0; a2[k] = 0.0; }
    for (; i + 4 * FN_VF <= n; i += 4 * FN_VF) {
        FN_REST_LOAD4(x, i, cv, v0, v1, v2, v3)
        FN_REST_ACC4(r, v0, v1, v2, v3)
    }
    for (; i + FN_VF <= n; i += FN_VF) {
        FN_REST_ACC1(x, i, cv, r, v0)
    }
    FN_REST_MERGE(r, a1, a2)
    *w1 = a1;
    *w2 = a2;
}

/* lane r: fn_hsum(v[r]) for the eight rows, the same tree ((v0 + v4) + (v2 + v6)) +
 * ((v1 + v5) + (v3 + v7)), by shuffles that pair the rows' halves, quarters, then lanes */
static inline __m512d fn_hsum8(const fn_vd *v) {
    __m512d b[4], c0, c1;
    int k;
    for (k = 0; k < 4; k++) {
        __m512d p = (__m512d)v[2 * k], q = (__m512d)v[2 * k + 1];
        b[k] = _mm512_add_pd(_mm512_shuffle_f64x2(p, q, 0x44),     /* low halves */
                             _mm512_shuffle_f64x2(p, q, 0xEE));    /* high halves */
    }
    c0 = _mm512_add_pd(_mm512_shuffle_f64x2(b[0], b[1], 0x88),     /* quarters 0, 2 */
                       _mm512_shuffle_f64x2(b[0], b[1], 0xDD));    /* quarters 1, 3 */
    c1 = _mm512_add_pd(_mm512_shuffle_f64x2(b[2], b[3], 0x88),
                       _mm512_shuffle_f64x2(b[2], b[3], 0xDD));
    return _mm512_add_pd(
        _mm512_permutex2var_pd(c0, _mm512_set_epi64(14, 12, 10, 8, 6, 4, 2, 0), c1),
        _mm512_permutex2var_pd(c0, _mm512_set_epi64(15, 13, 11, 9, 7, 5, 3, 1), c1));
}

/* Eight rows of n values from x on (n a multiple of FN_VF, FN_VF <= n < FN_PAIR_MAX),
 * normalized into y (may be x): LayerNorm, or RMSNorm when rms; w and/or b (n values) may
 * be NULL. mean and var (FN_ROW_BLOCK each) receive the rows' statistics. Returns the rows
 * (bit r: row r) left undone, nothing of them written, for the path of one row: sums that
 * float32 lanes may have spoiled (where fn_chunk_sums_f32_pair sums again), values that are
 * not finite, an RMSNorm whose mean square overflowed (row_group_params). */
static inline int fn_row_block_f32(const float *x, float *y, ptrdiff_t n, const float *w,
                                   const float *b, double eps, int rms, double *mean,
                                   double *var) {
    fn_vd w1[FN_ROW_BLOCK], w2[FN_ROW_BLOCK], sh, s1, s2, nv, dev, m2, mu, v, rs, lo;
    fn_vd zero = {0}, inf, zd;
    __m512d t;
    __m256 hi8, r8, c8;
    float hi[FN_ROW_BLOCK], rf[FN_ROW_BLOCK], cf[FN_ROW_BLOCK];
    int k, undone = 0;
    for (k = 0; k < FN_ROW_BLOCK; k++) {
        sh[k] = fn_shift_f32(x + k * n, n);
        fn_row_lanes_f32(x + k * n, n, sh[k], &w1[k], &w2[k]);
    }
    for (k = 0; k < FN_ROW_BLOCK; k++) {
        nv[k] = (double)n;
        inf[k] = INFINITY;
    }
    s1 = zero + (fn_vd)fn_hsum8(w1);       /* s = t + fn_hsum(w), the tail t = 0.0 */
    s2 = zero + (fn_vd)fn_hsum8(w2);
    /* stat_from_sums and m2_from_sums (stats.pxi), group_params (apply.pxi) */
    dev = s1 / nv;
    m2 = s2 - s1 * (s1 / nv);
    m2 = (fn_vd)_mm512_mask_blend_pd(_mm512_cmp_pd_mask((__m512d)m2, (__m512d)zero, _CMP_LT_OQ),
                                     (__m512d)m2, (__m512d)zero);
    m2 = (fn_vd)_mm512_mask_blend_pd(
        _mm512_cmp_pd_mask((__m512d)s2, (__m512d)inf, _CMP_EQ_OQ)
            & _mm512_cmp_pd_mask((__m512d)s1, (__m512d)s1, _CMP_EQ_OQ),
        (__m512d)m2, (__m512d)inf);
    v = m2 / nv;
    mu = sh + dev;
    if (rms) {
        t = (__m512d)((v + mu * mu) + eps);
        rs = 1.0 / (fn_vd)_mm512_sqrt_pd(t);
    } else {
        t = (__m512d)(v + eps);
        rs = 1.0 / (fn_vd)_mm512_sqrt_pd(t);
    }
    /* rows for the path of one row: f32_sums_unsafe's rule, shift + s1 + s2 not finite,
     * an RMSNorm scale not finite */
    undone = ~_mm512_cmp_pd_mask((__m512d)s2, (__m512d)(nv * FN_F32_MEAN_SQUARE_MIN),
                                 _CMP_GE_OQ)
             | ~_mm512_cmp_pd_mask((__m512d)s2, _mm512_set1_pd(FN_F32_SUM_SQUARES_MAX),
                                   _CMP_LE_OQ)
             | _mm512_cmp_pd_mask((__m512d)(s1 * s1), (__m512d)(s2 * nv / 3.0), _CMP_GT_OQ);
    t = (__m512d)((sh + s1) + s2);
    undone |= ~_mm512_cmp_pd_mask(_mm512_sub_pd(t, t), (__m512d)zero, _CMP_EQ_OQ);
    if (rms)
        undone |= ~_mm512_cmp_pd_mask(_mm512_sub_pd((__m512d)rs, (__m512d)rs),
                                      (__m512d)zero, _CMP_EQ_OQ);
    undone &= (1 << FN_ROW_BLOCK) - 1;
    memcpy(mean, &mu, sizeof mu);
    memcpy(var, &v, sizeof v);
    /* apply_group_span's parameters: hi = (float)mean, c = mean_offset(mean, hi, rstd, -0) */
    if (rms)
        mu = zero;
    hi8 = _mm512_cvtpd_ps((__m512d)mu);
    lo = mu - (fn_vd)_mm512_cvtps_pd(hi8);
    zd = -0.0 - lo * rs;
    c8 = _mm512_cvtpd_ps((__m512d)zd);
    c8 = _mm256_mask_blend_ps(_mm512_cmp_pd_mask((__m512d)lo, (__m512d)zero, _CMP_EQ_OQ), c8,
                              _mm256_set1_ps(-0.0f));
    r8 = _mm512_cvtpd_ps((__m512d)rs);
    _mm256_storeu_ps(hi, hi8);
    _mm256_storeu_ps(rf, r8);
    _mm256_storeu_ps(cf, c8);
    for (k = 0; k < FN_ROW_BLOCK; k++)
        if (!(undone >> k & 1))
            fn_apply_row_f32(x + k * n, y + k * n, n, hi[k], rf[k], cf[k], w, b);
    return undone;
}

#else
#define FN_ROW_BLOCK 0
static inline int fn_row_block_f32(const float *x, float *y, ptrdiff_t n, const float *w,
                                   const float *b, double eps, int rms, double *mean,
                                   double *var) {
    (void)x; (void)y; (void)n; (void)w; (void)b; (void)eps; (void)rms; (void)mean;
    (void)var;
    return -1;
}
#endif

#endif
