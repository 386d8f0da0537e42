"""Decompression-bomb checks of ZIP, gzip and tar archives."""

from __future__ import annotations

import gzip
import io
import resource
import tarfile
import time
import tracemalloc
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from adx_workers.files.inspection import (
    ArchiveSummary,
    InspectionLimits,
    RejectedFile,
    RejectReason,
    check_archive,
)
from tests.unit import inspection_samples as samples

LIMITS = InspectionLimits()
MIB = samples.MIB


@contextmanager
def bounded(*, seconds: float = 1.0, megabytes: int = 8) -> Iterator[None]:
    """The block must finish in ``seconds`` and allocate at most ``megabytes`` at its peak."""
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()
    started = time.monotonic()
    try:
        yield
    finally:
        elapsed = time.monotonic() - started
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before
    assert elapsed < seconds, f"took {elapsed:.2f}s"
    assert peak < megabytes * MIB, f"peak {peak / MIB:.1f} MiB"
    assert grown_kib < 64 * 1024, f"resident memory grew {grown_kib / 1024:.0f} MiB"


def rejection(check: Callable[[], object]) -> RejectedFile:
    with bounded(), pytest.raises(RejectedFile) as rejected:
        check()
    return rejected.value


@pytest.fixture(scope="module")
def bomb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """200 MiB of zeros in a ZIP of about 200 KiB."""
    return samples.zeros_zip(tmp_path_factory.mktemp("bomb") / "bomb.zip", 200)


def test_ordinary_zip_passes(tmp_path: Path) -> None:
    members = {"a.txt": b"hello " * 1000, "dir/b.bin": bytes(range(256)) * 40, "dir/": b""}
    path = samples.zip_of(tmp_path / "ok.zip", members)
    summary = check_archive(path, LIMITS)
    assert summary == ArchiveSummary("zip", 3, 6000 + 10240, 1)


def test_non_archives_are_not_checked(tmp_path: Path) -> None:
    path = samples.image(tmp_path / "a.png", (4, 4), "PNG")
    assert check_archive(path, LIMITS) is None


def test_zip_bomb_ratio(bomb: Path) -> None:
    assert bomb.stat().st_size < 300 * 1024
    error = rejection(lambda: check_archive(bomb, LIMITS))
    assert error.reason is RejectReason.ARCHIVE_RATIO


def test_zip_bomb_total_bytes(bomb: Path) -> None:
    limits = InspectionLimits(archive_max_bytes=50 * MIB, archive_max_ratio=10_000)
    error = rejection(lambda: check_archive(bomb, limits))
    assert error.reason is RejectReason.ARCHIVE_TOO_LARGE


def test_zip_bomb_lying_about_its_size(tmp_path: Path) -> None:
    # The headers claim 1 KiB; the data inflates to 50 MiB. The declared size may not
    # let it pass: the output really read is what counts, and the CRC exposes the lie.
    path = samples.zeros_zip(tmp_path / "liar.zip", 50, declared_size=1024)
    limits = InspectionLimits(archive_max_ratio=10_000)
    error = rejection(lambda: check_archive(path, limits))
    assert error.reason in (RejectReason.CORRUPT, RejectReason.ARCHIVE_TOO_LARGE)


def test_declared_sizes_fail_fast(tmp_path: Path) -> None:
    # Declared sizes beyond the limit reject before anything is decompressed.
    path = samples.zeros_zip(tmp_path / "big.zip", 2)
    limits = InspectionLimits(archive_max_bytes=1 * MIB, archive_max_ratio=10_000)
    assert rejection(lambda: check_archive(path, limits)).reason is RejectReason.ARCHIVE_TOO_LARGE


def test_too_many_entries(tmp_path: Path) -> None:
    path = samples.zip_of(tmp_path / "many.zip", {f"f{i}.txt": b"" for i in range(300)})
    limits = InspectionLimits(archive_max_entries=100)
    assert rejection(lambda: check_archive(path, limits)).reason is RejectReason.ARCHIVE_ENTRIES
    assert check_archive(path, InspectionLimits(archive_max_entries=300)) is not None


def test_nested_zips_too_deep(tmp_path: Path) -> None:
    path = samples.nested_zip(tmp_path / "nested.zip", 5)
    assert rejection(lambda: check_archive(path, LIMITS)).reason is RejectReason.ARCHIVE_TOO_DEEP
    summary = check_archive(path, InspectionLimits(archive_max_depth=5))
    assert summary is not None
    assert summary.depth == 5
    assert summary.entries == 5


def test_bomb_inside_a_zip(tmp_path: Path, bomb: Path) -> None:
    # The outer ZIP stores the bomb as is; its ratio looks innocent, the inner one is not.
    path = samples.zip_of(tmp_path / "outer.zip", {"inner.zip": bomb.read_bytes()}, method=0)
    limits = InspectionLimits(archive_max_bytes=64 * MIB)
    error = rejection(lambda: check_archive(path, limits))
    assert error.reason in (RejectReason.ARCHIVE_RATIO, RejectReason.ARCHIVE_TOO_LARGE)


def test_gzip_bomb(tmp_path: Path) -> None:
    path = tmp_path / "zeros.gz"
    path.write_bytes(gzip.compress(bytes(30 * MIB), compresslevel=1))
    assert rejection(lambda: check_archive(path, LIMITS)).reason is RejectReason.ARCHIVE_RATIO


def _tar_gz(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_tar_gz_is_one_level(tmp_path: Path) -> None:
    path = tmp_path / "a.tar.gz"
    path.write_bytes(_tar_gz({"a.txt": b"alpha", "b.txt": b"beta"}))
    summary = check_archive(path, InspectionLimits(archive_max_depth=1))
    assert summary is not None
    assert (summary.format, summary.entries, summary.depth) == ("gzip", 2, 1)


def test_archives_inside_tar_gz_count_as_nesting(tmp_path: Path) -> None:
    path = tmp_path / "b.tar.gz"
    path.write_bytes(_tar_gz({"inner.zip": samples.zip_bytes({"x.txt": b"x"})}))
    summary = check_archive(path, LIMITS)
    assert summary is not None
    assert (summary.entries, summary.depth) == (2, 2)
    with pytest.raises(RejectedFile) as rejected:
        check_archive(path, InspectionLimits(archive_max_depth=1))
    assert rejected.value.reason is RejectReason.ARCHIVE_TOO_DEEP


def test_too_many_tar_entries(tmp_path: Path) -> None:
    path = tmp_path / "many.tar.gz"
    path.write_bytes(_tar_gz({f"f{i}": b"" for i in range(50)}))
    with pytest.raises(RejectedFile) as rejected:
        check_archive(path, InspectionLimits(archive_max_entries=20))
    assert rejected.value.reason is RejectReason.ARCHIVE_ENTRIES


@pytest.mark.parametrize("cut", [40, 200, -30])
def test_corrupt_zips(tmp_path: Path, cut: int) -> None:
    data = samples.zip_bytes({"a.txt": bytes(range(256)) * 200})
    path = tmp_path / "cut.zip"
    path.write_bytes(data[:cut])
    assert rejection(lambda: check_archive(path, LIMITS)).reason is RejectReason.CORRUPT


def test_corrupt_member_data(tmp_path: Path) -> None:
    data = bytearray(samples.zip_bytes({"a.txt": bytes(range(256)) * 200}))
    data[60:80] = bytes(20)  # inside the deflated data of the only member
    path = tmp_path / "flipped.zip"
    path.write_bytes(bytes(data))
    assert rejection(lambda: check_archive(path, LIMITS)).reason is RejectReason.CORRUPT


def test_corrupt_gzip_and_tar(tmp_path: Path) -> None:
    gz = tmp_path / "cut.gz"
    gz.write_bytes(gzip.compress(bytes(range(256)) * 100)[:-12])
    assert rejection(lambda: check_archive(gz, LIMITS)).reason is RejectReason.CORRUPT
    tgz = tmp_path / "bad.tar.gz"
    tar = bytearray(gzip.decompress(_tar_gz({"a.txt": b"alpha"})))
    tar[148:156] = b"0000000\x00"  # a wrong header checksum
    tgz.write_bytes(gzip.compress(bytes(tar)))
    assert rejection(lambda: check_archive(tgz, LIMITS)).reason is RejectReason.CORRUPT


def test_encrypted_members_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "secret.zip"
    path.write_bytes(samples.with_encryption_flag(samples.zip_bytes({"a.txt": b"secret"})))
    assert rejection(lambda: check_archive(path, LIMITS)).reason is RejectReason.ARCHIVE_ENCRYPTED


def test_bzip2_members_are_refused(tmp_path: Path) -> None:
    path = samples.zip_of(tmp_path / "bz.zip", {"a.txt": b"hello"}, method=zipfile.ZIP_BZIP2)
    error = rejection(lambda: check_archive(path, LIMITS))
    assert error.reason is RejectReason.ARCHIVE_UNSUPPORTED


def test_rejection_pickles_with_its_reason() -> None:
    import pickle

    error = RejectedFile(RejectReason.ARCHIVE_RATIO, "too much")
    copy = pickle.loads(pickle.dumps(error))  # noqa: S301 - our own bytes
    assert (copy.reason, copy.message, str(copy)) == (error.reason, "too much", str(error))


def test_limits_come_from_the_settings() -> None:
    from adx_core.settings import Settings

    settings = Settings(
        max_image_pixels=123_456,
        archive_max_entries=7,
        archive_max_bytes=4096,
        archive_max_ratio=9,
        archive_max_depth=2,
    )
    assert InspectionLimits.from_settings(settings) == InspectionLimits(123_456, 7, 4096, 9, 2)
    with pytest.raises(ValueError, match="archive_max_depth"):
        InspectionLimits(archive_max_depth=0)
