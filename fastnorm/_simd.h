/* Chunk sums for the statistics kernels (the hot loop of fastnorm's statistics engine).
 *
 * Written with GCC/Clang vector extensions so that the reductions vectorize at every target
 * width without reassociation flags. Lanes and their merge order are fixed in the source, so
 * every instruction set and every thread count gives the same bits. Other compilers get the
 * same method in plain scalar C.
 *
 * fn_chunk_sums_f64(x, n, &shift, &s1, &s2): shift = x[0]; s1 = sum(x - shift) and
 *     s2 = sum((x - shift)^2), in float64 lanes.
 * fn_chunk_sums_f32(x, n, &shift, &s1, &s2): shift = a float32 estimate of the mean (from
 *     the first FN_SHIFT_SAMPLE values), so x - shift is small and, for data whose spread is
 *     small against its mean, exact (Sterbenz). Deviations and their squares are summed in
 *     float32 lanes for FN_FLUSH vectors at a time, then added into float64. With the shift
 *     near the mean, M2 = s2 - s1^2/n keeps its float32 round-off relative to M2 itself, and
 *     the float32 work runs at twice the width of float64. Chunks whose squares leave
 *     float32's comfortable range (spread beyond ~1e18 or below ~1e-15, constant chunks,
 *     NaN/Inf) are summed again in float64 lanes.
 * 0 < n; callers use n <= 2048 (the chunk size).
 */
#ifndef FASTNORM_SIMD_H
#define FASTNORM_SIMD_H

#include <stddef.h>
#include <string.h>

#define FN_SHIFT_SAMPLE 16
#define FN_ACCS 4          /* independent accumulator vectors: hides the add latency */
#define FN_FLUSH 4         /* float32 vectors per lane before the float64 add */
#define FN_F32_MEAN_SQUARE_MIN 1e-30
#define FN_F32_SUM_SQUARES_MAX 1e36   /* below FLT_MAX: no lane sum of squares overflowed */

static inline double fn_shift_f32(const float *x, ptrdiff_t n) {
    ptrdiff_t m = n < FN_SHIFT_SAMPLE ? n : FN_SHIFT_SAMPLE, i;
    double t = 0.0;
    for (i = 0; i < m; i++) t += (double)x[i];
    return (double)(float)(t / (double)m);
}

#if defined(__GNUC__) || defined(__clang__)

typedef double fn_v8d __attribute__((vector_size(64)));
typedef float fn_v8f __attribute__((vector_size(32)));
typedef float fn_v16f __attribute__((vector_size(64)));

static inline void fn_chunk_sums_f64(const double *x, ptrdiff_t n, double *shift,
                                     double *s1, double *s2) {
    double c = x[0], t1 = 0.0, t2 = 0.0;
    fn_v8d cv = {c, c, c, c, c, c, c, c};
    fn_v8d a1[FN_ACCS], a2[FN_ACCS];
    ptrdiff_t i = 0;
    int k, l;
    for (k = 0; k < FN_ACCS; k++) { a1[k] = cv - cv; a2[k] = cv - cv; }
    for (; i + 8 * FN_ACCS <= n; i += 8 * FN_ACCS) {
        for (k = 0; k < FN_ACCS; k++) {
            fn_v8d v, d;
            memcpy(&v, x + i + 8 * k, sizeof v);
            d = v - cv;
            a1[k] += d;
            a2[k] += d * d;
        }
    }
    for (; i < n; i++) {
        double d = x[i] - c;
        t1 += d;
        t2 += d * d;
    }
    for (k = 0; k < FN_ACCS; k++)
        for (l = 0; l < 8; l++) { t1 += a1[k][l]; t2 += a2[k][l]; }
    *shift = c;
    *s1 = t1;
    *s2 = t2;
}

static inline fn_v8d fn_widen_sum(fn_v16f v) {
    fn_v8f lo, hi;
    memcpy(&lo, &v, sizeof lo);
    memcpy(&hi, (const char *)&v + sizeof lo, sizeof hi);
    return __builtin_convertvector(lo, fn_v8d) + __builtin_convertvector(hi, fn_v8d);
}

/* float64 lanes for float32 data: the fallback where float32 squares would overflow or
 * lose precision to underflow */
static inline void fn_chunk_sums_f32_wide(const float *x, ptrdiff_t n, double c,
                                          double *s1, double *s2) {
    fn_v8d cv = {c, c, c, c, c, c, c, c};
    fn_v8d a1[FN_ACCS], a2[FN_ACCS];
    double t1 = 0.0, t2 = 0.0;
    ptrdiff_t i = 0;
    int k, l;
    for (k = 0; k < FN_ACCS; k++) { a1[k] = cv - cv; a2[k] = cv - cv; }
    for (; i + 8 * FN_ACCS <= n; i += 8 * FN_ACCS) {
        for (k = 0; k < FN_ACCS; k++) {
            fn_v8f v;
            fn_v8d d;
            memcpy(&v, x + i + 8 * k, sizeof v);
            d = __builtin_convertvector(v, fn_v8d) - cv;
            a1[k] += d;
            a2[k] += d * d;
        }
    }
    for (; i < n; i++) {
        double d = (double)x[i] - c;
        t1 += d;
        t2 += d * d;
    }
    for (k = 0; k < FN_ACCS; k++)
        for (l = 0; l < 8; l++) { t1 += a1[k][l]; t2 += a2[k][l]; }
    *s1 = t1;
    *s2 = t2;
}

static inline void fn_chunk_sums_f32(const float *x, ptrdiff_t n, double *shift,
                                     double *s1, double *s2) {
    double c64 = fn_shift_f32(x, n), t1 = 0.0, t2 = 0.0;
    float c = (float)c64;
    fn_v16f cv = {c, c, c, c, c, c, c, c, c, c, c, c, c, c, c, c};
    fn_v8d w1 = {0, 0, 0, 0, 0, 0, 0, 0}, w2 = w1;
    ptrdiff_t i = 0;
    int k, l, f;
    while (i + FN_FLUSH * FN_ACCS * 16 <= n) {
        fn_v16f a1[FN_ACCS], a2[FN_ACCS];
        for (k = 0; k < FN_ACCS; k++) { a1[k] = cv - cv; a2[k] = cv - cv; }
        for (f = 0; f < FN_FLUSH; f++, i += FN_ACCS * 16) {
            for (k = 0; k < FN_ACCS; k++) {
                fn_v16f v, d;
                memcpy(&v, x + i + 16 * k, sizeof v);
                d = v - cv;
                a1[k] += d;
                a2[k] += d * d;
            }
        }
        w1 += fn_widen_sum((a1[0] + a1[1]) + (a1[2] + a1[3]));
        w2 += fn_widen_sum((a2[0] + a2[1]) + (a2[2] + a2[3]));
    }
    if (i + 16 <= n) {   /* remaining whole vectors (short rows), at most FN_FLUSH*FN_ACCS-1 */
        fn_v16f a1 = cv - cv, a2 = cv - cv;
        for (; i + 16 <= n; i += 16) {
            fn_v16f v, d;
            memcpy(&v, x + i, sizeof v);
            d = v - cv;
            a1 += d;
            a2 += d * d;
        }
        w1 += fn_widen_sum(a1);
        w2 += fn_widen_sum(a2);
    }
    for (; i < n; i++) {
        double d = (double)x[i] - c64;
        t1 += d;
        t2 += d * d;
    }
    for (l = 0; l < 8; l++) { t1 += w1[l]; t2 += w2[l]; }
    *shift = c64;
    *s1 = t1;
    *s2 = t2;
    /* squares past float32's range (spread beyond ~1e18), or so small that they were
     * subnormal (and NaN/Inf data): redo the chunk in float64 lanes */
    if (!(t2 >= FN_F32_MEAN_SQUARE_MIN * (double)n && t2 <= FN_F32_SUM_SQUARES_MAX))
        fn_chunk_sums_f32_wide(x, n, c64, s1, s2);
}

#else  /* portable scalar C: the same method with float64 accumulators */

#define FN_SCALAR_LANES 32

#define FN_DEFINE_CHUNK_SUMS(NAME, T, SHIFT)                                          \
static inline void NAME(const T *x, ptrdiff_t n, double *shift, double *s1, double *s2) \
{                                                                                     \
    double c = SHIFT, a1[FN_SCALAR_LANES], a2[FN_SCALAR_LANES], t1 = 0.0, t2 = 0.0;   \
    ptrdiff_t i = 0;                                                                  \
    int k;                                                                            \
    for (k = 0; k < FN_SCALAR_LANES; k++) { a1[k] = 0.0; a2[k] = 0.0; }               \
    for (; i + FN_SCALAR_LANES <= n; i += FN_SCALAR_LANES)                            \
        for (k = 0; k < FN_SCALAR_LANES; k++) {                                       \
            double d = (double)x[i + k] - c;                                          \
            a1[k] += d;                                                               \
            a2[k] += d * d;                                                           \
        }                                                                             \
    for (; i < n; i++) {                                                              \
        double d = (double)x[i] - c;                                                  \
        t1 += d;                                                                      \
        t2 += d * d;                                                                  \
    }                                                                                 \
    for (k = 0; k < FN_SCALAR_LANES; k++) { t1 += a1[k]; t2 += a2[k]; }               \
    *shift = c;                                                                       \
    *s1 = t1;                                                                         \
    *s2 = t2;                                                                         \
}
FN_DEFINE_CHUNK_SUMS(fn_chunk_sums_f64, double, x[0])
FN_DEFINE_CHUNK_SUMS(fn_chunk_sums_f32, float, fn_shift_f32(x, n))

#endif
#endif
