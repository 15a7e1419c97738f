"""An ImageFolder tree of tiny PNGs through a real DataLoader."""

from __future__ import annotations

import pytest
import torch

from paramdoctor.config.schema import DataConfig
from paramdoctor.data import build_loaders
from paramdoctor.errors import InputError

CPU = torch.device("cpu")


def _cfg(root, **kw) -> DataConfig:
    return DataConfig(dataset="imagefolder", root=str(root), val_fraction=0.25, batch_size=4, **kw)


def test_image_folder_batches_are_square_normalised_tensors(image_folder):
    loaders = build_loaders(_cfg(image_folder), seed=0, device=CPU)
    assert (loaders.num_classes, loaders.in_channels, loaders.image_size) == (2, 3, 10)
    assert loaders.class_names == ["cat", "dog"]
    assert loaders.train.num_samples == 9 and loaders.val.num_samples == 3
    assert len(loaders.train) == 2  # 4 + 4, the lone ninth sample dropped
    x, y = next(iter(loaders.train))
    assert x.shape == (4, 3, 10, 10) and x.dtype == torch.float32 and y.dtype == torch.int64


def test_same_seed_same_batches_workers_or_not_and_epochs_differ(image_folder):
    a = build_loaders(_cfg(image_folder), seed=1, device=CPU)
    b = build_loaders(_cfg(image_folder, num_workers=1), seed=1, device=CPU)
    batches_a, batches_b = list(a.train), list(b.train)
    assert all(torch.equal(xa, xb) and torch.equal(ya, yb) for (xa, ya), (xb, yb) in zip(batches_a, batches_b))
    a.train.set_epoch(1)
    assert not all(torch.equal(x1, x2) for (x1, _), (x2, _) in zip(batches_a, list(a.train)))


def test_validation_is_not_augmented_and_image_size_resizes(image_folder):
    loaders = build_loaders(_cfg(image_folder, image_size=16), seed=0, device=CPU)
    first, second = list(loaders.val), list(loaders.val)
    assert first[0][0].shape[-2:] == (16, 16)
    assert torch.equal(first[0][0], second[0][0])


def test_missing_or_empty_roots_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="no such directory"):
        build_loaders(_cfg(tmp_path / "nowhere"), seed=0, device=CPU)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="one sub-folder per class"):
        build_loaders(_cfg(tmp_path / "empty"), seed=0, device=CPU)


def _png_claiming(width: int, height: int) -> bytes:
    """A 1x1 PNG whose header claims ``width`` x ``height`` pixels (CRC fixed, so PIL believes it)."""
    import io
    import struct
    import zlib

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    ihdr = bytearray(data[12:29])
    ihdr[4:12] = struct.pack(">II", width, height)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)) & 0xFFFFFFFF)
    return bytes(data)


@pytest.mark.parametrize("workers", [0, 1])
@pytest.mark.parametrize(("name", "content", "says"), [
    ("3.png", b"junk", "not an image file PIL can read"),
    ("3.png", _png_claiming(12, 10)[:60], "truncated"),
    ("bad\nname.png", b"junk", "not an image file PIL can read"),
], ids=["junk", "truncated", "newline-in-name"])
def test_a_broken_image_met_while_training_is_one_training_error_line(image_folder, workers, name, content, says):
    """Found mid-epoch, so the run (already open) ends FAILED: a TrainingError line naming the file, even from a worker."""
    from paramdoctor.errors import TrainingError

    (image_folder / "dog" / name).write_bytes(content)
    loaders = build_loaders(_cfg(image_folder, num_workers=workers, augment=False), seed=0, device=CPU)
    with pytest.raises(TrainingError) as raised:
        for loader in (loaders.train, loaders.val):
            list(loader)
    message = str(raised.value)
    assert message.startswith("data.root: cannot read image ") and says in message and message.endswith("remove or replace the file")
    assert "\n" not in message and repr(name)[1:-1] in message


@pytest.mark.parametrize("side", [10_000, 70_000])
def test_a_first_image_claiming_too_many_pixels_is_an_input_error_without_a_warning(image_folder, side):
    """PIL's decompression-bomb warning (89M+ pixels) and error (179M+) both become one InputError before any run."""
    import warnings

    (image_folder / "cat" / "0.png").write_bytes(_png_claiming(side, 10_000))
    with warnings.catch_warnings(record=True) as caught, pytest.raises(InputError, match="cannot read image .*0.png"):
        warnings.simplefilter("always")
        build_loaders(_cfg(image_folder), seed=0, device=CPU)
    assert not [w for w in caught if "DecompressionBomb" in type(w.message).__name__]


def test_a_class_folder_named_with_a_newline_stays_on_one_error_line(tmp_path):
    (tmp_path / "imgs" / "bad\nclass").mkdir(parents=True)
    (tmp_path / "imgs" / "bad\nclass" / "notes.txt").write_text("no images here")
    with pytest.raises(InputError) as info:
        build_loaders(_cfg(tmp_path / "imgs"), seed=0, device=CPU)
    assert "bad\\nclass" in str(info.value) and "\n" not in str(info.value)
