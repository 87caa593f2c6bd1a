"""python -m fastnorm stats PATH...: per-channel statistics of a dataset, on dask.

Every input (.npy, .npz members, images, zarr arrays; directories recursively) becomes one
or more read tasks, each reading its data once and returning a `Summary` (a per-channel
fastnorm.Moments, min, max); dask merges the summaries in a tree (Chan's merge, the one of
Moments), on the threaded scheduler by default, the processes one, or a dask.distributed
scheduler (--scheduler ADDRESS). Bad input raises DatasetError naming the file: exit 2.
"""
import argparse
import json
import math
import os
import sys

import numpy as np

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")
ARRAY_EXTENSIONS = (".npy", ".npz")
ZARR_MARKERS = ("zarr.json", ".zarray", ".zgroup")
SLAB_BYTES = 64 << 20          # a larger .npy or zarr array is read in slabs of this size
FILES_PER_TASK = 8             # small files are read a few per task (less scheduling)
MERGE_FAN_IN = 8               # summaries merged per task of the tree
SCALES = {"uint8": 255, "uint16": 65535}     # the 0-1 scale of integer images
CONNECT_TIMEOUT = "10s"        # to reach a dask.distributed scheduler
READ = "fastnorm-read"         # the key name of the read tasks (the progress bar counts them)


class DatasetError(Exception):
    """An input that cannot be used; the message names it."""


# ---------------------------------------------------------------------------------------
# inputs

class Source:
    """One read task's worth of one input: a file (or an npz member, a zarr array), and for
    large arrays a slab [start, stop) along `slab_axis`."""

    __slots__ = ("kind", "path", "member", "slab_axis", "start", "stop")

    def __init__(self, kind, path, member=None, slab_axis=None, start=None, stop=None):
        self.kind, self.path, self.member = kind, path, member
        self.slab_axis, self.start, self.stop = slab_axis, start, stop

    def __getstate__(self):
        return tuple(getattr(self, name) for name in self.__slots__)

    def __setstate__(self, state):
        for name, value in zip(self.__slots__, state):
            setattr(self, name, value)

    def __dask_tokenize__(self):
        return ("fastnorm.stats.Source",) + self.__getstate__()

    @property
    def label(self):
        text = self.path if self.member is None else f"{self.path}[{self.member}]"
        if self.slab_axis is not None:
            text += f" (axis {self.slab_axis} [{self.start}:{self.stop}])"
        return text


def _is_zarr(path):
    return os.path.isdir(path) and any(os.path.exists(os.path.join(path, m))
                                       for m in ZARR_MARKERS)


def _kind_of(path):
    ext = os.path.splitext(path)[1].lower()
    if ext in IMAGE_EXTENSIONS:
        return "image"
    if ext in ARRAY_EXTENSIONS:
        return ext[1:]
    return None


def find_inputs(paths):
    """(inputs, ignored): the (kind, path) of every input named or found in a named
    directory, in a deterministic order, and the files of other types found in
    directories (reported, not read). A named path that is missing or of an unknown type
    raises DatasetError."""
    inputs, ignored = [], []
    for path in paths:
        if not os.path.exists(path):
            raise DatasetError(f"{path}: no such file or directory")
        if _is_zarr(path):
            inputs.append(("zarr", path))
        elif os.path.isdir(path):
            for root, dirs, files in os.walk(path):
                dirs.sort()
                for d in list(dirs):
                    full = os.path.join(root, d)
                    if _is_zarr(full):
                        inputs.append(("zarr", full))
                        dirs.remove(d)
                for name in sorted(files):
                    full = os.path.join(root, name)
                    kind = _kind_of(full)
                    if kind is None:
                        ignored.append(full)
                    else:
                        inputs.append((kind, full))
        else:
            kind = _kind_of(path)
            if kind is None:
                raise DatasetError(f"{path}: not a supported input (.npy, .npz, "
                                   f"{', '.join(IMAGE_EXTENSIONS)}, a zarr array or a "
                                   f"directory)")
            inputs.append((kind, path))
    return inputs, ignored


def _slabs(kind, path, member, shape, itemsize, channel_axis):
    """Sources covering an array of `shape`: the whole array, or slabs of about
    SLAB_BYTES along its first axis that is not the channel axis."""
    nbytes = math.prod(shape) * itemsize
    ndim = len(shape)
    channel = None
    if channel_axis is not None and -ndim <= channel_axis < ndim:
        channel = channel_axis % ndim
    axes = [d for d in range(ndim) if d != channel and shape[d] > 1]
    if nbytes <= SLAB_BYTES or not axes:
        return [Source(kind, path, member)]
    axis = axes[0]
    per_index = nbytes // shape[axis]
    step = max(1, SLAB_BYTES // max(per_index, 1))
    return [Source(kind, path, member, axis, start, min(start + step, shape[axis]))
            for start in range(0, shape[axis], step)]


def _npy_header(path):
    try:            # a memory map reads the header only
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
        return arr.shape, arr.dtype
    except Exception as exc:
        raise DatasetError(f"{path}: cannot read as .npy: {exc}") from exc


def _zarr_arrays(path):
    """[(member or None, array)] of a zarr array or group (its arrays, recursively)."""
    try:
        import zarr
    except ImportError as exc:
        raise DatasetError(f"{path}: reading zarr needs zarr: pip install zarr") from exc
    try:
        node = zarr.open(path, mode="r")
    except Exception as exc:
        raise DatasetError(f"{path}: cannot open as zarr: {exc}") from exc
    if isinstance(node, zarr.Array):
        return [(None, node)]
    members = (node.members(max_depth=None) if hasattr(node, "members")
               else node.arrays(recurse=True))                       # zarr 3; zarr 2
    found = sorted(((name, member) for name, member in members
                    if isinstance(member, zarr.Array)), key=lambda item: item[0])
    if not found:
        raise DatasetError(f"{path}: a zarr group without arrays")
    return found


def sources_of(inputs, channel_axis):
    """The read tasks' Sources, in input order (a large .npy or zarr array in slabs)."""
    sources = []
    for kind, path in inputs:
        if kind == "npy":
            shape, dtype = _npy_header(path)
            sources += _slabs("npy", path, None, shape, dtype.itemsize, channel_axis)
        elif kind == "zarr":
            for member, arr in _zarr_arrays(path):
                sources += _slabs("zarr", path, member, arr.shape, arr.dtype.itemsize,
                                  channel_axis)
        else:
            sources.append(Source(kind, path))
    return sources


# ---------------------------------------------------------------------------------------
# reading (inside tasks)

def _read_image(path):
    """The frames of an image file as (H, W[, C]) arrays, channels last."""
    try:
        from PIL import Image, ImageSequence
    except ImportError as exc:
        raise DatasetError(f"{path}: reading images needs Pillow: pip install pillow") \
            from exc
    try:
        with Image.open(path) as img:
            frames = []
            for frame in ImageSequence.Iterator(img):
                if frame.mode in ("P", "PA"):        # palette: the colours it stands for
                    frame = frame.convert("RGBA" if frame.mode == "PA"
                                          or "transparency" in frame.info else "RGB")
                elif frame.mode == "1":
                    frame = frame.convert("L")
                frames.append(np.asarray(frame))
        return frames
    except DatasetError:
        raise
    except Exception as exc:
        raise DatasetError(f"{path}: cannot read as an image: {exc}") from exc


def _slab_index(source, ndim):
    index = [slice(None)] * ndim
    index[source.slab_axis] = slice(source.start, source.stop)
    return tuple(index)


def _read_arrays(source):
    """[(array, label, is_image)] of one Source (for an .npz, its members to load)."""
    if source.kind == "image":
        return [(frame, source.label, True) for frame in _read_image(source.path)]
    try:
        if source.kind == "npy":
            arr = np.load(source.path, mmap_mode="r", allow_pickle=False)
            if source.slab_axis is not None:
                arr = arr[_slab_index(source, arr.ndim)]
            return [(np.array(arr), source.label, False)]
        if source.kind == "npz":
            with np.load(source.path, allow_pickle=False) as archive:
                names = list(archive.files)
            if not names:
                raise DatasetError(f"{source.path}: an .npz without arrays")
            return [_NpzMember(source.path, name) for name in names]
        if source.kind == "zarr":
            import zarr
            node = zarr.open(source.path, mode="r")
            arr = node if source.member is None else node[source.member]
            index = (_slab_index(source, arr.ndim) if source.slab_axis is not None
                     else Ellipsis)
            return [(np.asarray(arr[index]), source.label, False)]
    except DatasetError:
        raise
    except Exception as exc:
        raise DatasetError(f"{source.label}: cannot read as .{source.kind}: {exc}") from exc
    raise DatasetError(f"{source.label}: unknown input kind {source.kind!r}")


class _NpzMember:
    """One array of an .npz, loaded when the read task comes to it (one at a time)."""

    def __init__(self, path, name):
        self.path, self.name = path, name

    def load(self):
        label = f"{self.path}[{self.name}]"
        try:
            with np.load(self.path, allow_pickle=False) as archive:
                return archive[self.name], label, False
        except Exception as exc:
            raise DatasetError(f"{label}: cannot read as .npz: {exc}") from exc


def _values_by_channel(arr, label, is_image, channel_axis):
    """arr as a (values, channels) matrix: images (H, W[, C]) channels last, arrays by
    channel_axis (None: one channel of every value)."""
    if arr.dtype.kind not in "uif":
        raise DatasetError(f"{label}: dtype {arr.dtype} is not an integer or float type")
    if is_image:
        if arr.ndim not in (2, 3):
            raise DatasetError(f"{label}: an image of shape {arr.shape}")
        return arr.reshape(arr.shape[0] * arr.shape[1], -1)
    if channel_axis is None:
        return arr.reshape(-1, 1)
    if not -arr.ndim <= channel_axis < arr.ndim:
        raise DatasetError(f"{label}: has shape {arr.shape}, no axis {channel_axis} for "
                           f"the channels (--channel-axis)")
    moved = np.moveaxis(arr, channel_axis, -1)
    return moved.reshape(-1, moved.shape[-1])


class Summary:
    """The statistics of some inputs: per-channel Moments over their values, min, max,
    the number of files and the dtypes seen; `label` names the first input (for errors)."""

    __slots__ = ("channels", "moments", "minimum", "maximum", "files", "dtypes", "label")

    def __getstate__(self):
        return tuple(getattr(self, name) for name in self.__slots__)

    def __setstate__(self, state):
        for name, value in zip(self.__slots__, state):
            setattr(self, name, value)


def _column_extremes(values):
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


def _summary(values, label, dtype, files, threads):
    from . import Moments
    s = Summary()
    s.channels, s.label, s.files, s.dtypes = values.shape[1], label, files, (str(dtype),)
    s.moments = Moments(axis=0)
    if values.size:
        s.moments.update(values, num_threads=threads)
        s.minimum, s.maximum = _column_extremes(values)
    else:
        s.minimum = s.maximum = None
    return s


def merge_summaries(*parts):
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
        if part.minimum is not None:
            if merged.minimum is None:
                merged.minimum, merged.maximum = part.minimum, part.maximum
            else:
                merged.minimum = np.minimum(merged.minimum, part.minimum)
                merged.maximum = np.maximum(merged.maximum, part.maximum)
        merged.files += part.files
        merged.dtypes = tuple(sorted(set(merged.dtypes) | set(part.dtypes)))
    return merged


def read_summary(sources, channel_axis, threads):
    """The Summary of a few Sources, each read once (a read task)."""
    parts = []
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

def _graph(sources, channel_axis, threads):
    """(root, sizes, leaves): delayed read tasks (`leaves`) of up to FILES_PER_TASK small
    inputs each (a slab of a large array on its own; `sizes`: the inputs of each), and the
    root of the tree of merges over them."""
    from dask import delayed
    groups, current = [], []
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


def _progress_bar(total, enabled):
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, unit="file", desc="fastnorm stats", file=sys.stderr,
                dynamic_ncols=True)


def compute_local(root, sizes, scheduler, bar):
    """Compute on dask's threaded or processes scheduler, the bar advanced per read task."""
    import dask
    from dask.callbacks import Callback

    class ReadProgress(Callback):
        def _posttask(self, key, result, dsk, state, worker_id):
            if isinstance(key, tuple) and str(key[0]).startswith(READ):
                bar.update(sizes[key[1]])

    if bar is None:
        return dask.compute(root, scheduler=scheduler)[0]
    with ReadProgress():
        return dask.compute(root, scheduler=scheduler)[0]


def compute_distributed(root, leaves, sizes, address, bar):
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
        return futures[0].result()


# ---------------------------------------------------------------------------------------
# report

def _floats(a):
    return [float(v) for v in np.asarray(a, dtype=np.float64).reshape(-1)]


def report(summary, ignored):
    """The result as a dict (what --json prints)."""
    moments = summary.moments
    if moments.count == 0:
        raise DatasetError(f"{summary.label}: the inputs hold no values")
    count = int(moments.count)
    mean, std = moments.mean, moments.std()
    doc = {
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


def _text(doc):
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

def _channel_axis(text):
    if text.lower() == "none":
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer or 'none': {text!r}")


def _parser():
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


def main(argv=None):
    args = _parser().parse_args(argv)
    try:
        import dask  # noqa: F401
    except ImportError:
        print("error: python -m fastnorm stats needs dask: pip install 'dask[array]' "
              "(or pip install 'fastnorm-kernels[dask]')", file=sys.stderr)
        return 2
    from .dask import _task_threads
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
