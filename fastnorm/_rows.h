/* Short rows of float32 (LayerNorm / RMSNorm over a last dim of 16-1024 values: ConvNeXt's
 * channel LayerNorm of channels-last data, attention heads, transformer hidden states up
 * to 4 KB: common.pxi ROW_BLOCK_BYTES) eight at a time: the
 * statistics, parameters and apply of fn_row_block_f32 give each row the bits of the row
 * engine's path for one row (rows.pxi: row_pair_stats, row_group_params, apply_group_span),
 * with the per-row work that is not vector work done once per block.
 *
 * Why: a row of 64 values is four AVX-512 vectors of sums and four of apply, but the path
 * for one row adds its reductions to scalars, the float64 statistics and parameters (two
 * divisions, a square root) and their checks, and the calls around them: ~40 ns a row on
 * Zen 4, whether it holds 32 or 64 values. Here the rows' lane sums stay per row
 * (fn_row_lanes_f32: as fn_chunk_sums_f32_lanes sums a short row, whose bits the pairs have
 * too), the horizontal sums of eight rows are one transposing reduction (fn_hsum_rows: lane
 * r = fn_hsum of row r, the same tree), and the rows' statistics and parameters are float64
 * vector operations: the same IEEE operations in the same order as the scalar forms, so
 * the same bits.
 *
 * x86 with AVX2 or AVX-512 (x86-64-v3, v4: the shuffles of the horizontal sums); elsewhere
 * FN_ROW_BLOCK is 0 and the row engine keeps its pairs. Zen 4, 1 thread, rows in cache:
 * 32 values 38 -> 21-23 ns a row (v4), 30 -> 16 (v3); 64 values 40 -> 26 (v4), 33 -> 21
 * (v3); rows of 256-1024 (common.pxi: ROW_BLOCK_BYTES) 0.78-0.97 of the time of one row at
 * a time. */
#ifndef FASTNORM_ROWS_H
#define FASTNORM_ROWS_H

#include <math.h>
#include <stddef.h>
#include <string.h>
#include "_simd.h"
#include "_apply.h"

#if defined(FN_X86_HALVES) && defined(FN_VFMA_F32) && FN_VF * 2 == FN_X86_HALVES / 16 \
    && (FN_X86_HALVES == 512 || defined(__AVX2__))
#define FN_ROW_BLOCK 8          /* (at most 8: rows.pxi holds eight rows' statistics) */
#define FN_ROW_LANES FN_VF      /* the rows' length must be a multiple of this */
#if FN_ROW_BLOCK > 8 || FN_ROW_BLOCK % FN_VD
#error "FN_ROW_BLOCK: rows.pxi holds 8 rows' statistics; whole float64 vectors of rows"
#endif

/* The lane sums of one row of n values (n a multiple of FN_VF, one statistics chunk) around
 * c64, before their horizontal sums: as fn_chunk_sums_f32_lanes sums it, its full blocks
 * then fn_rest_sums (the same macros and function attribute, so the same bits), with its
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
    fn_vf b1[FN_ACCS], b2[FN_ACCS];
    int l, s;
    for (k = 0; k < FN_VF; k++) cv[k] = f;
    for (k = 0; k < FN_VD; k++) { a1[k] = 0.0; a2[k] = 0.0; }
    /* full blocks, as fn_chunk_sums_f32_lanes: rows of FN_PAIR_MAX values or more */
    while (i + FN_FLUSH * FN_ACCS * FN_VF <= n) {
        for (k = 0; k < FN_ACCS; k++) { b1[k] = cv - cv; b2[k] = cv - cv; }
        for (s = 0; s < FN_FLUSH; s++, i += FN_ACCS * FN_VF)
            fn_lanes_step(x + i, cv, b1, b2);
        FN_BLOCK_MERGE(b1, b2, k, l, a1, a2)
    }
    if (i + FN_VF <= n) {       /* the rest, as fn_rest_sums */
        FN_REST_SUMS(x, i, n, cv, r, k, v0, v1, v2, v3, a1, a2)
    }
    *w1 = a1;
    *w2 = a2;
}

#if FN_X86_HALVES == 512
#define FN_VSQRT(v) ((fn_vd)_mm512_sqrt_pd((__m512d)(v)))
/* lane r of out[0]: fn_hsum(v[r]) for the eight rows, the same tree
 * ((v0 + v4) + (v2 + v6)) + ((v1 + v5) + (v3 + v7)), by shuffles that pair the rows'
 * halves, quarters, then lanes */
static inline void fn_hsum_rows(const fn_vd *v, fn_vd *out) {
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
    out[0] = (fn_vd)_mm512_add_pd(
        _mm512_permutex2var_pd(c0, _mm512_set_epi64(14, 12, 10, 8, 6, 4, 2, 0), c1),
        _mm512_permutex2var_pd(c0, _mm512_set_epi64(15, 13, 11, 9, 7, 5, 3, 1), c1));
}
#else
#define FN_VSQRT(v) ((fn_vd)_mm256_sqrt_pd((__m256d)(v)))
/* lane r of out[q]: fn_hsum(v[4q + r]), the same tree (v0 + v2) + (v1 + v3): the rows'
 * halves paired, then adjacent lanes (hadd), then the lanes put in row order */
static inline void fn_hsum_rows(const fn_vd *v, fn_vd *out) {
    __m256d b[2];
    int q, k;
    for (q = 0; q < FN_ROW_BLOCK / 4; q++) {
        for (k = 0; k < 2; k++) {
            __m256d p = (__m256d)v[4 * q + 2 * k], r = (__m256d)v[4 * q + 2 * k + 1];
            b[k] = _mm256_add_pd(_mm256_permute2f128_pd(p, r, 0x20),
                                 _mm256_permute2f128_pd(p, r, 0x31));
        }
        out[q] = (fn_vd)_mm256_permute4x64_pd(_mm256_hadd_pd(b[0], b[1]), 0xD8);
    }
}
#endif

typedef long long fn_vmask __attribute__((vector_size(sizeof(fn_vd))));

/* where m: a, else b (m from a vector comparison: all ones or zeros per lane) */
static inline fn_vd fn_select(fn_vmask m, fn_vd a, fn_vd b) {
    return (fn_vd)(((fn_vmask)a & m) | ((fn_vmask)b & ~m));
}

/* Eight rows of n values from x on (n a multiple of FN_VF, FN_VF <= n <= CHUNK),
 * normalized into y (may be x): LayerNorm, or RMSNorm when rms; w and/or b (n values) may
 * be NULL. mean and var (FN_ROW_BLOCK each) receive the rows' statistics. Returns the rows
 * (bit r: row r) left undone, their y unwritten, for the path of one row: sums that
 * float32 lanes may have spoiled (where fn_chunk_sums_f32_pair sums again), values that are
 * not finite, an RMSNorm whose mean square overflowed (row_group_params). The float64
 * work is in vectors of FN_VD rows, in the order of the scalar forms (no fused operations:
 * the kernels are built with fp-contract off). */
static inline int fn_row_block_f32(const float *x, float *y, ptrdiff_t n, const float *w,
                                   const float *b, double eps, int rms, double *mean,
                                   double *var) {
    fn_vd w1[FN_ROW_BLOCK], w2[FN_ROW_BLOCK], s1v[FN_ROW_BLOCK / FN_VD],
        s2v[FN_ROW_BLOCK / FN_VD];
    double shifts[FN_ROW_BLOCK];
    float hi[FN_ROW_BLOCK], rf[FN_ROW_BLOCK], cf[FN_ROW_BLOCK];
    fn_vd zero = {0}, negzero = zero * -1.0, nv, inf, sh, s1, s2, dev, m2, mu, v, rs, lo;
    fn_vmask bad;
    fn_vhf h;
    int k, q, undone = 0;
    for (k = 0; k < FN_ROW_BLOCK; k++) {
        shifts[k] = fn_shift_f32(x + k * n, n);
        fn_row_lanes_f32(x + k * n, n, shifts[k], &w1[k], &w2[k]);
    }
    fn_hsum_rows(w1, s1v);
    fn_hsum_rows(w2, s2v);
    for (k = 0; k < FN_VD; k++) {
        nv[k] = (double)n;
        inf[k] = INFINITY;
    }
    for (q = 0; q < FN_ROW_BLOCK / FN_VD; q++) {
        memcpy(&sh, shifts + q * FN_VD, sizeof sh);
        s1 = zero + s1v[q];                 /* s = t + fn_hsum(w), the tail t = 0.0 */
        s2 = zero + s2v[q];
        /* stat_from_sums and m2_from_sums (stats.pxi), group_params (apply.pxi) */
        dev = s1 / nv;
        m2 = s2 - s1 * (s1 / nv);
        m2 = fn_select(m2 < zero, zero, m2);
        m2 = fn_select((s2 == inf) & (s1 == s1), inf, m2);
        v = m2 / nv;
        mu = sh + dev;
        if (rms)
            rs = 1.0 / FN_VSQRT((v + mu * mu) + eps);
        else
            rs = 1.0 / FN_VSQRT(v + eps);
        /* rows for the path of one row: the pairs' re-sum rule, shift + s1 + s2 not
         * finite, an RMSNorm scale not finite */
        bad = ~((s2 >= FN_F32_MEAN_SQUARE_MIN * nv) & (s2 <= FN_F32_SUM_SQUARES_MAX))
              | (s1 * s1 > s2 * nv / 3.0);
        lo = (sh + s1) + s2;
        bad |= ~(lo - lo == zero);
        if (rms)
            bad |= ~(rs - rs == zero);
        for (k = 0; k < FN_VD; k++)
            undone |= (bad[k] != 0) << (q * FN_VD + k);
        memcpy(mean + q * FN_VD, &mu, sizeof mu);
        memcpy(var + q * FN_VD, &v, sizeof v);
        /* apply_group_span's: hi = (float)mean, c = mean_offset(mean, hi, rstd, -0.0) */
        if (rms)
            mu = zero;
        h = __builtin_convertvector(mu, fn_vhf);
        memcpy(hi + q * FN_VD, &h, sizeof h);
        lo = mu - __builtin_convertvector(h, fn_vd);
        h = __builtin_convertvector(fn_select(lo == zero, negzero, -0.0 - lo * rs), fn_vhf);
        memcpy(cf + q * FN_VD, &h, sizeof h);
        h = __builtin_convertvector(rs, fn_vhf);
        memcpy(rf + q * FN_VD, &h, sizeof h);
    }
    for (k = 0; k < FN_ROW_BLOCK; k++)
        if (!(undone >> k & 1))
            fn_apply_row_f32(x + k * n, y + k * n, n, hi[k], rf[k], cf[k], w, b);
    return undone;
}

#else
#define FN_ROW_BLOCK 0
#define FN_ROW_LANES 1
static inline int fn_row_block_f32(const float *x, float *y, ptrdiff_t n, const float *w,
                                   const float *b, double eps, int rms, double *mean,
                                   double *var) {
    (void)x; (void)y; (void)n; (void)w; (void)b; (void)eps; (void)rms; (void)mean;
    (void)var;
    return -1;
}
#endif

#endif
