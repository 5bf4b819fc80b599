"""The office's overview page at ``/``: hamlets, probes, last-seen and last results, in Vietnamese.

Read-only and without secrets (no tokens, no private keys); Grafana is the office's main view.
It publishes the public key evidence exports are signed with (docs/evidence.md), the one an
operator passes to ``minisign -P``.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from html import escape
from zoneinfo import ZoneInfo

from aiohttp import web

from probes.models import BandwidthResult, Kind, LatencyResult
from server.appkeys import REGISTRY, SETTINGS, STORE
from server.compliance.page import ILLUSTRATIVE_BANNER
from server.errors import StorageUnavailable
from server.evidence import minisign

#: Office staff read local time (Asia/Ho_Chi_Minh, UTC+7).
LOCAL_TZ = ZoneInfo("Asia/Ho_Chi_Minh")
ACCESS_VI = {"fiber": "Cáp quang", "4g": "Di động 4G", "5g": "Di động 5G"}

_PAGE = """<!doctype html>
<html lang="vi"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>hamletnet — Chất lượng Internet các thôn</title>
<style>
body{{font-family:system-ui,sans-serif;margin:2rem;color:#222}}
table{{border-collapse:collapse;margin-bottom:2rem;min-width:40rem}}
th,td{{border:1px solid #ccc;padding:.35rem .6rem;text-align:left}}
th{{background:#eef3f8}} td.num{{text-align:right}} .muted{{color:#777}}
.bad{{color:#a00}}
.demo{{background:#fff3cd;border:2px solid #c9a227;padding:.6rem 1rem}}
</style></head><body>
{banner}<h1>Chất lượng Internet các thôn</h1>
<p class="muted">Cập nhật lúc {now}. {store_note}</p>
<p><a href="/compliance">Mức độ đạt chỉ tiêu kế hoạch hạ tầng số của xã →</a></p>
<h2>Thôn</h2>
<table><tr><th>Mã</th><th>Tên thôn</th><th>Số hộ</th><th>Số đầu đo</th></tr>{hamlets}</table>
<h2>Đầu đo và kết quả gần nhất</h2>
<table><tr><th>Đầu đo</th><th>Thôn</th><th>Nhà mạng</th><th>Truy nhập</th>
<th>Liên lạc lần cuối</th><th>Tải xuống (Mb/s)</th><th>Tải lên (Mb/s)</th>
<th>Độ trễ trung vị (ms)</th><th>Đo lúc</th></tr>{probes}</table>
<h2>Khóa công khai của máy chủ (kiểm tra bằng chứng)</h2>
<p>Mọi bộ bằng chứng và báo cáo quý do máy chủ này xuất ra đều được ký bằng khóa dưới đây.
Nhà mạng kiểm tra bằng công cụ <code>minisign</code>, trong thư mục bộ bằng chứng:</p>
<pre>minisign -Vm manifest.json -P {key}</pre>
</body></html>"""


def _when(value: datetime | None) -> str:
    if value is None:
        return '<span class="muted">chưa có</span>'
    return escape(value.astimezone(LOCAL_TZ).strftime("%H:%M:%S %d/%m/%Y"))


def _num(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value:,.{digits}f}".replace(",", " ")


async def index_page(request: web.Request) -> web.Response:
    registry = request.app[REGISTRY]
    hamlets = await registry.hamlets()
    probes = await registry.probes()
    names = {h.code: h.name for h in hamlets}
    bandwidth: dict[str, BandwidthResult] = {}
    latency: dict[str, LatencyResult] = {}
    store_note = ""
    try:
        for item in await request.app[STORE].latest(Kind.BANDWIDTH):
            if isinstance(item.result, BandwidthResult):
                bandwidth[item.identity.probe_id] = item.result
        for item in await request.app[STORE].latest(Kind.LATENCY):
            if isinstance(item.result, LatencyResult):
                latency[item.identity.probe_id] = item.result
    except StorageUnavailable:
        store_note = '<span class="bad">Không đọc được kho dữ liệu đo.</span>'

    hamlet_rows = "".join(
        f"<tr><td>{escape(h.code)}</td><td>{escape(h.name)}</td>"
        f'<td class="num">{"—" if h.households is None else h.households}</td>'
        f'<td class="num">{sum(1 for p in probes if p.hamlet == h.code)}</td></tr>'
        for h in hamlets
    )
    probe_rows = []
    for p in probes:
        bw, lat = bandwidth.get(p.probe_id), latency.get(p.probe_id)
        last = max((r.measured_at for r in (bw, lat) if r is not None), default=None)
        state = "" if p.enabled else ' <span class="bad">(đã tắt)</span>'
        probe_rows.append(
            f"<tr><td>{escape(p.probe_id)}{state}</td>"
            f"<td>{escape(names.get(p.hamlet, p.hamlet))}</td><td>{escape(p.isp)}</td>"
            f"<td>{ACCESS_VI.get(p.access.value, p.access.value)}</td>"
            f"<td>{_when(p.last_seen_at)}</td>"
            f'<td class="num">{_num(bw.download_mbps if bw else None)}</td>'
            f'<td class="num">{_num(bw.upload_mbps if bw else None)}</td>'
            f'<td class="num">{_num(lat.rtt_median_ms if lat else None, 2)}</td>'
            f"<td>{_when(last)}</td></tr>"
        )
    key = await asyncio.to_thread(minisign.load_or_create_key, request.app[SETTINGS].data_dir)
    html = _PAGE.format(
        key=escape(key.public.base64_text()),
        banner=ILLUSTRATIVE_BANNER if request.app[SETTINGS].demo else "",
        now=_when(datetime.now(UTC)),
        store_note=store_note,
        hamlets=hamlet_rows or '<tr><td colspan="4" class="muted">Chưa có thôn nào.</td></tr>',
        probes="".join(probe_rows)
        or '<tr><td colspan="9" class="muted">Chưa có đầu đo nào.</td></tr>',
    )
    return web.Response(text=html, content_type="text/html", charset="utf-8")
