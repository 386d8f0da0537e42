"""Image checks against pixel bombs and broken files, and thumbnails."""

from __future__ import annotations

import io
import resource
import time
import tracemalloc
from pathlib import Path

import pytest
from PIL import Image

from adx_workers.files.inspection import (
    ImageInfo,
    InspectionLimits,
    RejectedFile,
    RejectReason,
    check_image,
    make_thumbnails,
)
from adx_workers.files.inspection.images import open_image
from tests.unit import inspection_samples as samples

LIMITS = InspectionLimits()


def _rejected_quickly_and_small(path: Path, limits: InspectionLimits) -> RejectedFile:
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()
    started = time.monotonic()
    try:
        with pytest.raises(RejectedFile) as rejected:
            check_image(path, limits)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.monotonic() - started < 0.5
    assert peak < 2 * 1024 * 1024
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before < 32 * 1024
    return rejected.value


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "GIF"])
def test_check_image_passes_good_images(tmp_path: Path, fmt: str) -> None:
    path = samples.image(tmp_path / f"a.{fmt.lower()}", (120, 80), fmt)
    assert check_image(path, LIMITS) == ImageInfo(120, 80, fmt)


def test_png_header_bomb_is_refused_before_decoding(tmp_path: Path) -> None:
    # 10^10 pixels: past even Pillow's own ceiling.
    path = samples.png_header_bomb(tmp_path / "bomb.png")
    assert path.stat().st_size < 200
    error = _rejected_quickly_and_small(path, LIMITS)
    assert error.reason is RejectReason.IMAGE_TOO_LARGE


def test_pixel_limit_below_pillows_ceiling(tmp_path: Path) -> None:
    # 64 million pixels: Pillow would decode it (192 MB); our limit of 40 million says no.
    path = samples.png_header_bomb(tmp_path / "big.png", 8000, 8000)
    error = _rejected_quickly_and_small(path, LIMITS)
    assert error.reason is RejectReason.IMAGE_TOO_LARGE
    assert "64,000,000" in error.message


def test_pixel_limit_from_settings(tmp_path: Path) -> None:
    path = samples.image(tmp_path / "a.png", (200, 100), "PNG")
    with pytest.raises(RejectedFile) as rejected:
        check_image(path, InspectionLimits(max_image_pixels=19_999))
    assert rejected.value.reason == "image_too_large"


def test_header_bomb_is_refused_by_thumbnails_too(tmp_path: Path) -> None:
    path = samples.png_header_bomb(tmp_path / "bomb.png", 8000, 8000)
    with pytest.raises(RejectedFile) as rejected:
        make_thumbnails(path, [64], "webp", limits=LIMITS)
    assert rejected.value.reason is RejectReason.IMAGE_TOO_LARGE


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_images_are_corrupt(tmp_path: Path, fmt: str) -> None:
    whole = io.BytesIO()
    samples.striped(tmp_path / "x", (300, 300), fmt)
    whole.write((tmp_path / "x").read_bytes())
    path = tmp_path / "cut"
    path.write_bytes(whole.getvalue()[: len(whole.getvalue()) // 2])
    with pytest.raises(RejectedFile) as rejected:
        check_image(path, LIMITS)
    assert rejected.value.reason is RejectReason.CORRUPT


def test_garbage_and_foreign_formats_are_corrupt(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    with pytest.raises(RejectedFile) as rejected:
        check_image(garbage, LIMITS)
    assert rejected.value.reason is RejectReason.CORRUPT
    # A format Pillow knows but we never open (EPS would run Ghostscript).
    eps = tmp_path / "a.eps"
    eps.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n")
    with pytest.raises(RejectedFile):
        check_image(eps, LIMITS)


def test_thumbnails_keep_aspect_and_order(tmp_path: Path) -> None:
    path = samples.striped(tmp_path / "wide.png", (800, 400))
    thumbnails = make_thumbnails(path, (512, 128), "webp")
    assert [(t.size, t.width, t.height) for t in thumbnails] == [(128, 128, 64), (512, 512, 256)]
    for thumbnail in thumbnails:
        assert (thumbnail.format, thumbnail.content_type) == ("webp", "image/webp")
        with Image.open(io.BytesIO(thumbnail.data)) as decoded:
            assert decoded.format == "WEBP"
            assert decoded.size == (thumbnail.width, thumbnail.height)


def test_png_thumbnails(tmp_path: Path) -> None:
    path = samples.image(tmp_path / "a.gif", (300, 600), "GIF")
    (thumbnail,) = make_thumbnails(path, [100], "png")
    assert (thumbnail.width, thumbnail.height, thumbnail.content_type) == (50, 100, "image/png")
    assert thumbnail.data.startswith(b"\x89PNG")


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    # 400x200 stored, "rotate 90 clockwise": shown 200x400 with the green half on top.
    path = samples.jpeg_with_exif(tmp_path / "turned.jpg")
    (thumbnail,) = make_thumbnails(path, [128], "png")
    assert (thumbnail.width, thumbnail.height) == (64, 128)
    with Image.open(io.BytesIO(thumbnail.data)) as decoded:
        rgb = decoded.convert("RGB")
        top = rgb.getpixel((32, 10))
        bottom = rgb.getpixel((32, 118))
    assert isinstance(top, tuple)
    assert isinstance(bottom, tuple)
    assert top[1] > 150
    assert top[0] < 100
    assert bottom[0] > 200
    assert bottom[1] < 100


def test_large_jpeg_uses_draft_decoding(tmp_path: Path) -> None:
    path = samples.striped(tmp_path / "big.jpg", (3200, 2400), "JPEG")
    started = time.monotonic()
    thumbnails = make_thumbnails(path, (128, 512), "webp")
    assert time.monotonic() - started < 1.0
    assert [(t.width, t.height) for t in thumbnails] == [(128, 96), (512, 384)]


def test_small_images_are_not_enlarged(tmp_path: Path) -> None:
    path = samples.image(tmp_path / "tiny.png", (20, 10), "PNG")
    thumbnails = make_thumbnails(path, (64, 128), "webp")
    assert [(t.size, t.width, t.height) for t in thumbnails] == [(64, 20, 10), (128, 20, 10)]


def test_transparency_is_kept(tmp_path: Path) -> None:
    path = samples.image(tmp_path / "clear.png", (100, 100), "PNG", mode="RGBA", color=(0, 0, 0, 0))
    for fmt in ("webp", "png"):
        (thumbnail,) = make_thumbnails(path, [32], fmt)
        with Image.open(io.BytesIO(thumbnail.data)) as decoded:
            assert decoded.mode == "RGBA"
            assert decoded.getpixel((5, 5)) == (0, 0, 0, 0)


def test_palette_transparency_and_grey(tmp_path: Path) -> None:
    palette = Image.new("P", (40, 40), 0)
    palette.info["transparency"] = 0
    palette.save(tmp_path / "p.png", "PNG", transparency=0)
    (thumbnail,) = make_thumbnails(tmp_path / "p.png", [16], "webp")
    with Image.open(io.BytesIO(thumbnail.data)) as decoded:
        assert decoded.mode == "RGBA"
    grey = samples.image(tmp_path / "g.png", (40, 40), "PNG", mode="LA", color=(128, 255))
    assert make_thumbnails(grey, [16], "png")[0].width == 16


def test_animation_gives_first_frame(tmp_path: Path) -> None:
    path = samples.animated_gif(tmp_path / "anim.gif")
    (thumbnail,) = make_thumbnails(path, [30], "png")
    with Image.open(io.BytesIO(thumbnail.data)) as decoded:
        assert getattr(decoded, "n_frames", 1) == 1
        pixel = decoded.convert("RGB").getpixel((10, 10))
    assert isinstance(pixel, tuple)
    assert pixel[0] > 200
    assert pixel[2] < 50


def test_bad_thumbnail_requests(tmp_path: Path) -> None:
    path = samples.image(tmp_path / "a.png", (20, 10), "PNG")
    with pytest.raises(ValueError, match="positive"):
        make_thumbnails(path, [0], "webp")
    with pytest.raises(ValueError, match="jpeg"):
        make_thumbnails(path, [16], "jpeg")


def test_open_image_is_lazy(tmp_path: Path) -> None:
    path = samples.png_header_bomb(tmp_path / "bomb.png", 5000, 5000)
    with open_image(path) as image:
        assert image.size == (5000, 5000)
