"""A4 PDF documents in Vietnamese for evidence exports and the quarterly report: a title block,
sections of headings, paragraphs, tables and images, and a footer with "Trang N/M" and the
manifest's SHA-256.

fpdf2 embeds (a subset of) the DejaVu Sans TrueType files that matplotlib ships, so the
diacritics survive without a system font, and every string is normalised to NFC first: the font
has the precomposed Vietnamese letters, while decomposed input (NFD, as some keyboards and macOS
file names produce) would come out of ``pdftotext`` as base letter + combining mark. The creation
date is the caller's ``created_at`` and fpdf2's document ID is a hash of the content, so the same
input gives the same bytes.
"""

from __future__ import annotations

import functools
import logging
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import matplotlib
from fontTools.ttLib import TTFont
from fpdf import FPDF
from fpdf.enums import TableHeadingsDisplay, XPos, YPos
from fpdf.fonts import FontFace
from PIL import Image

__all__ = ["PdfError", "Section", "Table", "render_pdf"]

logger = logging.getLogger(__name__)

_FONT = "DejaVu"
_FONT_DIR = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
_FONT_FILES = {"": "DejaVuSans.ttf", "B": "DejaVuSans-Bold.ttf"}

# Layout, in millimetres and points (fpdf2's unit is the millimetre; font sizes are points).
_MARGIN_MM = 18.0
_TITLE_PT, _SUBTITLE_PT, _HEADING_PT, _BODY_PT, _TABLE_PT, _FOOTER_PT = 18, 11, 13, 10, 8.5, 7.5
_BODY_LINE_MM, _TABLE_LINE_MM, _FOOTER_LINE_MM = 5.0, 4.2, 3.4
_PAGE_NUMBER_MM = 26.0  # right-hand footer column holding "Trang N/M"
_FOOTER_GAP_MM = 5.0  # between the text area and the footer rule
_HEADING_MM = 10.0  # a one-line heading with the space around it
_KEEP_WITH_HEADING_MM = 25.0  # of a paragraph or table: less room, and the heading moves on
_HEADING_FILL = (228, 232, 238)
_RULE_GREY = 150
_REPLACEMENT = "\ufffd"
# A table cell that is a number in Vietnamese notation, maybe with a unit: "1.234,5", "95 %",
# "12,3 Mbit/s", "—". A column of only such cells is right-aligned so digits line up.
_NUMERIC = re.compile(r"[−+-]?\d[\d.]*(,\d+)?\s*(%|ms|[MG]bit/s|[MG]b/s|mẫu|giờ|ngày)?|—|-|")


class PdfError(ValueError):
    """The document's content cannot be laid out (a row of the wrong width, a missing image)."""


@dataclass(frozen=True)
class Table:
    """A table: ``widths`` are relative column widths (``(1, 1, 2)``: the last column is twice
    as wide), spread over the text width; ``None`` gives equal columns."""

    header: tuple[str, ...]
    rows: Sequence[tuple[str, ...]]
    widths: tuple[float, ...] | None = None


@dataclass(frozen=True)
class Section:
    """A heading followed by its paragraphs, then its tables, then its images (PNG/JPEG)."""

    heading: str
    paragraphs: Sequence[str] = ()
    tables: Sequence[Table] = ()
    images: Sequence[Path] = ()


@functools.cache
def _covered() -> frozenset[int]:
    """Code points both embedded fonts can draw."""
    maps = [TTFont(_FONT_DIR / name, lazy=True).getBestCmap() for name in _FONT_FILES.values()]
    return frozenset(maps[0]).intersection(*maps[1:])


def _nfc(text: str) -> str:
    """NFC, with what DejaVu Sans cannot draw shown as U+FFFD rather than silently dropped
    (fpdf2 only logs a missing glyph and leaves a gap, which would alter evidence unseen)."""
    text = unicodedata.normalize("NFC", text).replace("\t", " ").replace("\r\n", "\n")
    covered = _covered()
    missing = {char for char in text if ord(char) not in covered and char != "\n"}
    if not missing:
        return text
    logger.warning(
        "PDF text has characters the embedded font cannot draw, shown as U+FFFD: %s",
        ", ".join(f"U+{ord(char):04X}" for char in sorted(missing)),
    )
    return "".join(_REPLACEMENT if char in missing else char for char in text)


def _check_table(table: Table, heading: str) -> None:
    columns = len(table.header)
    if columns == 0:
        raise PdfError(f"section {heading!r}: a table has an empty header")
    for number, row in enumerate(table.rows, start=1):
        if len(row) != columns:
            raise PdfError(
                f"section {heading!r}: table row {number} has {len(row)} cells, "
                f"the header {columns}: {row!r}"
            )
    if table.widths is not None and (
        len(table.widths) != columns or any(not width > 0 for width in table.widths)
    ):
        raise PdfError(
            f"section {heading!r}: table widths {table.widths!r} must be {columns} positive numbers"
        )


class _Document(FPDF):
    """fpdf2 calls ``footer`` on every page; it prints the footer text and "Trang N/M"."""

    def __init__(self, footer: str) -> None:
        super().__init__(orientation="portrait", unit="mm", format="A4")
        self._footer_text = footer
        self._footer_height_mm = 0.0

    def measure_footer(self) -> float:
        """Height of the footer block; the text area stops above it (the hash may wrap)."""
        self.set_font(_FONT, "", _FOOTER_PT)
        lines = self.multi_cell(
            self.epw - _PAGE_NUMBER_MM,
            _FOOTER_LINE_MM,
            self._footer_text,
            align="L",
            dry_run=True,
            output="LINES",
        )
        count = len(lines) if isinstance(lines, list) else 1  # output="LINES" gives a list
        self._footer_height_mm = max(1, count) * _FOOTER_LINE_MM
        return self._footer_height_mm

    def footer(self) -> None:
        top = self.h - _MARGIN_MM / 2 - self._footer_height_mm
        self.set_draw_color(_RULE_GREY)
        self.set_line_width(0.2)
        self.line(self.l_margin, top - 1.5, self.w - self.r_margin, top - 1.5)
        self.set_font(_FONT, "", _FOOTER_PT)
        self.set_text_color(60)
        self.set_xy(self.l_margin, top)
        self.multi_cell(
            self.epw - _PAGE_NUMBER_MM,
            _FOOTER_LINE_MM,
            self._footer_text,
            align="L",
        )
        self.set_xy(self.w - self.r_margin - _PAGE_NUMBER_MM, top)
        # "{nb}": fpdf2's alias, replaced by the page count when the document is written.
        self.cell(_PAGE_NUMBER_MM, _FOOTER_LINE_MM, f"Trang {self.page_no()}/{{nb}}", align="R")
        self.set_text_color(0)

    def space_left_mm(self) -> float:
        return self.page_break_trigger - self.get_y()


def _title_block(pdf: _Document, title: str, subtitle: Sequence[str]) -> None:
    pdf.set_font(_FONT, "B", _TITLE_PT)
    pdf.multi_cell(0, 9, title, align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_font(_FONT, "", _SUBTITLE_PT)
    for line in subtitle:
        pdf.multi_cell(0, 6, line, align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(2)
    pdf.set_draw_color(_RULE_GREY)
    pdf.set_line_width(0.4)
    pdf.line(pdf.l_margin, pdf.get_y(), pdf.w - pdf.r_margin, pdf.get_y())
    pdf.ln(4)


def _heading(pdf: _Document, text: str, keep_with_mm: float) -> None:
    """A heading, moved to a new page unless ``keep_with_mm`` of what follows fits under it."""
    if pdf.space_left_mm() < _HEADING_MM + keep_with_mm:
        pdf.add_page()
    pdf.ln(2)
    pdf.set_font(_FONT, "B", _HEADING_PT)
    pdf.multi_cell(0, 7, text, align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(1)


# Every multi_cell says align="L": fpdf2 justifies by default, which stretches a wrapped line
# (and a footer holding a hash) with wide gaps.
def _paragraph(pdf: _Document, text: str) -> None:
    pdf.set_font(_FONT, "", _BODY_PT)
    pdf.multi_cell(0, _BODY_LINE_MM, text, align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(2)


def _alignments(table: Table) -> tuple[str, ...]:
    aligns = []
    for column in range(len(table.header)):
        cells = [row[column].strip() for row in table.rows]
        numeric = any(cells) and all(_NUMERIC.fullmatch(cell) for cell in cells)
        aligns.append("RIGHT" if numeric else "LEFT")
    return tuple(aligns)


def _table(pdf: _Document, table: Table) -> None:
    pdf.set_font(_FONT, "", _TABLE_PT)
    pdf.set_draw_color(_RULE_GREY)
    pdf.set_line_width(0.2)
    with pdf.table(
        col_widths=table.widths,
        width=pdf.epw,
        text_align=_alignments(table),
        line_height=_TABLE_LINE_MM,
        padding=(0.8, 1.2),
        headings_style=FontFace(emphasis="BOLD", fill_color=_HEADING_FILL),
        repeat_headings=TableHeadingsDisplay.ON_TOP_OF_EVERY_PAGE,
        v_align="TOP",
    ) as grid:
        heading_row = grid.row()
        for text in table.header:
            heading_row.cell(_nfc(text))
        for row in table.rows:
            body_row = grid.row()
            for text in row:
                body_row.cell(_nfc(text))
    pdf.ln(3)
    if not table.rows:
        _paragraph(pdf, "Không có dữ liệu.")


def _image_size_mm(pdf: _Document, path: Path) -> tuple[float, float]:
    """The text width, or less if the image would be taller than a page."""
    try:
        with Image.open(path) as image:
            width_px, height_px = image.size
    except (OSError, ValueError) as exc:
        raise PdfError(f"image {path}: cannot be read ({exc})") from exc
    width_mm = pdf.epw
    height_mm = width_mm * height_px / width_px
    full_height = pdf.page_break_trigger - pdf.t_margin
    if height_mm > full_height:
        width_mm, height_mm = width_mm * full_height / height_mm, full_height
    return width_mm, height_mm


def _image(pdf: _Document, path: Path) -> None:
    width_mm, height_mm = _image_size_mm(pdf, path)
    if height_mm > pdf.space_left_mm():
        pdf.add_page()
    pdf.image(str(path), x=pdf.l_margin + (pdf.epw - width_mm) / 2, w=width_mm, h=height_mm)
    pdf.ln(3)


def render_pdf(
    *,
    title: str,
    subtitle: Sequence[str],
    sections: Sequence[Section],
    footer: str,
    created_at: datetime,
    path: Path,
) -> None:
    """Write an A4 PDF to ``path``: the title block, then each section in order.

    ``footer`` (e.g. "Manifest SHA-256: <64 hex>") is printed on every page beside
    "Trang N/M"; it wraps if it does not fit one line. ``created_at`` (timezone-aware) becomes
    the PDF's creation date, the only time the file holds, so equal input gives equal bytes.
    """
    if created_at.tzinfo is None or created_at.utcoffset() is None:
        raise PdfError(f"created_at {created_at.isoformat()} is naive; give a UTC-aware datetime")
    for section in sections:
        for table in section.tables:
            _check_table(table, section.heading)
        for image in section.images:
            if not image.is_file():
                raise PdfError(f"section {section.heading!r}: image {image} does not exist")

    pdf = _Document(_nfc(footer))
    for style, name in _FONT_FILES.items():
        pdf.add_font(_FONT, style, str(_FONT_DIR / name))
    pdf.set_margins(_MARGIN_MM, _MARGIN_MM, _MARGIN_MM)
    pdf.set_creation_date(created_at)
    title = _nfc(title)
    pdf.set_title(title)
    pdf.set_lang("vi")
    pdf.set_creator("hamletnet-server")
    pdf.add_page()
    footer_mm = pdf.measure_footer()  # fpdf2 measures text only on a page
    pdf.set_auto_page_break(True, margin=_MARGIN_MM / 2 + footer_mm + _FOOTER_GAP_MM)

    _title_block(pdf, title, [_nfc(line) for line in subtitle])
    for section in sections:
        keep_with_mm = _KEEP_WITH_HEADING_MM
        if section.images and not section.paragraphs and not section.tables:
            keep_with_mm = _image_size_mm(pdf, section.images[0])[1]
        _heading(pdf, _nfc(section.heading), keep_with_mm)
        for text in section.paragraphs:
            _paragraph(pdf, _nfc(text))
        for table in section.tables:
            _table(pdf, table)
        for image in section.images:
            _image(pdf, image)
    path.write_bytes(bytes(pdf.output()))
