/* Row loops of normalize_image (fastnorm/_kernels/images.pxi): one image row of W pixels,
 * read from HWC memory (or any strides), converted, y = fma(x, a[c], b[c]) with per-channel
 * constants, written to C planes (NCHW) or interleaved (NHWC).
 *
 * Each loop is instantiated per (input type T, compute type K, output type O) by
 * FN_IMAGE_ROWS; K and O are float or double (float16 output is computed in float32 into a
 * row buffer and converted by fn_f32_to_f16_n). Written as plain C loops with `restrict` so
 * that GCC/Clang vectorize them at the target's width: the three-channel loops as
 * interleaved groups (loads of 3 consecutive values deinterleaved by permutes), the NHWC
 * loop as a contiguous stream whose constants repeat with period C (the arrays arep, brep
 * hold `period` = a multiple of C values). Elementwise: every split of the rows between
 * threads gives the same bits.
 *
 * clip: y clamped to [lo, hi] (albumentations' per-image modes); a NaN stays NaN.
 */
#ifndef FASTNORM_IMAGE_H
#define FASTNORM_IMAGE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include "_simd.h"

#if defined(__F16C__) || defined(__AVX512F__)
#include <immintrin.h>
#endif

#if defined(__GNUC__) || defined(__clang__)
#define FN_RESTRICT __restrict__
#elif defined(_MSC_VER)
#define FN_RESTRICT __restrict
#else
#define FN_RESTRICT
#endif

/* ---- float32 -> float16 (IEEE binary16 bits), round to nearest even ---------------- */

static inline uint16_t fn_f32_to_f16(float f) {
    uint32_t x, ax, sign, h, rem;
    memcpy(&x, &f, sizeof x);
    sign = (x >> 16) & 0x8000u;
    ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u)                       /* inf, NaN (kept quiet) */
        return (uint16_t)(sign | 0x7c00u | (ax > 0x7f800000u ? 0x200u | ((ax >> 13) & 0x3ffu) : 0u));
    if (ax >= 0x477ff000u)                       /* >= 65520 rounds past 65504: inf */
        return (uint16_t)(sign | 0x7c00u);
    if (ax < 0x38800000u) {                      /* below 2**-14: a subnormal half (or 0) */
        float t, af;
        memcpy(&af, &ax, sizeof af);
        t = af * 16777216.0f;                    /* in units of 2**-24, exact */
        t = (t + 8388608.0f) - 8388608.0f;       /* round to an integer, ties to even */
        return (uint16_t)(sign | (uint32_t)t);   /* 1024 is the smallest normal, as bits */
    }
    h = (ax - 0x38000000u) >> 13;                /* exponent rebiased, mantissa truncated */
    rem = ax & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u)))
        h += 1;                                  /* a carry into the exponent is correct */
    return (uint16_t)(sign | h);
}

/* y[i * stride] = half(x[i]) for i < n */
static inline void fn_f32_to_f16_n(const float *FN_RESTRICT x, uint16_t *FN_RESTRICT y,
                                   ptrdiff_t n, ptrdiff_t stride) {
    ptrdiff_t i = 0;
    if (stride == 1) {
#if defined(__AVX512F__)
        for (; i + 16 <= n; i += 16)
            _mm256_storeu_si256((__m256i *)(y + i), _mm512_cvtps_ph(
                _mm512_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
#endif
#if defined(__F16C__)
        for (; i + 8 <= n; i += 8)
            _mm_storeu_si128((__m128i *)(y + i), _mm256_cvtps_ph(
                _mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
#endif
    }
    for (; i < n; i++)
        y[i * stride] = fn_f32_to_f16(x[i]);
}

/* ---- the affine map of one value ------------------------------------------------------ */

#define FN_CLAMP(v, lo, hi) ((v) < (lo) ? (lo) : ((v) > (hi) ? (hi) : (v)))

/* fused where the target has FMA (_simd.h); K is float or double */
#define FN_AFFINE_float(x, a, b) fn_fmaf((x), (a), (b))
#define FN_AFFINE_double(x, a, b) fn_fma((x), (a), (b))

/* the loops of one (T, K, O) */
#define FN_IMAGE_ROWS(SUF, T, K, O)                                                           \
/* contiguous 3-channel pixels x[3w + k] to planes y0, y1, y2 (input channel order) */        \
static inline void fn_img_c3_planes_##SUF(const T *FN_RESTRICT x, O *FN_RESTRICT y0,          \
        O *FN_RESTRICT y1, O *FN_RESTRICT y2, ptrdiff_t n, K a0, K a1, K a2,                  \
        K b0, K b1, K b2, int clip, K lo, K hi) {                                             \
    ptrdiff_t w;                                                                              \
    if (!clip) {                                                                              \
        for (w = 0; w < n; w++) {                                                             \
            y0[w] = (O)FN_AFFINE_##K((K)x[3 * w], a0, b0);                                    \
            y1[w] = (O)FN_AFFINE_##K((K)x[3 * w + 1], a1, b1);                                \
            y2[w] = (O)FN_AFFINE_##K((K)x[3 * w + 2], a2, b2);                                \
        }                                                                                     \
    } else {                                                                                  \
        for (w = 0; w < n; w++) {                                                             \
            K v0 = FN_AFFINE_##K((K)x[3 * w], a0, b0);                                        \
            K v1 = FN_AFFINE_##K((K)x[3 * w + 1], a1, b1);                                    \
            K v2 = FN_AFFINE_##K((K)x[3 * w + 2], a2, b2);                                    \
            y0[w] = (O)FN_CLAMP(v0, lo, hi);                                                  \
            y1[w] = (O)FN_CLAMP(v1, lo, hi);                                                  \
            y2[w] = (O)FN_CLAMP(v2, lo, hi);                                                  \
        }                                                                                     \
    }                                                                                         \
}                                                                                             \
/* contiguous 3-channel pixels to interleaved 3-channel pixels; swap: y[3w + c] reads        \
 * x[3w + 2 - c] (constants in output order) */                                              \
static inline void fn_img_c3_pixels_##SUF(const T *FN_RESTRICT x, O *FN_RESTRICT y,          \
        ptrdiff_t n, int swap, const K *abc, int clip, K lo, K hi) {                          \
    const K a0 = abc[0], a1 = abc[1], a2 = abc[2], b0 = abc[3], b1 = abc[4], b2 = abc[5];     \
    ptrdiff_t w;                                                                              \
    if (!swap && !clip) {                                                                     \
        for (w = 0; w < n; w++) {                                                             \
            y[3 * w] = (O)FN_AFFINE_##K((K)x[3 * w], a0, b0);                                 \
            y[3 * w + 1] = (O)FN_AFFINE_##K((K)x[3 * w + 1], a1, b1);                         \
            y[3 * w + 2] = (O)FN_AFFINE_##K((K)x[3 * w + 2], a2, b2);                         \
        }                                                                                     \
    } else if (!clip) {                                                                       \
        for (w = 0; w < n; w++) {                                                             \
            y[3 * w] = (O)FN_AFFINE_##K((K)x[3 * w + 2], a0, b0);                             \
            y[3 * w + 1] = (O)FN_AFFINE_##K((K)x[3 * w + 1], a1, b1);                         \
            y[3 * w + 2] = (O)FN_AFFINE_##K((K)x[3 * w], a2, b2);                             \
        }                                                                                     \
    } else {                                                                                  \
        const ptrdiff_t i0 = swap ? 2 : 0, i2 = swap ? 0 : 2;                                 \
        for (w = 0; w < n; w++) {                                                             \
            K v0 = FN_AFFINE_##K((K)x[3 * w + i0], a0, b0);                                   \
            K v1 = FN_AFFINE_##K((K)x[3 * w + 1], a1, b1);                                    \
            K v2 = FN_AFFINE_##K((K)x[3 * w + i2], a2, b2);                                   \
            y[3 * w] = (O)FN_CLAMP(v0, lo, hi);                                               \
            y[3 * w + 1] = (O)FN_CLAMP(v1, lo, hi);                                           \
            y[3 * w + 2] = (O)FN_CLAMP(v2, lo, hi);                                           \
        }                                                                                     \
    }                                                                                         \
}                                                                                             \
/* a contiguous stream of n values whose constants repeat with `period` (NHWC rows of       \
 * contiguous pixels: period a multiple of C) */                                              \
static inline void fn_img_stream_##SUF(const T *FN_RESTRICT x, O *FN_RESTRICT y,             \
        ptrdiff_t n, const K *FN_RESTRICT arep, const K *FN_RESTRICT brep, ptrdiff_t period,  \
        int clip, K lo, K hi) {                                                               \
    ptrdiff_t j = 0, i;                                                                       \
    for (; j < n; j += period) {                                                              \
        const T *FN_RESTRICT xs = x + j;                                                      \
        O *FN_RESTRICT ys = y + j;                                                            \
        ptrdiff_t m = n - j < period ? n - j : period;                                        \
        if (!clip) {                                                                          \
            for (i = 0; i < m; i++)                                                           \
                ys[i] = (O)FN_AFFINE_##K((K)xs[i], arep[i], brep[i]);                         \
        } else {                                                                              \
            for (i = 0; i < m; i++) {                                                         \
                K v = FN_AFFINE_##K((K)xs[i], arep[i], brep[i]);                              \
                ys[i] = (O)FN_CLAMP(v, lo, hi);                                               \
            }                                                                                 \
        }                                                                                     \
    }                                                                                         \
}                                                                                             \
/* one channel: y[w * ys] = fma(x[w * xs], a, b) (planar input rows: xs = 1, ys = 1) */      \
static inline void fn_img_channel_##SUF(const T *FN_RESTRICT x, ptrdiff_t xs,                \
        O *FN_RESTRICT y, ptrdiff_t ys, ptrdiff_t n, K a, K b, int clip, K lo, K hi) {        \
    ptrdiff_t w;                                                                              \
    if (xs == 1 && ys == 1 && !clip) {                                                        \
        for (w = 0; w < n; w++) y[w] = (O)FN_AFFINE_##K((K)x[w], a, b);                       \
    } else if (ys == 1 && !clip) {                                                            \
        for (w = 0; w < n; w++) y[w] = (O)FN_AFFINE_##K((K)x[w * xs], a, b);                  \
    } else if (!clip) {                                                                       \
        for (w = 0; w < n; w++) y[w * ys] = (O)FN_AFFINE_##K((K)x[w * xs], a, b);             \
    } else {                                                                                  \
        for (w = 0; w < n; w++) {                                                             \
            K v = FN_AFFINE_##K((K)x[w * xs], a, b);                                          \
            y[w * ys] = (O)FN_CLAMP(v, lo, hi);                                               \
        }                                                                                     \
    }                                                                                         \
}                                                                                             \
/* one row of n pixels: pixel w, output channel c reads x[w * sw + off[c]] and writes       \
 * y[w * dw + c * dc]; constants a = abc[0:C], b = abc[C:2C] in output order, arep/brep    \
 * (NHWC streams) `period` long */                                                           \
static inline void fn_img_row_##SUF(const T *x, ptrdiff_t sw, const ptrdiff_t *off,          \
        O *y, ptrdiff_t dw, ptrdiff_t dc, ptrdiff_t n, ptrdiff_t C, const K *abc,             \
        const K *arep, const K *brep, ptrdiff_t period, int clip, K lo, K hi) {               \
    ptrdiff_t c;                                                                              \
    const K *a = abc, *b = abc + C;                                                           \
    int ident = 1, swapped = C == 3 && off[0] == 2 && off[1] == 1 && off[2] == 0;             \
    for (c = 0; c < C; c++) ident &= off[c] == c;                                             \
    if (sw == C && C == 3 && (ident || swapped)) {                                            \
        if (dw == 1) {                                                                        \
            if (ident)                                                                        \
                fn_img_c3_planes_##SUF(x, y, y + dc, y + 2 * dc, n, a[0], a[1], a[2],         \
                                       b[0], b[1], b[2], clip, lo, hi);                       \
            else                                                                              \
                fn_img_c3_planes_##SUF(x, y + 2 * dc, y + dc, y, n, a[2], a[1], a[0],         \
                                       b[2], b[1], b[0], clip, lo, hi);                       \
            return;                                                                           \
        }                                                                                     \
        if (dc == 1 && dw == 3) {                                                             \
            fn_img_c3_pixels_##SUF(x, y, n, swapped, abc, clip, lo, hi);                      \
            return;                                                                           \
        }                                                                                     \
    }                                                                                         \
    if (ident && sw == C && dc == 1 && dw == C) {                                             \
        fn_img_stream_##SUF(x, y, n * C, arep, brep, period, clip, lo, hi);                   \
        return;                                                                               \
    }                                                                                         \
    for (c = 0; c < C; c++)                                                                   \
        fn_img_channel_##SUF(x + off[c], sw, y + c * dc, dw, n, a[c], b[c], clip, lo, hi);    \
}

FN_IMAGE_ROWS(u8_f32, uint8_t, float, float)
FN_IMAGE_ROWS(u16_f32, uint16_t, float, float)
FN_IMAGE_ROWS(f32_f32, float, float, float)
FN_IMAGE_ROWS(f64_f32, double, double, float)
FN_IMAGE_ROWS(u8_f64, uint8_t, double, double)
FN_IMAGE_ROWS(u16_f64, uint16_t, double, double)
FN_IMAGE_ROWS(f32_f64, float, double, double)
FN_IMAGE_ROWS(f64_f64, double, double, double)

/* the roof of an image benchmark: the same bytes in one contiguous pass, y = x * a + b
 * (uint8 in, float32 out) */
static inline void fn_img_roof_u8_f32(const uint8_t *FN_RESTRICT x, float *FN_RESTRICT y,
                                      ptrdiff_t n, float a, float b) {
    ptrdiff_t i;
    for (i = 0; i < n; i++) y[i] = fn_fmaf((float)x[i], a, b);
}

#endif
