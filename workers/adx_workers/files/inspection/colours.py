"""Dominant colours of an image, with plain names (``blue``, ``white``) and hex codes."""

from __future__ import annotations

import colorsys
from dataclasses import dataclass
from typing import cast

from PIL import Image

# The image is shrunk to this box first: colours do not need detail.
_SAMPLE_BOX = 64
# Pixels more transparent than this do not count.
_MIN_ALPHA = 128
# Colours that cover less of the picture than this are not named.
_MIN_SHARE = 0.08
_HUES: tuple[tuple[float, str], ...] = (
    (15, "red"),
    (45, "orange"),
    (70, "yellow"),
    (165, "green"),
    (200, "cyan"),
    (255, "blue"),
    (290, "purple"),
    (340, "pink"),
    (360, "red"),
)


@dataclass(frozen=True)
class ColourShare:
    hex: str
    name: str
    # Of the opaque pixels, 0..1.
    share: float


def colour_name(red: int, green: int, blue: int) -> str:
    """A plain name for an sRGB colour, from its hue, saturation and brightness."""
    hue, saturation, value = colorsys.rgb_to_hsv(red / 255, green / 255, blue / 255)
    if value < 0.2:
        return "black"
    if saturation < 0.18:
        return "white" if value > 0.85 else "gray" if value > 0.3 else "black"
    degrees = hue * 360
    name = next(name for limit, name in _HUES if degrees < limit)
    if name == "orange" and value < 0.6:
        return "brown"
    if name == "red" and saturation < 0.5 and value > 0.7:
        return "pink"
    return name


def dominant_colours(image: Image.Image, count: int = 5) -> list[ColourShare]:
    """Up to ``count`` colours covering most of the opaque pixels, largest share first."""
    sample = image.convert("RGBA")
    # A box filter averages; sharper filters ring at edges and invent colours.
    sample.thumbnail((_SAMPLE_BOX, _SAMPLE_BOX), Image.Resampling.BOX)
    pixels = cast(tuple[tuple[int, int, int, int], ...], sample.get_flattened_data())
    opaque = [(r, g, b) for r, g, b, a in pixels if a >= _MIN_ALPHA]
    if not opaque:
        return []
    strip = Image.new("RGB", (len(opaque), 1))
    strip.putdata(opaque)
    quantized = strip.quantize(colors=count, method=Image.Quantize.MEDIANCUT)
    palette = quantized.getpalette() or []
    found: list[ColourShare] = []
    # A palette image counts its colours by palette index.
    counted = cast(list[tuple[int, int]], quantized.getcolors() or [])
    for pixels_of, index in sorted(counted, reverse=True):
        share = pixels_of / len(opaque)
        if share < _MIN_SHARE:
            continue
        red, green, blue = palette[index * 3 : index * 3 + 3]
        found.append(
            ColourShare(
                hex=f"#{red:02x}{green:02x}{blue:02x}",
                name=colour_name(red, green, blue),
                share=round(share, 3),
            )
        )
    return found
