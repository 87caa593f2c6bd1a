# Kernel source shared by every instruction-set variant: each _kernels_<variant>.pyx is one
# `include` of this file, compiled with its own -march flags (setup.py, _variants.py).
#
# Two engines (DESIGN.md section 1), and the normalizations built from them:
#   _kernels/common.pxi    types, constants, the cache-size thresholds (set at import from
#                          fastnorm/_cache.py), the shape records, entry-point helpers
#   _kernels/stats.pxi     statistics engine: (count, mean, M2) of fixed-size chunks from
#                          shifted sums (_simd.h; columns: column_sums_checked), merged with
#                          Chan's formula in float64 in a fixed order; segment_moments,
#                          column_moments (moments)
#   _kernels/stats_int.pxi statistics engine, integer data: exact sums of x and x*x
#                          (_intstats.h); integer_moments (moments, Moments.update)
#   _kernels/apply.pxi     apply engine: y = fma(x - hi, a, c), hi the float64 mean rounded
#                          to the data's type, its low part folded into c (mean_offset;
#                          the loops in _apply.h); apply_channels (per-channel parameters;
#                          rows of channels four rows per parameter load, line-aligned)
#   _kernels/rows.pxi      row-local ops: statistics of a contiguous group, then its apply
#                          while in cache (LayerNorm, RMSNorm, InstanceNorm, GroupNorm)
#   _kernels/columns.pxi   normalization across rows at every column (channels-first LN);
#                          channels-last InstanceNorm/GroupNorm, each sample's column
#                          statistics then its apply (normalize_column_sets)
#   _kernels/channels.pxi  BatchNorm with batch statistics, channel by channel
#   _kernels/images.pxi    normalize_image: HWC rows (any strides) widened, y = fma(x, a, b)
#                          with per-channel constants, to planes or pixels (_image.h); the
#                          image benchmarks' roof
#   _kernels/roof.pxi      the benchmark's yardstick, one in-place pass x = a*x + b
#   _kernels/fast.pxi      fast paths: recognize plain calls, run the same bodies
# Every public op is a plan (fastnorm/_norms.py, fastnorm/_stats.py) over the def functions.
#
# Vocabulary (shapes as the kernels see them, all in elements):
#   group    the values one (mean, rstd) is taken over: a LayerNorm row, an InstanceNorm
#            (n, c), a GroupNorm (n, g), a BatchNorm channel
#   run      a group's contiguous stretch sharing one per-channel weight (GroupNorm: one
#            channel's spatial extent; LayerNorm: the whole row, per-element weight)
#   segment  a contiguous stretch of a group in memory (a BatchNorm channel has N segments,
#            a channel-stride apart; row-local groups are one segment)
#   chunk    the fixed unit of the statistics (CHUNK values of a segment, ROW_CHUNK rows of
#            a column): chunk boundaries never depend on threads, so neither do results
#   span     a sub-range of a group applied in one call (prefetch and parallel apply blocks)
#   block    a set of adjacent columns handled together (COL_BLOCK), or APPLY_BLOCK values
#            of a parallel apply
#   column   one position of the contiguous last dim of a (outer, rows, cols) buffer, reduced
#            over the rows (BatchNorm of (N, C), channels-first LayerNorm)
#
# Determinism: chunk boundaries are fixed constants and chunk results are always folded
# left to right, so results are bit-identical whatever the thread count or the parallel
# strategy (over groups, or over chunks of few groups).
#
# Validation happens in Python before these run (the entry points only re-check extents);
# nothing here can fail half way.

include "_kernels/common.pxi"
include "_kernels/stats.pxi"
include "_kernels/stats_int.pxi"
include "_kernels/apply.pxi"
include "_kernels/rows.pxi"
include "_kernels/columns.pxi"
include "_kernels/channels.pxi"
include "_kernels/images.pxi"
include "_kernels/roof.pxi"
include "_kernels/fast.pxi"
