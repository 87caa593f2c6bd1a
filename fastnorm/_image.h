/* Row loops of normalize_image (fastnorm/_kernels/images.pxi): pixels of an image row (or
 * of consecutive rows), read from HWC memory (or any strides), converted, y = fma(x - h[c],
 * a[c], c[c]) with per-channel constants, written to C planes (NCHW) or interleaved (NHWC).
 *
 * Each loop is instantiated per (input type T, compute type K, output type O) by
 * FN_IMAGE_ROWS; K and O are float or double (float16 output is computed in float32 into a
 * row buffer and converted by fn_f32_to_f16_n). Written as plain C loops with `restrict` so
 * that GCC/Clang vectorize them at the target's width: the three-channel loops as
 * interleaved groups (loads of 3 consecutive values deinterleaved by permutes), the NHWC
 * loop as a contiguous stream whose constants repeat with period C (hrep, arep, crep hold
 * `period` = a multiple of C values). Elementwise: every split of the rows between
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

/* y = fma(x - h, a, c): h the centre (the mean, in raw pixel units) rounded to K, its low
 * part folded into c (mean_offset in _kernels/apply.pxi), so that no digits cancel when
 * the centre is large against the spread; fused where the target has FMA (_simd.h) */
#define FN_AFFINE_float(x, h, a, c) fn_fmaf((x) - (h), (a), (c))
#define FN_AFFINE_double(x, h, a, c) fn_fma((x) - (h), (a), (c))

/* the locals of the 3-channel loops: source index of output channels 0 and 2 (swap: R and
 * B exchanged), the constants of the three channels, the pixel index */
#define FN_IMG_C3_CONSTANTS(K)                                                                \
    const ptrdiff_t i0 = swap ? 2 : 0, i2 = swap ? 0 : 2;                                     \
    const K h0 = h[0], h1 = h[1], h2 = h[2], a0 = a[0], a1 = a[1], a2 = a[2];                 \
    const K c0 = c[0], c1 = c[1], c2 = c[2];                                                  \
    ptrdiff_t w;
/* the three clipped-path values of pixel w, before clamping */
#define FN_IMG_C3_VALUES(K)                                                                   \
    K v0 = FN_AFFINE_##K((K)x[3 * w + i0], h0, a0, c0);                                       \
    K v1 = FN_AFFINE_##K((K)x[3 * w + 1], h1, a1, c1);                                        \
    K v2 = FN_AFFINE_##K((K)x[3 * w + i2], h2, a2, c2);

/* the loops of one (T, K, O); constants h[C], a[C], c[C] in output channel order */
#define FN_IMAGE_ROWS(SUF, T, K, O)                                                           \
/* contiguous 3-channel pixels x[3w + k] to planes y0, y1, y2 (output order); swap: output   \
 * channel 0 reads x[3w + 2] and channel 2 x[3w] */                                          \
static inline void fn_img_c3_planes_##SUF(const T *FN_RESTRICT x, O *FN_RESTRICT y0,          \
        O *FN_RESTRICT y1, O *FN_RESTRICT y2, ptrdiff_t n, int swap, const K *h,              \
        const K *a, const K *c, int clip, K lo, K hi) {                                       \
    FN_IMG_C3_CONSTANTS(K)                                                                    \
    if (!clip && !swap) {                                                                     \
        for (w = 0; w < n; w++) {                                                             \
            y0[w] = (O)FN_AFFINE_##K((K)x[3 * w], h0, a0, c0);                                \
            y1[w] = (O)FN_AFFINE_##K((K)x[3 * w + 1], h1, a1, c1);                            \
            y2[w] = (O)FN_AFFINE_##K((K)x[3 * w + 2], h2, a2, c2);                            \
        }                                                                                     \
    } else if (!clip) {                                                                       \
        for (w = 0; w < n; w++) {                                                             \
            y0[w] = (O)FN_AFFINE_##K((K)x[3 * w + 2], h0, a0, c0);                            \
            y1[w] = (O)FN_AFFINE_##K((K)x[3 * w + 1], h1, a1, c1);                            \
            y2[w] = (O)FN_AFFINE_##K((K)x[3 * w], h2, a2, c2);                                \
        }                                                                                     \
    } else {                                                                                  \
        for (w = 0; w < n; w++) {                                                             \
            FN_IMG_C3_VALUES(K)                                                               \
            y0[w] = (O)FN_CLAMP(v0, lo, hi);                                                  \
            y1[w] = (O)FN_CLAMP(v1, lo, hi);                                                  \
            y2[w] = (O)FN_CLAMP(v2, lo, hi);                                                  \
        }                                                                                     \
    }                                                                                         \
}                                                                                             \
/* contiguous 3-channel pixels to interleaved 3-channel pixels (swap as above) */            \
static inline void fn_img_c3_pixels_##SUF(const T *FN_RESTRICT x, O *FN_RESTRICT y,          \
        ptrdiff_t n, int swap, const K *h, const K *a, const K *c, int clip, K lo, K hi) {    \
    FN_IMG_C3_CONSTANTS(K)                                                                    \
    if (!swap && !clip) {                                                                     \
        for (w = 0; w < n; w++) {                                                             \
            y[3 * w] = (O)FN_AFFINE_##K((K)x[3 * w], h0, a0, c0);                             \
            y[3 * w + 1] = (O)FN_AFFINE_##K((K)x[3 * w + 1], h1, a1, c1);                     \
            y[3 * w + 2] = (O)FN_AFFINE_##K((K)x[3 * w + 2], h2, a2, c2);                     \
        }                                                                                     \
    } else if (!clip) {                                                                       \
        for (w = 0; w < n; w++) {                                                             \
            y[3 * w] = (O)FN_AFFINE_##K((K)x[3 * w + 2], h0, a0, c0);                         \
            y[3 * w + 1] = (O)FN_AFFINE_##K((K)x[3 * w + 1], h1, a1, c1);                     \
            y[3 * w + 2] = (O)FN_AFFINE_##K((K)x[3 * w], h2, a2, c2);                         \
        }                                                                                     \
    } else {                                                                                  \
        for (w = 0; w < n; w++) {                                                             \
            FN_IMG_C3_VALUES(K)                                                               \
            y[3 * w] = (O)FN_CLAMP(v0, lo, hi);                                               \
            y[3 * w + 1] = (O)FN_CLAMP(v1, lo, hi);                                           \
            y[3 * w + 2] = (O)FN_CLAMP(v2, lo, hi);                                           \
        }                                                                                     \
    }                                                                                         \
}                                                                                             \
/* a contiguous stream of n values whose constants repeat with `period` (NHWC rows of       \
 * contiguous pixels: period a multiple of C) */                                              \
static inline void fn_img_stream_##SUF(const T *FN_RESTRICT x, O *FN_RESTRICT y,             \
        ptrdiff_t n, const K *FN_RESTRICT hrep, const K *FN_RESTRICT arep,                    \
        const K *FN_RESTRICT crep, ptrdiff_t period, int clip, K lo, K hi) {                  \
    ptrdiff_t j = 0, i;                                                                       \
    for (; j < n; j += period) {                                                              \
        const T *FN_RESTRICT xs = x + j;                                                      \
        O *FN_RESTRICT ys = y + j;                                                            \
        ptrdiff_t m = n - j < period ? n - j : period;                                        \
        if (!clip) {                                                                          \
            for (i = 0; i < m; i++)                                                           \
                ys[i] = (O)FN_AFFINE_##K((K)xs[i], hrep[i], arep[i], crep[i]);                \
        } else {                                                                              \
            for (i = 0; i < m; i++) {                                                         \
                K v = FN_AFFINE_##K((K)xs[i], hrep[i], arep[i], crep[i]);                     \
                ys[i] = (O)FN_CLAMP(v, lo, hi);                                               \
            }                                                                                 \
        }                                                                                     \
    }                                                                                         \
}                                                                                             \
/* one channel: y[w * ys] = fma(x[w * xs] - h, a, c) (planar input rows: xs = 1, ys = 1) */  \
static inline void fn_img_channel_##SUF(const T *FN_RESTRICT x, ptrdiff_t xs,                \
        O *FN_RESTRICT y, ptrdiff_t ys, ptrdiff_t n, K h, K a, K c, int clip, K lo, K hi) {   \
    ptrdiff_t w;                                                                              \
    if (xs == 1 && ys == 1 && !clip) {                                                        \
        for (w = 0; w < n; w++) y[w] = (O)FN_AFFINE_##K((K)x[w], h, a, c);                    \
    } else if (ys == 1 && !clip) {                                                            \
        for (w = 0; w < n; w++) y[w] = (O)FN_AFFINE_##K((K)x[w * xs], h, a, c);               \
    } else if (!clip) {                                                                       \
        for (w = 0; w < n; w++) y[w * ys] = (O)FN_AFFINE_##K((K)x[w * xs], h, a, c);          \
    } else {                                                                                  \
        for (w = 0; w < n; w++) {                                                             \
            K v = FN_AFFINE_##K((K)x[w * xs], h, a, c);                                       \
            y[w * ys] = (O)FN_CLAMP(v, lo, hi);                                               \
        }                                                                                     \
    }                                                                                         \
}                                                                                             \
/* n pixels: pixel w, output channel k reads x[w * sw + off[k]] and writes                  \
 * y[w * dw + k * dc]; constants hac = h[0:C], a[C:2C], c[2C:3C] in output order, and      \
 * hrep/arep/crep (NHWC streams) `period` long, one after the other in rep */                \
static inline void fn_img_row_##SUF(const T *x, ptrdiff_t sw, const ptrdiff_t *off,          \
        O *y, ptrdiff_t dw, ptrdiff_t dc, ptrdiff_t n, ptrdiff_t C, const K *hac,             \
        const K *rep, ptrdiff_t period, int clip, K lo, K hi) {                               \
    ptrdiff_t k;                                                                              \
    const K *h = hac, *a = hac + C, *c = hac + 2 * C;                                         \
    int ident = 1, swapped = C == 3 && off[0] == 2 && off[1] == 1 && off[2] == 0;             \
    for (k = 0; k < C; k++) ident &= off[k] == k;                                             \
    if (sw == C && C == 3 && (ident || swapped)) {                                            \
        if (dw == 1) {                                                                        \
            fn_img_c3_planes_##SUF(x, y, y + dc, y + 2 * dc, n, swapped, h, a, c, clip, lo,   \
                                   hi);                                                       \
            return;                                                                           \
        }                                                                                     \
        if (dc == 1 && dw == 3) {                                                             \
            fn_img_c3_pixels_##SUF(x, y, n, swapped, h, a, c, clip, lo, hi);                  \
            return;                                                                           \
        }                                                                                     \
    }                                                                                         \
    if (ident && sw == C && dc == 1 && dw == C) {                                             \
        fn_img_stream_##SUF(x, y, n * C, rep, rep + period, rep + 2 * period, period, clip,   \
                            lo, hi);                                                          \
        return;                                                                               \
    }                                                                                         \
    for (k = 0; k < C; k++)                                                                   \
        fn_img_channel_##SUF(x + off[k], sw, y + k * dc, dw, n, h[k], a[k], c[k], clip, lo,   \
                             hi);                                                             \
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
