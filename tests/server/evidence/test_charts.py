"""The evidence charts: real matplotlib PNGs, read back with Pillow (which matplotlib requires)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from PIL import Image

from server.evidence import charts
from server.evidence.charts import ChartError, time_series_png

Points = Sequence[tuple[datetime, float]]
START = datetime(2026, 10, 1, tzinfo=UTC)


def hourly(hours: int, base: float) -> list[tuple[datetime, float]]:
    return [(START + timedelta(hours=h), base + 10 * math.sin(h / 24)) for h in range(hours)]


def dark_fraction(path: Path) -> float:
    with Image.open(path) as image:
        grey = image.convert("L")
        histogram = grey.histogram()
        return sum(histogram[:128]) / (grey.width * grey.height)


def x_tick_labels(series: Sequence[tuple[str, Points]]) -> tuple[list[str], str]:
    figure = charts._figure(series, title="t", unit="ms", thresholds=())
    figure.canvas.draw()
    axes = figure.axes[0]
    labels = [label.get_text() for label in axes.get_xticklabels()]
    return labels, axes.xaxis.get_offset_text().get_text()


def test_same_input_gives_the_same_png_bytes(tmp_path: Path) -> None:
    series = [("Tải xuống", hourly(24 * 7, 60.0)), ("Tải lên", hourly(24 * 7, 20.0))]
    thresholds = [(40.0, "Ngưỡng tải xuống 40 Mbit/s")]
    for name in ("a.png", "b.png"):
        time_series_png(
            series,
            title="Tốc độ – thôn Đồng Tâm",
            unit="Mbit/s",
            thresholds=thresholds,
            path=tmp_path / name,
        )
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    # No "Software: matplotlib x.y" text chunk, whose version would change the bytes on upgrade.
    assert b"matplotlib" not in (tmp_path / "a.png").read_bytes()


def test_a_chart_has_lines_and_text(tmp_path: Path) -> None:
    path = tmp_path / "chart.png"
    time_series_png(
        [("Độ trễ", hourly(48, 30.0))],
        title="Độ trễ",
        unit="ms",
        thresholds=[(50.0, "Ngưỡng 50 ms")],
        path=path,
    )
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.size == (1350, 675)  # 9 × 4.5 in at 150 dpi
    assert 0.005 < dark_fraction(path) < 0.5


def test_the_time_axis_is_vietnam_time() -> None:
    # 17:00 UTC is midnight in Vietnam (UTC+7): one Vietnamese day, 02/10 00:00 to 03/10 00:00.
    start = datetime(2026, 10, 1, 17, tzinfo=UTC)
    points = [(start + timedelta(hours=h), 1.0) for h in range(25)]
    labels, offset = x_tick_labels([("x", points)])
    assert labels[0] == "02/10" and labels[-1] == "03/10", labels  # midnights, in Vietnam time
    assert all(label in {"02/10", "03/10"} or label.endswith(":00") for label in labels), labels
    assert offset in {"02/10/2026", "03/10/2026"}


@pytest.mark.parametrize(
    ("days", "expected"),
    [(1, ":00"), (30, "/10"), (365, "/2027")],
    ids=["day", "month", "year"],
)
def test_tick_labels_fit_the_window(days: int, expected: str) -> None:
    points = [(START + timedelta(days=days) * i / 100, 1.0) for i in range(101)]
    labels, _ = x_tick_labels([("x", points)])
    assert 3 <= len(labels) <= 12, labels
    assert any(expected in label for label in labels), labels
    assert not any(month in " ".join(labels) for month in ("Jan", "Oct", "Nov")), labels


def test_y_ticks_use_vietnamese_decimal_notation() -> None:
    figure = charts._figure(
        [("x", [(START, 1000.0), (START + timedelta(hours=1), 1500.0)])],
        title="t",
        unit="Mbit/s",
        thresholds=(),
    )
    figure.canvas.draw()
    labels = [label.get_text() for label in figure.axes[0].get_yticklabels()]
    assert "1.000" in labels, labels


def test_no_points_says_so(tmp_path: Path) -> None:
    path = tmp_path / "empty.png"
    time_series_png([("Tải xuống", [])], title="Tải xuống", unit="Mbit/s", path=path)
    figure = charts._figure([("Tải xuống", [])], title="Tải xuống", unit="Mbit/s", thresholds=())
    assert [text.get_text() for text in figure.axes[0].texts] == ["không có dữ liệu"]
    assert dark_fraction(path) > 0


def test_labels_are_nfc() -> None:
    nfd_label = "Kho\u0302ng \u0111a\u0323t"  # "Không đạt" decomposed
    figure = charts._figure(
        [(nfd_label, hourly(3, 1.0))], title=nfd_label, unit="ms", thresholds=[(1.0, nfd_label)]
    )
    axes = figure.axes[0]
    assert axes.get_title(loc="left") == "Không đạt"
    assert [line.get_label() for line in axes.get_lines()] == ["Không đạt", "Không đạt"]


def test_a_year_of_hourly_points_for_three_lines(tmp_path: Path) -> None:
    year = 24 * 365
    path = tmp_path / "year.png"
    time_series_png(
        [
            ("Tải xuống", hourly(year, 60.0)),
            ("Tải lên", hourly(year, 20.0)),
            ("Độ trễ", hourly(year, 35.0)),
        ],
        title="Một năm",
        unit="Mbit/s",
        thresholds=[(40.0, "Ngưỡng")],
        path=path,
    )
    assert dark_fraction(path) > 0.005


def test_a_naive_datetime_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ChartError, match="'Tải xuống': naive datetime 2026-10-01T00:00:00"):
        time_series_png(
            [("Tải xuống", [(datetime(2026, 10, 1), 1.0)])],
            title="t",
            unit="ms",
            path=tmp_path / "x.png",
        )


def test_a_non_finite_threshold_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ChartError, match="threshold 'Ngưỡng': value nan"):
        time_series_png(
            [("x", hourly(2, 1.0))],
            title="t",
            unit="ms",
            thresholds=[(math.nan, "Ngưỡng")],
            path=tmp_path / "x.png",
        )
