"""albumentations: A.Normalize on each image (HWC float32 out), then np.stack and, for NCHW
cases, a transpose to contiguous NCHW, as a dataset's __getitem__ and collate do. Importing
this module imports albumentations (and OpenCV, which it uses)."""
import os

from typing import TYPE_CHECKING, Any

import numpy as np

from . import OptionalModule, Runner

if TYPE_CHECKING:
    from ..images import ImageSetup

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")    # no version check over the network
_ALBUMENTATIONS = OptionalModule("albumentations")


def image_runner(setup: "ImageSetup") -> Runner:
    A = _ALBUMENTATIONS.get()
    case = setup.case
    try:
        import cv2
        cv2.setNumThreads(setup.threads)
    except ImportError:
        pass
    if setup.standard:
        t = A.Normalize(mean=setup.mean, std=setup.std, max_pixel_value=setup.max_value,
                        p=1.0)
    else:
        t = A.Normalize(normalization=case.mode, p=1.0)
    images = [setup.images] if case.single else list(setup.images)
    to_planes = (2, 0, 1) if case.single else (0, 3, 1, 2)

    def f() -> Any:
        planes = [t(image=img)["image"] for img in images]
        y = planes[0] if case.single else np.stack(planes)
        return np.ascontiguousarray(y.transpose(to_planes)) if case.layout == "NCHW" else y
    note = "Normalize per image + np.stack" + (" + transpose" if case.layout == "NCHW"
                                               else "")
    return Runner(f, note=note)
