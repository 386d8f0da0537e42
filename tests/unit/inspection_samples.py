"""Files for the inspection tests, all made in code: images, PDFs, text and bombs."""

from __future__ import annotations

import io
import os
import struct
import zipfile
import zlib
from pathlib import Path

from PIL import ExifTags, Image
from pypdf import PdfWriter

from adx_workers.files.inspection import Analysis

MIB = 1024 * 1024


def image(
    path: Path,
    size: tuple[int, int],
    fmt: str,
    *,
    mode: str = "RGB",
    color: float | tuple[float, ...] | str = "blue",
) -> Path:
    Image.new(mode, size, color).save(path, fmt)
    return path


def striped(path: Path, size: tuple[int, int], fmt: str = "PNG") -> Path:
    """Blue with a white band across the bottom quarter."""
    picture = Image.new("RGB", size, (20, 60, 200))
    picture.paste((255, 255, 255), (0, size[1] * 3 // 4, size[0], size[1]))
    picture.save(path, fmt)
    return path


def animated_gif(path: Path) -> Path:
    frames = [Image.new("RGB", (60, 40), color) for color in ("red", "blue", "green")]
    frames[0].save(path, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    return path


def jpeg_with_exif(path: Path, size: tuple[int, int] = (400, 200)) -> Path:
    """A landscape JPEG whose EXIF says "turn 90 degrees clockwise" (6), with GPS tags."""
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6
    exif[ExifTags.Base.Make] = "Canon"
    exif[ExifTags.Base.Model] = "EOS\x00 R5"
    details = exif.get_ifd(ExifTags.IFD.Exif)
    details[ExifTags.Base.DateTimeOriginal] = "2024:05:06 07:08:09"
    details[ExifTags.Base.MakerNote] = b"\x00\x01binary"
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps[ExifTags.GPS.GPSLatitudeRef] = "N"
    gps[ExifTags.GPS.GPSLatitude] = (52.0, 31.0, 12.5)
    gps[ExifTags.GPS.GPSLongitudeRef] = "E"
    gps[ExifTags.GPS.GPSLongitude] = (13.0, 24.0, 0.0)
    picture = Image.new("RGB", size, "red")
    # The left half green: after turning, the top half must be green.
    picture.paste((0, 200, 0), (0, 0, size[0] // 2, size[1]))
    picture.save(path, "JPEG", exif=exif.tobytes(), quality=90)
    return path


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header_bomb(path: Path, width: int = 100_000, height: int = 100_000) -> Path:
    """A PNG of a few dozen bytes whose IHDR claims ``width`` x ``height`` RGB pixels."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = zlib.compress(b"\x00" * 64)
    data = (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", body)
        + _chunk(b"IEND", b"")
    )
    path.write_bytes(data)
    return path


def blank_pdf(
    path: Path, pages: int, *, title: str | None = None, author: str | None = None
) -> Path:
    writer = PdfWriter()
    for _ in range(pages):
        writer.add_blank_page(width=595, height=842)
    info = {key: value for key, value in (("/Title", title), ("/Author", author)) if value}
    if info:
        writer.add_metadata(info)
    with path.open("wb") as handle:
        writer.write(handle)
    return path


def encrypted_pdf(path: Path, *, user_password: str) -> Path:
    writer = PdfWriter()
    for _ in range(2):
        writer.add_blank_page(width=200, height=200)
    writer.encrypt(user_password=user_password, owner_password="owner", algorithm="RC4-128")
    with path.open("wb") as handle:
        writer.write(handle)
    return path


def text_pdf(path: Path, pages: list[str]) -> Path:
    """A PDF whose pages show the given (ASCII) lines in Helvetica, written by hand."""
    objects: list[bytes] = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"",  # the page tree, once the page numbers are known
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    kids: list[int] = []
    for text in pages:
        escaped = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
        lines = b" ".join(f"({line}) Tj 0 -14 Td".encode("ascii") for line in escaped.splitlines())
        content = b"BT /F1 12 Tf 72 770 Td " + lines + b" ET"
        objects.append(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(content), content))
        content_number = len(objects)
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents %d 0 R "
            b"/Resources << /Font << /F1 3 0 R >> >> >>" % content_number
        )
        kids.append(len(objects))
    references = b" ".join(b"%d 0 R" % number for number in kids)
    objects[1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (references, len(kids))
    return _write_pdf(path, objects)


def looping_pdf(path: Path) -> Path:
    """A PDF whose page tree contains itself."""
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [2 0 R 3 0 R] /Count 2 >>",
        b"<< /Type /Pages /Parent 2 0 R /Kids [2 0 R] /Count 1 >>",
    ]
    return _write_pdf(path, objects)


def _write_pdf(path: Path, objects: list[bytes]) -> Path:
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n%s\nendobj\n" % (number, body))
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for offset in offsets:
        out.write(b"%010d 00000 n \n" % offset)
    out.write(
        b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    )
    path.write_bytes(out.getvalue())
    return path


def corrupt_pdf(path: Path) -> Path:
    path.write_bytes(
        b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog /Pages 9 0 R\n" + os.urandom(200) + b"\ntrailer"
    )
    return path


def zip_of(path: Path, members: dict[str, bytes], *, method: int = zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", method) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def nested_zip(path: Path, depth: int) -> Path:
    """``depth`` ZIPs, each inside the next; the innermost holds a text file."""
    data = zip_bytes({"hello.txt": b"hello"})
    for level in range(depth - 1):
        data = zip_bytes({f"level{level}.zip": data})
    path.write_bytes(data)
    return path


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def zeros_zip(path: Path, megabytes: int, *, declared_size: int | None = None) -> Path:
    """One member of ``megabytes`` MiB of zeros, deflated, written without compressing it all.

    After a full flush deflate starts afresh, so the compressed form of one MiB of zeros
    can be repeated; the ZIP records are written by hand. ``declared_size`` lets the
    headers lie about the size.
    """
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = compressor.compress(bytes(MIB)) + compressor.flush(zlib.Z_FULL_FLUSH)
    stream = block * megabytes + b"\x03\x00"  # an empty final block
    crc = 0
    zeros = bytes(MIB)
    for _ in range(megabytes):
        crc = zlib.crc32(zeros, crc)
    size = megabytes * MIB if declared_size is None else declared_size
    name = b"zeros.bin"
    local = struct.pack(
        "<4s5H3L2H", b"PK\x03\x04", 20, 0, 8, 0, 0, crc, len(stream), size, len(name), 0
    )
    central = struct.pack(
        "<4s6H3L5H2L",
        b"PK\x01\x02",
        20,
        20,
        0,
        8,
        0,
        0,
        crc,
        len(stream),
        size,
        len(name),
        0,
        0,
        0,
        0,
        0,
        0,
    )
    central_at = len(local) + len(name) + len(stream)
    central_size = len(central) + len(name)
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 1, 1, central_size, central_at, 0)
    path.write_bytes(local + name + stream + central + name + end)
    return path


def with_encryption_flag(data: bytes) -> bytes:
    """The ZIP with the "encrypted" flag set on every member (local and central headers)."""
    patched = bytearray(data)
    for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        start = patched.find(signature)
        while start >= 0:
            patched[start + offset] |= 0x01
            start = patched.find(signature, start + 4)
    return bytes(patched)


class WordCountAnalyzer:
    """A stand-in for a heavier analyzer, loaded by ``package.module:ClassName``."""

    name = "word-count"

    def analyze(self, path: str | os.PathLike[str], content_type: str) -> Analysis:
        words = len(Path(path).read_bytes().split())
        return Analysis(tags=["counted"], summary=f"{words} words", analyzer=self.name)


class NotAnAnalyzer:
    name = "broken"


class FailingAnalyzer:
    name = "failing"

    def __init__(self) -> None:
        raise RuntimeError("the model is missing")

    def analyze(self, path: str | os.PathLike[str], content_type: str) -> Analysis:
        raise AssertionError("never made")
