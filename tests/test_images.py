"""Images as real files of every awkward kind, written here and read back as the network sees them."""

import io

import numpy as np
import pytest
from PIL import Image

from fillblank.images import rgb


def saved(image: Image.Image, format: str, **options) -> Image.Image:
    """`image` written as a file of `format` and opened again, as the features stage opens it."""
    buffer = io.BytesIO()
    image.save(buffer, format, **options)
    return Image.open(io.BytesIO(buffer.getvalue()))


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(rgb(image), dtype=np.int64)


def test_a_16_bit_grey_png_is_scaled_to_8_bits_not_clipped_to_white():
    grey = Image.fromarray(np.full((4, 4), 32896, dtype=np.uint16))  # half of 65535
    opened = saved(grey, "PNG")
    assert opened.mode.startswith("I")  # Pillow reads it with 16 bits kept
    assert np.all(pixels(opened) == 128)


def test_exif_orientation_is_applied():
    wide = Image.new("RGB", (30, 10), "red")
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: the camera was turned; show it rotated 90 degrees
    assert rgb(saved(wide, "JPEG", exif=exif)).size == (10, 30)


def test_transparency_is_composited_over_white():
    clear = Image.new("RGBA", (2, 2), (0, 0, 0, 0))  # black, fully transparent
    half = Image.new("RGBA", (2, 2), (0, 0, 255, 128))
    assert np.all(pixels(saved(clear, "PNG")) == 255)
    assert pixels(saved(half, "PNG"))[0, 0].tolist() == [127, 127, 255]


@pytest.mark.parametrize(
    "image",
    [
        Image.new("L", (2, 2), 0),
        Image.new("RGB", (2, 2), (0, 0, 0)),
        Image.fromarray(np.zeros((2, 2), dtype=np.uint16)),
    ],
    ids=["grey", "rgb", "grey-16-bit"],
)
def test_a_png_s_one_transparent_colour_is_composited_over_white_too(image):
    keyed = saved(image, "PNG", transparency=(0, 0, 0) if image.mode == "RGB" else 0)  # tRNS: black is "no pixel here"
    assert "transparency" in keyed.info
    assert np.all(pixels(keyed) == 255)
    assert np.all(pixels(saved(image, "PNG")) == 0)  # without the key, black stays black


@pytest.mark.parametrize(
    "image, format, expected",
    [
        (Image.new("L", (3, 3), 200), "PNG", [200, 200, 200]),
        (Image.new("CMYK", (3, 3), (0, 255, 255, 0)), "JPEG", [255, 0, 0]),  # red, roughly
        (Image.new("RGB", (3, 3), (10, 200, 30)).quantize(4), "PNG", [10, 200, 30]),
        (Image.new("RGB", (1, 1), (9, 8, 7)), "PNG", [9, 8, 7]),
    ],
    ids=["grey", "cmyk-jpeg", "palette", "1x1"],
)
def test_other_modes_become_rgb(image, format, expected):
    out = pixels(saved(image, format))
    assert out.shape == (image.height, image.width, 3)
    assert np.abs(out[0, 0] - expected).max() <= 3
