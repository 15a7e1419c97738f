"""scikit-learn's handwritten digits: the offline default dataset.

1,797 grey 8x8 images with values 0..16 in ten classes. It ships inside
scikit-learn, so a first ``paramdoctor train`` needs no network and finishes in
seconds on a CPU.
"""

from __future__ import annotations

import numpy as np
from sklearn.datasets import load_digits

from paramdoctor.data.in_memory import ImageArrays

# over all 1,797 images scaled to [0, 1] (the CIFAR constants are likewise fixed)
DIGITS_MEAN = (0.3053,)
DIGITS_STD = (0.3760,)


def load_digits_arrays() -> ImageArrays:
    """All digits as float32 ``N x 1 x 8 x 8`` in [0, 1]; no flip (a mirrored 2 is not a 2)."""
    bunch = load_digits()
    images = (bunch.images.astype(np.float32) / 16.0)[:, None, :, :]
    return ImageArrays(
        images=images,
        labels=bunch.target.astype(np.int64),
        class_names=[str(name) for name in bunch.target_names],
        mean=DIGITS_MEAN,
        std=DIGITS_STD,
        padding=1,
        flip=False,
    )
