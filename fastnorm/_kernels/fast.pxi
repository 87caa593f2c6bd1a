# ---------------------------------------------------------------------------------------
# fast paths: a short path with no NumPy temporaries and no Python-level planning, for
# calls with plain arguments (most of the time of a small call goes to that planning). They
# only *recognize* simple arguments; anything else returns None and the general path (which
# validates and raises the errors) runs instead. They run the same kernel bodies as the
# general path, so they give the same bits.

from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_C_CONTIGUOUS
from cpython.buffer cimport PyBUF_WRITABLE
import numpy as _np
from . import _threads

cdef object _NDARRAY = _np.ndarray
cdef object _F32 = _np.dtype(_np.float32)
cdef object _F64 = _np.dtype(_np.float64)
cdef double _F32_EPS = _np.finfo(_np.float32).eps
cdef double _F64_EPS = _np.finfo(_np.float64).eps


cdef inline int take_buffer(object obj, Py_buffer* view, int flags):
    """1 and a filled view; 0 for None (view.buf = NULL); -1 when obj cannot give that
    buffer (not C-contiguous, read-only for a write, ...)."""
    view.buf = NULL
    if obj is None:
        return 0
    try:
        PyObject_GetBuffer(obj, view, flags)
    except Exception:      # NumPy raises ValueError or BufferError, by case
        return -1
    return 1


cdef enum:
    OP_LAYER = 0    # LayerNorm over the last dim: a0 = row length; p0 weight, p1 bias
    OP_RMS = 1      # RMSNorm over the last dim: a0 = row length; p0 weight
    OP_CHANNELS = 2 # BatchNorm eval: a0 = channels, a1 = inner; p0..p3 = mean, var, w, b
                    # (running statistics in the data's dtype)


cdef int fast_op(const floating* x, floating* y, Py_ssize_t n,
                 const floating* p0, const floating* p1, const floating* p2,
                 const floating* p3, int op, Py_ssize_t a0, Py_ssize_t a1,
                 double eps, int nt) noexcept nogil:
    """The computation of a fast-path call: the general path's kernel bodies; -1 when out
    of memory (nothing written)."""
    cdef RowShape rs
    cdef ChannelShape cs
    cdef StatsOut none
    if op == OP_LAYER or op == OP_RMS:
        rs.groups, rs.runs, rs.run_len, rs.param_period, rs.per_element = n // a0, 1, a0, 1, True
        none.mean = NULL
        none.var = NULL
        none.precise = False
        return groups_body(x, y, rs, p0, p1 if op == OP_LAYER else NULL, eps, op == OP_RMS,
                           none, nt)
    cs.n, cs.channels, cs.inner = n // (a0 * a1), a0, a1
    return apply_channels_body(x, y, cs, 1, p0, p1, p2, p3, eps, nt)


cdef int fast_run(bint f32, const void* x, void* y, Py_ssize_t n,
                  const void* p0, const void* p1, const void* p2, const void* p3,
                  int op, Py_ssize_t a0, Py_ssize_t a1, double eps, int nt) noexcept nogil:
    """fast_op on untyped buffers of float32 (f32) or float64 data."""
    if f32:
        return fast_op[float](<const float*>x, <float*>y, n, <const float*>p0,
                              <const float*>p1, <const float*>p2, <const float*>p3, op, a0, a1,
                              eps, nt)
    return fast_op[double](<const double*>x, <double*>y, n, <const double*>p0,
                           <const double*>p1, <const double*>p2, <const double*>p3, op, a0,
                           a1, eps, nt)


cdef inline bint overlaps(const Py_buffer* a, const Py_buffer* b) noexcept:
    cdef const char* pa = <const char*>a.buf
    cdef const char* pb = <const char*>b.buf
    return pa < pb + b.len and pb < pa + a.len


cdef object fast_call(object x, object out, object p0, object p1, object p2, object p3,
                      object dtype, int op, Py_ssize_t a0, Py_ssize_t a1, double eps,
                      object num_threads):
    """Take the buffers of x, out and up to four parameters, run `op`, release them. None
    when a buffer cannot be had as needed (the general path then explains)."""
    cdef Py_buffer views[6]
    cdef int taken[6]
    cdef int i, ok = 1, rc = 0, nt = 1
    cdef bint in_place = out is x
    cdef Py_ssize_t size = x.size
    cdef bint release_gil = size >= PARALLEL_MIN_ELEMENTS
    if release_gil:    # threads resolved once, as the general path does (before any buffer)
        nt = _threads.resolve(num_threads)
    if release_gil and out is None and not x.flags.c_contiguous:
        return None        # (before allocating a large y: x's buffer could not be taken below)
    cdef object y = _np.empty(x.shape, dtype) if out is None else out
    cdef void* yb
    objs = (x, None if in_place else y, p0, p1, p2, p3)
    for i in range(6):
        taken[i] = 0
    for i in range(6):
        flags = PyBUF_C_CONTIGUOUS
        if i == 1 or (i == 0 and in_place):
            flags = flags | PyBUF_WRITABLE
        taken[i] = take_buffer(objs[i], &views[i], flags)
        if taken[i] < 0:
            ok = 0
            break
    if ok and in_place:   # a parameter inside x would change while x is written
        for i in range(2, 6):
            if taken[i] > 0 and overlaps(&views[i], &views[0]):
                ok = 0
    if ok:
        yb = views[0].buf if in_place else views[1].buf
        if release_gil:
            with nogil:
                rc = fast_run(dtype is _F32, views[0].buf, yb, size, views[2].buf,
                              views[3].buf, views[4].buf, views[5].buf, op, a0, a1, eps, nt)
        else:
            rc = fast_run(dtype is _F32, views[0].buf, yb, size, views[2].buf, views[3].buf,
                          views[4].buf, views[5].buf, op, a0, a1, eps, nt)
    for i in range(6):
        if taken[i] > 0:
            PyBuffer_Release(&views[i])
    if rc < 0:
        raise MemoryError()
    return y if ok else None


# What a fast path takes: each check names the rule of fastnorm/_validate/core.py it mirrors.
# A check may accept less than its rule (the general path then decides), never more.

cdef inline bint fast_x(object x):
    """_validate.array_input: a non-empty float32/float64 ndarray, not 0-d (contiguity is
    checked when its buffer is taken)."""
    return (type(x) is _NDARRAY and (x.dtype is _F32 or x.dtype is _F64) and x.size > 0
            and x.ndim > 0)


cdef inline bint fast_param(object p, object dtype, Py_ssize_t n):
    """_validate.param / running_stat: None, or a 1-D ndarray of `dtype` and length n
    (contiguity is checked when the buffer is taken)."""
    if p is None:
        return True
    if type(p) is not _NDARRAY or p.dtype is not dtype:
        return False
    shape = p.shape
    return len(shape) == 1 and shape[0] == n


cdef inline bint fast_eps(object eps):
    """_validate.eps: a finite float >= 0."""
    return type(eps) is float and isfinite(<double>eps) and <double>eps >= 0


cdef inline bint fast_momentum(object momentum):
    """_validate.momentum: a float in [0, 1]."""
    return type(momentum) is float and 0.0 <= <double>momentum <= 1.0


cdef inline bint fast_threads(object num_threads):
    """_validate.num_threads: None or a positive int."""
    return num_threads is None or (type(num_threads) is int and num_threads > 0)


cdef inline bint fast_out(object out, object x):
    """_validate.out: None (allocate) or x itself (in place; writability is checked when the
    buffer is taken)."""
    return out is None or out is x


cdef inline bint fast_row_shape(object normalized_shape, object x):
    """_validate.normalized_shape: an int or a 1-tuple of an int equal to x's last dim."""
    if type(normalized_shape) is tuple:
        if len(normalized_shape) != 1:
            return False
        normalized_shape = normalized_shape[0]
    return type(normalized_shape) is int and x.shape[x.ndim - 1] == normalized_shape


def rows_fast(x, normalized_shape, weight, bias, eps, bint rms, out, num_threads):
    """layer_norm / rms_norm over the last dim, or None for the general path."""
    cdef double e
    cdef Py_ssize_t row_len
    if not (fast_x(x) and fast_threads(num_threads) and fast_out(out, x)
            and fast_row_shape(normalized_shape, x)):
        return None
    dtype = x.dtype
    row_len = x.shape[x.ndim - 1]
    if eps is None and rms:          # rms_norm's default: finfo(dtype).eps
        e = _F32_EPS if dtype is _F32 else _F64_EPS
    elif fast_eps(eps):
        e = eps
    else:
        return None
    if not (fast_param(weight, dtype, row_len) and fast_param(bias, dtype, row_len)):
        return None
    return fast_call(x, out, weight, bias, None, None, dtype,
                     OP_RMS if rms else OP_LAYER, row_len, 0, e, num_threads)


cdef object channels_last_view(object x):
    """x (N, C, *spatial) seen as a C-contiguous (N, *spatial, C) array when its memory is
    channels-last (_layout: NumPy's contiguity flags, like its rule, ignore dims of size 1);
    else None."""
    cdef int nd = x.ndim
    if nd < 3:
        return None
    view = x.transpose((0,) + tuple(range(2, nd)) + (1,))
    return view if view.flags.c_contiguous else None


def batch_norm_eval_fast(x, running_mean, running_var, weight, bias, eps, out, num_threads):
    """batch_norm in eval mode with running statistics, or None for the general path.
    Channels-last x runs as rows of channels (the general path's body for that layout) and
    keeps its layout."""
    if not (fast_x(x) and x.ndim >= 2 and fast_threads(num_threads) and fast_out(out, x)
            and fast_eps(eps)) or running_mean is None or running_var is None:
        return None
    dtype = x.dtype
    channels = x.shape[1]
    if not (fast_param(running_mean, dtype, channels) and fast_param(running_var, dtype, channels)
            and fast_param(weight, dtype, channels) and fast_param(bias, dtype, channels)):
        return None
    inner = x.size // (x.shape[0] * channels)
    rows = None if x.flags.c_contiguous else channels_last_view(x)
    if rows is not None:
        y = fast_call(rows, rows if out is x else None, running_mean, running_var, weight,
                      bias, dtype, OP_CHANNELS, channels, 1, eps, num_threads)
        if y is None or out is x:
            return None if y is None else x
        return y.transpose((0, x.ndim - 1) + tuple(range(1, x.ndim - 1)))
    if inner == 1 and x.size >= PARALLEL_MIN_ELEMENTS:
        return None    # large (N, C): left to the general path, which runs the same body
    return fast_call(x, out, running_mean, running_var, weight, bias, dtype, OP_CHANNELS,
                     channels, inner, eps, num_threads)


# the public ops' entries (fastnorm/_norms.py): the arguments only a general-path call can
# have, then the kernels above (called by name, so that tests can watch them)

def layer_norm_fast(x, normalized_shape, weight, bias, eps, out, return_stats, num_threads):
    """Fast path of layer_norm (None: use the general path)."""
    if return_stats is not False:    # _validate.flag; the statistics need the general path
        return None
    return rows_fast(x, normalized_shape, weight, bias, eps, False, out, num_threads)


def rms_norm_fast(x, normalized_shape, weight, eps, out, num_threads):
    """Fast path of rms_norm (None: use the general path)."""
    return rows_fast(x, normalized_shape, weight, None, eps, True, out, num_threads)


def batch_norm_fast(x, running_mean, running_var, weight, bias, training, momentum, eps,
                    out, num_threads):
    """Fast path of batch_norm (None: use the general path): eval mode only."""
    if training is not False or not fast_momentum(momentum):   # _validate.flag, .momentum
        return None
    return batch_norm_eval_fast(x, running_mean, running_var, weight, bias, eps, out,
                                num_threads)
