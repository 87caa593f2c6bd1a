/* Chunk sums for the statistics kernels (the hot loop of fastnorm's statistics engine).
 *
 * fn_chunk_sums_{f32,f64}(x, n, precise, &shift, &s1, &s2), 0 < n <= 2048 (the chunk size):
 * s1 = sum(x - shift) and s2 = sum((x - shift)^2) for a shift near the mean, from which the
 * caller takes mean = shift + s1/n and M2 = s2 - s1^2/n in float64.
 *
 * - The shift starts as the mean of the first FN_SHIFT_SAMPLE values (rounded to the data's
 *   type, so that x - shift is exact for data whose spread is small against its mean). The
 *   round-off of M2 grows with s2/M2 = 1 + k^2, k = |shift - mean|/std; when k^2 > 1/2
 *   (outliers where the shift was sampled) the chunk is summed again around its mean.
 * - float64 data: float64 lanes. float32 data: deviations and squares in float32 lanes, each
 *   lane summing FN_FLUSH * FN_ACCS values (a sequential run of FN_FLUSH, then a pairwise
 *   tree) before the float64 add; with `precise` (moments), or where float32 squares would
 *   overflow (spread beyond ~1e18), underflow, or for NaN/Inf, float64 lanes.
 *
 * Written with GCC/Clang vector extensions so the reductions vectorize at the target's width
 * without reassociation flags: lanes and their merge order are fixed in the source, so every
 * thread count gives the same bits within one instruction-set variant (variants differ in
 * lane count and FMA: they agree within rounding). Other compilers get the same method in
 * scalar C with float64 accumulators.
 */
#ifndef FASTNORM_SIMD_H
#define FASTNORM_SIMD_H

#include <stddef.h>
#include <string.h>

#define FN_SHIFT_SAMPLE 16
#define FN_ACCS64 4        /* accumulator vectors of the float64 lanes (FN_ACCS: below) */
#define FN_F32_MEAN_SQUARE_MIN 1e-30
#define FN_F32_SUM_SQUARES_MAX 1e36   /* below FLT_MAX: no lane sum of squares overflowed */
/* The round-off of M2 = s2 - s1^2/n grows with s2/M2 = 1 + k^2, k = |shift - mean|/std. When
 * k^2 > 1/2 (outliers where the shift was sampled), sum again around this pass's mean. */
#define FN_MAX_RECENTRE 2
#define FN_FAR_SHIFT(s1, s2, n) ((s1) * (s1) > (s2) * (double)(n) / 3.0)

/* Rows of at least this many bytes are applied from a 64-byte boundary on (apply_row): with
 * 512-bit vectors a misaligned row splits every access across two lines, so the peel pays
 * from 2 KB on (Zen 4, 1 thread: rows of 256 B 12% faster without it, of 384 B 4%, of 1 KB
 * 3%, of 2 KB even, of 3 KB 3% slower); with narrower vectors only every other access
 * splits, and for short rows the scalar peel and its second loop cost more (measured on
 * Zen 3: LayerNorm rows of 1 KB) */
#if defined(__AVX512F__)
#define FN_ALIGN_ROW_MIN 2048
#else
#define FN_ALIGN_ROW_MIN 4096
#endif

/* a*b + c in one rounding where the target has FMA (x86-64-v3 and up, aarch64), else as
 * written; the apply loops vectorize either form */
#if defined(__FMA__) || defined(__aarch64__)
#define fn_fmaf(a, b, c) __builtin_fmaf((a), (b), (c))
#define fn_fma(a, b, c) __builtin_fma((a), (b), (c))
#else
#define fn_fmaf(a, b, c) ((a) * (b) + (c))
#define fn_fma(a, b, c) ((a) * (b) + (c))
#endif

/* ask for the first `bytes` of a region that is about to be read: fn_prefetch into L1 (the
 * next segment of a BatchNorm channel: hardware prefetchers stop at the strided jump between
 * segments), fn_prefetch_l2 into L2 only (the next group, fetched while this one is
 * normalized from L1, so that its statistics pass reads from cache instead of waiting on
 * L3/DRAM). One function per locality: a locality argument tested at run time, measured,
 * cost BatchNorm training 15%. */
#if defined(__GNUC__) || defined(__clang__)
#define FN_DEFINE_PREFETCH(NAME, LOCALITY)                                            \
static inline void NAME(const void *p, ptrdiff_t bytes) {                             \
    const char *c = (const char *)p;                                                  \
    ptrdiff_t i;                                                                      \
    for (i = 0; i < bytes; i += 64) __builtin_prefetch(c + i, 0, LOCALITY);           \
}
#else
#define FN_DEFINE_PREFETCH(NAME, LOCALITY)                                            \
static inline void NAME(const void *p, ptrdiff_t bytes) { (void)p; (void)bytes; }
#endif
FN_DEFINE_PREFETCH(fn_prefetch, 3)
FN_DEFINE_PREFETCH(fn_prefetch_l2, 2)
/* one cache line into L2 (the sweeps over rows of channels: interleaved with the work) */
#if defined(__GNUC__) || defined(__clang__)
#define fn_prefetch_line_l2(p) __builtin_prefetch((p), 0, 2)
#else
#define fn_prefetch_line_l2(p) ((void)(p))
#endif
#define FN_LINE_F32 16      /* float32 values per 64-byte cache line */
#define FN_LINE_F64 8
/* Rows a step of the column sweeps (fn_column_sums_sweep_f32 and stats.pxi's loop, which
 * give the same bits): eight for rows at least FN_SWEEP_FAR floats apart, fewer lane-sum
 * loads and stores per value; else four. Zen 4, 2 threads, eight against four:
 * channel_layer_norm (32, 96, 56, 56), rows 3136 apart, 0.91-0.95 of the time (x86-64-v4
 * and v3); rows 64-1024 apart (channels-last InstanceNorm and BatchNorm training,
 * channel_layer_norm at 14x14 and 28x28) 0.97-1.04, and 1.1-1.5x slower at 64 apart. */
#define FN_SWEEP_FAR 2048
#define fn_sweep_rows(ld) ((ld) >= FN_SWEEP_FAR ? 8 : 4)
#define FN_SWEEP_MAX 512    /* widest block of fn_column_sums_sweep_f32 (stats.pxi: COL_BLOCK) */

/* the values x[i:n] (fewer than a vector) into the float64 sums t1, t2 around c */
#define FN_TAIL_SUMS(x, i, n, c, t1, t2)                                              \
    for (; (i) < (n); (i)++) {                                                        \
        double d_ = (double)(x)[i] - (c);                                             \
        (t1) += d_;                                                                   \
        (t2) += d_ * d_;                                                              \
    }

static inline double fn_shift_f32_scalar(const float *x, ptrdiff_t n) {
    double t[FN_SHIFT_SAMPLE];
    ptrdiff_t m = n < FN_SHIFT_SAMPLE ? n : FN_SHIFT_SAMPLE, i, w;
    if (m < FN_SHIFT_SAMPLE) {          /* short chunk: plain sum */
        double s = 0.0;
        for (i = 0; i < m; i++) s += (double)x[i];
        return (double)(float)(s / (double)m);
    }
    /* a pairwise tree: a short dependency chain, this runs once per chunk of every row */
    for (i = 0; i < FN_SHIFT_SAMPLE; i++) t[i] = (double)x[i];
    for (w = FN_SHIFT_SAMPLE / 2; w > 0; w /= 2)
        for (i = 0; i < w; i++) t[i] += t[i + w];
    return (double)(float)(t[0] / (double)FN_SHIFT_SAMPLE);
}

#if defined(__GNUC__) || defined(__clang__)

/* Vectors of the target's own width (wider ones are lowered through the stack by GCC):
 * FN_VF float lanes, FN_VF / 2 double lanes. FN_ACCS accumulator pairs suit the register
 * file (32 registers with AVX-512, 16 with AVX2: measured). Lane counts differ between instruction sets, so
 * variants agree within rounding; within one variant the order is fixed. */
#if defined(__AVX512F__)
#define FN_VF 16
#define FN_ACCS 8
#elif defined(__AVX__)
#define FN_VF 8
#define FN_ACCS 4
#else                   /* SSE2, NEON: 16 or 32 registers; 8 pairs measured best on SSE2 */
#define FN_VF 4
#define FN_ACCS 8
#endif
#define FN_VD (FN_VF / 2)
#if FN_LINE_F32 % FN_VF || FN_LINE_F64 % FN_VD
#error "the sweeps step by cache lines of whole vectors (fn_column_sums_sweep_f32, _apply.h)"
#endif
/* Vectors of a row of channels whose per-channel parameters (three vectors per vector of
 * the row) can stay in registers: 3 x 8 of AVX-512's 32, 3 x 4 of AVX2's (or SSE2's) 16
 * (_apply.h: fn_apply_rows_reg_*) */
#if defined(__AVX512F__)
#define FN_REG_VECTORS 8
#else
#define FN_REG_VECTORS 4
#endif
/* float32 vectors per accumulator before the float64 add: each float32 lane sums
 * FN_LANE_VALUES values (a run of FN_FLUSH, then a tree over the FN_ACCS accumulators),
 * whatever the width, so every variant rounds alike; fewer flushes per value on AVX2 (4
 * accumulator pairs) halved its flush cost (measured on Zen 3) */
#define FN_LANE_VALUES 32
#define FN_FLUSH (FN_LANE_VALUES / FN_ACCS)
typedef float fn_vf __attribute__((vector_size(4 * FN_VF)));
typedef float fn_vhf __attribute__((vector_size(2 * FN_VF)));
typedef double fn_vd __attribute__((vector_size(4 * FN_VF)));

/* Halves of vectors: GCC lowers the generic form of these (memcpy of a half, then
 * __builtin_convertvector) through the stack, a store-forwarding stall in every flush and at
 * the end of every row (measured on Zen 3: a quarter of a short row's time); the x86
 * intrinsics below are the same operations in registers, with the same bits. */
#if defined(__AVX512F__) && FN_VF == 16
#include <immintrin.h>
#define FN_X86_HALVES 512
#elif defined(__AVX__) && FN_VF == 8
#include <immintrin.h>
#define FN_X86_HALVES 256
#endif

#if defined(FN_X86_HALVES)
/* the lanes of v added as a pairwise tree (halves first): a short dependency chain at the
 * end of a chunk */
static inline double fn_hsum(fn_vd v) {
    __m128d h;
#if FN_X86_HALVES == 512
    __m256d q = _mm256_add_pd(_mm512_castpd512_pd256((__m512d)v),
                              _mm512_extractf64x4_pd((__m512d)v, 1));
#else
    __m256d q = (__m256d)v;
#endif
    h = _mm_add_pd(_mm256_castpd256_pd128(q), _mm256_extractf128_pd(q, 1));
    return _mm_cvtsd_f64(_mm_add_sd(h, _mm_unpackhi_pd(h, h)));
}
#else
/* the lanes of v added as a pairwise tree: a short dependency chain at the end of a chunk */
static inline double fn_hsum(fn_vd v) {
    double t[FN_VD];
    int w, i;
    memcpy(t, &v, sizeof t);
    for (w = FN_VD / 2; w > 0; w /= 2)
        for (i = 0; i < w; i++) t[i] += t[i + w];
    return t[0];
}
#endif

#if defined(FN_X86_HALVES) && FN_SHIFT_SAMPLE == 16
/* The mean of the first 16 values, in float32 lanes (scaled first, so the sum cannot
 * overflow); it only has to land near the chunk's mean, and it is on the critical path of
 * every row, so it is kept short: two 8-lane halves scaled and added, their 4-lane halves
 * added, then (q0 + q2) + (q1 + q3), the same operations on AVX2 and AVX-512 (the same
 * bits). In registers: the 16-lane form split its vector through the stack, a
 * store-forwarding stall in every row (perf, LayerNorm (8, 512, 768), Zen 4: ~7% of the
 * rows' statistics). */
static inline double fn_shift_f32(const float *x, ptrdiff_t n) {
    const __m256 sv = _mm256_set1_ps(1.0f / FN_SHIFT_SAMPLE);
    __m256 h;
    __m128 q;
    if (n < FN_SHIFT_SAMPLE)
        return fn_shift_f32_scalar(x, n);
    h = _mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(x), sv),
                      _mm256_mul_ps(_mm256_loadu_ps(x + 8), sv));
    q = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    q = _mm_add_ps(q, _mm_movehl_ps(q, q));           /* q0 + q2, q1 + q3 */
    return (double)_mm_cvtss_f32(_mm_add_ss(q, _mm_shuffle_ps(q, q, 1)));
}
#else
#define fn_shift_f32 fn_shift_f32_scalar
#endif

/* s1, s2 of x[0:n] - c in FN_VD-wide float64 lanes: float64 data, and float32 data where
 * float32 lanes are not safe (T: the data type; V: a vector of FN_VD of them) */
#define FN_DEFINE_SUMS_F64(NAME, T, V)                                                  \
static inline void NAME(const T *x, ptrdiff_t n, double c, double *s1, double *s2) {    \
    double t1 = 0.0, t2 = 0.0;                                                          \
    fn_vd cv, a1[FN_ACCS64], a2[FN_ACCS64];                                             \
    ptrdiff_t i = 0;                                                                    \
    int k, l;                                                                           \
    for (k = 0; k < FN_VD; k++) cv[k] = c;                                              \
    for (k = 0; k < FN_ACCS64; k++) { a1[k] = cv - cv; a2[k] = cv - cv; }               \
    for (; i + FN_VD * FN_ACCS64 <= n; i += FN_VD * FN_ACCS64) {                        \
        for (k = 0; k < FN_ACCS64; k++) {                                               \
            V v;                                                                        \
            fn_vd d;                                                                    \
            memcpy(&v, x + i + FN_VD * k, sizeof v);                                    \
            d = __builtin_convertvector(v, fn_vd) - cv;                                 \
            a1[k] += d;                                                                 \
            a2[k] += d * d;                                                             \
        }                                                                               \
    }                                                                                   \
    FN_TAIL_SUMS(x, i, n, c, t1, t2);                                                   \
    for (l = FN_ACCS64 / 2; l > 0; l /= 2)                                              \
        for (k = 0; k < l; k++) { a1[k] += a1[k + l]; a2[k] += a2[k + l]; }             \
    *s1 = t1 + fn_hsum(a1[0]);                                                          \
    *s2 = t2 + fn_hsum(a2[0]);                                                          \
}
FN_DEFINE_SUMS_F64(fn_chunk_sums_f64_at, double, fn_vd)
FN_DEFINE_SUMS_F64(fn_chunk_sums_f32_wide, float, fn_vhf)

/* the float32 lanes of v as float64, low half + high half */
#if FN_X86_HALVES == 512
static inline fn_vd fn_widen_sum(fn_vf v) {
    __m512 m = (__m512)v;
    return (fn_vd)_mm512_add_pd(_mm512_cvtps_pd(_mm512_castps512_ps256(m)),
                                _mm512_cvtps_pd(_mm256_castpd_ps(
                                    _mm512_extractf64x4_pd(_mm512_castps_pd(m), 1))));
}
#elif FN_X86_HALVES == 256
static inline fn_vd fn_widen_sum(fn_vf v) {
    __m256 m = (__m256)v;
    return (fn_vd)_mm256_add_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(m)),
                                _mm256_cvtps_pd(_mm256_extractf128_ps(m, 1)));
}
#else
static inline fn_vd fn_widen_sum(fn_vf v) {
    fn_vhf lo, hi;
    memcpy(&lo, &v, sizeof lo);
    memcpy(&hi, (const char *)&v + sizeof lo, sizeof hi);
    return __builtin_convertvector(lo, fn_vd) + __builtin_convertvector(hi, fn_vd);
}
#endif

/* float32 lanes: deviations and squares summed in float32 for FN_FLUSH vectors, then in
 * float64. Squares are accumulated with fused multiply-adds where the target has them (this
 * one function is the only place chunk sums are formed, so every thread count and every
 * parallel path still gives the same bits). */
#if defined(__clang__)
#define FN_CONTRACT_FMA _Pragma("clang fp contract(fast)")
#define FN_FMA_FUNCTION
#else
#define FN_CONTRACT_FMA
#define FN_FMA_FUNCTION __attribute__((optimize("fp-contract=fast")))
#endif

/* FN_ACCS vectors from x into the lane sums a1 (deviations) and a2 (squares) */
FN_FMA_FUNCTION
static inline void fn_lanes_step(const float *x, fn_vf cv, fn_vf *a1, fn_vf *a2) {
    FN_CONTRACT_FMA
    int k;
    for (k = 0; k < FN_ACCS; k++) {
        fn_vf v, d;
        memcpy(&v, x + FN_VF * k, sizeof v);
        d = v - cv;
        a1[k] += d;
        a2[k] += d * d;
    }
}

/* The values after a chunk's full blocks (fewer than FN_FLUSH * FN_ACCS vectors) go into
 * four accumulator pairs that are plain locals, so that they stay in registers (an array of
 * them, or a pair carried across blocks, was kept on the stack: a short row then cost 2-3x
 * its vector work); the four are merged pairwise, then added to the float64 sums once.
 * FN_REST_LOAD4 / FN_REST_ACC4 are the steps of one row, shared by the pair of rows below. */
#define FN_REST_LOAD4(x, i, cv, v0, v1, v2, v3)                                        \
    memcpy(&v0, (x) + (i), sizeof v0);                                                 \
    memcpy(&v1, (x) + (i) + FN_VF, sizeof v1);                                         \
    memcpy(&v2, (x) + (i) + 2 * FN_VF, sizeof v2);                                     \
    memcpy(&v3, (x) + (i) + 3 * FN_VF, sizeof v3);                                     \
    v0 -= cv; v1 -= cv; v2 -= cv; v3 -= cv;
#define FN_REST_ACC4(r, v0, v1, v2, v3)                                                \
    r[0] += v0; r[1] += v0 * v0; r[2] += v1; r[3] += v1 * v1;                          \
    r[4] += v2; r[5] += v2 * v2; r[6] += v3; r[7] += v3 * v3;
#define FN_REST_ACC1(x, i, cv, r, v0)                                                  \
    memcpy(&v0, (x) + (i), sizeof v0);                                                 \
    v0 -= cv;                                                                          \
    r[0] += v0; r[1] += v0 * v0;
#define FN_REST_MERGE(r, w1, w2)                                                       \
    w1 += fn_widen_sum((r[0] + r[2]) + (r[4] + r[6]));                                 \
    w2 += fn_widen_sum((r[1] + r[3]) + (r[5] + r[7]));

/* A full block's FN_ACCS accumulator pairs a1, a2 merged as a pairwise tree (log2(FN_ACCS)
 * roundings) and added to the float64 lane sums w1, w2 (k, l: the caller's ints):
 * fn_chunk_sums_f32_lanes, and the row blocks (_rows.h) with their sums in registers */
#define FN_BLOCK_MERGE(a1, a2, k, l, w1, w2)                                           \
    for ((l) = FN_ACCS / 2; (l) > 0; (l) /= 2)                                         \
        for ((k) = 0; (k) < (l); (k)++) { a1[k] += a1[(k) + (l)]; a2[k] += a2[(k) + (l)]; } \
    w1 += fn_widen_sum(a1[0]);                                                         \
    w2 += fn_widen_sum(a2[0]);

/* The rest of one chunk from x[i] on (i advanced to its scalar tail) into the float64 lane
 * sums w1, w2, with the caller's locals r[8], k, v0-v3: fn_rest_sums, and the row blocks
 * (_rows.h) with their sums in registers */
#define FN_REST_SUMS(x, i, n, cv, r, k, v0, v1, v2, v3, w1, w2)                        \
    for ((k) = 0; (k) < 8; (k)++) r[k] = (cv) - (cv);                                  \
    for (; (i) + 4 * FN_VF <= (n); (i) += 4 * FN_VF) {                                 \
        FN_REST_LOAD4(x, i, cv, v0, v1, v2, v3)                                        \
        FN_REST_ACC4(r, v0, v1, v2, v3)                                                \
    }                                                                                  \
    for (; (i) + FN_VF <= (n); (i) += FN_VF) {                                         \
        FN_REST_ACC1(x, i, cv, r, v0)                                                  \
    }                                                                                  \
    FN_REST_MERGE(r, w1, w2)

/* the rest of one chunk from x[i] on into w1, w2; returns the index of the scalar tail */
FN_FMA_FUNCTION
static inline ptrdiff_t fn_rest_sums(const float *x, ptrdiff_t i, ptrdiff_t n, fn_vf cv,
                                     fn_vd *w1, fn_vd *w2) {
    FN_CONTRACT_FMA
    fn_vf r[8], v0, v1, v2, v3;
    int k;
    FN_REST_SUMS(x, i, n, cv, r, k, v0, v1, v2, v3, *w1, *w2)
    return i;
}

/* fn_chunk_sums_f32_lanes that meanwhile asks for [pf, pf_end) into L2, a cache line per
 * two lines summed (pf NULL: nothing): half of the next group of a normalization, so that
 * memory is busy while this group's statistics are taken too, not only while it is
 * applied (rows.pxi: normalize_group_range) */
FN_FMA_FUNCTION
static inline void fn_chunk_sums_f32_lanes_pf(const float *x, ptrdiff_t n, double c64,
                                              double *s1, double *s2, const char *pf,
                                              const char *pf_end) {
    FN_CONTRACT_FMA     /* (clang: first in the block) */
    double t1 = 0.0, t2 = 0.0;
    float c = (float)c64;
    fn_vf cv, a1[FN_ACCS], a2[FN_ACCS];
    fn_vd w1, w2;
    ptrdiff_t i = 0;
    int k, l, f;
    for (k = 0; k < FN_VF; k++) cv[k] = c;
    for (k = 0; k < FN_VD; k++) { w1[k] = 0.0; w2[k] = 0.0; }
    /* full blocks of FN_FLUSH * FN_ACCS vectors, each summed in float32 lanes */
    while (i + FN_FLUSH * FN_ACCS * FN_VF <= n) {
        for (k = 0; k < FN_ACCS; k++) { a1[k] = cv - cv; a2[k] = cv - cv; }
        for (f = 0; f < FN_FLUSH; f++, i += FN_ACCS * FN_VF) {
            if (pf != NULL && pf < pf_end) {
                ptrdiff_t q;
                for (q = 0; q < FN_ACCS * FN_VF * (ptrdiff_t)sizeof(float) / 2; q += 64)
                    fn_prefetch_line_l2(pf + q);
                pf += FN_ACCS * FN_VF * sizeof(float) / 2;
            }
            fn_lanes_step(x + i, cv, a1, a2);
        }
        FN_BLOCK_MERGE(a1, a2, k, l, w1, w2)
    }
    if (i + FN_VF <= n)
        i = fn_rest_sums(x, i, n, cv, &w1, &w2);
    FN_TAIL_SUMS(x, i, n, c64, t1, t2);
    *s1 = t1 + fn_hsum(w1);
    *s2 = t2 + fn_hsum(w2);
}

FN_FMA_FUNCTION
static inline void fn_chunk_sums_f32_lanes(const float *x, ptrdiff_t n, double c64,
                                           double *s1, double *s2) {
    fn_chunk_sums_f32_lanes_pf(x, n, c64, s1, s2, NULL, NULL);
}

/* Chunks shorter than one full block (short rows: a LayerNorm over C of channels-last
 * data) are all rest: the same operations as fn_chunk_sums_f32_lanes for two chunks a and
 * b at once. The reductions at the end of a short chunk are a chain of dependent steps as
 * long as its vector work; two chains interleaved in one instruction stream overlap, where
 * consecutive calls did not (measured: 32 -> 19 ns per 1 KB row). */
#define FN_PAIR_MAX (FN_FLUSH * FN_ACCS * FN_VF)

FN_FMA_FUNCTION
static inline void fn_pair_lanes_f32(const float *xa, const float *xb, ptrdiff_t n,
                                     double ca, double cb, double *s1, double *s2) {
    FN_CONTRACT_FMA
    float fa = (float)ca, fb = (float)cb;
    fn_vf cva, cvb, ra[8], rb[8], v0, v1, v2, v3, u0, u1, u2, u3;
    fn_vd wa1, wa2, wb1, wb2;
    double ta1 = 0.0, ta2 = 0.0, tb1 = 0.0, tb2 = 0.0;
    ptrdiff_t i = 0, j;
    int k;
    for (k = 0; k < FN_VF; k++) { cva[k] = fa; cvb[k] = fb; }
    for (k = 0; k < 8; k++) { ra[k] = cva - cva; rb[k] = cva - cva; }
    for (k = 0; k < FN_VD; k++) { wa1[k] = 0.0; wa2[k] = 0.0; }
    wb1 = wa1;
    wb2 = wa1;
    for (; i + 4 * FN_VF <= n; i += 4 * FN_VF) {
        FN_REST_LOAD4(xa, i, cva, v0, v1, v2, v3)
        FN_REST_LOAD4(xb, i, cvb, u0, u1, u2, u3)
        FN_REST_ACC4(ra, v0, v1, v2, v3)
        FN_REST_ACC4(rb, u0, u1, u2, u3)
    }
    for (; i + FN_VF <= n; i += FN_VF) {
        FN_REST_ACC1(xa, i, cva, ra, v0)
        FN_REST_ACC1(xb, i, cvb, rb, u0)
    }
    if (n >= FN_VF) {           /* (fn_chunk_sums_f32_lanes skips the rest below a vector) */
        FN_REST_MERGE(ra, wa1, wa2)
        FN_REST_MERGE(rb, wb1, wb2)
    }
    j = i;
    FN_TAIL_SUMS(xa, i, n, ca, ta1, ta2);
    FN_TAIL_SUMS(xb, j, n, cb, tb1, tb2);
    s1[0] = ta1 + fn_hsum(wa1);
    s2[0] = ta2 + fn_hsum(wa2);
    s1[1] = tb1 + fn_hsum(wb1);
    s2[1] = tb2 + fn_hsum(wb2);
}

/* a*b + c of vectors with fn_fmaf's / fn_fma's rounding: fused by instruction where those
 * are fused (FMA targets, aarch64), else as written (the kernels are built with fp-contract
 * off); undefined (no register kernels) for other pairs of width and instruction set */
#if defined(__AVX512F__) && FN_VF == 16
#define FN_VFMA_F32(a, b, c) ((fn_vf)_mm512_fmadd_ps((__m512)(a), (__m512)(b), (__m512)(c)))
#define FN_VFMA_F64(a, b, c) ((fn_vd)_mm512_fmadd_pd((__m512d)(a), (__m512d)(b), (__m512d)(c)))
#elif defined(__FMA__) && FN_VF == 8
#define FN_VFMA_F32(a, b, c) ((fn_vf)_mm256_fmadd_ps((__m256)(a), (__m256)(b), (__m256)(c)))
#define FN_VFMA_F64(a, b, c) ((fn_vd)_mm256_fmadd_pd((__m256d)(a), (__m256d)(b), (__m256d)(c)))
#elif defined(__aarch64__) && FN_VF == 4
#include <arm_neon.h>
#define FN_VFMA_F32(a, b, c) \
    ((fn_vf)vfmaq_f32((float32x4_t)(c), (float32x4_t)(a), (float32x4_t)(b)))
#define FN_VFMA_F64(a, b, c) \
    ((fn_vd)vfmaq_f64((float64x2_t)(c), (float64x2_t)(a), (float64x2_t)(b)))
#elif !defined(__FMA__) && !defined(__aarch64__)
#define FN_VFMA_F32(a, b, c) ((a) * (b) + (c))
#define FN_VFMA_F64(a, b, c) ((a) * (b) + (c))
#endif

/* a vector of columns of `rows` rows (4 or 8, a constant at each call; x, stride ld) into
 * the lane sums f1, f2 around c */
__attribute__((always_inline))
static inline void fn_sweep_vector(const float *x, ptrdiff_t ld, const float *c, float *f1,
                                   float *f2, int rows) {
    fn_vf cv, a1, a2, d0, d1, d2, d3, t1, t2;
    memcpy(&cv, c, sizeof cv);
    memcpy(&d0, x, sizeof d0);
    memcpy(&d1, x + ld, sizeof d1);
    memcpy(&d2, x + 2 * ld, sizeof d2);
    memcpy(&d3, x + 3 * ld, sizeof d3);
    d0 -= cv; d1 -= cv; d2 -= cv; d3 -= cv;
    t1 = (d0 + d1) + (d2 + d3);
    t2 = (d0 * d0 + d1 * d1) + (d2 * d2 + d3 * d3);
    if (rows == 8) {
        memcpy(&d0, x + 4 * ld, sizeof d0);
        memcpy(&d1, x + 5 * ld, sizeof d1);
        memcpy(&d2, x + 6 * ld, sizeof d2);
        memcpy(&d3, x + 7 * ld, sizeof d3);
        d0 -= cv; d1 -= cv; d2 -= cv; d3 -= cv;
        t1 = t1 + ((d0 + d1) + (d2 + d3));
        t2 = t2 + ((d0 * d0 + d1 * d1) + (d2 * d2 + d3 * d3));
    }
    memcpy(&a1, f1, sizeof a1);
    memcpy(&a2, f2, sizeof a2);
    a1 += t1;
    a2 += t2;
    memcpy(f1, &a1, sizeof a1);
    memcpy(f2, &a2, sizeof a2);
}

/* one step of fn_column_sums_sweep_f32: rows x0[0:rows] (stride ld) into the lane sums f1,
 * f2 around c; the first npf rows of pr (their first pf_width columns) asked into L2, a
 * line of each per line summed (rows, npf constants at each call: unrolled) */
__attribute__((always_inline))
static inline void fn_sweep_step(const float *x0, ptrdiff_t ld, ptrdiff_t width,
                                 const float *c, float *f1, float *f2, const float *pr,
                                 ptrdiff_t pf_width, int npf, int rows) {
    ptrdiff_t j, q;
    int k;
    for (j = 0; j < width; j += FN_LINE_F32) {
        if (npf > 0 && j < pf_width)
            for (k = 0; k < npf; k++)
                fn_prefetch_line_l2(pr + j + k * ld);
        /* (a whole line: a constant count of vectors, unrolled; as in _apply.h's sweep) */
        if (j + FN_LINE_F32 <= width) {
            for (q = j; q < j + FN_LINE_F32; q += FN_VF)
                fn_sweep_vector(x0 + q, ld, c + q, f1 + q, f2 + q, rows);
        } else {
            for (q = j; q < width; q += FN_VF)
                fn_sweep_vector(x0 + q, ld, c + q, f1 + q, f2 + q, rows);
        }
    }
}

/* the whole steps of rows of fn_column_sums_sweep_f32 from row r to stop: `rows` a step (a
 * constant at each call), pf_step rows of pf asked for per step until pf_rows; returns the
 * row reached */
__attribute__((always_inline))
static inline ptrdiff_t fn_sweep_steps(const float *x, ptrdiff_t r, ptrdiff_t stop,
                                       ptrdiff_t ld, ptrdiff_t width, const float *c,
                                       float *f1, float *f2, const float *pf,
                                       ptrdiff_t pf_rows, ptrdiff_t pf_step,
                                       ptrdiff_t pf_width, int rows) {
    for (; r + rows <= stop; r += rows) {
        const float *x0 = x + r * ld;
        ptrdiff_t npr = pf != NULL ? pf_rows - (r / rows) * pf_step : 0;
        const float *pr = pf != NULL ? pf + (r / rows) * pf_step * ld : NULL;
        /* (constant row counts: a loop of each, its prefetches unrolled; the last are the
         * few rows that end the stream) */
        if (npr <= 0)
            fn_sweep_step(x0, ld, width, c, f1, f2, NULL, 0, 0, rows);
        else if (npr >= rows && pf_step == rows)
            fn_sweep_step(x0, ld, width, c, f1, f2, pr, pf_width, rows, rows);
        else if (npr >= rows / 2 && pf_step == rows / 2)
            fn_sweep_step(x0, ld, width, c, f1, f2, pr, pf_width, rows / 2, rows);
        else
            fn_sweep_step(x0, ld, width, c, f1, f2, pr, pf_width,
                          (int)(npr < pf_step ? npr : pf_step), rows);
    }
    return r;
}

/* The sweep of column_chunk_sums_f32 (stats.pxi) for rows of whole vectors (width a
 * multiple of FN_VF, at most FN_SWEEP_MAX, any stride ld): fn_sweep_rows(ld) rows a step,
 * the float32 lane sums in arrays f1, f2 (width values each), the same operations in the
 * same order as the Cython loop, so the same bits. pf != NULL: rows of pf (stride ld) are
 * asked into L2, pf_step of them (their first pf_width columns) per step, until pf_rows:
 * the rows `ahead` on (pf = x + ahead * ld, a step's rows each step), or the first half of
 * the next block (half as many); a line of each per line consumed, interleaved with the
 * sums. Measured on Zen 4, AVX-512, 1 thread, float32 from L3: for (25088, 256) the four
 * rows' prefetch as a burst into L1 at the start of each step left the sweep 3x slower
 * than one contiguous read of the same bytes; one line at a time into L2, 32 rows on:
 * 1.1-1.3x, and no cost from cache. For (100352, 64) the same sweep took half the time of
 * one with its lane sums in registers (which the hardware prefetchers alone fed no faster;
 * from cache the two were even). Returns 0, having done nothing, for other widths. */
static inline int fn_column_sums_sweep_f32(const float *x, ptrdiff_t nr, ptrdiff_t ld,
                                           ptrdiff_t width, ptrdiff_t flush,
                                           const float *c_in, double *s1, double *s2,
                                           const float *pf, ptrdiff_t pf_rows,
                                           ptrdiff_t pf_step, ptrdiff_t pf_width) {
    /* the lane sums and shifts on whole cache lines: misaligned by NumPy's 16 bytes, every
     * one of their loads and stores would span two lines (Zen 4, AVX-512, (25088, 256) from
     * L3: 1.2x the time) */
    float f1[FN_SWEEP_MAX] __attribute__((aligned(64)));
    float f2[FN_SWEEP_MAX] __attribute__((aligned(64)));
    float c[FN_SWEEP_MAX] __attribute__((aligned(64)));
    ptrdiff_t r = 0, stop, j, q;
    fn_vf cv, a1, a2, d0;
    if (width % FN_VF || width > FN_SWEEP_MAX)
        return 0;
    memcpy(c, c_in, width * sizeof(float));
    while (r < nr) {
        stop = r + flush < nr ? r + flush : nr;
        memset(f1, 0, width * sizeof(float));
        memset(f2, 0, width * sizeof(float));
        if (fn_sweep_rows(ld) == 8)
            r = fn_sweep_steps(x, r, stop, ld, width, c, f1, f2, pf, pf_rows, pf_step,
                               pf_width, 8);
        else
            r = fn_sweep_steps(x, r, stop, ld, width, c, f1, f2, pf, pf_rows, pf_step,
                               pf_width, 4);
        for (; r < stop; r++)
            for (q = 0; q < width; q += FN_VF) {
                memcpy(&cv, c + q, sizeof cv);
                memcpy(&d0, x + r * ld + q, sizeof d0);
                memcpy(&a1, f1 + q, sizeof a1);
                memcpy(&a2, f2 + q, sizeof a2);
                d0 -= cv;
                a1 += d0;
                a2 += d0 * d0;
                memcpy(f1 + q, &a1, sizeof a1);
                memcpy(f2 + q, &a2, sizeof a2);
            }
        for (j = 0; j < width; j++) {
            s1[j] += f1[j];
            s2[j] += f2[j];
        }
    }
    return 1;
}

#else  /* portable scalar C: float64 accumulators */

#define FN_REG_VECTORS 0
static inline int fn_column_sums_sweep_f32(const float *x, ptrdiff_t nr, ptrdiff_t ld,
                                           ptrdiff_t width, ptrdiff_t flush,
                                           const float *c_in, double *s1, double *s2,
                                           const float *pf, ptrdiff_t pf_rows,
                                           ptrdiff_t pf_step, ptrdiff_t pf_width) {
    (void)x; (void)nr; (void)ld; (void)width; (void)flush; (void)c_in;
    (void)s1; (void)s2; (void)pf; (void)pf_rows; (void)pf_step; (void)pf_width;
    return 0;
}

#define FN_SCALAR_LANES 32

#define FN_DEFINE_SUMS_AT(NAME, T)                                                    \
static inline void NAME(const T *x, ptrdiff_t n, double c, double *s1, double *s2)    \
{                                                                                     \
    double a1[FN_SCALAR_LANES], a2[FN_SCALAR_LANES], t1 = 0.0, t2 = 0.0;              \
    ptrdiff_t i = 0;                                                                  \
    int k;                                                                            \
    for (k = 0; k < FN_SCALAR_LANES; k++) { a1[k] = 0.0; a2[k] = 0.0; }               \
    for (; i + FN_SCALAR_LANES <= n; i += FN_SCALAR_LANES)                            \
        for (k = 0; k < FN_SCALAR_LANES; k++) {                                       \
            double d = (double)x[i + k] - c;                                          \
            a1[k] += d;                                                               \
            a2[k] += d * d;                                                           \
        }                                                                             \
    FN_TAIL_SUMS(x, i, n, c, t1, t2);                                                 \
    for (k = 0; k < FN_SCALAR_LANES; k++) { t1 += a1[k]; t2 += a2[k]; }               \
    *s1 = t1;                                                                         \
    *s2 = t2;                                                                         \
}
FN_DEFINE_SUMS_AT(fn_chunk_sums_f64_at, double)
FN_DEFINE_SUMS_AT(fn_chunk_sums_f32_wide, float)
#define fn_chunk_sums_f32_lanes fn_chunk_sums_f32_wide
#define fn_chunk_sums_f32_lanes_pf(x, n, c, s1, s2, pf, pf_end) \
    fn_chunk_sums_f32_wide(x, n, c, s1, s2)
#define FN_PAIR_MAX 2048
static inline void fn_pair_lanes_f32(const float *xa, const float *xb, ptrdiff_t n,
                                     double ca, double cb, double *s1, double *s2) {
    fn_chunk_sums_f32_lanes(xa, n, ca, &s1[0], &s2[0]);
    fn_chunk_sums_f32_lanes(xb, n, cb, &s1[1], &s2[1]);
}
#define fn_shift_f32 fn_shift_f32_scalar

#endif

/* The chunk sums of float32 data; [pf, pf_end): asked for by the first pass in float32
 * lanes (fn_chunk_sums_f32_lanes_pf), NULL for nothing */
static inline void fn_chunk_sums_f32_pf(const float *x, ptrdiff_t n, int precise,
                                        double *shift, double *s1, double *s2,
                                        const char *pf, const char *pf_end) {
    double c = fn_shift_f32(x, n);
    int pass;
    for (pass = 0; ; pass++) {
        if (precise)
            fn_chunk_sums_f32_wide(x, n, c, s1, s2);
        else {
            fn_chunk_sums_f32_lanes_pf(x, n, c, s1, s2, pf, pf_end);
            pf = NULL;
            if (!(*s2 >= FN_F32_MEAN_SQUARE_MIN * (double)n && *s2 <= FN_F32_SUM_SQUARES_MAX))
                fn_chunk_sums_f32_wide(x, n, c, s1, s2);
        }
        if (!FN_FAR_SHIFT(*s1, *s2, n) || pass == FN_MAX_RECENTRE)
            break;
        c = (double)(float)(c + *s1 / (double)n);
    }
    *shift = c;
}

static inline void fn_chunk_sums_f32(const float *x, ptrdiff_t n, int precise, double *shift,
                                     double *s1, double *s2) {
    fn_chunk_sums_f32_pf(x, n, precise, shift, s1, s2, NULL, NULL);
}

/* fn_chunk_sums_f32 (not precise) of two chunks a, b of n < FN_PAIR_MAX values each, with
 * the same result bits: their first passes interleaved (fn_pair_lanes_f32); a chunk that
 * needs more (float64 lanes, a recentred pass) is summed again alone, as it would be. */
static inline void fn_chunk_sums_f32_pair(const float *xa, const float *xb, ptrdiff_t n,
                                          double *shift, double *s1, double *s2) {
    const float *x[2];
    int r;
    x[0] = xa;
    x[1] = xb;
    shift[0] = fn_shift_f32(xa, n);
    shift[1] = fn_shift_f32(xb, n);
    fn_pair_lanes_f32(xa, xb, n, shift[0], shift[1], s1, s2);
    for (r = 0; r < 2; r++)
        if (!(s2[r] >= FN_F32_MEAN_SQUARE_MIN * (double)n && s2[r] <= FN_F32_SUM_SQUARES_MAX)
                || FN_FAR_SHIFT(s1[r], s2[r], n))
            fn_chunk_sums_f32(x[r], n, 0, &shift[r], &s1[r], &s2[r]);
}

static inline void fn_chunk_sums_f64(const double *x, ptrdiff_t n, int precise, double *shift,
                                     double *s1, double *s2) {
    double c = x[0];
    int pass;
    (void)precise;       /* float64 data is always summed in float64 */
    for (pass = 0; ; pass++) {
        fn_chunk_sums_f64_at(x, n, c, s1, s2);
        if (!FN_FAR_SHIFT(*s1, *s2, n) || pass == FN_MAX_RECENTRE)
            break;
        c = c + *s1 / (double)n;
    }
    *shift = c;
}

#endif
