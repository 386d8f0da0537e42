"""Metadata extraction: JSON-safe, GPS only when allowed, never raising on bad files."""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from adx_workers.files.inspection import extract_metadata
from adx_workers.files.inspection.metadata import json_safe
from adx_workers.files.inspection.workcap import WorkLimitExceeded, time_limit
from tests.unit import inspection_samples as samples


def meta(path: Path, content_type: str, *, allow_gps: bool = False) -> dict[str, Any]:
    found = extract_metadata(path, content_type, allow_gps=allow_gps)
    # Strict JSON: no bytes, no NaN, no objects.
    assert json.loads(json.dumps(found, allow_nan=False)) == found
    assert found["size_bytes"] == path.stat().st_size
    return found


def test_jpeg_exif_without_gps(tmp_path: Path) -> None:
    found = meta(samples.jpeg_with_exif(tmp_path / "a.jpg"), "image/jpeg")
    image = found["image"]
    assert (found["kind"], image["width"], image["height"], image["format"]) == (
        "image",
        400,
        200,
        "JPEG",
    )
    assert (image["orientation"], image["display_width"], image["display_height"]) == (6, 200, 400)
    exif = image["exif"]
    assert exif["Make"] == "Canon"
    assert exif["Model"] == "EOS R5"
    assert exif["DateTimeOriginal"] == "2024:05:06 07:08:09"
    assert "MakerNote" not in exif
    assert "GPSInfo" not in exif
    assert "ExifOffset" not in exif
    assert "gps" not in image
    assert "GPS" not in json.dumps(found)


def test_jpeg_gps_when_allowed(tmp_path: Path) -> None:
    found = meta(samples.jpeg_with_exif(tmp_path / "a.jpg"), "image/jpeg", allow_gps=True)
    gps = found["image"]["gps"]
    assert gps["GPSLatitudeRef"] == "N"
    assert gps["GPSLatitude"] == [52.0, 31.0, 12.5]
    assert gps["GPSLongitude"] == [13.0, 24.0, 0.0]


def test_png_and_animated_gif(tmp_path: Path) -> None:
    png = meta(samples.image(tmp_path / "a.png", (30, 20), "PNG", mode="RGBA"), "image/png")
    assert png["image"] == {
        "width": 30,
        "height": 20,
        "format": "PNG",
        "mode": "RGBA",
        "animated": False,
        "frames": 1,
    }
    gif = meta(samples.animated_gif(tmp_path / "a.gif"), "image/gif")
    assert (gif["image"]["animated"], gif["image"]["frames"]) == (True, 3)


def test_broken_image_gives_an_error_entry(tmp_path: Path) -> None:
    path = tmp_path / "broken.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(40))
    found = meta(path, "image/png")
    assert "image" not in found
    assert "cannot be decoded" in found["image_error"]


def test_pdf_pages_and_info(tmp_path: Path) -> None:
    path = samples.blank_pdf(tmp_path / "a.pdf", 7, title="Quarterly report", author="Ada")
    found = meta(path, "application/pdf")
    assert found["pdf"] == {
        "encrypted": False,
        "pages": 7,
        "title": "Quarterly report",
        "author": "Ada",
        "producer": "pypdf",
    }


def test_encrypted_pdfs(tmp_path: Path) -> None:
    locked = meta(
        samples.encrypted_pdf(tmp_path / "l.pdf", user_password="secret"), "application/pdf"
    )
    assert locked["pdf"] == {"encrypted": True}
    # An empty user password opens the document (only an owner password restricts it).
    open_ = meta(samples.encrypted_pdf(tmp_path / "o.pdf", user_password=""), "application/pdf")
    assert open_["pdf"] == {"encrypted": True, "pages": 2, "producer": "pypdf"}


@pytest.mark.parametrize("maker", [samples.corrupt_pdf, samples.looping_pdf])
def test_malformed_pdfs_do_not_raise_or_hang(tmp_path: Path, maker: Any) -> None:
    started = time.monotonic()
    found = meta(maker(tmp_path / "bad.pdf"), "application/pdf")
    assert time.monotonic() - started < 2
    assert "pdf_error" in found or found["pdf"]["pages"] >= 0


def test_corrupt_pdf_error_entry(tmp_path: Path) -> None:
    found = meta(samples.corrupt_pdf(tmp_path / "bad.pdf"), "application/pdf")
    assert found["pdf_error"].startswith("the PDF cannot be read")


def test_time_limit_stops_runaway_work() -> None:
    def spin() -> None:
        while True:
            try:
                len(str(time.monotonic()))
            except Exception:  # noqa: S112 - a library that swallows errors
                continue

    started = time.monotonic()
    with pytest.raises(WorkLimitExceeded), time_limit(0.2):
        spin()
    assert 0.2 <= time.monotonic() - started < 1.0
    assert sys.getprofile() is None


def test_time_limit_is_per_thread() -> None:
    # Activities run in worker threads: one thread's cap must not stop another's work.
    outcome: list[str] = []

    def capped() -> None:
        try:
            with time_limit(0.05):
                while True:
                    time.sleep(0.001)
        except WorkLimitExceeded:
            outcome.append("capped")

    worker = threading.Thread(target=capped)
    worker.start()
    until = time.monotonic() + 0.2
    while time.monotonic() < until:
        time.sleep(0.001)
    worker.join(timeout=1)
    assert outcome == ["capped"]


def test_header_bomb_metadata(tmp_path: Path) -> None:
    found = meta(samples.png_header_bomb(tmp_path / "bomb.png"), "image/png")
    assert "pixels" in found["image_error"]


@pytest.mark.parametrize(
    ("content", "encoding", "bom", "lines"),
    [
        (b"", "ascii", False, 0),
        (b"one\ntwo\nthree", "ascii", False, 3),
        ("caf\u00e9\nna\u00efve\n".encode(), "utf-8", False, 2),
        ("\ufeffhello\nworld\n".encode(), "utf-8", True, 2),
        ("hello\nw\u00f6rld\n".encode("utf-16"), "utf-16-le", True, 2),
    ],
)
def test_text(tmp_path: Path, content: bytes, encoding: str, bom: bool, lines: int) -> None:
    path = tmp_path / "a.txt"
    path.write_bytes(content)
    text = meta(path, "text/plain; charset=whatever")["text"]
    assert (text["encoding"], text["bom"], text["lines"]) == (encoding, bom, lines)


def test_latin1_text(tmp_path: Path) -> None:
    sentence = (
        "Le caf\u00e9 est tr\u00e8s bon, d\u00e9j\u00e0 vu \u00e0 la cr\u00e8me br\u00fbl\u00e9e.\n"
    )
    path = tmp_path / "fr.csv"
    path.write_bytes((sentence * 30).encode("latin-1"))
    text = meta(path, "text/csv")["text"]
    assert text["encoding"] not in ("utf-8", "ascii")
    assert (sentence * 30).encode("latin-1").decode(text["encoding"]) == sentence * 30
    assert text["lines"] == 30


def test_binary_declared_as_text(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_bytes(bytes(range(256)) * 4)
    assert "text_error" in meta(path, "text/plain")


def test_zip_entries_and_other_files(tmp_path: Path) -> None:
    path = samples.zip_of(tmp_path / "a.zip", {"a": b"1", "b": b"2", "c/": b""})
    assert meta(path, "application/zip")["archive"] == {"format": "zip", "entries": 3}
    blob = tmp_path / "blob"
    blob.write_bytes(b"\x00\x01")
    assert meta(blob, "application/octet-stream") == {
        "size_bytes": 2,
        "content_type": "application/octet-stream",
        "kind": "other",
    }


def test_json_safe() -> None:
    from fractions import Fraction

    from PIL.TiffImagePlugin import IFDRational

    assert json_safe(IFDRational(1, 3)) == pytest.approx(1 / 3)
    assert json_safe(IFDRational(1, 0)) is None
    assert json_safe(Fraction(1, 4)) == 0.25
    assert json_safe(float("nan")) is None
    assert json_safe(b"bytes") is None
    assert json_safe(("a\x00b", b"x", 2, True)) == ["ab", 2, True]
    assert json_safe("x" * 1000) == "x" * 256
    assert json_safe({"a": 1}) is None
