"""Builds an evidence export (docs/evidence.md) for one hamlet (and ISP) over a window of Vietnam
days: the raw signed results, the keys, the tables, the compliance engine's summary with the
context it was computed from, the methodology, the charts, a sealed manifest and a signed PDF.

The results stream window by window from ``ResultStore.query`` into every file at once, so a
year never sits in memory as one list; the files are written in a directory beside ``out_dir``
that is renamed to it only when everything is written and signed, so a failure leaves nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import zipfile
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from probes.models import Access, Kind, Result, Status
from server import __version__
from server.compliance import rules
from server.compliance.stats import Period, parse_period, vietnam_time
from server.errors import BadRequest
from server.evidence import charts, manifest, minisign, pdf
from server.evidence.methodology import Tally, methodology_json, methodology_markdown
from server.evidence.summary import (
    CONTEXT_NAME,
    SUMMARY_NAME,
    Context,
    EvidenceCollector,
    compute_summary,
    context_to_json,
    gather_context,
    json_file_bytes,
)
from server.evidence.tables import MEASUREMENT_KINDS, TableWriter

if TYPE_CHECKING:
    from server.compliance.plan import Plan
    from server.registry import Registry
    from server.settings import Settings
    from server.storage.base import ResultStore

FORMATS = ("csv", "xlsx", "pdf")
#: Results are read a week at a time: a week of 20 probes' hourly results is a few thousand
#: models, a year would be hundreds of thousands.
QUERY_WINDOW = timedelta(days=7)
#: Charts average each probe's results per bucket: hourly up to a month, daily beyond, so a
#: year's chart has about 365 points per probe.
_HOURLY_UP_TO = timedelta(days=31)
PDF_NAME = "report.pdf"
CHARTS_DIR = "charts"

#: Called as the export advances: (share of the window done, 0..1; results written so far).
Progress = Callable[[float, int], None]


class ExportInputError(BadRequest):
    """The export asked for cannot be made (unknown hamlet or ISP, dates in the wrong order, an
    output directory in use, no results); the message names the value. Nothing is written."""


@dataclass(frozen=True)
class ExportOutcome:
    directory: Path
    manifest: bytes
    results: int
    files: tuple[str, ...]

    @property
    def manifest_sha256(self) -> str:
        return hashlib.sha256(self.manifest).hexdigest()


def parse_formats(text: str | Sequence[str]) -> tuple[str, ...]:
    """``csv,xlsx,pdf`` (any subset, any order) as a tuple in the canonical order."""
    given = text.split(",") if isinstance(text, str) else list(text)
    names = [g.strip().lower() for g in given if g.strip()]
    unknown = [n for n in names if n not in FORMATS]
    if unknown:
        raise ExportInputError(
            f"unknown format {unknown[0]!r}; use a comma-separated list of {', '.join(FORMATS)}"
        )
    return tuple(f for f in FORMATS if f in names)


def export_window(start: date, end: date) -> Period:
    """The Vietnam-time days ``start`` to ``end``, both included."""
    if start > end:
        raise ExportInputError(
            f"from {start.isoformat()} is after to {end.isoformat()}; give from <= to"
        )
    return parse_period(f"{start.isoformat()}..{end.isoformat()}")


def check_out_dir(out_dir: Path) -> None:
    """The output must be a new or empty directory, in a directory that exists."""
    if out_dir.is_symlink() or (out_dir.exists() and not out_dir.is_dir()):
        raise ExportInputError(f"output {out_dir} exists and is not a directory")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        raise ExportInputError(f"output directory {out_dir} is not empty; give a new or empty one")
    if not out_dir.parent.is_dir():
        raise ExportInputError(f"the directory {out_dir.parent} for the output does not exist")


async def build_export(
    store: ResultStore,
    registry: Registry,
    settings: Settings,
    plan: Plan,
    *,
    hamlet: str,
    isp: str | None = None,
    start: date,
    end: date,
    formats: Sequence[str],
    out_dir: Path,
    key: minisign.SigningKey,
    previous_manifest: bytes | None,
    now: datetime,
    progress: Progress | None = None,
) -> ExportOutcome:
    """Write the export to ``out_dir`` (new or empty) and return its manifest; raise
    ``ExportInputError`` (a ``BadRequest``) for input that cannot give an export, having
    written nothing. The chain link is ``previous_manifest``; ``run_export`` keeps the chain."""
    chosen = parse_formats(formats)
    period = export_window(start, end)
    out_dir = Path(out_dir)
    check_out_dir(out_dir)
    try:
        context = await gather_context(
            registry, settings, plan, period, now=now, hamlet=hamlet, isp=isp
        )
    except BadRequest as exc:
        raise ExportInputError(exc.detail) from None
    keys = {p.probe_id: p.public_key for p in await registry.probes()}
    work = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".partial", dir=out_dir.parent))
    try:
        writer = _Writer(work, context, chosen, now)
        try:
            await writer.stream(store, progress)
        finally:
            await asyncio.to_thread(writer.close)
        if writer.count == 0:
            who = f"hamlet {hamlet!r}" + (f", ISP {isp!r}" if isp else "")
            raise ExportInputError(
                f"no results for {who} from {start.isoformat()} to {end.isoformat()}:"
                " nothing to export"
            )
        parameters = {
            "hamlet": hamlet,
            "isp": isp,
            "from": start.isoformat(),
            "to": end.isoformat(),
            "formats": list(chosen),
            "kinds": [k.value for k in MEASUREMENT_KINDS],
        }
        data = await asyncio.to_thread(writer.finish, keys, key, parameters, previous_manifest)
        os.rename(work, out_dir)  # onto a new or empty directory: atomic on POSIX
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    files = tuple(
        sorted(p.relative_to(out_dir).as_posix() for p in out_dir.rglob("*") if p.is_file())
    )
    return ExportOutcome(out_dir, data, writer.count, files)


@contextlib.asynccontextmanager
async def chain_lock(data_dir: Path) -> AsyncIterator[None]:
    """One export at a time per data directory (across processes), so two exports never take
    the same previous manifest and fork the chain."""
    handle = (data_dir / (manifest.CHAIN_FILE_NAME + ".lock")).open("a")
    try:
        await asyncio.to_thread(fcntl.flock, handle.fileno(), fcntl.LOCK_EX)
        yield
    finally:
        handle.close()  # closing releases the lock


async def run_export(
    store: ResultStore,
    registry: Registry,
    settings: Settings,
    plan: Plan,
    *,
    out_dir: Path,
    now: datetime,
    **request: Any,
) -> ExportOutcome:
    """``build_export`` with the server's key and the chain kept in ``settings.data_dir``: the
    previous manifest is read under a lock, and the head moves only once the export is in
    place."""
    data_dir = settings.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    key = minisign.load_or_create_key(data_dir)
    async with chain_lock(data_dir):
        previous = manifest.read_chain_head(data_dir)
        outcome = await build_export(
            store, registry, settings, plan, out_dir=out_dir, now=now, key=key,
            previous_manifest=previous, **request,
        )  # fmt: skip
        manifest.advance_chain(data_dir, outcome.manifest, str(out_dir))
    return outcome


# -- The files ----------------------------------------------------------------------------------


class _Charts:
    """Per probe, the mean of each bucket (an hour, or a day for windows over a month) of
    download, upload and latency: what the charts draw."""

    def __init__(self, period: Period) -> None:
        self._bucket = timedelta(hours=1) if period.duration <= _HOURLY_UP_TO else timedelta(days=1)
        self._origin = period.start
        self._sums: dict[str, dict[tuple[str, int], list[float]]] = defaultdict(dict)

    def add(self, result: Result) -> None:
        if result.status is not Status.OK:
            return
        kind = Kind(result.kind)
        if kind is Kind.BANDWIDTH:
            self._put("download", result, getattr(result, "download_mbps", None))
            self._put("upload", result, getattr(result, "upload_mbps", None))
        elif kind is Kind.LATENCY:
            self._put("latency", result, getattr(result, "rtt_median_ms", None))

    def _put(self, what: str, result: Result, value: float | None) -> None:
        if value is None:
            return
        index = (result.measured_at - self._origin) // self._bucket
        cell = self._sums[what].setdefault((result.probe_id, index), [0.0, 0.0])
        cell[0] += value
        cell[1] += 1

    def series(self, what: str) -> list[tuple[str, list[tuple[datetime, float]]]]:
        by_probe: dict[str, list[tuple[datetime, float]]] = defaultdict(list)
        for (probe_id, index), (total, n) in sorted(self._sums[what].items()):
            by_probe[probe_id].append((self._origin + index * self._bucket, total / n))
        return sorted(by_probe.items())


def _thresholds(context: Context, what: str) -> list[tuple[float, str]]:
    """The rules' thresholds for the lines in the export, as the charts label them."""
    found: dict[float, str] = {}
    for probe in context.probes:
        line = probe.line
        if what == "download":
            if line.access is Access.FIBER:
                found.setdefault(rules.GIGABIT_MEAN_MBPS, "941 Mb/s: trung bình ≥ 1 Gb/s")
                floor = line.declared_min_down_mbps or rules.GIGABIT_DEFAULT_FLOOR_MBPS
                found.setdefault(floor, f"{floor:g} Mb/s: ngưỡng tối thiểu giờ cao điểm")
            elif line.access is Access.LTE:
                found.setdefault(rules.LTE_FLOOR_MBPS, "40 Mb/s: ngưỡng 4G")
            elif line.access is Access.NR:
                found.setdefault(rules.NR_MEAN_DOWN_MBPS, "100 Mb/s: trung bình 5G")
                found.setdefault(rules.NR_FLOOR_MBPS, "30 Mb/s: ngưỡng 5G")
            declared = line.declared_down_mbps
        else:
            if line.access is Access.NR:
                found.setdefault(rules.NR_MEAN_UP_MBPS, "30 Mb/s: trung bình tải lên 5G")
            declared = line.declared_up_mbps
        if declared is not None:
            value = rules.QCVN34_RATIO * declared
            found.setdefault(value, f"{value:g} Mb/s: 80 % tốc độ công bố ({probe.probe_id})")
    return sorted(found.items())


class _Writer:
    """Writes one export's files into ``directory`` as the results come."""

    def __init__(
        self, directory: Path, context: Context, formats: Sequence[str], now: datetime
    ) -> None:
        self.directory = directory
        self.context = context
        self.formats = tuple(formats)
        self.now = now
        self.count = 0
        self.probes_seen: set[str] = set()
        self._collector = EvidenceCollector(context.access_by_probe())
        self._tally = Tally()
        self._charts = _Charts(context.period)
        self._jsonl = (directory / "results.jsonl").open("w", encoding="utf-8", newline="\n")
        self._tables = TableWriter(
            directory, csv_file="csv" in formats, xlsx_file="xlsx" in formats, created_at=now
        )

    async def stream(self, store: ResultStore, progress: Progress | None) -> None:
        period = self.context.period
        wanted = {p.probe_id for p in self.context.probes}
        start = period.start
        while start < period.end:
            end = min(start + QUERY_WINDOW, period.end)
            batch: list[Result] = []
            for kind in MEASUREMENT_KINDS:
                found = await store.query(
                    kind=kind, hamlet=self.context.hamlet, start=start, end=end
                )
                batch.extend(s.result for s in found if s.result.probe_id in wanted)
            # One order for the whole file: time, then probe, then id.
            batch.sort(key=lambda r: (r.measured_at, r.probe_id, str(r.result_id)))
            await asyncio.to_thread(self._write, batch)
            if progress is not None:
                progress((end - period.start) / period.duration, self.count)
            start = end

    def _write(self, batch: Sequence[Result]) -> None:
        for result in batch:
            payload = result.model_dump(mode="json", exclude_none=True)
            line = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
            self._jsonl.write(line + "\n")
            self._tables.add(result)
            self._collector.add(result)
            self._tally.add(result)
            self._charts.add(result)
            self.probes_seen.add(result.probe_id)
            self.count += 1

    def close(self) -> None:
        self._jsonl.close()
        self._tables.close()

    def finish(
        self,
        keys: dict[str, str | None],
        key: minisign.SigningKey,
        parameters: dict[str, Any],
        previous_manifest: bytes | None,
    ) -> bytes:
        """Everything after the results: keys, summary, context, methodology, charts, the
        sealed manifest and the signed PDF. Returns the manifest's bytes."""
        d = self.directory
        missing = sorted(p for p in self.probes_seen if not keys.get(p))
        if missing:
            raise ExportInputError(
                f"probe {missing[0]!r} has results but no registered public key: its results"
                " cannot be verified, so they cannot be exported"
            )
        probe_keys = {p: keys[p] for p in sorted(self.probes_seen)}
        (d / "probe-keys.json").write_bytes(json_file_bytes(probe_keys))
        (d / "server.pub").write_text(key.public.file_text(), encoding="utf-8")
        summary = compute_summary(self.context, self._collector.evidence())
        (d / SUMMARY_NAME).write_bytes(json_file_bytes(summary))
        (d / CONTEXT_NAME).write_bytes(json_file_bytes(context_to_json(self.context)))
        method = methodology_json(self._tally, self.context.plan)
        (d / "methodology.json").write_bytes(json_file_bytes(method))
        (d / "methodology.md").write_text(methodology_markdown(method), encoding="utf-8")
        images = self._draw_charts()
        data = manifest.seal(d, key, parameters, __version__, self.now, previous_manifest)
        if "pdf" in self.formats:
            path = d / PDF_NAME
            _render_report(path, self.context, summary, method, images, data, self.count, self.now)
            manifest.seal_pdf(path, key, data, self.now)
        return data

    def _draw_charts(self) -> list[Path]:
        folder = self.directory / CHARTS_DIR
        folder.mkdir()
        specs = (
            ("download", "Tốc độ tải xuống", "Mb/s"),
            ("upload", "Tốc độ tải lên", "Mb/s"),
            ("latency", "Độ trễ (trung vị RTT)", "ms"),
        )
        paths = []
        for what, title, unit in specs:
            path = folder / f"{what}.png"
            thresholds = _thresholds(self.context, what) if what != "latency" else []
            charts.time_series_png(
                self._charts.series(what), title=title, unit=unit, thresholds=thresholds, path=path
            )
            paths.append(path)
        return paths


# -- The PDF ------------------------------------------------------------------------------------


def _number(value: Any) -> str:
    from server.compliance.page import vn_number

    return vn_number(value) if isinstance(value, int | float) else "—"


def _vn_date(day: datetime) -> str:
    return vietnam_time(day).strftime("%d/%m/%Y")


def _render_report(
    path: Path,
    context: Context,
    summary: dict[str, Any],
    method: dict[str, Any],
    images: Sequence[Path],
    manifest_data: bytes,
    count: int,
    now: datetime,
) -> None:
    """The PDF in Vietnamese: the summary (the engine's verdicts and figures), the charts, the
    methodology and the manifest's SHA-256 (in every page's footer)."""
    digest = hashlib.sha256(manifest_data).hexdigest()
    hamlet = context.hamlets[0]
    commune = context.communes[0].name if context.communes else hamlet.commune
    last_day = context.period.end - timedelta(days=1)
    names = {i.id: i.name_vi for i in context.plan.indicators}
    indicator_rows: list[tuple[str, ...]] = []
    line_rows: list[tuple[str, ...]] = []
    for c in summary["communes"]:
        for h in c["hamlets"]:
            for i in h["indicators"]:
                indicator_rows.append(
                    (names.get(i["indicator_id"], i["indicator_id"]), i["verdict_vi"],
                     i["deadline_status_vi"])
                )  # fmt: skip
            for line in h["lines"]:
                for rule in line["rules"]:
                    for month in rule["months"]:
                        down = month.get("download") or {}
                        line_rows.append(
                            (line["probe_id"], rule["rule_id"], month["window"]["label"],
                             month["verdict_vi"], str(month["n"]),
                             *(_number((down.get(k) or {}).get("value"))
                               for k in ("mean", "median", "p5"))),
                        )  # fmt: skip
    sections = [
        pdf.Section(
            "Tóm tắt",
            paragraphs=(
                f"Thôn {hamlet.name}, {commune}"
                + (f", nhà mạng {context.isp}" if context.isp else ", mọi nhà mạng")
                + f"; từ {_vn_date(context.period.start)} đến {_vn_date(last_day)} (giờ Việt Nam).",
                f"{count} kết quả đo, mỗi kết quả có chữ ký của đầu đo (results.jsonl).",
                "Các đánh giá dưới đây là của bộ máy đánh giá (summary.json), tính lại được từ"
                " results.jsonl và context.json bằng lệnh hamletnet-server export verify.",
            ),
            tables=(
                pdf.Table(("Chỉ tiêu", "Đánh giá", "Tiến độ"), indicator_rows, (4, 2, 2)),
                pdf.Table(
                    ("Đầu đo", "Quy tắc", "Tháng", "Đánh giá", "n", "TB Mb/s", "Trung vị", "p5"),
                    line_rows,
                    (3, 2.2, 1.4, 1.8, 0.8, 1.2, 1.2, 1.2),
                ),
            )
            if line_rows
            else (pdf.Table(("Chỉ tiêu", "Đánh giá", "Tiến độ"), indicator_rows, (4, 2, 2)),),
        ),
        pdf.Section("Biểu đồ", images=tuple(images)),
        pdf.Section(
            "Phương pháp",
            paragraphs=(method["schedules"], method["statistics"]),
            tables=(
                pdf.Table(
                    ("Quy tắc", "Nội dung", "Nguồn"),
                    [(r["id"], r["label_vi"], r["source"]) for r in method["rules"]],
                    (1.5, 3, 3),
                ),
            ),
        ),
        pdf.Section(
            "Kiểm tra",
            paragraphs=(
                f"SHA-256 của manifest.json: {digest}",
                "manifest.json liệt kê SHA-256 của mọi tệp (trừ tệp PDF này) và được ký bằng khoá"
                " của máy chủ theo định dạng minisign: minisign -Vm manifest.json -P <khoá công"
                " khai>. Tệp PDF này được ký riêng (report.pdf.minisig); chữ ký ghi SHA-256 của"
                " manifest ở trên.",
            ),
        ),
    ]
    pdf.render_pdf(
        title="Bằng chứng chất lượng mạng",
        subtitle=(f"Thôn {hamlet.name} — {commune}", f"Lập lúc {_vn_date(now)}"),
        sections=sections,
        footer=f"manifest.json SHA-256: {digest}",
        created_at=now,
        path=path,
    )


# -- The admin API's zip ------------------------------------------------------------------------

#: Zip entries carry this date (the zip format's earliest), so the archive's bytes depend only on
#: the export's files.
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


def zip_export(directory: Path, path: Path, folder: str) -> None:
    """Write the export in ``directory`` to the zip ``path``, its files under ``folder/``."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for file in sorted(p for p in directory.rglob("*") if p.is_file()):
            info = zipfile.ZipInfo(f"{folder}/{file.relative_to(directory).as_posix()}", _ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            with file.open("rb") as source, archive.open(info, "w") as target:
                shutil.copyfileobj(source, target, 1 << 20)


def export_name(hamlet: str, isp: str | None, start: date, end: date) -> str:
    """``evidence-thon-a-VNPT-2026-11-01-2026-11-30``: the zip's folder and file name."""
    parts = ["evidence", hamlet, *([isp] if isp else []), start.isoformat(), end.isoformat()]
    return "-".join("".join(c if c.isalnum() or c in "-_." else "_" for c in p) for p in parts)
