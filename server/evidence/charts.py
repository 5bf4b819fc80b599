"""Time-series charts (PNG) for evidence exports and the quarterly report: one line per series
over Vietnam time (UTC+7), the rule thresholds as labelled dashed lines.

The figure is built on ``matplotlib.figure.Figure`` with the Agg canvas and every font set on the
artist itself, never through pyplot or ``rcParams``: charts may be drawn from worker threads
(``asyncio.to_thread``) and must not depend on, or change, process-wide state. The PNG carries no
``Software``/time metadata, so the same input gives the same bytes (the manifest hashes it).
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from matplotlib import dates as mdates
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.ticker import FuncFormatter

from server.compliance.page import vn_number
from server.compliance.stats import VIETNAM

__all__ = ["NO_DATA", "ChartError", "time_series_png"]

#: Shown instead of lines when no series has a point.
NO_DATA = "không có dữ liệu"

_FONT = "DejaVu Sans"  # matplotlib ships it, so Vietnamese diacritics need no system font
_SIZE_IN = (9.0, 4.5)  # inches: about the width of an A4 text column at 150 dpi
_DPI = 150
# Colour-blind-safe palette (Okabe & Ito, "Color Universal Design", 2008), fixed here rather
# than taken from rcParams so a user's matplotlibrc cannot change the bytes.
_COLOURS = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#000000")
_THRESHOLD_COLOURS = ("#D55E00", "#7F7F7F", "#CC79A7")
# Tick labels per zoom level of matplotlib's ConciseDateFormatter: years, months, days, hours,
# minutes, seconds. Numeric, Vietnamese order (day/month), so no English month names appear.
_FORMATS = ("%Y", "%m/%Y", "%d/%m", "%H:%M", "%H:%M", "%S")
_ZERO_FORMATS = ("", "%Y", "%m/%Y", "%d/%m", "%H:%M", "%H:%M")
_OFFSET_FORMATS = ("", "%Y", "%m/%Y", "%d/%m/%Y", "%d/%m/%Y", "%d/%m/%Y %H:%M")


class ChartError(ValueError):
    """The chart's input cannot be drawn (a naive datetime, a non-finite threshold)."""


def _nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def _font(size: float, *, bold: bool = False) -> FontProperties:
    return FontProperties(family=_FONT, size=size, weight="bold" if bold else "normal")


def _vn_tick(value: float, _position: float | None = None) -> str:
    """A y tick in Vietnamese notation (``1.234,5``) with only the decimals it needs."""
    decimals = f"{value:.6f}".rstrip("0").partition(".")[2]
    return vn_number(value, digits=len(decimals))


def _xy(label: str, points: Sequence[tuple[datetime, float]]) -> tuple[list[float], list[float]]:
    """Points sorted by time as (matplotlib date number, value); NaN breaks the line."""
    for when, _ in points:
        if when.tzinfo is None or when.utcoffset() is None:
            raise ChartError(f"series {label!r}: naive datetime {when.isoformat()}; use UTC-aware")
    ordered = sorted(points, key=lambda point: point[0])
    xs = [float(x) for x in mdates.date2num([when for when, _ in ordered])]
    ys = [float(value) for _, value in ordered]
    return xs, ys


def time_series_png(
    series: Sequence[tuple[str, Sequence[tuple[datetime, float]]]],
    *,
    title: str,
    unit: str,
    thresholds: Sequence[tuple[float, str]] = (),
    path: Path,
) -> None:
    """Draw ``series`` (label, points) as lines over Vietnam time and write a PNG to ``path``.

    ``thresholds`` are (value, label) horizontal dashed lines, named in the legend and at the
    right edge of the plot. With no point at all the chart says "không có dữ liệu".
    """
    figure = _figure(series, title=title, unit=unit, thresholds=thresholds)
    figure.savefig(path, format="png", metadata={"Software": None})


def _figure(
    series: Sequence[tuple[str, Sequence[tuple[datetime, float]]]],
    *,
    title: str,
    unit: str,
    thresholds: Sequence[tuple[float, str]],
) -> Figure:
    for value, label in thresholds:
        if not math.isfinite(value):
            raise ChartError(f"threshold {label!r}: value {value!r} is not a finite number")
    drawn = [(_nfc(label), *_xy(label, points)) for label, points in series if points]

    figure = Figure(figsize=_SIZE_IN, dpi=_DPI, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.set_title(_nfc(title), fontproperties=_font(12, bold=True), loc="left")
    axes.set_ylabel(_nfc(unit), fontproperties=_font(9))
    axes.grid(True, color="#DDDDDD", linewidth=0.6)
    axes.set_axisbelow(True)

    if not drawn:
        axes.set_xticks([])
        axes.set_yticks([])
        axes.text(
            0.5,
            0.5,
            NO_DATA,
            transform=axes.transAxes,
            ha="center",
            va="center",
            fontproperties=_font(12),
            color="#555555",
        )
    else:
        for index, (label, xs, ys) in enumerate(drawn):
            axes.plot(
                xs,
                ys,
                label=label,
                color=_COLOURS[index % len(_COLOURS)],
                linewidth=0.9 if len(xs) > 500 else 1.3,
                marker="o" if len(xs) <= 60 else None,
                markersize=2.5,
            )
        for index, (value, label) in enumerate(thresholds):
            text = _nfc(label)
            colour = _THRESHOLD_COLOURS[index % len(_THRESHOLD_COLOURS)]
            axes.axhline(value, linestyle="--", linewidth=1.2, color=colour, label=text)
            axes.annotate(
                text,
                xy=(1.0, value),
                xycoords=axes.get_yaxis_transform(),
                xytext=(-4, 3),
                textcoords="offset points",
                ha="right",
                va="bottom",
                fontproperties=_font(7.5),
                color=colour,
            )
        axes.set_ylim(bottom=min(0.0, axes.get_ylim()[0]))
        locator = mdates.AutoDateLocator(tz=VIETNAM, minticks=3, maxticks=9)
        formatter = mdates.ConciseDateFormatter(
            locator,
            tz=VIETNAM,
            formats=list(_FORMATS),
            zero_formats=list(_ZERO_FORMATS),
            offset_formats=list(_OFFSET_FORMATS),
        )
        axes.xaxis.set_major_locator(locator)
        axes.xaxis.set_major_formatter(formatter)
        axes.set_xlabel("Giờ Việt Nam (UTC+7)", fontproperties=_font(8))
        # Below the plot rather than loc="best": "best" tests every vertex of every line, which
        # is slow for a year of hourly points, and a legend over the data hides some of it.
        figure.legend(
            loc="outside lower center",
            ncols=min(4, len(drawn) + len(thresholds)),
            frameon=False,
            prop=_font(8),
        )
        axes.xaxis.get_offset_text().set_fontproperties(_font(8))
        axes.yaxis.set_major_formatter(FuncFormatter(_vn_tick))
    axes.tick_params(labelsize=8, labelfontfamily=_FONT)
    return figure
