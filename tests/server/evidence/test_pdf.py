"""The evidence PDF read back with the real poppler tools: ``pdftotext`` for the Vietnamese text,
``pdffonts`` for the embedded font, ``pdftoppm`` for pages that actually render."""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from PIL import Image

from server.evidence.charts import time_series_png
from server.evidence.pdf import PdfError, Section, Table, render_pdf

pytestmark = pytest.mark.skipif(
    shutil.which("pdftotext") is None, reason="install poppler-utils (scripts/test.sh does)"
)

TITLE = "Báo cáo chứng cứ đo kiểm – thôn Đồng Tâm"
MANIFEST_SHA256 = "3f5a" * 16
FOOTER = f"SHA-256 của manifest.json: {MANIFEST_SHA256}"
CREATED_AT = datetime(2026, 11, 5, 3, 0, tzinfo=UTC)
HEADER = ("Thôn", "Nhà mạng", "Tải xuống TB (Mbit/s)", "Kết luận", "Nguồn")
VERDICTS = ("Đạt", "Không đạt", "Chưa đủ mẫu")
ROWS = [
    (
        f"Đồng Tâm {i:03d}",
        ("VNPT", "Viettel")[i % 2],
        f"{40 + i},{i % 10}",
        VERDICTS[i % 3],
        "QCVN 34:2019/BTTTT",
    )
    for i in range(150)
]


@dataclass(frozen=True)
class Rendered:
    path: Path
    pages: list[str]  # pdftotext of each page


def run(*args: str | Path) -> str:
    return subprocess.run(
        [str(arg) for arg in args], check=True, capture_output=True, text=True, timeout=120
    ).stdout


def page_count(path: Path) -> int:
    match = re.search(r"^Pages:\s+(\d+)$", run("pdfinfo", path), re.MULTILINE)
    assert match is not None
    return int(match.group(1))


def pages_text(path: Path) -> list[str]:
    return [
        run("pdftotext", "-layout", "-f", str(n), "-l", str(n), path, "-")
        for n in range(1, page_count(path) + 1)
    ]


def chart(path: Path) -> Path:
    start = datetime(2026, 10, 1, tzinfo=UTC)
    points = [(start + timedelta(hours=h), 50.0 + h % 24) for h in range(24 * 30)]
    time_series_png(
        [("Tải xuống", points)],
        title="Tải xuống – thôn Đồng Tâm",
        unit="Mbit/s",
        thresholds=[(40.0, "Ngưỡng 40 Mbit/s")],
        path=path,
    )
    return path


def sample(directory: Path, *, title: str = TITLE, rows: Sequence[tuple[str, ...]] = ROWS) -> Path:
    path = directory / "report.pdf"
    render_pdf(
        title=title,
        subtitle=["Xã Tân Lập, huyện Mộc Châu", "Từ 01/10/2026 đến 31/12/2026 (giờ Việt Nam)"],
        sections=[
            Section(
                "1. Kết quả theo thôn và nhà mạng",
                paragraphs=["Kết luận theo QCVN 34:2019/BTTTT; số mẫu tối thiểu là 30. " * 6],
                tables=[Table(HEADER, rows, widths=(2, 1.2, 1.5, 1.3, 2))],
            ),
            Section("2. Biểu đồ", images=[chart(directory / "chart.png")]),
        ],
        footer=FOOTER,
        created_at=CREATED_AT,
        path=path,
    )
    return path


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Rendered:
    path = sample(tmp_path_factory.mktemp("pdf"))
    return Rendered(path, pages_text(path))


def test_vietnamese_text_comes_back_exactly(rendered: Rendered) -> None:
    text = "\n".join(rendered.pages)
    assert unicodedata.is_normalized("NFC", text)
    assert TITLE in text
    for word in (*VERDICTS, "Tân Lập, huyện Mộc Châu", "Đồng Tâm 149", "Nhà mạng"):
        assert word in text, word
    assert "Trang 1/" in rendered.pages[0]


def test_the_table_spans_pages_with_its_header_on_each(rendered: Rendered) -> None:
    table_pages = [page for page in rendered.pages if "Đồng Tâm 0" in page]
    assert len(table_pages) >= 3
    for page in table_pages:
        assert re.search(r"Thôn\s+Nhà mạng\s+Tải xuống TB", page), page[:400]
    rows_seen = sum(len(re.findall(r"Đồng Tâm \d{3}", page)) for page in rendered.pages)
    assert rows_seen == len(ROWS)  # none lost or repeated at a page break


def test_every_page_has_its_number_and_the_manifest_hash(rendered: Rendered) -> None:
    total = len(rendered.pages)
    for number, page in enumerate(rendered.pages, start=1):
        assert f"Trang {number}/{total}" in page
        assert MANIFEST_SHA256 in page  # on one line, not broken across two


def test_deja_vu_is_embedded(rendered: Rendered) -> None:
    fonts = run("pdffonts", rendered.path).splitlines()[2:]
    embedded = {line.split()[0].split("+")[-1]: line.split()[-5] for line in fonts}
    assert embedded == {"DejaVuSansBook": "yes", "DejaVuSansBold": "yes"}, fonts


def test_pages_render(rendered: Rendered, tmp_path: Path) -> None:
    run("pdftoppm", "-png", "-r", "50", rendered.path, tmp_path / "page")
    pngs = sorted(tmp_path.glob("page-*.png"))
    assert len(pngs) == len(rendered.pages)
    for png in pngs:
        with Image.open(png) as image:
            assert image.size == (414, 585)  # A4 at 50 dpi
            grey = image.convert("L")
            dark = sum(grey.histogram()[:128])
            inked_above_footer = sum(grey.crop((0, 0, 414, 520)).histogram()[:250])
        assert dark > 100, png.name
        assert inked_above_footer > 2000, png.name  # not a page holding only the footer


def test_the_chart_is_on_the_page_of_its_heading(rendered: Rendered) -> None:
    # pdfimages -list: two header lines, then "page num type width height ..." per image.
    listing = run("pdfimages", "-list", rendered.path).splitlines()[2:]
    image_pages = [int(line.split()[0]) for line in listing if line.split()[2] == "image"]
    assert len(image_pages) == 1, listing
    assert "2. Biểu đồ" in rendered.pages[image_pages[0] - 1]


def test_the_metadata_holds_the_title_and_creation_date(rendered: Rendered) -> None:
    info = run("pdfinfo", "-isodates", rendered.path)
    assert re.search(rf"^Title:\s+{TITLE}$", info, re.MULTILINE)
    assert re.search(r"^CreationDate:\s+2026-11-05T03:00:00(Z|\+00)", info, re.MULTILINE), info
    assert "A4" in info


def test_the_same_input_gives_the_same_bytes(rendered: Rendered, tmp_path: Path) -> None:
    assert sample(tmp_path).read_bytes() == rendered.path.read_bytes()


def test_nfd_input_comes_out_nfc(tmp_path: Path) -> None:
    nfd_title = unicodedata.normalize("NFD", TITLE)
    nfd_rows = [tuple(unicodedata.normalize("NFD", cell) for cell in row) for row in ROWS[:5]]
    assert nfd_title != TITLE
    text = "\n".join(pages_text(sample(tmp_path, title=nfd_title, rows=nfd_rows)))
    assert TITLE in text
    assert "Không đạt" in text and "Chưa đủ mẫu" in text
    assert not any(unicodedata.combining(char) for char in text)


def test_a_long_footer_wraps_inside_the_page(tmp_path: Path) -> None:
    footer = "Tệp kê khai manifest.json, ký bằng khóa Ed25519 của máy chủ, có SHA-256 " + (
        " ".join([MANIFEST_SHA256] * 3)
    )
    path = tmp_path / "long.pdf"
    render_pdf(
        title=TITLE,
        subtitle=[],
        sections=[Section("Bảng", tables=[Table(HEADER, ROWS)])],
        footer=footer,
        created_at=CREATED_AT,
        path=path,
    )
    pages = pages_text(path)
    assert len(pages) >= 3
    for page in pages:
        # Every hash copy whole, and the table's last row above the footer, never under it.
        assert page.count(MANIFEST_SHA256) == 3, page[-600:]
        footer_at = page.index("Tệp kê khai")
        assert not re.search(r"Đồng Tâm \d{3}", page[footer_at:])


def test_a_character_the_font_lacks_is_shown_not_dropped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "cjk.pdf"
    with caplog.at_level(logging.WARNING, logger="server.evidence.pdf"):
        render_pdf(
            title="Thôn 漢",
            subtitle=[],
            sections=[],
            footer="",
            created_at=CREATED_AT,
            path=path,
        )
    assert "Thôn \ufffd" in pages_text(path)[0]
    assert "U+6F22" in caplog.text


def test_an_empty_table_says_so(tmp_path: Path) -> None:
    path = tmp_path / "empty.pdf"
    render_pdf(
        title=TITLE,
        subtitle=[],
        sections=[Section("Bảng", tables=[Table(HEADER, [])])],
        footer=FOOTER,
        created_at=CREATED_AT,
        path=path,
    )
    assert "Không có dữ liệu." in pages_text(path)[0]


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (Table(("a", "b"), [("1", "2"), ("3",)]), r"table row 2 has 1 cells, the header 2"),
        (Table(("a", "b"), [], widths=(1,)), r"widths \(1,\) must be 2 positive numbers"),
        (Table(("a", "b"), [], widths=(1, 0)), r"widths \(1, 0\) must be 2 positive numbers"),
        (Table((), []), r"empty header"),
    ],
)
def test_a_malformed_table_is_refused(tmp_path: Path, table: Table, message: str) -> None:
    with pytest.raises(PdfError, match=message):
        render_pdf(
            title=TITLE,
            subtitle=[],
            sections=[Section("Bảng 1", tables=[table])],
            footer="",
            created_at=CREATED_AT,
            path=tmp_path / "x.pdf",
        )
    assert not (tmp_path / "x.pdf").exists()


def test_a_missing_image_or_naive_date_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PdfError, match=r"image .*nowhere.png does not exist"):
        render_pdf(
            title=TITLE,
            subtitle=[],
            sections=[Section("Ảnh", images=[tmp_path / "nowhere.png"])],
            footer="",
            created_at=CREATED_AT,
            path=tmp_path / "x.pdf",
        )
    with pytest.raises(PdfError, match="created_at 2026-11-05T00:00:00 is naive"):
        render_pdf(
            title=TITLE,
            subtitle=[],
            sections=[],
            footer="",
            created_at=datetime(2026, 11, 5),
            path=tmp_path / "x.pdf",
        )
