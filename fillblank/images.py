"""Decoding an image file as the network and the gallery must see it: upright, 8-bit RGB.

`Image.convert("RGB")` alone gets real photos wrong in silence: it ignores the EXIF
orientation (a portrait photo goes in on its side), clips 16-bit greys to 255 (a 16-bit
PNG comes out almost all white), and drops transparency to whatever colour the hidden
pixels hold, be it an alpha channel or a PNG's one transparent colour (`tRNS`, in grey,
RGB and palette images alike). `rgb` applies the orientation, scales 16-bit greys down to 8
bits, and composites transparent pixels over white; grey, palette and CMYK images convert
as usual.
"""

import numpy as np
from PIL import Image, ImageOps

# Modes holding more than 8 bits per pixel of grey, and the value their white has.
WIDE_GREYS = {"I;16": 65535, "I;16L": 65535, "I;16B": 65535, "I;16N": 65535, "I": 65535, "F": 1.0}


def rgb(image: Image.Image) -> Image.Image:
    """`image` upright and as 8-bit RGB (see the module docstring)."""
    image = ImageOps.exif_transpose(image)
    if image.mode in WIDE_GREYS:
        wide = np.asarray(image, dtype=np.float64)
        grey = Image.fromarray((wide * (255 / WIDE_GREYS[image.mode])).round().clip(0, 255).astype(np.uint8), "L")
        key = image.info.get("transparency")  # the one transparent grey, in the file's own scale
        image = (
            grey
            if key is None
            else Image.merge("LA", (grey, Image.fromarray(np.where(wide == key, 0, 255).astype(np.uint8), "L")))
        )
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        image = Image.alpha_composite(Image.new("RGBA", image.size, "white"), image.convert("RGBA"))
    return image.convert("RGB")
