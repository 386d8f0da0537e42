"""Image checks and thumbnails with Pillow, safe against decompression bombs.

Pillow's ``open`` reads only the header, so the pixel count is known before a single
pixel is decoded: a 100-byte PNG that claims 100,000 x 100,000 pixels is refused without
allocating anything. Only the formats in ``filetypes.PILLOW_FORMATS`` are ever tried.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from PIL import Image, ImageFile, ImageOps

from adx_core.settings import ThumbnailFormat

from .filetypes import PILLOW_FORMATS
from .limits import InspectionLimits, RejectedFile, RejectReason

_JPEG_FORMATS = frozenset({"JPEG", "MPO"})
_WEBP_QUALITY = 80
# 4 of 0..6: most of the size gain of the slow methods at a fraction of their time.
_WEBP_METHOD = 4


@dataclass(frozen=True)
class ImageInfo:
    width: int
    height: int
    # Pillow's name of the format: PNG, JPEG, GIF, WEBP, ...
    format: str


@dataclass(frozen=True)
class Thumbnail:
    # The edge of the square box the thumbnail fits in, as asked for.
    size: int
    data: bytes
    width: int
    height: int
    format: str
    content_type: str


def _too_large(pixels: int | None, limit: int | None) -> RejectedFile:
    if pixels is None or limit is None:
        detail = "more pixels than can be decoded safely"
    else:
        detail = f"{pixels:,} pixels, more than the {limit:,} allowed"
    return RejectedFile(RejectReason.IMAGE_TOO_LARGE, f"the image has {detail}")


@contextmanager
def _rejecting() -> Iterator[None]:
    """Turn Pillow's failures on hostile input into RejectedFile."""
    try:
        yield
    except RejectedFile:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning, MemoryError):
        # The warning arrives as an exception when warnings are errors (python -W error).
        raise _too_large(None, None) from None
    except Exception as error:
        # Pillow's parsers raise many kinds of errors on broken files; all mean the same.
        raise RejectedFile(
            RejectReason.CORRUPT, f"the image cannot be decoded ({type(error).__name__})"
        ) from None


@contextmanager
def open_image(
    path: str | os.PathLike[str], max_pixels: int | None = None
) -> Iterator[ImageFile.ImageFile]:
    """The image, opened lazily (header only); RejectedFile when it cannot be or is too large.

    Errors raised inside the block while decoding are turned into RejectedFile as well.
    """
    with _rejecting(), Image.open(os.fspath(path), formats=PILLOW_FORMATS) as image:
        pixels = image.width * image.height
        if max_pixels is not None and pixels > max_pixels:
            raise _too_large(pixels, max_pixels)
        yield image


def _draft_for(image: ImageFile.ImageFile, box: int) -> None:
    # JPEG can decode at 1/2, 1/4 or 1/8 scale: far less memory for a small result.
    if image.format in _JPEG_FORMATS:
        image.draft(image.mode, (box, box))


def check_image(path: str | os.PathLike[str], limits: InspectionLimits) -> ImageInfo:
    """Refuse images over ``limits.max_image_pixels`` and images that do not decode.

    The pixel count is checked from the header before decoding; then the (first frame
    of the) image is decoded once, JPEG at reduced scale, to prove it is not broken.
    """
    with open_image(path, limits.max_image_pixels) as image:
        info = ImageInfo(image.width, image.height, image.format or "")
        _draft_for(image, 1)
        image.load()
    return info


def _display_mode(image: Image.Image) -> Image.Image:
    if image.mode in ("RGB", "RGBA", "L"):
        return image
    return image.convert("RGBA" if image.has_transparency_data else "RGB")


def _encode(image: Image.Image, fmt: ThumbnailFormat, size: int) -> Thumbnail:
    buffer = io.BytesIO()
    if fmt is ThumbnailFormat.WEBP:
        image.save(buffer, "WEBP", quality=_WEBP_QUALITY, method=_WEBP_METHOD)
    else:
        image.save(buffer, "PNG")
    return Thumbnail(
        size=size,
        data=buffer.getvalue(),
        width=image.width,
        height=image.height,
        format=fmt.value,
        content_type=f"image/{fmt.value}",
    )


def make_thumbnails(
    path: str | os.PathLike[str],
    sizes: Iterable[int],
    fmt: ThumbnailFormat | str,
    *,
    limits: InspectionLimits | None = None,
) -> list[Thumbnail]:
    """One thumbnail per size (smallest first), each fitting a ``size`` x ``size`` box.

    EXIF orientation is applied, the aspect ratio kept, transparency kept, animations
    give their first frame, and small images are not enlarged (the entry is still made).
    With ``limits``, the pixel check of ``check_image`` runs first.
    """
    target = ThumbnailFormat(fmt)
    boxes = sorted(set(sizes), reverse=True)
    if not boxes or boxes[-1] < 1:
        raise ValueError("thumbnail sizes must be positive")
    made: list[Thumbnail] = []
    max_pixels = None if limits is None else limits.max_image_pixels
    with open_image(path, max_pixels) as image:
        _draft_for(image, boxes[0])
        upright = ImageOps.exif_transpose(image)
        current = _display_mode(image if upright is None else upright)
        # Largest first, each from the one before: cheaper, and as sharp with LANCZOS.
        for box in boxes:
            current = current.copy()
            current.thumbnail((box, box), Image.Resampling.LANCZOS)
            made.append(_encode(current, target, box))
    return made[::-1]
