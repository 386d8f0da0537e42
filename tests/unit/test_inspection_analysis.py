"""The default analyzer (offline) and loading other analyzers by name."""

from __future__ import annotations

from pathlib import Path

import pytest

from adx_workers.files.inspection import (
    Analysis,
    Analyzer,
    AnalyzerSpecError,
    DefaultAnalyzer,
    InspectionLimits,
    load_analyzer,
)
from adx_workers.files.inspection.colours import colour_name
from adx_workers.files.inspection.language import guess_language, keywords, words_of
from tests.unit import inspection_samples as samples

ANALYZER = DefaultAnalyzer()

ENGLISH = (
    "Temporal runs every workflow of the tenant. When a workflow fails, the tenant can see "
    "why, and the workflow is retried by Temporal. This is how the platform keeps its "
    "promises to each tenant, and it is the reason the design uses Temporal for all of "
    "the work that is more than a simple read or write.\n"
)
GERMAN = (
    "Der Mandant lädt eine Datei hoch, und die Datei wird geprüft. Wenn die Prüfung nicht "
    "gelingt, ist die Datei für den Mandanten nicht sichtbar und wird gelöscht.\n"
)


def test_image_colours_and_orientation(tmp_path: Path) -> None:
    result = ANALYZER.analyze(samples.striped(tmp_path / "a.png", (400, 200)), "image/png")
    assert result.analyzer == "default"
    assert result.tags[:2] == ["image", "landscape"]
    assert {"blue", "white"} <= set(result.tags)
    assert result.summary == "Landscape image, mostly blue and white"
    colours = result.details["colors"]
    assert colours[0]["name"] == "blue"
    assert colours[0]["share"] == pytest.approx(0.75, abs=0.05)
    assert colours[0]["hex"].startswith("#")
    assert len(colours[0]["hex"]) == 7


def test_exif_turned_photo_is_portrait(tmp_path: Path) -> None:
    result = ANALYZER.analyze(samples.jpeg_with_exif(tmp_path / "a.jpg"), "image/jpeg")
    assert result.details["orientation"] == "portrait"
    assert {"red", "green"} <= set(result.tags)


def test_square_and_transparent_images(tmp_path: Path) -> None:
    path = samples.image(tmp_path / "a.png", (50, 50), "PNG", mode="RGBA", color=(0, 0, 0, 0))
    result = ANALYZER.analyze(path, "image/png")
    assert result.tags == ["image", "square"]
    assert result.details["colors"] == []


def test_image_over_the_pixel_limit_is_not_decoded(tmp_path: Path) -> None:
    path = samples.png_header_bomb(tmp_path / "bomb.png", 8000, 8000)
    result = DefaultAnalyzer(InspectionLimits()).analyze(path, "image/png")
    assert result.summary == "Image that cannot be analysed"
    assert "pixels" in result.details["error"]


def test_english_text(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text(ENGLISH * 3, encoding="utf-8")
    result = ANALYZER.analyze(path, "text/plain")
    words = len(ENGLISH.split()) * 3
    assert result.summary == f"English text, {words} words, about temporal, workflow, tenant"
    assert result.tags[:5] == ["text", "english", "temporal", "workflow", "tenant"]
    assert result.details["language"] == "en"
    assert result.details["truncated"] is False


def test_german_text_and_truncation(tmp_path: Path) -> None:
    path = tmp_path / "notiz.md"
    path.write_text(GERMAN * 400, encoding="utf-8")
    result = DefaultAnalyzer(text_bytes=4096).analyze(path, "text/markdown")
    assert result.summary.startswith("German text, at least ")
    assert "german" in result.tags
    assert "datei" in result.details["keywords"]
    assert result.details["truncated"] is True


def test_text_without_language(tmp_path: Path) -> None:
    path = tmp_path / "ids.csv"
    path.write_text("id,name\n1,alpha\n2,beta\n", encoding="utf-8")
    result = ANALYZER.analyze(path, "text/csv")
    assert result.summary == "Text, 4 words, about name, alpha, beta"
    assert result.details["language"] is None


def test_pdf_text(tmp_path: Path) -> None:
    pages = [ENGLISH.replace(", ", "\n"), "Temporal workflow tenant", "third page", "not read"]
    path = samples.text_pdf(tmp_path / "a.pdf", pages)
    result = ANALYZER.analyze(path, "application/pdf")
    assert result.summary == "English PDF, 4 pages, about temporal, workflow, tenant"
    assert result.tags[:3] == ["pdf", "english", "temporal"]
    assert "read" not in result.details["keywords"]


def test_blank_and_broken_pdfs(tmp_path: Path) -> None:
    blank = ANALYZER.analyze(samples.blank_pdf(tmp_path / "b.pdf", 2), "application/pdf")
    assert blank.summary == "PDF, 2 pages, no extractable text"
    broken = ANALYZER.analyze(samples.corrupt_pdf(tmp_path / "c.pdf"), "application/pdf")
    assert broken.summary == "PDF that cannot be read"
    locked = samples.encrypted_pdf(tmp_path / "l.pdf", user_password="secret")
    assert ANALYZER.analyze(locked, "application/pdf").tags == ["pdf", "encrypted"]
    opened = samples.encrypted_pdf(tmp_path / "o.pdf", user_password="")
    assert ANALYZER.analyze(opened, "application/pdf").summary.startswith("PDF, 2 pages")


def test_other_files(tmp_path: Path) -> None:
    path = samples.zip_of(tmp_path / "a.zip", {"a": b"1"})
    result = ANALYZER.analyze(path, "application/zip")
    assert result.tags == ["archive"]
    assert result.summary.startswith("application/zip file of ")


@pytest.mark.parametrize(
    ("rgb", "name"),
    [
        ((0, 0, 255), "blue"),
        ((255, 255, 255), "white"),
        ((10, 10, 10), "black"),
        ((128, 128, 128), "gray"),
        ((220, 20, 30), "red"),
        ((0, 160, 0), "green"),
        ((255, 220, 0), "yellow"),
        ((255, 140, 0), "orange"),
        ((120, 70, 20), "brown"),
        ((130, 40, 200), "purple"),
        ((255, 150, 170), "pink"),
        ((0, 200, 210), "cyan"),
    ],
)
def test_colour_names(rgb: tuple[int, int, int], name: str) -> None:
    assert colour_name(*rgb) == name


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("The dog is in the house and the cat is not with them", "en"),
        ("Der Hund ist nicht in dem Haus und die Katze auch nicht", "de"),
        ("Le chat est dans la maison et le chien est pour les enfants", "fr"),
        ("El perro está en la casa y el gato también es para los niños", "es"),
        ("Il cane è nella casa e il gatto non è con i bambini della scuola", "it"),
        ("O cão está em casa e o gato não é para as crianças da escola", "pt"),
        ("De hond is in het huis en de kat is niet voor de kinderen van school", "nl"),
        ("lorem ipsum dolor sit amet", None),
    ],
)
def test_language_guess(text: str, language: str | None) -> None:
    assert guess_language(words_of(text)) == language


def test_keywords_skip_stop_words_and_contractions() -> None:
    words = words_of("Don't stop: the worker's queue, the queue, THE QUEUE and 42 workers.")
    assert keywords(words) == ["queue", "stop", "workers"]


def test_load_analyzer_default_and_by_name(tmp_path: Path) -> None:
    assert isinstance(load_analyzer(None), DefaultAnalyzer)
    assert isinstance(load_analyzer(" default "), DefaultAnalyzer)
    named = load_analyzer("adx_workers.files.inspection.analysis:DefaultAnalyzer")
    assert isinstance(named, DefaultAnalyzer)
    custom = load_analyzer("tests.unit.inspection_samples:WordCountAnalyzer")
    assert isinstance(custom, Analyzer)
    path = tmp_path / "a.txt"
    path.write_text("three little words")
    assert custom.analyze(path, "text/plain") == Analysis(
        tags=["counted"], summary="3 words", analyzer="word-count"
    )


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("no colon here", "package.module:ClassName"),
        ("module:Class:Extra", "package.module:ClassName"),
        ("no_such_module_anywhere:Thing", "cannot be imported"),
        ("json:Missing", "no class named"),
        ("json:loads", "no class named"),
        ("tests.unit.inspection_samples:NotAnAnalyzer", "is not an analyzer"),
        ("tests.unit.inspection_samples:FailingAnalyzer", "the model is missing"),
    ],
)
def test_load_analyzer_errors(spec: str, message: str) -> None:
    with pytest.raises(AnalyzerSpecError, match=message):
        load_analyzer(spec)
