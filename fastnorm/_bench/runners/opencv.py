"""OpenCV (opencv-python-headless): cv2.dnn.blobFromImage(s)WithParams with a per-channel
scalefactor 1 / (max * std) and mean max * mean, so that its (x - mean) * scalefactor is the
case's normalization, NCHW float32; cv2.setNumThreads(threads). Importing this module imports
cv2 (only done when an OpenCV runner is built)."""
from typing import TYPE_CHECKING, Any

import numpy as np

from . import OptionalModule, Runner, Unavailable

if TYPE_CHECKING:
    from ..images import ImageSetup

_CV2 = OptionalModule("cv2")


def image_runner(setup: "ImageSetup") -> Runner:
    cv2 = _CV2.get()
    case = setup.case
    if not setup.standard:
        raise Unavailable(f"OpenCV has no per-image mode ({case.mode})")
    if case.layout != "NCHW":
        raise Unavailable("blobFromImage produces NCHW")
    dnn = cv2.dnn
    if not hasattr(dnn, "Image2BlobParams"):
        raise Unavailable("this OpenCV has no Image2BlobParams (per-channel scalefactor)")
    cv2.setNumThreads(setup.threads)
    h, w = case.shape[-3:-1]
    m = setup.max_value
    params = dnn.Image2BlobParams(
        scalefactor=tuple(1.0 / (m * s) for s in setup.std) + (1.0,),
        size=(w, h), mean=tuple(m * v for v in setup.mean) + (0.0,), swapRB=False,
        ddepth=cv2.CV_32F)
    if case.single:
        x = setup.images

        def f() -> Any:
            return dnn.blobFromImageWithParams(x, params)[0]
        note = "blobFromImageWithParams"
    else:
        images = list(setup.images)

        def f() -> Any:
            return dnn.blobFromImagesWithParams(images, params)
        note = "blobFromImagesWithParams"
    try:
        np.asarray(f())
    except Exception as exc:          # e.g. a depth blobFromImage does not take
        raise Unavailable(f"cv2: {type(exc).__name__}: {str(exc).strip()[:80]}") from None
    return Runner(f, note=note)
