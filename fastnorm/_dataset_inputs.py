"""The inputs of `python -m fastnorm stats`: finding them (files, directories, npz members,
zarr arrays), cutting them into Sources (one read task each, large arrays in slabs), and
reading a Source inside its task into arrays of values by channel."""
import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")
ARRAY_EXTENSIONS = (".npy", ".npz")
ZARR_MARKERS = ("zarr.json", ".zarray", ".zgroup")
SLAB_BYTES = 64 << 20          # a larger .npy or zarr array is read in slabs of this size


class DatasetError(Exception):
    """An input that cannot be used; the message names it."""


class _Slots:
    """Pickling of a __slots__ class: its state is the tuple of its slots."""

    __slots__: tuple[str, ...] = ()

    def __getstate__(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        for name, value in zip(self.__slots__, state):
            setattr(self, name, value)


# ---------------------------------------------------------------------------------------
# inputs

class Source(_Slots):
    """One read task's worth of one input: a file (or an npz member, a zarr array), and for
    large arrays a slab [start, stop) along `slab_axis`."""

    __slots__ = ("kind", "path", "member", "slab_axis", "start", "stop")

    def __init__(self, kind: str, path: str, member: str | None = None,
                 slab_axis: int | None = None, start: int | None = None,
                 stop: int | None = None) -> None:
        self.kind, self.path, self.member = kind, path, member
        self.slab_axis, self.start, self.stop = slab_axis, start, stop

    def __dask_tokenize__(self) -> tuple[Any, ...]:
        return ("fastnorm.stats.Source",) + self.__getstate__()

    @property
    def label(self) -> str:
        text = self.path if self.member is None else f"{self.path}[{self.member}]"
        if self.slab_axis is not None:
            text += f" (axis {self.slab_axis} [{self.start}:{self.stop}])"
        return text


def _is_zarr(path: str) -> bool:
    return os.path.isdir(path) and any(os.path.exists(os.path.join(path, m))
                                       for m in ZARR_MARKERS)


def _kind_of(path: str) -> str | None:
    ext = os.path.splitext(path)[1].lower()
    if ext in IMAGE_EXTENSIONS:
        return "image"
    if ext in ARRAY_EXTENSIONS:
        return ext[1:]
    return None


def find_inputs(paths: Sequence[str]) -> tuple[list[tuple[str, str]], list[str]]:
    """(inputs, ignored): the (kind, path) of every input named or found in a named
    directory, in a deterministic order, and the files of other types found in
    directories (reported, not read). A named path that is missing or of an unknown type
    raises DatasetError."""
    inputs: list[tuple[str, str]] = []
    ignored: list[str] = []
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


def _slabs(kind: str, path: str, member: str | None, shape: Sequence[int], itemsize: int,
           channel_axis: int | None) -> list[Source]:
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


def _npy_header(path: str) -> tuple[tuple[int, ...], np.dtype[Any]]:
    try:            # a memory map reads the header only
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
        return arr.shape, arr.dtype
    except Exception as exc:
        raise DatasetError(f"{path}: cannot read as .npy: {exc}") from exc


def _zarr_arrays(path: str) -> list[tuple[str | None, Any]]:
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


def sources_of(inputs: Sequence[tuple[str, str]], channel_axis: int | None) -> list[Source]:
    """The read tasks' Sources, in input order (a large .npy or zarr array in slabs)."""
    sources: list[Source] = []
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

def _read_image(path: str) -> list[NDArray[Any]]:
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


def _slab_index(source: Source, ndim: int) -> tuple[slice, ...]:
    index = [slice(None)] * ndim
    assert source.slab_axis is not None
    index[source.slab_axis] = slice(source.start, source.stop)
    return tuple(index)


def _read_arrays(source: Source) -> "list[tuple[NDArray[Any], str, bool] | _NpzMember]":
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

    def __init__(self, path: str, name: str) -> None:
        self.path, self.name = path, name

    def load(self) -> tuple[NDArray[Any], str, bool]:
        label = f"{self.path}[{self.name}]"
        try:
            with np.load(self.path, allow_pickle=False) as archive:
                return archive[self.name], label, False
        except Exception as exc:
            raise DatasetError(f"{label}: cannot read as .npz: {exc}") from exc


def _values_by_channel(arr: NDArray[Any], label: str, is_image: bool, channel_axis: int | None
                       ) -> NDArray[Any]:
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
