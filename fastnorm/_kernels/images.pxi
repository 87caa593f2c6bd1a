# ---------------------------------------------------------------------------------------
# images: normalize_image in one pass (fastnorm/_image.py is the plan, _image.h the row loops)
#
# A batch of N images of H rows of W pixels of C channels, each image anywhere in memory
# with its own strides (in elements): pixel (n, h, w), output channel c is read at
# src[n] + h * sh[n] + w * sw[n] + off[n, c] (off: where each output channel is in the
# pixel, so swap_rb and planar views are only offsets) and written at
# dst + n * dn + c * dc + h * dh + w * dw (NCHW and NHWC are two sets of strides).
# y = (x - M[c]) * a[c] + b[c] with M, a, b computed in float64 by the plan, applied as
# fma(x - h, a, c) in the compute type (float32, or float64 for float64 input or output)
# with h = M rounded and its low part folded into c (mean_offset, as the apply engine does):
# no digits cancel when M is large against the spread (a per-image mean of 60000 in a uint16
# image); float16 output is
# computed in float32 into a row buffer and converted (_image.h). One parameter set per
# image for the per-image modes (their statistics come from the statistics engine).
# Threads take tasks of whole rows (IMG_TASK_PIXELS pixels) dynamically: a batch splits by
# images and rows, one large image by rows; small inputs run serially (effective_threads).

from cython.parallel cimport threadid

cdef extern from "_image.h" nogil:
    void fn_f32_to_f16_n(const float* x, uint16_t* y, Py_ssize_t n, Py_ssize_t stride) noexcept
    void fn_img_roof_u8_f32(const uint8_t* x, float* y, Py_ssize_t n, float a, float b) noexcept
    void fn_img_row_u8_f32(const uint8_t* x, Py_ssize_t sw, const Py_ssize_t* off, float* y,
                          Py_ssize_t dw, Py_ssize_t dc, Py_ssize_t n, Py_ssize_t C,
                          const float* hac, const float* rep, Py_ssize_t period, int clip,
                          float lo, float hi) noexcept
    void fn_img_row_u16_f32(const uint16_t* x, Py_ssize_t sw, const Py_ssize_t* off, float* y,
                          Py_ssize_t dw, Py_ssize_t dc, Py_ssize_t n, Py_ssize_t C,
                          const float* hac, const float* rep, Py_ssize_t period, int clip,
                          float lo, float hi) noexcept
    void fn_img_row_f32_f32(const float* x, Py_ssize_t sw, const Py_ssize_t* off, float* y,
                          Py_ssize_t dw, Py_ssize_t dc, Py_ssize_t n, Py_ssize_t C,
                          const float* hac, const float* rep, Py_ssize_t period, int clip,
                          float lo, float hi) noexcept
    void fn_img_row_f64_f32(const double* x, Py_ssize_t sw, const Py_ssize_t* off, float* y,
                          Py_ssize_t dw, Py_ssize_t dc, Py_ssize_t n, Py_ssize_t C,
                          const double* hac, const double* rep, Py_ssize_t period, int clip,
                          double lo, double hi) noexcept
    void fn_img_row_u8_f64(const uint8_t* x, Py_ssize_t sw, const Py_ssize_t* off, double* y,
                          Py_ssize_t dw, Py_ssize_t dc, Py_ssize_t n, Py_ssize_t C,
                          const double* hac, const double* rep, Py_ssize_t period, int clip,
                          double lo, double hi) noexcept
    void fn_img_row_u16_f64(const uint16_t* x, Py_ssize_t sw, const Py_ssize_t* off, double* y,
                          Py_ssize_t dw, Py_ssize_t dc, Py_ssize_t n, Py_ssize_t C,
                          const double* hac, const double* rep, Py_ssize_t period, int clip,
                          double lo, double hi) noexcept
    void fn_img_row_f32_f64(const float* x, Py_ssize_t sw, const Py_ssize_t* off, double* y,
                          Py_ssize_t dw, Py_ssize_t dc, Py_ssize_t n, Py_ssize_t C,
                          const double* hac, const double* rep, Py_ssize_t period, int clip,
                          double lo, double hi) noexcept
    void fn_img_row_f64_f64(const double* x, Py_ssize_t sw, const Py_ssize_t* off, double* y,
                          Py_ssize_t dw, Py_ssize_t dc, Py_ssize_t n, Py_ssize_t C,
                          const double* hac, const double* rep, Py_ssize_t period, int clip,
                          double lo, double hi) noexcept

cdef enum:
    IMG_U8 = 0              # input codes (the plan's IMAGE_INPUT_CODES)
    IMG_U16 = 1
    IMG_F32 = 2
    IMG_F64 = 3
    OUT_F32 = 0             # output codes (the plan's IMAGE_OUTPUT_CODES)
    OUT_F64 = 1
    OUT_F16 = 2
    IMG_PERIOD_MIN = 64     # constants repeated to at least this many values (NHWC streams)
    IMG_TASK_PIXELS = 8192  # pixels per parallel task (whole rows)


cdef struct ImageJob:
    const char** src        # (N,) image origins
    const Py_ssize_t* sh    # (N,) row strides, elements
    const Py_ssize_t* sw    # (N,) pixel strides
    const Py_ssize_t* off   # (N, C) channel offsets in the pixel, output order
    char* dst
    Py_ssize_t dn, dc, dh, dw
    Py_ssize_t N, H, W, C
    int in_code, out_code
    Py_ssize_t sets         # parameter sets: 1, or N (per-image modes)
    const float* hac32      # (sets, 3C): h, a, c of fma(x - h, a, c) in float32
    const double* hac64     # (sets, 3C) in float64
    const float* rep32      # (sets, 3 * period): h, a, c each repeated to `period` values
    const double* rep64
    Py_ssize_t period
    int clip
    double lo, hi
    float* tmp              # float16 output: a buffer of tmp_per_thread floats per thread
    Py_ssize_t tmp_per_thread
    Py_ssize_t rows_per_task     # rows of one image per parallel task
    Py_ssize_t tasks_per_image
    const unsigned char* rows_contiguous  # (N,) the rows of image n follow each other in
                                          # memory, in the input and in the output


cdef inline void image_row_f32(const ImageJob* j, const char* x, Py_ssize_t sw,
                               const Py_ssize_t* off, float* y, Py_ssize_t dw, Py_ssize_t dc,
                               Py_ssize_t npix, Py_ssize_t p) noexcept nogil:
    """npix pixels into float32 (strides dw, dc), parameter set p."""
    cdef Py_ssize_t C = j.C, per = j.period
    cdef const float* hac = j.hac32 + p * 3 * C
    cdef const float* rep = j.rep32 + p * 3 * per
    if j.in_code == IMG_U8:
        fn_img_row_u8_f32(<const uint8_t*>x, sw, off, y, dw, dc, npix, C, hac, rep, per,
                          j.clip, <float>j.lo, <float>j.hi)
    elif j.in_code == IMG_U16:
        fn_img_row_u16_f32(<const uint16_t*>x, sw, off, y, dw, dc, npix, C, hac, rep, per,
                           j.clip, <float>j.lo, <float>j.hi)
    elif j.in_code == IMG_F32:
        fn_img_row_f32_f32(<const float*>x, sw, off, y, dw, dc, npix, C, hac, rep, per,
                           j.clip, <float>j.lo, <float>j.hi)
    else:       # float64 input computes in float64, rounded once to float32
        fn_img_row_f64_f32(<const double*>x, sw, off, y, dw, dc, npix, C,
                           j.hac64 + p * 3 * C, j.rep64 + p * 3 * per, per, j.clip, j.lo,
                           j.hi)


cdef inline void image_row_f64(const ImageJob* j, const char* x, Py_ssize_t sw,
                               const Py_ssize_t* off, double* y, Py_ssize_t npix,
                               Py_ssize_t p) noexcept nogil:
    """npix pixels into float64 (the job's strides), parameter set p."""
    cdef Py_ssize_t C = j.C, per = j.period
    cdef const double* hac = j.hac64 + p * 3 * C
    cdef const double* rep = j.rep64 + p * 3 * per
    if j.in_code == IMG_U8:
        fn_img_row_u8_f64(<const uint8_t*>x, sw, off, y, j.dw, j.dc, npix, C, hac, rep, per,
                          j.clip, j.lo, j.hi)
    elif j.in_code == IMG_U16:
        fn_img_row_u16_f64(<const uint16_t*>x, sw, off, y, j.dw, j.dc, npix, C, hac, rep,
                           per, j.clip, j.lo, j.hi)
    elif j.in_code == IMG_F32:
        fn_img_row_f32_f64(<const float*>x, sw, off, y, j.dw, j.dc, npix, C, hac, rep, per,
                           j.clip, j.lo, j.hi)
    else:
        fn_img_row_f64_f64(<const double*>x, sw, off, y, j.dw, j.dc, npix, C, hac, rep, per,
                           j.clip, j.lo, j.hi)


cdef inline Py_ssize_t image_itemsize(int code) noexcept nogil:
    if code == IMG_U8:
        return 1
    if code == IMG_U16:
        return 2
    if code == IMG_F32:
        return 4
    return 8


cdef inline Py_ssize_t image_aligned_head(const void* y, Py_ssize_t pixel_bytes,
                                          Py_ssize_t npix) noexcept nogil:
    """Pixels before the output of a span reaches a 64-byte boundary (0 when no pixel count
    under 16 gets it there, or the span is short). NumPy's large buffers start 16 bytes past
    a cache line; unpeeled, every 512-bit store of the planes would split two lines
    (measured: 10-15% of a batch). Elementwise: the same bits whatever the split."""
    cdef size_t addr = <size_t>y
    cdef Py_ssize_t k
    if npix < 64 or pixel_bytes <= 0:
        return 0
    for k in range(16):
        if ((addr + <size_t>(k * pixel_bytes)) & 63) == 0:
            return k
    return 0


cdef void image_span(const ImageJob* j, Py_ssize_t n, Py_ssize_t h, Py_ssize_t npix,
                     int thread) noexcept nogil:
    """npix pixels of image n from the start of row h (a row, or whole rows that follow
    each other in memory in the input and in the output: see ImageJob.rows_per_task)."""
    cdef Py_ssize_t p = n if j.sets > 1 else 0
    cdef Py_ssize_t isz = image_itemsize(j.in_code), c
    cdef const char* x = j.src[n] + h * j.sh[n] * isz
    cdef const Py_ssize_t* off = j.off + n * j.C
    cdef Py_ssize_t y_at = n * j.dn + h * j.dh      # elements of the output type
    cdef Py_ssize_t head
    cdef float* tmp
    cdef uint16_t* yh
    if j.out_code == OUT_F32:
        head = image_aligned_head((<float*>j.dst) + y_at, j.dw * 4, npix)
        if head:
            image_row_f32(j, x, j.sw[n], off, (<float*>j.dst) + y_at, j.dw, j.dc, head, p)
        image_row_f32(j, x + head * j.sw[n] * isz, j.sw[n], off,
                      (<float*>j.dst) + y_at + head * j.dw, j.dw, j.dc, npix - head, p)
    elif j.out_code == OUT_F64:
        head = image_aligned_head((<double*>j.dst) + y_at, j.dw * 8, npix)
        if head:
            image_row_f64(j, x, j.sw[n], off, (<double*>j.dst) + y_at, head, p)
        image_row_f64(j, x + head * j.sw[n] * isz, j.sw[n], off,
                      (<double*>j.dst) + y_at + head * j.dw, npix - head, p)
    else:
        tmp = j.tmp + thread * j.tmp_per_thread
        yh = (<uint16_t*>j.dst) + y_at
        if j.dc == 1 and j.dw == j.C:       # contiguous NHWC pixels: one stream
            image_row_f32(j, x, j.sw[n], off, tmp, j.C, 1, npix, p)
            fn_f32_to_f16_n(tmp, yh, npix * j.C, 1)
        else:                               # planes, stored with the output's strides
            image_row_f32(j, x, j.sw[n], off, tmp, 1, npix, npix, p)
            for c in range(j.C):
                fn_f32_to_f16_n(tmp + c * npix, yh + c * j.dc, npix, j.dw)


cdef void image_task(const ImageJob* j, Py_ssize_t t, int thread) noexcept nogil:
    """Task t: rows_per_task rows of one image (fewer at its end), in one span when the rows
    are contiguous, else row by row."""
    cdef Py_ssize_t n = t // j.tasks_per_image
    cdef Py_ssize_t h0 = (t - n * j.tasks_per_image) * j.rows_per_task
    cdef Py_ssize_t nr = min(j.rows_per_task, j.H - h0), r
    if j.rows_contiguous[n]:
        image_span(j, n, h0, nr * j.W, thread)
    else:
        for r in range(nr):
            image_span(j, n, h0 + r, j.W, thread)


def normalize_image_rows(const size_t[::1] src,          # IN  (N,) image origins
                         const Py_ssize_t[::1] row_stride,   # (N,) elements
                         const Py_ssize_t[::1] pixel_stride, # (N,) elements
                         const Py_ssize_t[:, ::1] channel_offset,  # (N, C), output order
                         Py_ssize_t H, Py_ssize_t W, int in_code,
                         size_t dst,                     # OUT origin of the output
                         Py_ssize_t dn, Py_ssize_t dc, Py_ssize_t dh, Py_ssize_t dw,
                         int out_code,
                         const double[:, ::1] params,    # (sets, 3C): M, a, b per channel
                         const unsigned char[::1] rows_contiguous,  # (N,) see ImageJob
                         bint clip, double lo, double hi, int num_threads):
    """y[n, c, h, w] = (x[n, h, w, c'] - M[c]) * a[c] + b[c] for the whole batch (see the
    section comment). The plan has checked every address and extent against the arrays it holds."""
    cdef ImageJob j
    cdef Py_ssize_t N = src.shape[0], C = channel_offset.shape[1], sets = params.shape[0]
    cdef Py_ssize_t per, p, k, t, tasks, total
    cdef int nt
    if (row_stride.shape[0] != N or pixel_stride.shape[0] != N or rows_contiguous.shape[0] != N
            or channel_offset.shape[0] != N or params.shape[1] != 3 * C
            or not (sets == 1 or sets == N) or C < 1):
        raise ValueError("normalize_image_rows: inconsistent shapes")
    if N == 0 or H == 0 or W == 0:
        return
    per = C * ceil_div(IMG_PERIOD_MIN, C)
    total = N * H * W * C
    nt = effective_threads(total, num_threads)
    # tasks of about IMG_TASK_PIXELS pixels (whole rows): enough of them to share out,
    # each long enough that the per-call work outweighs the dispatch
    j.rows_per_task = max(<Py_ssize_t>1, min(H, IMG_TASK_PIXELS // W))
    j.tasks_per_image = ceil_div(H, j.rows_per_task)
    tasks = N * j.tasks_per_image
    if nt > tasks:
        nt = <int>tasks
    j.src = <const char**>&src[0]
    j.sh = &row_stride[0]
    j.sw = &pixel_stride[0]
    j.off = &channel_offset[0, 0]
    j.dst = <char*>dst
    j.dn, j.dc, j.dh, j.dw = dn, dc, dh, dw
    j.N, j.H, j.W, j.C = N, H, W, C
    j.in_code, j.out_code = in_code, out_code
    j.sets, j.period, j.clip, j.lo, j.hi = sets, per, clip, lo, hi
    cdef float* hac32 = <float*>malloc(sets * (3 * C + 3 * per) * sizeof(float))
    cdef double* hac64 = <double*>malloc(sets * (3 * C + 3 * per) * sizeof(double))
    cdef float* tmp = NULL
    cdef float h32
    cdef double h64
    j.tmp_per_thread = j.rows_per_task * W * C
    j.rows_contiguous = &rows_contiguous[0]
    if out_code == OUT_F16:
        tmp = <float*>malloc(nt * j.tmp_per_thread * sizeof(float))
    if hac32 == NULL or hac64 == NULL or (out_code == OUT_F16 and tmp == NULL):
        free(hac32)
        free(hac64)
        free(tmp)
        raise MemoryError()
    j.hac32, j.hac64 = hac32, hac64
    j.rep32, j.rep64 = hac32 + sets * 3 * C, hac64 + sets * 3 * C
    for p in range(sets):
        for k in range(C):      # y = (x - M) * a + b as fma(x - h, a, c) (mean_offset)
            h32 = <float>params[p, k]
            h64 = params[p, k]
            hac32[p * 3 * C + k] = h32
            hac32[p * 3 * C + C + k] = <float>params[p, C + k]
            hac32[p * 3 * C + 2 * C + k] = mean_offset(params[p, k], h32, params[p, C + k],
                                                       params[p, 2 * C + k])
            hac64[p * 3 * C + k] = h64
            hac64[p * 3 * C + C + k] = params[p, C + k]
            hac64[p * 3 * C + 2 * C + k] = mean_offset(params[p, k], h64, params[p, C + k],
                                                       params[p, 2 * C + k])
        for k in range(3 * per):    # h, a, c, each repeated with period C
            hac32[sets * 3 * C + p * 3 * per + k] = hac32[p * 3 * C + (k // per) * C
                                                          + (k % per) % C]
            hac64[sets * 3 * C + p * 3 * per + k] = hac64[p * 3 * C + (k // per) * C
                                                          + (k % per) % C]
    j.tmp = tmp
    with nogil:
        if nt == 1:
            for t in range(tasks):
                image_task(&j, t, 0)
        else:
            # dynamic: a thread that the OS holds back (a shared machine) leaves its tasks
            # to the others instead of holding up the whole call; every split gives the same
            # bits (elementwise)
            for t in prange(tasks, schedule='dynamic', num_threads=nt):
                image_task(&j, t, threadid())
    free(hac32)
    free(hac64)
    free(tmp)


def image_roof(const uint8_t[::1] x, float[::1] y, double a, double b, int num_threads):
    """The roof of the image benchmarks: y = x * a + b over the same bytes in one contiguous
    pass (1 byte read, 4 written per value), the same threads."""
    cdef Py_ssize_t n = x.shape[0]
    check_extent(n, n, y.shape[0])
    cdef int nt = effective_threads(n, num_threads)
    cdef Py_ssize_t blocks = ceil_div(n, APPLY_BLOCK)
    cdef const uint8_t* xp = &x[0] if n else NULL
    cdef float* yp = &y[0] if n else NULL
    cdef Py_ssize_t t, begin
    with nogil:
        for t in prange(blocks, schedule='static', num_threads=nt, use_threads_if=nt > 1):
            begin = t * APPLY_BLOCK
            fn_img_roof_u8_f32(xp + begin, yp + begin,
                               min(<Py_ssize_t>APPLY_BLOCK, n - begin), <float>a, <float>b)
