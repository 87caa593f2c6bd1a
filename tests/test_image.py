"""normalize_image (API.md, "Images: normalize_image"): against float64 formulas of the
conventions it replaces (torchvision ToImage + ToDtype + Normalize, Hugging Face image
processors, OpenCV blobFromImage, albumentations Normalize), and against OpenCV and
albumentations themselves when installed (the `test` extra installs them)."""
import os
import subprocess
import sys

import numpy as np
import pytest

import fastnorm as fn
from fastnorm import _dispatch
from fastnorm._reference import ref_normalize_image
from _helpers import rng_for

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IN_DTYPES = ("uint8", "uint16", "float32", "float64")
OUT_DTYPES = ("float32", "float16", "float64")
MODES = ("image", "image_per_channel", "min_max", "min_max_per_channel")


def _images(dtype, shape, seed="img"):
    rng = rng_for(seed, dtype, shape)
    if np.dtype(dtype).kind == "u":
        return rng.integers(0, np.iinfo(dtype).max, size=shape, dtype=dtype, endpoint=True)
    return rng.uniform(-0.25, 1.25, size=shape).astype(dtype)


def _default_scale(dtype):
    return {"uint8": 1 / 255, "uint16": 1 / 65535}.get(np.dtype(dtype).name, 1.0)


def _swap(x):
    """The first and third channels exchanged (BGR <-> RGB, BGRA <-> RGBA)."""
    order = list(range(x.shape[-1]))
    order[0], order[2] = 2, 0
    return x[..., order]


def ref_standard(x_nhwc, mean=0.0, std=1.0, scale=None, swap_rb=False, layout="NCHW"):
    """(x * scale - mean[c]) / std[c] in float64, on (..., H, W, C) data."""
    x = np.asarray(x_nhwc).astype(np.float64)
    if x.ndim == 2:
        x = x[:, :, None]
    if swap_rb:
        x = _swap(x)
    s = _default_scale(np.asarray(x_nhwc).dtype) if scale is None else scale
    y = (x * s - np.asarray(mean, np.float64)) / np.asarray(std, np.float64)
    return np.moveaxis(y, -1, -3) if layout == "NCHW" else y


def ref_per_image(x_nhwc, mode, eps=1e-4, swap_rb=False, layout="NCHW"):
    """albumentations' per-image modes in float64 on (N, H, W, C) or (H, W, C) data (the
    package's reference, fastnorm._reference, which the benchmarks check against too)."""
    return ref_normalize_image(x_nhwc, mode=mode, swap_rb=swap_rb, layout=layout, eps=eps)


def _tol(out_dtype, ref):
    """Max |error| accepted for an output dtype, for results of magnitude up to |ref|."""
    big = max(1.0, float(np.max(np.abs(ref)))) if ref.size else 1.0
    return {"float32": 4e-7 * big, "float64": 1e-14 * big,
            "float16": 2 ** -10 * big}[np.dtype(out_dtype).name]


def assert_close(got, want, out_dtype):
    assert got.dtype == np.dtype(out_dtype)
    assert got.shape == want.shape, (got.shape, want.shape)
    err = np.max(np.abs(got.astype(np.float64) - want)) if want.size else 0.0
    assert err <= _tol(out_dtype, want), f"max |error| {err:.3g}"


# ---------------------------------------------------------------------------------------
# mode "standard": every input dtype, output dtype, layout and form of the images

@pytest.mark.parametrize("in_dtype", IN_DTYPES)
@pytest.mark.parametrize("out_dtype", OUT_DTYPES)
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_standard_every_dtype_and_layout(in_dtype, out_dtype, layout):
    x = _images(in_dtype, (3, 17, 23, 3))
    got = fn.normalize_image(x, IMAGENET_MEAN, IMAGENET_STD, layout=layout, dtype=out_dtype)
    assert_close(got, ref_standard(x, IMAGENET_MEAN, IMAGENET_STD, layout=layout), out_dtype)
    if np.dtype(out_dtype) == np.float16:     # float32 computation rounded to half once
        f32 = fn.normalize_image(x, IMAGENET_MEAN, IMAGENET_STD, layout=layout)
        np.testing.assert_array_equal(got, f32.astype(np.float16))


@pytest.mark.parametrize("channels", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_channel_counts(channels, layout):
    x = _images("uint8", (2, 9, 70, channels))
    mean = np.linspace(0.3, 0.6, channels)
    std = np.linspace(0.2, 0.3, channels)
    got = fn.normalize_image(x, mean, std, layout=layout)
    assert_close(got, ref_standard(x, mean, std, layout=layout), "float32")
    if channels >= 3:
        got = fn.normalize_image(x, mean, std, layout=layout, swap_rb=True)
        assert_close(got, ref_standard(x, mean, std, swap_rb=True, layout=layout), "float32")


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_one_image_batch_and_list(layout):
    x = _images("uint8", (4, 12, 10, 3))
    want = ref_standard(x, IMAGENET_MEAN, IMAGENET_STD, layout=layout)
    one = fn.normalize_image(x[1], IMAGENET_MEAN, IMAGENET_STD, layout=layout)
    assert_close(one, want[1], "float32")
    assert one.shape == ((3, 12, 10) if layout == "NCHW" else (12, 10, 3))
    batch = fn.normalize_image(x, IMAGENET_MEAN, IMAGENET_STD, layout=layout)
    assert_close(batch, want, "float32")
    # a list of separate arrays (not views of one batch), and a tuple of views
    separate = [np.array(img) for img in x]
    listed = fn.normalize_image(separate, IMAGENET_MEAN, IMAGENET_STD, layout=layout)
    np.testing.assert_array_equal(listed, batch)
    np.testing.assert_array_equal(
        fn.normalize_image(tuple(x), IMAGENET_MEAN, IMAGENET_STD, layout=layout), batch)
    # a list of (H, W) grey images and one (H, W) image: C = 1
    grey = [img[:, :, 0] for img in separate]
    want_grey = ref_standard(x[..., :1], 0.5, 0.25, layout=layout)
    assert_close(fn.normalize_image(grey, 0.5, 0.25, layout=layout), want_grey, "float32")
    assert_close(fn.normalize_image(grey[2], 0.5, 0.25, layout=layout), want_grey[2],
                 "float32")


def test_default_mean_std_scale_is_a_rescale():
    for dtype in IN_DTYPES:
        x = _images(dtype, (2, 5, 6, 3))
        got = fn.normalize_image(x, dtype=np.float64)
        np.testing.assert_allclose(got, np.moveaxis(x.astype(np.float64), -1, 1)
                                   * _default_scale(dtype), rtol=1e-15, atol=1e-15)
    x = _images("uint8", (2, 5, 6, 3))
    got = fn.normalize_image(x, 10.0, 2.0, scale=1.0, layout="NHWC", dtype=np.float64)
    np.testing.assert_allclose(got, (x - 10.0) / 2.0, rtol=1e-15)


def test_strided_inputs_run_and_agree():
    """Planar input passed as HWC views, crops, flips, BGR views, big-endian data."""
    x = _images("uint8", (3, 20, 30, 3))
    want = ref_standard(x, IMAGENET_MEAN, IMAGENET_STD)
    planar = np.ascontiguousarray(x.transpose(0, 3, 1, 2))           # NCHW memory
    got = fn.normalize_image(planar.transpose(0, 2, 3, 1), IMAGENET_MEAN, IMAGENET_STD)
    assert_close(got, want, "float32")
    got = fn.normalize_image(planar[1].transpose(1, 2, 0), IMAGENET_MEAN, IMAGENET_STD)
    assert_close(got, want[1], "float32")
    crop = x[:, 2:17:2, 5:, :]
    assert_close(fn.normalize_image(crop, IMAGENET_MEAN, IMAGENET_STD),
                 ref_standard(crop, IMAGENET_MEAN, IMAGENET_STD), "float32")
    flipped = x[:, ::-1, ::-1]
    assert_close(fn.normalize_image(flipped, IMAGENET_MEAN, IMAGENET_STD),
                 ref_standard(flipped, IMAGENET_MEAN, IMAGENET_STD), "float32")
    bgr_view = x[..., ::-1]                                           # negative C stride
    assert_close(fn.normalize_image(bgr_view, IMAGENET_MEAN, IMAGENET_STD, swap_rb=True),
                 want, "float32")
    wide = _images("uint16", (2, 8, 9, 3)).astype(">u2")
    assert_close(fn.normalize_image(wide, IMAGENET_MEAN, IMAGENET_STD, layout="NHWC"),
                 ref_standard(wide, IMAGENET_MEAN, IMAGENET_STD, layout="NHWC"), "float32")
    rgba_planes = np.ascontiguousarray(_images("float32", (4, 11, 13)))
    got = fn.normalize_image(rgba_planes.transpose(1, 2, 0), swap_rb=True, layout="NHWC")
    assert_close(got, ref_standard(rgba_planes.transpose(1, 2, 0), swap_rb=True,
                                   layout="NHWC"), "float32")


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("out_dtype", OUT_DTYPES)
def test_out_slots_of_a_preallocated_batch(layout, out_dtype):
    x = _images("uint8", (3, 16, 18, 3))
    want = ref_standard(x, IMAGENET_MEAN, IMAGENET_STD, layout=layout)
    shape = (5,) + want.shape[1:]
    batch = np.full(shape, -7.0, out_dtype)
    for k in range(3):
        r = fn.normalize_image(x[k], IMAGENET_MEAN, IMAGENET_STD, layout=layout,
                               dtype=out_dtype, out=batch[k + 1])
        assert r is not None and np.shares_memory(r, batch)
    assert_close(batch[1:4], want, out_dtype)
    assert np.all(batch[0] == -7) and np.all(batch[4] == -7)
    whole = np.empty(want.shape, out_dtype)
    assert fn.normalize_image(x, IMAGENET_MEAN, IMAGENET_STD, layout=layout,
                              dtype=out_dtype, out=whole) is whole
    assert_close(whole, want, out_dtype)
    # a strided out (every other column of a wider buffer): written through its strides
    wider = np.zeros(want.shape[:-1] + (2 * want.shape[-1],), out_dtype)
    fn.normalize_image(x, IMAGENET_MEAN, IMAGENET_STD, layout=layout, dtype=out_dtype,
                       out=wider[..., ::2])
    assert_close(wider[..., ::2], want, out_dtype)
    assert np.all(wider[..., 1::2] == 0)


def test_results_identical_for_every_thread_count():
    x = _images("uint8", (6, 64, 80, 3))
    frame = _images("uint8", (300, 257, 3))
    for out_dtype in OUT_DTYPES:
        for layout in ("NCHW", "NHWC"):
            ref = fn.normalize_image(x, IMAGENET_MEAN, IMAGENET_STD, layout=layout,
                                     dtype=out_dtype, num_threads=1)
            one = fn.normalize_image(frame, IMAGENET_MEAN, IMAGENET_STD, layout=layout,
                                     dtype=out_dtype, num_threads=1)
            for nt in (2, 3):
                np.testing.assert_array_equal(fn.normalize_image(
                    x, IMAGENET_MEAN, IMAGENET_STD, layout=layout, dtype=out_dtype,
                    num_threads=nt), ref)
                np.testing.assert_array_equal(fn.normalize_image(
                    frame, IMAGENET_MEAN, IMAGENET_STD, layout=layout, dtype=out_dtype,
                    num_threads=nt), one)


def test_nan_and_inf_propagate_in_float_images():
    x = _images("float32", (2, 4, 5, 3))
    x[0, 1, 2, 0] = np.nan
    x[1, 3, 4, 2] = np.inf
    got = fn.normalize_image(x, IMAGENET_MEAN, IMAGENET_STD)
    assert np.isnan(got[0, 0, 1, 2]) and np.isposinf(got[1, 2, 3, 4])
    assert np.isfinite(got).sum() == got.size - 2


def test_float16_rounding_overflow_and_subnormals():
    """float16 output: round to nearest even, overflow to inf, subnormals kept (the
    conversion paths with and without F16C agree with NumPy's)."""
    vals = np.array([0.0, 1e-8, 3e-8, 6e-8, 5.96e-8, 1e-5, 6.1e-5, 0.1, 1 / 3, 2049.0,
                     2051.0, 65504.0, 65519.0, 65520.0, 1e6, -1e-7, -70000.0],
                    np.float32)
    x = np.tile(vals, 2)[None, :, None]       # (1, W, 1): long enough for the vector loop
    got = fn.normalize_image(x, dtype=np.float16, layout="NHWC")
    with np.errstate(over="ignore"):
        want = x.astype(np.float16)
    np.testing.assert_array_equal(got.view(np.uint16), want.view(np.uint16))


# ---------------------------------------------------------------------------------------
# the conventions, as float64 formulas of their documentation

def test_torchvision_and_hugging_face_formulas():
    """torchvision ToImage + ToDtype(float32, scale=True) + Normalize(mean, std) and a Hugging
    Face image processor (do_rescale with rescale_factor 1/255, image_mean, image_std), both
    in float64: (x / 255 - mean) / std, channels first."""
    x = _images("uint8", (4, 32, 24, 3), "tv")
    torchvision = (np.moveaxis(x, -1, 1).astype(np.float64) / 255.0
                   - np.array(IMAGENET_MEAN)[:, None, None]) / np.array(IMAGENET_STD)[:, None,
                                                                                       None]
    assert_close(fn.normalize_image(x, IMAGENET_MEAN, IMAGENET_STD), torchvision, "float32")
    hf = np.moveaxis((x.astype(np.float64) * (1 / 255) - np.array(CLIP_MEAN))
                     / np.array(CLIP_STD), -1, 1)
    assert_close(fn.normalize_image(list(x), CLIP_MEAN, CLIP_STD), hf, "float32")
    assert_close(fn.normalize_image(x, CLIP_MEAN, CLIP_STD, dtype=np.float64), hf, "float64")


# ---------------------------------------------------------------------------------------
# per-image modes

@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("in_dtype", IN_DTYPES)
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_per_image_modes_against_float64(mode, in_dtype, layout):
    x = _images(in_dtype, (3, 15, 19, 3), "modes")
    want = ref_per_image(x, mode, layout=layout)
    for out_dtype in OUT_DTYPES:
        got = fn.normalize_image(x, mode=mode, layout=layout, dtype=out_dtype)
        assert_close(got, want, out_dtype)
    np.testing.assert_array_equal(fn.normalize_image(list(x), mode=mode, layout=layout),
                                  fn.normalize_image(x, mode=mode, layout=layout))
    assert_close(fn.normalize_image(x[2], mode=mode, layout=layout), want[2], "float32")
    assert_close(fn.normalize_image(x, mode=mode, layout=layout, swap_rb=True, eps=0.5),
                 ref_per_image(x, mode, eps=0.5, swap_rb=True, layout=layout), "float32")


def test_image_mode_clips_at_20():
    x = np.zeros((1, 40, 40, 3), np.uint8)
    x[0, 0, 0, 0] = 255                     # one outlier: (255 - m) / s is about 69
    got = fn.normalize_image(x, mode="image", layout="NHWC")
    assert got.max() == 20.0
    assert_close(got, ref_per_image(x, "image", layout="NHWC"), "float32")


def test_constant_image_in_per_image_modes():
    x = np.full((2, 5, 5, 3), 7, np.uint8)
    for mode in MODES:
        got = fn.normalize_image(x, mode=mode)
        assert np.all(got == 0), mode


# ---------------------------------------------------------------------------------------
# the libraries themselves

def _cv2():
    return pytest.importorskip("cv2", reason="OpenCV (opencv-python-headless) not installed")


@pytest.mark.parametrize("in_dtype", ["uint8", "float32"])
@pytest.mark.parametrize("swap", [False, True])
def test_opencv_blob_from_image(in_dtype, swap):
    cv2 = _cv2()
    img = _images(in_dtype, (37, 45, 3), "cv")
    s, mean = 1 / 127.5, (104.0, 117.0, 123.0)
    blob = cv2.dnn.blobFromImage(img, s, (45, 37), mean, swap, False)
    got = fn.normalize_image(img, mean=np.multiply(s, mean), std=1, scale=s, swap_rb=swap)
    assert blob.shape == (1,) + got.shape
    assert_close(got, blob[0].astype(np.float64), "float32")
    # and the float64 formula
    assert_close(got, ref_standard(img, np.multiply(s, mean), 1.0, s, swap), "float32")


@pytest.mark.parametrize("swap", [False, True])
def test_opencv_blob_from_images(swap):
    cv2 = _cv2()
    imgs = list(_images("uint8", (5, 24, 32, 3), "cvs"))
    s, mean = 1 / 255, (0.485 * 255, 0.456 * 255, 0.406 * 255)
    blob = cv2.dnn.blobFromImages(imgs, s, (32, 24), mean, swap, False)
    got = fn.normalize_image(imgs, mean=np.multiply(s, mean), std=1, scale=s, swap_rb=swap)
    assert_close(got, blob.astype(np.float64), "float32")
    out = np.empty((8,) + got.shape[1:], np.float32)
    fn.normalize_image(imgs, mean=np.multiply(s, mean), std=1, scale=s, swap_rb=swap,
                       out=out[2:7])
    assert_close(out[2:7], blob.astype(np.float64), "float32")


def _albumentations():
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")    # no version check online
    return pytest.importorskip("albumentations", reason="albumentations not installed")


@pytest.mark.parametrize("in_dtype", ["uint8", "float32"])
def test_albumentations_normalize_standard(in_dtype):
    A = _albumentations()
    img = _images(in_dtype, (29, 31, 3), "alb")
    max_pixel = 255.0
    t = A.Normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD, max_pixel_value=max_pixel, p=1.0)
    want = t(image=img.copy())["image"]
    got = fn.normalize_image(img, IMAGENET_MEAN, IMAGENET_STD, scale=1 / max_pixel,
                             layout="NHWC")
    assert want.shape == got.shape
    assert_close(got, want.astype(np.float64), "float32")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("in_dtype", ["uint8", "float32"])
def test_albumentations_normalize_per_image_modes(mode, in_dtype):
    A = _albumentations()
    imgs = _images(in_dtype, (3, 26, 22, 3), "albm")
    t = A.Normalize(normalization=mode, p=1.0)
    # (copies: for float32 images albumentations' min-max modes write into the input)
    want = np.stack([t(image=img.copy())["image"] for img in imgs]).astype(np.float64)
    # albumentations' path for images other than uint8 (albucore's
    # normalize_per_image_opencv) adds no eps in "image_per_channel" (cv2.meanStdDev) and
    # "min_max" (cv2.normalize NORM_MINMAX): the same computation is eps=0 here
    eps = 0.0 if in_dtype != "uint8" and mode in ("image_per_channel", "min_max") else 1e-4
    got = fn.normalize_image(imgs, mode=mode, layout="NHWC", eps=eps)
    # albumentations computes in float32 (its statistics too): a float32 tolerance on
    # results up to 20
    err = np.max(np.abs(got - want))
    assert err <= 2e-5 * max(1.0, np.max(np.abs(want))), f"max |error| {err:.3g}"
    assert_close(fn.normalize_image(imgs, mode=mode, layout="NHWC"),
                 ref_per_image(imgs, mode, layout="NHWC"), "float32")


# ---------------------------------------------------------------------------------------
# errors: named argument, raised before anything is written

def _unchanged_out_after(call, out):
    before = out.copy()
    call()
    np.testing.assert_array_equal(out, before)


@pytest.mark.parametrize("bad, exc, pattern", [
    (np.ones((4, 5, 3), np.complex64), TypeError, "images.*complex64"),
    (np.ones((4, 5, 3), object), TypeError, "images.*object"),
    (np.ones((4, 5, 3), bool), TypeError, "images.*bool"),
    (np.ones((4, 5, 3), np.int16), TypeError, "images.*int16"),
    (np.ones((4, 5, 3), np.float16), TypeError, "images.*float16"),
    (np.ones((5,), np.uint8), ValueError, "images"),
    (np.ones((1, 2, 4, 5, 3), np.uint8), ValueError, "images"),
    (np.ones((4, 5, 0), np.uint8), ValueError, "channel"),
    ([], ValueError, "images"),
    ([np.ones((4, 5, 3), np.uint8), np.ones((4, 6, 3), np.uint8)], ValueError,
     r"images\[1\].*shape"),
    ([np.ones((4, 5, 3), np.uint8), np.ones((4, 5, 3), np.uint16)], ValueError,
     r"dtype.*images\[1\]"),
    ([np.ones((4, 5, 3), np.uint8), np.ones((4, 5, 3), complex)], TypeError, r"images\[1\]"),
    ("not an image", TypeError, "images"),
])
def test_bad_images(bad, exc, pattern):
    with pytest.raises(exc, match=pattern):
        fn.normalize_image(bad)


@pytest.mark.parametrize("kwargs, exc, pattern", [
    (dict(mean=(0.5, 0.5)), ValueError, "mean.*3"),
    (dict(std=(0.5, 0.5, 0.5, 0.5)), ValueError, "std.*3"),
    (dict(std=(0.5, 0.0, 0.5)), ValueError, "std.*0"),
    (dict(std=0), ValueError, "std"),
    (dict(mean=(np.nan, 0, 0)), ValueError, "mean.*finite"),
    (dict(mean="red"), TypeError, "mean"),
    (dict(std=[[0.2, 0.2, 0.2]]), ValueError, "std"),
    (dict(scale=np.inf), ValueError, "scale"),
    (dict(scale="1/255"), TypeError, "scale"),
    (dict(mode="per_image"), ValueError, "mode"),
    (dict(mode=None), TypeError, "mode"),
    (dict(layout="CHW"), ValueError, "layout"),
    (dict(layout="nchw"), ValueError, "layout"),
    (dict(dtype=np.int32), TypeError, "dtype"),
    (dict(dtype="bfloat"), TypeError, "dtype"),
    (dict(mode="image", mean=(0.5, 0.5, 0.5)), ValueError, "mean.*None"),
    (dict(mode="min_max", std=0.2), ValueError, "std.*None"),
    (dict(mode="image_per_channel", scale=1 / 255), ValueError, "scale.*None"),
    (dict(eps=-1.0), ValueError, "eps"),
    (dict(swap_rb=1), TypeError, "swap_rb"),
    (dict(num_threads=0), ValueError, "num_threads"),
])
def test_bad_arguments_before_anything_is_written(kwargs, exc, pattern):
    x = _images("uint8", (2, 6, 7, 3))
    out = np.full((2, 3, 6, 7), 3.0, np.float32)
    _unchanged_out_after(lambda: pytest.raises(exc, fn.normalize_image, x, out=out,
                                               **kwargs).match(pattern), out)


def test_swap_rb_needs_three_channels():
    with pytest.raises(ValueError, match="swap_rb"):
        fn.normalize_image(np.ones((4, 5), np.uint8), swap_rb=True)


@pytest.mark.parametrize("make, exc, pattern", [
    (lambda: np.empty((2, 3, 6, 8), np.float32), ValueError, "out.*shape"),
    (lambda: np.empty((2, 6, 7, 3), np.float32), ValueError, "out.*shape"),
    (lambda: np.empty((2, 3, 6, 7), np.float64), ValueError, "out.*dtype"),
    (lambda: np.empty((2, 3, 6, 7), ">f4"), ValueError, "out.*dtype"),
    (lambda: np.empty((2, 3, 6, 7), np.float32).tolist(), TypeError, "out"),
])
def test_bad_out(make, exc, pattern):
    x = _images("uint8", (2, 6, 7, 3))
    with pytest.raises(exc, match=pattern):
        fn.normalize_image(x, out=make())


def test_read_only_and_overlapping_out():
    x = _images("float32", (2, 6, 7, 3))
    out = np.zeros((2, 3, 6, 7), np.float32)
    out.flags.writeable = False
    with pytest.raises(ValueError, match="out.*writable"):
        fn.normalize_image(x, out=out)
    with pytest.raises(ValueError, match="out overlaps images"):
        fn.normalize_image(x, layout="NHWC", out=x)
    imgs = [x[0].copy(), x[1].copy()]
    with pytest.raises(ValueError, match=r"out overlaps images\[1\]"):
        fn.normalize_image(imgs, layout="NHWC", out=_stacked_view_over(imgs))
    np.testing.assert_array_equal(imgs[1], x[1])


def _stacked_view_over(imgs):
    """An (N, H, W, C) float32 array whose second slot is imgs[1]'s memory (as_strided)."""
    a = imgs[1]
    return np.lib.stride_tricks.as_strided(a, (2,) + a.shape, (0,) + a.strides)


def test_empty_batches():
    x = np.zeros((0, 4, 5, 3), np.uint8)
    assert fn.normalize_image(x).shape == (0, 3, 4, 5)
    assert fn.normalize_image(np.zeros((3, 0, 5, 3), np.uint8), mode="image").shape == \
        (3, 3, 0, 5)


def test_importing_fastnorm_imports_no_image_library():
    code = ("import sys, numpy as np, fastnorm as fn; "
            "fn.normalize_image(np.zeros((2, 4, 4, 3), np.uint8), (0.5,) * 3, (0.2,) * 3); "
            "fn.moments(np.zeros((4, 3), np.uint8), 0); "
            "bad = [m for m in ('cv2', 'albumentations', 'albucore', 'torch', 'torchvision', "
            "'PIL') if m in sys.modules]; "
            "sys.exit(repr(bad) if bad else 0)")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("variant", _dispatch.available_variants())
def test_every_kernel_variant_agrees(variant):
    """Every instruction-set variant against the float64 formulas, and against the baseline
    within rounding (v3/v4 fuse the multiply-add; float16 through F16C or the scalar
    conversion gives the same bits from the same float32 values)."""
    x = _images("uint8", (3, 21, 37, 3), "variants")
    planar = np.ascontiguousarray(x.transpose(0, 3, 1, 2)).transpose(0, 2, 3, 1)
    calls = [dict(layout=layout, dtype=dt, swap_rb=swap)
             for layout in ("NCHW", "NHWC") for dt in OUT_DTYPES for swap in (False, True)]
    with _dispatch.using("baseline"):
        base = [fn.normalize_image(x, IMAGENET_MEAN, IMAGENET_STD, **k) for k in calls]
    with _dispatch.using(variant):
        for k, ref in zip(calls, base):
            got = fn.normalize_image(x, IMAGENET_MEAN, IMAGENET_STD, **k)
            want = ref_standard(x, IMAGENET_MEAN, IMAGENET_STD, swap_rb=k["swap_rb"],
                                layout=k["layout"])
            assert_close(got, want, k["dtype"])
            assert_close(got, ref.astype(np.float64), k["dtype"])
            got = fn.normalize_image(planar, IMAGENET_MEAN, IMAGENET_STD, **k)
            assert_close(got, want, k["dtype"])
        for mode in MODES:
            assert_close(fn.normalize_image(x, mode=mode), ref_per_image(x, mode), "float32")
