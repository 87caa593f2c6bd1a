/* Exact integer statistics (fastnorm/_kernels/stats_int.pxi): sums of x and of x*x of
 * integer data, without rounding and without overflow for any count below 2**63.
 *
 * A column's sums are an fn_isum: s1 = sum(x) as a 128-bit two's complement integer, s2 =
 * sum(x*x) as a 192-bit unsigned one (an int64 square needs 126 bits). Portable C: carries
 * by hand, 64x64 -> 128-bit products with __int128 where the compiler has it.
 *
 * The hot loop for 8- and 16-bit data keeps lane sums (32-bit for 8-bit data, 64-bit for
 * 16-bit data) over a block of `rows` rows of `width` columns and adds them
 * into the fn_isums at the end; a block of few columns (width < FN_ISUM_LANES) that is
 * contiguous (ld == width) is read as one stream whose lane i belongs to column i % width,
 * so that the loop vectorizes whatever the width. 32- and 64-bit data are summed value by
 * value into the wide sums.
 *
 * Integer sums are exact, so every blocking and every thread count gives the same result.
 */
#ifndef FASTNORM_INTSTATS_H
#define FASTNORM_INTSTATS_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint64_t s1_lo, s1_hi;           /* sum of x: s1_hi * 2**64 + s1_lo, two's complement */
    uint64_t s2_w0, s2_w1, s2_w2;    /* sum of x*x: w2 * 2**128 + w1 * 2**64 + w0 */
} fn_isum;

#define FN_ISUM_LANES 64            /* lanes of the stream loop (a multiple of the width) */
#define FN_ISUM_MAX_WIDTH 256       /* columns of one block (lane sums on the stack) */

static inline void fn_isum_zero(fn_isum *a) {
    a->s1_lo = a->s1_hi = a->s2_w0 = a->s2_w1 = a->s2_w2 = 0;
}

/* s1 += v (a signed 64-bit value) */
static inline void fn_isum_add_s1(fn_isum *a, int64_t v) {
    uint64_t lo = (uint64_t)v;
    a->s1_lo += lo;
    a->s1_hi += (v < 0 ? ~(uint64_t)0 : 0) + (a->s1_lo < lo);
}

/* s2 += hi * 2**64 + lo */
static inline void fn_isum_add_s2(fn_isum *a, uint64_t lo, uint64_t hi) {
    uint64_t c, t;
    a->s2_w0 += lo;
    c = a->s2_w0 < lo;
    t = a->s2_w1 + hi;
    a->s2_w2 += t < hi;
    a->s2_w1 = t + c;
    a->s2_w2 += a->s2_w1 < c;
}

static inline void fn_isum_merge(fn_isum *a, const fn_isum *b) {
    uint64_t c, t;
    a->s1_lo += b->s1_lo;
    a->s1_hi += b->s1_hi + (a->s1_lo < b->s1_lo);
    a->s2_w0 += b->s2_w0;
    c = a->s2_w0 < b->s2_w0;
    t = a->s2_w1 + b->s2_w1;
    a->s2_w2 += b->s2_w2 + (t < b->s2_w1);
    a->s2_w1 = t + c;
    a->s2_w2 += a->s2_w1 < c;
}

/* the 128-bit product a * b */
static inline void fn_mul_u64(uint64_t a, uint64_t b, uint64_t *lo, uint64_t *hi) {
#if defined(__SIZEOF_INT128__)
    unsigned __int128 p = (unsigned __int128)a * b;
    *lo = (uint64_t)p;
    *hi = (uint64_t)(p >> 64);
#else
    uint64_t a0 = a & 0xffffffffu, a1 = a >> 32, b0 = b & 0xffffffffu, b1 = b >> 32;
    uint64_t p00 = a0 * b0, p01 = a0 * b1, p10 = a1 * b0, p11 = a1 * b1;
    uint64_t mid = (p00 >> 32) + (p01 & 0xffffffffu) + (p10 & 0xffffffffu);
    *lo = (mid << 32) | (p00 & 0xffffffffu);
    *hi = p11 + (p01 >> 32) + (p10 >> 32) + (mid >> 32);
#endif
}

/* 8- and 16-bit data: lane sums over a block, in lanes of L1 (x) and L2 (x*x): 32-bit
 * lanes for 8-bit data (a square is below 2**16, a lane sums at most 2**16 of them: the
 * caller's blocks hold at most FN_ISUM_BLOCK values and rows), 64-bit for 16-bit data */
#define FN_ISUM_BLOCK 65536
/* a1 += v and a2 += v * v for one value (v in the sum type L1, its square in L2) */
#define FN_ISUM_ACC(L1, L2, acc1, acc2, value)                                               \
    do { L1 v_ = (L1)(value); (acc1) += v_; (acc2) += (L2)(v_ * v_); } while (0)

#define FN_DEFINE_ISUMS_NARROW(SUF, T, L1, L2)                                              \
static inline void fn_isums_##SUF(const T *x, ptrdiff_t rows, ptrdiff_t ld,                  \
                                  ptrdiff_t width, fn_isum *out) {                           \
    L1 a1[FN_ISUM_MAX_WIDTH > FN_ISUM_LANES ? FN_ISUM_MAX_WIDTH : FN_ISUM_LANES];            \
    L2 a2[FN_ISUM_MAX_WIDTH > FN_ISUM_LANES ? FN_ISUM_MAX_WIDTH : FN_ISUM_LANES];            \
    ptrdiff_t r, j, lanes;                                                                   \
    if (width < FN_ISUM_LANES && ld == width) {        /* one stream, lane i: column i % width */ \
        ptrdiff_t n = rows * width, i = 0, k;                                                \
        lanes = (FN_ISUM_LANES / width) * width;                                             \
        for (j = 0; j < lanes; j++) { a1[j] = 0; a2[j] = 0; }                                \
        for (; i + lanes <= n; i += lanes) {                                                 \
            const T *xs = x + i;                                                             \
            for (k = 0; k < lanes; k++) {                                                    \
                FN_ISUM_ACC(L1, L2, a1[k], a2[k], xs[k]);                                    \
            }                                                                                \
        }                                                                                    \
        for (k = 0; i < n; i++, k++) {                                                       \
            FN_ISUM_ACC(L1, L2, a1[k], a2[k], x[i]);                                         \
        }                                                                                    \
        for (j = 0; j < lanes; j++) {                                                        \
            fn_isum_add_s1(&out[j % width], (int64_t)a1[j]);                                 \
            fn_isum_add_s2(&out[j % width], (uint64_t)a2[j], 0);                             \
        }                                                                                    \
        return;                                                                              \
    }                                                                                        \
    for (j = 0; j < width; j++) { a1[j] = 0; a2[j] = 0; }                                    \
    for (r = 0; r < rows; r++) {                                                             \
        const T *xr = x + r * ld;                                                            \
        for (j = 0; j < width; j++) {                                                        \
            FN_ISUM_ACC(L1, L2, a1[j], a2[j], xr[j]);                                        \
        }                                                                                    \
    }                                                                                        \
    for (j = 0; j < width; j++) {                                                            \
        fn_isum_add_s1(&out[j], (int64_t)a1[j]);                                             \
        fn_isum_add_s2(&out[j], (uint64_t)a2[j], 0);                                         \
    }                                                                                        \
}

/* 32-bit data: a square fits 64 bits; s1 in an int64 per block (rows * |x| < 2**63 for
 * blocks under 2**31 rows), s2 carried into the wide sum value by value */
#define FN_DEFINE_ISUMS_32(SUF, T)                                                          \
static inline void fn_isums_##SUF(const T *x, ptrdiff_t rows, ptrdiff_t ld,                  \
                                  ptrdiff_t width, fn_isum *out) {                           \
    ptrdiff_t r, j;                                                                          \
    for (j = 0; j < width; j++) {                                                            \
        int64_t s1 = 0;                                                                      \
        uint64_t lo = 0, hi = 0;                                                             \
        for (r = 0; r < rows; r++) {                                                         \
            int64_t v = (int64_t)x[r * ld + j];                                              \
            uint64_t sq = (uint64_t)(v < 0 ? -v : v);                                        \
            sq *= sq;                                                                        \
            s1 += v;                                                                         \
            lo += sq;                                                                        \
            hi += lo < sq;                                                                   \
        }                                                                                    \
        fn_isum_add_s1(&out[j], s1);                                                         \
        fn_isum_add_s2(&out[j], lo, hi);                                                     \
    }                                                                                        \
}

FN_DEFINE_ISUMS_NARROW(u8, uint8_t, int32_t, uint32_t)
FN_DEFINE_ISUMS_NARROW(i8, int8_t, int32_t, uint32_t)
FN_DEFINE_ISUMS_NARROW(u16, uint16_t, int64_t, uint64_t)
FN_DEFINE_ISUMS_NARROW(i16, int16_t, int64_t, uint64_t)
FN_DEFINE_ISUMS_32(u32, uint32_t)
FN_DEFINE_ISUMS_32(i32, int32_t)

/* 64-bit data: 128-bit squares into the 192-bit sum, s1 into the 128-bit one */
static inline void fn_isums_i64(const int64_t *x, ptrdiff_t rows, ptrdiff_t ld,
                                ptrdiff_t width, fn_isum *out) {
    ptrdiff_t r, j;
    for (j = 0; j < width; j++) {
        fn_isum acc;
        fn_isum_zero(&acc);
        for (r = 0; r < rows; r++) {
            int64_t v = x[r * ld + j];
            uint64_t m = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v, lo, hi;
            fn_mul_u64(m, m, &lo, &hi);
            fn_isum_add_s1(&acc, v);
            fn_isum_add_s2(&acc, lo, hi);
        }
        fn_isum_merge(&out[j], &acc);
    }
}

#endif
