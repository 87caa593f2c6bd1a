"""python -m fastnorm stats PATH...: per-channel statistics of a dataset, on dask.

Every input (.npy, .npz members, images, zarr arrays; directories recursively) becomes one
or more read tasks, each reading its data once and returning a `Summary` (a per-channel
fastnorm.Moments, min, max); dask merges the summaries in a tree (Chan's merge, the one of
Moments), on the threaded scheduler by default, the processes one, or a dask.distributed
scheduler (--scheduler ADDRESS). Bad input raises DatasetError naming the file: exit 2.
Finding and reading the inputs: fastnorm._dataset_inputs.
"""
import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ._dataset_inputs import (DatasetError, Source, _NpzMember, _read_arrays, _Slots,
                              _values_by_channel, find_inputs, sources_of)
from ._stats import Moments

FILES_PER_TASK = 8             # small files are read a few per task (less scheduling)
MERGE_FAN_IN = 8               # summaries merged per task of the tree
SCALES = {"uint8": 255, "uint16": 65535}     # the 0-1 scale of integer images
CONNECT_TIMEOUT = "10s"        # to reach a dask.distributed scheduler
READ = "fastnorm-read"         # the key name of the read tasks (the progress bar counts them)


class Summary(_Slots):
    """The statistics of some inputs: per-channel Moments over their values, min, max,
    the number of files and the dtypes seen; `label` names the first input (for errors)."""

    __slots__ = ("channels", "moments", "minimum", "maximum", "files", "dtypes", "label")
    channels: int
    moments: Moments
    minimum: NDArray[Any] | None
    maximum: NDArray[Any] | None
    files: int
    dtypes: tuple[str, ...]
    label: str


def _column_extremes(values: NDArray[Any]) -> tuple[NDArray[Any], NDArray[Any]]:
    """Per-column min and max of a (rows, C) matrix. NumPy reduces a narrow matrix along
    axis 0 about 50x slower than along wide rows (measured: 1.4 ms against 0.02 ms for
    65536 RGB pixels), so rows are first folded k at a time into rows of k*C values."""
    rows, channels = values.shape
    k = max(1, min(rows, 4096 // max(channels, 1)))
    head = rows - rows % k
    wide = np.ascontiguousarray(values[:head]).reshape(head // k, k * channels)
    low = wide.min(axis=0).reshape(k, channels).min(axis=0)
    high = wide.max(axis=0).reshape(k, channels).max(axis=0)
    if head < rows:
        low = np.minimum(low, values[head:].min(axis=0))
        high = np.maximum(high, values[head:].max(axis=0))
    return low, high


def _summary(values: NDArray[Any], label: str, dtype: np.dtype[Any], files: int,
             threads: int | None) -> Summary:
    s = Summary()
    s.channels, s.label, s.files, s.dtypes = values.shape[1], label, files, (str(dtype),)
    s.moments = Moments(axis=0)
    if values.size:
        s.moments.update(values, num_threads=threads)
        s.minimum, s.maximum = _column_extremes(values)
    else:
        s.minimum = s.maximum = None
    return s


def merge_summaries(*parts: Summary) -> Summary:
    """Chan's merge of the per-channel Moments (Moments.merge) and of min/max, in order;
    inputs of different channel counts raise DatasetError naming both."""
    first = parts[0]
    merged = Summary()
    merged.__setstate__(first.__getstate__())
    merged.moments = first.moments.copy()
    for part in parts[1:]:
        if part.channels != merged.channels:
            raise DatasetError(f"{part.label}: {part.channels} channel"
                               f"{'s' if part.channels != 1 else ''}, but {merged.label} "
                               f"has {merged.channels} (inconsistent channel counts)")
        merged.moments.merge(part.moments)
        if part.minimum is not None and part.maximum is not None:
            if merged.minimum is None or merged.maximum is None:
                merged.minimum, merged.maximum = part.minimum, part.maximum
            else:
                merged.minimum = np.minimum(merged.minimum, part.minimum)
                merged.maximum = np.maximum(merged.maximum, part.maximum)
        merged.files += part.files
        merged.dtypes = tuple(sorted(set(merged.dtypes) | set(part.dtypes)))
    return merged


def read_summary(sources: Sequence[Source], channel_axis: int | None,
                 threads: int | None) -> Summary:
    """The Summary of a few Sources, each read once (a read task)."""
    parts: list[Summary] = []
    for source in sources:
        arrays = _read_arrays(source)
        for i, item in enumerate(arrays):
            arr, label, is_image = item.load() if isinstance(item, _NpzMember) else item
            values = _values_by_channel(arr, label, is_image, channel_axis)
            counts_file = 1 if (i == 0 and (source.slab_axis is None or source.start == 0)) \
                else 0
            parts.append(_summary(values, label, arr.dtype, counts_file, threads))
    return merge_summaries(*parts)


# ---------------------------------------------------------------------------------------
# the graph and its computation

def _graph(sources: Sequence[Source], channel_axis: int | None, threads: int | None
           ) -> tuple[Any, list[int], list[Any]]:
    """(root, sizes, leaves): delayed read tasks (`leaves`) of up to FILES_PER_TASK small
    inputs each (a slab of a large array on its own; `sizes`: the inputs of each), and the
    root of the tree of merges over them."""
    from dask.delayed import delayed
    groups: list[list[Source]] = []
    current: list[Source] = []
    for source in sources:
        if source.slab_axis is not None:
            groups.append([source])
            continue
        current.append(source)
        if len(current) == FILES_PER_TASK:
            groups.append(current)
            current = []
    if current:
        groups.append(current)
    from dask.base import tokenize
    token = tokenize(groups, channel_axis, threads)
    read = delayed(read_summary, pure=True)
    merge = delayed(merge_summaries, pure=True)
    leaves = [read(group, channel_axis, threads, dask_key_name=(f"{READ}-{token}", i))
              for i, group in enumerate(groups)]
    level = leaves
    depth = 0
    while len(level) > 1:
        level = [merge(*level[i:i + MERGE_FAN_IN],
                       dask_key_name=(f"fastnorm-merge-{depth}-{token}", i // MERGE_FAN_IN))
                 for i in range(0, len(level), MERGE_FAN_IN)]
        depth += 1
    return level[0], [len(g) for g in groups], leaves


def _progress_bar(total: int, enabled: bool) -> Any:
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, unit="file", desc="fastnorm stats", file=sys.stderr,
                dynamic_ncols=True)


def compute_local(root: Any, sizes: list[int], scheduler: str, bar: Any) -> Summary:
    """Compute on dask's threaded or processes scheduler, the bar advanced per read task."""
    import dask.base
    from dask.callbacks import Callback

    class ReadProgress(Callback):
        def _posttask(self, key: Any, result: Any, dsk: Any, state: Any,
                      worker_id: Any) -> None:
            if isinstance(key, tuple) and str(key[0]).startswith(READ):
                bar.update(sizes[key[1]])

    if bar is None:
        summary: Summary = dask.base.compute(root, scheduler=scheduler)[0]
        return summary
    with ReadProgress():  # type: ignore[no-untyped-call]  # dask's Callback is untyped
        summary = dask.base.compute(root, scheduler=scheduler)[0]
    return summary


def compute_distributed(root: Any, leaves: list[Any], sizes: list[int], address: str,
                        bar: Any) -> Summary:
    """Compute on the dask.distributed scheduler at `address`."""
    try:
        from distributed import Client, as_completed
    except ImportError as exc:
        raise DatasetError(f"--scheduler {address}: needs dask.distributed: "
                           f"pip install distributed") from exc
    try:
        client = Client(address, timeout=CONNECT_TIMEOUT)
    except Exception as exc:
        raise DatasetError(f"--scheduler {address}: cannot connect: {exc}") from exc
    with client:
        futures = client.compute([root] + leaves if bar is not None else [root])
        if bar is not None:
            index = {f.key: i for i, f in enumerate(futures[1:])}
            for future in as_completed(futures[1:]):
                bar.update(sizes[index[future.key]])
        summary: Summary = futures[0].result()
        return summary


# ---------------------------------------------------------------------------------------
# report

def _floats(a: Any) -> list[float]:
    return [float(v) for v in np.asarray(a, dtype=np.float64).reshape(-1)]


def report(summary: Summary, ignored: list[str]) -> dict[str, Any]:
    """The result as a dict (what --json prints)."""
    moments = summary.moments
    if moments.count == 0:
        raise DatasetError(f"{summary.label}: the inputs hold no values")
    count = int(moments.count)
    mean, std = moments.mean, moments.std()
    doc: dict[str, Any] = {
        "files": summary.files, "channels": summary.channels, "dtypes": list(summary.dtypes),
        "count": [count] * summary.channels, "mean": _floats(mean), "std": _floats(std),
        "min": _floats(summary.minimum), "max": _floats(summary.maximum),
        "scaled": None, "ignored": ignored,
    }
    if len(summary.dtypes) == 1 and summary.dtypes[0] in SCALES:
        scale = SCALES[summary.dtypes[0]]
        doc["scaled"] = {"scale": scale, "mean": _floats(mean / scale),
                         "std": _floats(std / scale)}
    return doc


def _text(doc: dict[str, Any]) -> str:
    lines = [f"{doc['files']} file{'s' if doc['files'] != 1 else ''}, "
             f"{doc['channels']} channel{'s' if doc['channels'] != 1 else ''}, "
             f"{doc['count'][0]} values per channel ({', '.join(doc['dtypes'])})",
             f"{'channel':>7s} {'count':>14s} {'mean':>16s} {'std':>16s} {'min':>14s} "
             f"{'max':>14s}"]
    for c in range(doc["channels"]):
        lines.append(f"{c:7d} {doc['count'][c]:14d} {doc['mean'][c]:16.8g} "
                     f"{doc['std'][c]:16.8g} {doc['min'][c]:14.6g} {doc['max'][c]:14.6g}")
    scaled = doc["scaled"]
    if scaled:
        fmt = ", ".join
        lines.append(f"on the 0-1 scale (values / {scaled['scale']}), as Normalize and "
                     f"fastnorm.normalize_image take them:")
        lines.append(f"  mean=({fmt(f'{v:.6f}' for v in scaled['mean'])})")
        lines.append(f"  std=({fmt(f'{v:.6f}' for v in scaled['std'])})")
    if doc["ignored"]:
        shown = ", ".join(doc["ignored"][:5]) + (", ..." if len(doc["ignored"]) > 5 else "")
        lines.append(f"not read: {len(doc['ignored'])} file(s) of other types ({shown})")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------
# command line

def _channel_axis(text: str) -> int | None:
    if text.lower() == "none":
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer or 'none': {text!r}")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m fastnorm stats",
        description="Per-channel count, mean, std (ddof=0), min and max over every value "
                    "of every input: .npy, .npz (each array), images (PNG, JPEG, TIFF, BMP, "
                    "WebP; channels last), directories (recursively) and zarr arrays. "
                    "Computed with dask: float64 statistics per file merged with Chan's "
                    "formula.")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--channel-axis", type=_channel_axis, default=-1, metavar="N",
                   help="the channel axis of array inputs (default -1, channels last; "
                        "'none': one channel of all values); images are (H, W[, C])")
    p.add_argument("--scheduler", default="threads", metavar="threads|processes|ADDRESS",
                   help="dask's threaded (default) or processes scheduler, or the address "
                        "of a dask.distributed scheduler (tcp://host:8786)")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object on stdout")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        import dask  # noqa: F401
    except ImportError:
        print("error: python -m fastnorm stats needs dask: pip install 'dask[array]' "
              "(or pip install 'fastnorm-kernels[dask]')", file=sys.stderr)
        return 2
    from ._dask_graph import _task_threads
    try:
        inputs, ignored = find_inputs(args.paths)
        sources = sources_of(inputs, args.channel_axis)
        if not sources:
            raise DatasetError(f"{', '.join(args.paths)}: no input files found"
                               + (f" ({len(ignored)} file(s) of other types)"
                                  if ignored else ""))
        root, sizes, leaves = _graph(sources, args.channel_axis, _task_threads())
        bar = _progress_bar(sum(sizes), sys.stderr.isatty())
        try:
            if args.scheduler in ("threads", "processes", "sync", "synchronous"):
                summary = compute_local(root, sizes, args.scheduler, bar)
            else:
                summary = compute_distributed(root, leaves, sizes, args.scheduler, bar)
        finally:
            if bar is not None:
                bar.close()
        doc = report(summary, ignored)
    except DatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        json.dump(doc, sys.stdout)
        sys.stdout.write("\n")
    else:
        print(_text(doc))
    return 0
