"""CIFAR-10 and CIFAR-100 through torchvision's own dataset classes.

Nothing is downloaded unless ``data.download`` is true. Files whose checksums
match the official archives go through torchvision's unchanged code path. Files
that are present but differ (a hand-made miniature in the same on-disk format,
as the tests write) are read by a subclass whose only change is that the
integrity check asks "does the file exist" (torchvision's ``check_integrity``
with no md5) instead of comparing checksums. Either way the files are pickles:
only point ``data.root`` at files you trust.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from urllib.error import URLError

import numpy as np
from torchvision.datasets import CIFAR10, CIFAR100

from paramdoctor.data.in_memory import ImageArrays
from paramdoctor.errors import InputError

DATA_ENV = "PARAMDOCTOR_DATA"
DEFAULT_DATA_ROOT = Path("~/.cache/paramdoctor/data")

CIFAR_STATS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}


def data_root(root: str | None) -> Path:
    """Where datasets live: ``data.root``, else ``$PARAMDOCTOR_DATA``, else ``~/.cache/paramdoctor/data``."""
    chosen = root or os.environ.get(DATA_ENV) or str(DEFAULT_DATA_ROOT)
    return Path(chosen).expanduser()


def _unchecked(cls: type[CIFAR10]) -> type[CIFAR10]:
    """``cls`` with its files required to exist but not to match the official md5 sums."""
    return type(
        f"Unchecked{cls.__name__}",
        (cls,),
        {
            "__doc__": f"{cls.__name__} read from local files that differ from the official archive.",
            "train_list": [[name, None] for name, _ in cls.train_list],
            "test_list": [[name, None] for name, _ in cls.test_list],
            "meta": {**cls.meta, "md5": None},
        },
    )


_CLASSES: dict[str, type[CIFAR10]] = {"cifar10": CIFAR10, "cifar100": CIFAR100}
_UNCHECKED: dict[str, type[CIFAR10]] = {name: _unchecked(cls) for name, cls in _CLASSES.items()}


def expected_files(name: str) -> list[str]:
    """File names torchvision expects inside the dataset's folder."""
    cls = _CLASSES[name]
    return [f for f, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]


def _open(name: str, root: Path, download: bool) -> CIFAR10:
    cls = _CLASSES[name]
    folder = root / cls.base_folder
    missing = [f for f in expected_files(name) if not (folder / f).is_file()]
    if missing and not download:
        raise InputError(
            f"data.dataset={name}: {', '.join(missing)} not found in {folder}; set data.download=true (needs network) "
            f"or place the extracted {cls.base_folder} folder in {root} (data.root or ${DATA_ENV})"
        )
    try:
        # with every file present, never download: torchvision would re-fetch files whose md5 differs
        return cls(str(root), train=True, download=download and bool(missing))
    except (URLError, OSError) as exc:
        raise InputError(
            f"data.dataset={name}: download into {root} failed ({type(exc).__name__}: {exc}); check the network, "
            f"or place the extracted {cls.base_folder} folder there and set data.download=false"
        ) from None
    except RuntimeError:
        pass  # present but not the official files: read them as they are
    return _UNCHECKED[name](str(root), train=True, download=False)


def load_cifar_arrays(name: str, root: str | None, download: bool) -> ImageArrays:
    """The CIFAR training split (the part paramdoctor splits into train and val) as uint8 NCHW."""
    where = data_root(root)
    try:
        dataset = _open(name, where, download)
    except (pickle.UnpicklingError, EOFError, KeyError, ValueError, TypeError, AttributeError, RuntimeError) as exc:
        folder = where / _CLASSES[name].base_folder
        raise InputError(
            f"data.dataset={name}: the files in {folder} are unreadable ({type(exc).__name__}: {exc}); "
            f"replace them with the extracted official archive"
        ) from None
    folder = where / _CLASSES[name].base_folder
    pixels, labels, classes = _checked(name, folder, dataset)
    images = np.ascontiguousarray(pixels.transpose(0, 3, 1, 2))
    mean, std = CIFAR_STATS[name]
    return ImageArrays(
        images=images,
        labels=labels,
        class_names=classes,
        mean=mean,
        std=std,
        padding=4,
        flip=True,
    )


def _checked(name: str, folder: Path, dataset: CIFAR10) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Pixels (uint8 NHWC), labels and class names of files that unpickled, checked against each other.

    Hand-made or damaged files can unpickle into labels outside the class
    names, a label count that differs from the image count, or pixels that
    are not bytes; each would stop training half-way (or train on garbage), so
    each is one InputError before any run starts.
    """

    def refuse(problem: str) -> InputError:
        return InputError(f"data.dataset={name}: {problem} in {folder}; replace the files with the extracted official archive")

    classes = dataset.classes
    if not isinstance(classes, list) or len(classes) < 2:
        raise refuse(f"the class names are {_sketch(classes)}, not a list of at least two")
    pixels = np.asarray(dataset.data)
    if pixels.dtype != np.uint8:
        if pixels.dtype.kind not in "iu" or pixels.size and (pixels.min() < 0 or pixels.max() > 255):
            raise refuse(f"the pixels are {pixels.dtype} values, not bytes 0..255")
        pixels = pixels.astype(np.uint8)
    targets = list(dataset.targets)
    if len(targets) != len(pixels):
        raise refuse(f"{len(targets)} labels for {len(pixels)} images")
    bad = [t for t in targets if isinstance(t, bool) or not isinstance(t, (int, np.integer)) or not 0 <= t < len(classes)]
    if bad:
        raise refuse(f"label {_sketch(bad[0])} is not one of the {len(classes)} classes 0..{len(classes) - 1}")
    return pixels, np.asarray(targets, dtype=np.int64), [str(c) for c in classes]


def _sketch(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
