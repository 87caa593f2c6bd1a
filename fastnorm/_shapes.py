"""Shape records: how a plan lays a buffer out for a kernel. The kernels read the same
fields into structs of the same names (fastnorm/_kernels/common.pxi)."""
from typing import NamedTuple


class RowShape(NamedTuple):
    """Row-local ops: `groups` contiguous groups of runs * run_len values."""
    groups: int
    runs: int              # runs per group: GroupNorm's C/G channels, else 1
    run_len: int           # values per run: one channel's spatial extent, or the row
    param_period: int      # the channel of run k of group g is (g % param_period)*runs + k
    per_element: bool      # weight/bias indexed by position in the group (LayerNorm)

    @classmethod
    def rows(cls, rows: int, row_len: int) -> "RowShape":
        """`rows` rows of row_len values with per-element parameters (LayerNorm, RMSNorm)."""
        return cls(rows, 1, row_len, 1, True)

    @classmethod
    def channel_groups(cls, n: int, channels: int, groups: int, inner: int) -> "RowShape":
        """(n, channels, inner) data in `groups` groups of channels per sample, per-channel
        parameters (GroupNorm)."""
        return cls(n * groups, channels // groups, inner, groups, False)

    @classmethod
    def instances(cls, n: int, channels: int, inner: int) -> "RowShape":
        """(n, channels, inner) data, one group per (sample, channel) (InstanceNorm)."""
        return cls(n * channels, 1, inner, channels, False)


class ChannelShape(NamedTuple):
    """(n, channels, inner) buffers with per-channel parameters."""
    n: int
    channels: int
    inner: int


class ColumnShape(NamedTuple):
    """(outer, rows, cols) buffers, reduced down each column."""
    outer: int
    rows: int
    cols: int


class SegmentShape(NamedTuple):
    """Groups of nseg segments of seg_len values: group g, segment s starts at
    g * group_stride + s * seg_stride."""
    groups: int
    nseg: int
    seg_len: int
    group_stride: int
    seg_stride: int
