from cython.parallel cimport prange
from libc.math cimport INFINITY, NAN, isfinite, sqrt
from libc.stdlib cimport malloc, free
from libc.string cimport memcpy, memmove

ctypedef fused stat_float:     # running statistics handed to apply_channels
    float
    double

ctypedef fused floating:
    float
    double

cdef enum:
    CHUNK = 2048              # elements of a contiguous segment per statistics chunk
    # rows per chunk in column statistics: each chunk has its own shift, its per-column
    # statistics, and their merge (256 rows: these took a third of channels-last (100352,
    # 64) float32 statistics on Zen 4)
    ROW_CHUNK = 1024
    COL_BLOCK = 512           # widest column block (cache blocking only, no effect on results)
    MIN_COL_BLOCK = 64
    APPLY_BLOCK = 32768       # elements per task when few large groups are applied in parallel
    APPLY_SPAN_MIN = 4096     # elements per span of a rows-of-channels apply (apply_row_spans)
    PARALLEL_MIN_ELEMENTS = 32768  # below this a call runs serially (a parallel region costs us)
    PREFETCH_BYTES = 16384    # of the next segment of a group, while folding this one
    PREFETCH_BLOCK = 1024     # elements applied per prefetch of the next group's same span
    # Short groups are prefetched this many bytes ahead (at least the next group): two
    # groups ahead was too close to cover a miss to memory (measured on Zen 3, 1 thread:
    # LayerNorm rows of 1 KB 25% faster 8 KB ahead, rows of 3 KB 14%)
    PREFETCH_AHEAD_BYTES = 8192
    # Column statistics prefetch this many bytes of rows ahead: the hardware prefetchers
    # fall behind the four-row sweeps (measured on Zen 3,
    # 1 thread, (25088, 256) float32 from memory: 16 KB ahead 1.2-1.9x faster, 8 KB ahead
    # little gain)
    COL_PREFETCH_BYTES = 16384
    COL_SHIFT_ROWS = 16       # rows whose mean is the shift of float32-lane column sums
    # LayerNorm/RMSNorm rows up to this many bytes go eight at a time (rows.pxi:
    # normalize_row_blocks), their per-row statistics and parameters as vectors. Zen 4,
    # A/B against one row at a time (pairs, when affine): x86-64-v4 rows of 768 with weight
    # and bias 0.90-1.03 (2 threads; 1 thread 1.03), without 0.83, of 1024 0.91-0.94;
    # x86-64-v3 rows of 256-768 0.78-0.90, of 1024 0.975; rows of 1536-2048 0.97-1.09.
    # Tensors large enough for the one-row path's prefetch (beyond half a thread's L3
    # share) go eight at a time too: v4 rows of 512-1024 0.91-1.00, v3 0.98-1.03, and
    # channels-last channel_layer_norm (8, 256, 56, 56), rows of 256, 0.69 with v3
    ROW_BLOCK_BYTES = 4096
    COL_FLUSH = 32            # rows a float32 lane of column sums adds before float64


# Thresholds that depend on the cache sizes of the running machine: set at import from what
# the CPU reports (fastnorm/_cache.py derives them, _dispatch.load hands them to each
# variant; set_cache_tuning). Prefetch and pipelining only: no threshold changes a result.
cdef struct CacheTuning:
    # The next group (BatchNorm: channel) is prefetched into L2 while one is applied, up to
    # these sizes (bytes): both must fit the cache it goes to. Measured side by side
    # (2 threads): LayerNorm rows of 3 KB 1.7x -> 1.2x the roof, BatchNorm training channels
    # of 400 KB 1.64x -> 1.50x. prefetch_group_max: LayerNorm/RMSNorm rows, prefetched in
    # bursts, and rows up to twice it a line per line applied (rows.pxi groups_body);
    # InstanceNorm and GroupNorm groups of 64-100 KB lost 5-15% by bursts, their runs
    # prefetch a line per line applied up to prefetch_channel_max, as BatchNorm's channels.
    Py_ssize_t prefetch_group_max
    Py_ssize_t prefetch_channel_max   # (also: a channels-last sample beyond it is taken not
                                      # to stay in L2 between its statistics and its apply)
    # Nor when a thread's share of the data is small enough to be found in cache (LayerNorm
    # (1, 197, 768): 8% faster without; see _cache.py); also the rule of the column
    # statistics' and the rows-of-channels apply's prefetch.
    Py_ssize_t prefetch_min_per_thread
    # The same for the row engine's prefetch of the next group (LayerNorm/RMSNorm rows): a
    # contiguous stream the hardware prefetchers follow, so it pays only from further out
    # (see _cache.py).
    Py_ssize_t prefetch_rows_min_per_thread
    # The statistics of a group prefetch half of the next one too (rows.pxi: groups_body)
    # when a thread's share is beyond this (its L3 share: the data comes from memory), or
    # the groups are larger than stats_prefetch_group_min (L1d: applied from L2 anyway).
    Py_ssize_t stats_prefetch_min_per_thread
    Py_ssize_t stats_prefetch_group_min
    # Short groups are software-pipelined up to this size (bytes): two groups and the affine
    # parameters must fit L1 (normalize_group_range).
    Py_ssize_t pipeline_group_max

cdef CacheTuning tuning = CacheTuning(32768, 524288, 1048576, 1048576, 16777216, 32768,
                                      8192)     # (replaced at import)


def set_cache_tuning(Py_ssize_t prefetch_group_max, Py_ssize_t prefetch_channel_max,
                     Py_ssize_t prefetch_min_per_thread, Py_ssize_t prefetch_rows_min_per_thread,
                     Py_ssize_t stats_prefetch_min_per_thread,
                     Py_ssize_t stats_prefetch_group_min, Py_ssize_t pipeline_group_max):
    """Set this variant's cache-size thresholds (bytes); returns the previous ones as a dict.
    Not thread-safe: called at import (and by tests and tuning scripts between calls)."""
    global tuning
    previous = cache_tuning()
    for name, value in (("prefetch_group_max", prefetch_group_max),
                        ("prefetch_channel_max", prefetch_channel_max),
                        ("prefetch_min_per_thread", prefetch_min_per_thread),
                        ("prefetch_rows_min_per_thread", prefetch_rows_min_per_thread),
                        ("stats_prefetch_min_per_thread", stats_prefetch_min_per_thread),
                        ("stats_prefetch_group_min", stats_prefetch_group_min),
                        ("pipeline_group_max", pipeline_group_max)):
        if value < 0:
            raise ValueError(f"{name} must be >= 0, got {value}")
    tuning = CacheTuning(prefetch_group_max, prefetch_channel_max, prefetch_min_per_thread,
                         prefetch_rows_min_per_thread, stats_prefetch_min_per_thread,
                         stats_prefetch_group_min, pipeline_group_max)
    return previous


def cache_tuning():
    """This variant's cache-size thresholds (bytes), as a dict."""
    return dict(prefetch_group_max=tuning.prefetch_group_max,
                prefetch_channel_max=tuning.prefetch_channel_max,
                prefetch_min_per_thread=tuning.prefetch_min_per_thread,
                prefetch_rows_min_per_thread=tuning.prefetch_rows_min_per_thread,
                stats_prefetch_min_per_thread=tuning.stats_prefetch_min_per_thread,
                stats_prefetch_group_min=tuning.stats_prefetch_group_min,
                pipeline_group_max=tuning.pipeline_group_max)


cdef struct Stat:             # statistics of some values, merged with stat_merge
    double n
    double shift              # the mean is shift + dev: the pair keeps the digits of a
    double dev                # mean much larger than the spread through every merge
    double m2                 # sum of squared deviations from the mean


cdef inline double stat_mean(Stat st) noexcept nogil:
    return st.shift + st.dev


cdef struct GroupParams:      # what the apply needs of a group
    double mean
    double rstd


# ---------------------------------------------------------------------------------------
# shape records: how a plan's buffer is laid out for a kernel (fastnorm/_shapes.py builds
# the Python records of the same names, with the same fields)

cdef struct RowShape:         # row-local ops: `groups` groups of runs * run_len values
    Py_ssize_t groups
    Py_ssize_t runs           # runs per group: GroupNorm's C/G channels, else 1
    Py_ssize_t run_len        # values per run: one channel's spatial extent, or the row
    Py_ssize_t param_period   # the channel of run k of group g is (g % param_period)*runs + k
    bint per_element          # weight/bias indexed by position in the group (LayerNorm)

cdef struct ChannelShape:     # (n, channels, inner) buffers, per-channel parameters
    Py_ssize_t n
    Py_ssize_t channels
    Py_ssize_t inner

cdef struct ColumnShape:      # (outer, rows, cols) buffers, reduced down each column
    Py_ssize_t outer
    Py_ssize_t rows
    Py_ssize_t cols

cdef struct SegmentShape:     # groups of nseg segments of seg_len values: group g, segment
    Py_ssize_t groups         # s starts at g * group_stride + s * seg_stride
    Py_ssize_t nseg
    Py_ssize_t seg_len
    Py_ssize_t group_stride
    Py_ssize_t seg_stride

cdef struct StatsOut:         # per-group statistics a caller asked for (NULL: not wanted)
    double* mean
    double* var               # biased variance
    bint precise              # float64 lanes for float32 data (statistics kept in float64)


cdef inline Py_ssize_t ceil_div(Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    return (a + b - 1) // b


cdef inline void store_group_stats(StatsOut out, Py_ssize_t g, Stat st) noexcept nogil:
    if out.mean != NULL:
        out.mean[g] = stat_mean(st)
        out.var[g] = st.m2 / st.n


# ---------------------------------------------------------------------------------------
# entry points (called by the plans with validated, contiguous, flattened buffers)

cdef inline const floating* optional_ptr(const floating[::1] v) noexcept:
    return &v[0] if v is not None and v.shape[0] > 0 else NULL


cdef inline int check_extent(Py_ssize_t needed, Py_ssize_t have_x, Py_ssize_t have_out) except -1:
    """The plans pass consistent shapes; this keeps a wrong call from touching memory it
    does not own."""
    if needed < 0 or needed > have_x or needed > have_out:
        raise ValueError(f"kernel extent {needed} exceeds the buffers ({have_x}, {have_out})")
    return 0


cdef inline int effective_threads(Py_ssize_t elements, int num_threads) noexcept:
    return num_threads if elements >= PARALLEL_MIN_ELEMENTS else 1


cdef Stat* alloc_stats(Py_ssize_t n) except NULL:
    cdef Stat* p = <Stat*>malloc(max(n, <Py_ssize_t>1) * sizeof(Stat))
    if p == NULL:
        raise MemoryError()
    return p


cdef inline void store_stats(const Stat* st, Py_ssize_t n, double[::1] shift,
                             double[::1] dev, double[::1] m2) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        shift[i] = st[i].shift
        dev[i] = st[i].dev
        m2[i] = st[i].m2


cdef inline StatsOut stats_out(double[::1] mean, double[::1] var, Py_ssize_t groups,
                               bint precise) except *:
    """The optional (groups,) mean and biased-variance outputs of an entry point."""
    cdef StatsOut out
    out.mean = NULL
    out.var = NULL
    out.precise = precise
    if mean is not None:
        check_extent(groups, mean.shape[0], var.shape[0])
        out.mean = &mean[0] if groups else NULL
        out.var = &var[0] if groups else NULL
    return out


# Python shape records (fastnorm/_shapes.py) into the structs above

cdef RowShape row_shape(object s) except *:
    cdef RowShape r
    r.groups, r.runs, r.run_len = s.groups, s.runs, s.run_len
    r.param_period, r.per_element = s.param_period, s.per_element
    return r


cdef ChannelShape channel_shape(object s) except *:
    cdef ChannelShape r
    r.n, r.channels, r.inner = s.n, s.channels, s.inner
    return r


cdef ColumnShape column_shape(object s) except *:
    cdef ColumnShape r
    r.outer, r.rows, r.cols = s.outer, s.rows, s.cols
    return r


cdef SegmentShape segment_shape(object s) except *:
    cdef SegmentShape r
    r.groups, r.nseg, r.seg_len = s.groups, s.nseg, s.seg_len
    r.group_stride, r.seg_stride = s.group_stride, s.seg_stride
    return r

