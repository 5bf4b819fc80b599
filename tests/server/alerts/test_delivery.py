"""Alert delivery through Apprise to REAL receivers started here: an SMTP server (aiosmtpd) and
an aiohttp webhook receiver (Apprise's ``json://``). Retries, routing per ISP, redaction."""

from __future__ import annotations

import asyncio
import email
import logging
import random
import socket
import unicodedata
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email import policy
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from aiosmtpd.controller import Controller
from pydantic import SecretStr

from server.alerts.config import BelowDeclared, Contact, Links, Routing
from server.alerts.delivery import (
    Deliverer,
    backoff_s,
    channel_url,
    channels_for,
    redact,
    secret_fragments,
)
from server.alerts.message import Place, render
from server.alerts.state import Observation, Subject, initial, transition
from server.alerts.store import AlertStore, Outgoing

T0 = datetime(2026, 11, 2, 1, 0, tzinfo=UTC)
LINKS = Links(grafana_url="https://g.example.vn", server_url="https://s.example.vn")
PLACE = Place(hamlet_name=unicodedata.normalize("NFD", "Thôn Đồng Tâm"), commune_name="Xã Hiệp Lực")
RULE = BelowDeclared(
    id="low",
    kind="below_declared",
    title_vi="Tốc độ thấp",
    text_vi="Dưới 80 % tốc độ công bố.",
    fraction=0.8,
    m=1,
    n=1,
    resolve_after=1,
)
TOKEN = "S3cr3tT0kenXyz"  # stands for a webhook's secret path token


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Mailbox:
    """A real SMTP server on loopback that keeps what it receives; stop and start it again on
    the same port to play a dead mail server coming back."""

    def __init__(self) -> None:
        self.port = free_port()
        self.messages: list[email.message.EmailMessage] = []
        self.rcpts: list[list[str]] = []
        self._controller: Controller | None = None

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.rcpts.append(list(envelope.rcpt_tos))
        self.messages.append(
            email.message_from_bytes(envelope.original_content, policy=policy.default)  # type: ignore[arg-type]
        )
        return "250 OK"

    def start(self) -> None:
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None


class Hooks:
    """A real HTTP receiver: ``POST /{name}/{token}`` keeps the JSON body; the first
    ``fail_first[name]`` calls to a name answer 500."""

    def __init__(self) -> None:
        self.received: dict[str, list[dict[str, Any]]] = {}
        self.calls: dict[str, int] = {}
        self.fail_first: dict[str, int] = {}
        self.app = web.Application()
        self.app.router.add_post("/{name}/{token}", self.handle)

    async def handle(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        self.calls[name] = self.calls.get(name, 0) + 1
        if self.calls[name] <= self.fail_first.get(name, 0):
            return web.Response(status=500, text="down for maintenance")
        self.received.setdefault(name, []).append(await request.json())
        return web.Response(text="ok")


@pytest.fixture
async def hooks() -> AsyncIterator[tuple[Hooks, int]]:
    receiver = Hooks()
    server = TestServer(receiver.app, host="127.0.0.1", port=free_port())
    await server.start_server()
    yield receiver, int(server.port or 0)
    await server.close()


@pytest.fixture
def mailbox() -> Any:
    box = Mailbox()
    box.start()
    yield box
    box.stop()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[AlertStore]:
    s = AlertStore(tmp_path / "alerts.sqlite3")
    await s.open()
    yield s
    await s.close()


def routing(port: int, smtp_port: int) -> Routing:
    def hook(name: str) -> SecretStr:
        return SecretStr(f"json://127.0.0.1:{port}/{name}/{TOKEN}")

    mail = SecretStr(
        f"mailto://127.0.0.1:{smtp_port}?from=canhbao@hamlet.example&to=vanphong@xa.example"
    )
    return Routing(
        office=Contact(name="UBND xã", urls=[hook("office"), mail]),
        isps={
            "VNPT": Contact(name="VNPT Tuyên Quang", urls=[hook("vnpt")]),
            "Viettel": Contact(name="Viettel Tuyên Quang", urls=[hook("viettel")]),
        },
    )


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


async def fire(store: AlertStore, route: Routing, isp: str, hamlet: str, at: datetime) -> str:
    """One bad test on a line: fires (m = 1) and queues the notice for its channels."""
    subject = Subject(hamlet=hamlet, isp=isp, probe=f"p-{hamlet}")
    state = initial(RULE.id, subject)
    after, notices = transition(state, Observation(at, True, 399.0, 800.0, "Mb/s"), at, RULE)
    out = []
    for notice in notices:
        msg = render(notice, RULE, LINKS, PLACE)
        out.append(Outgoing(notice, msg.title, msg.body, channels_for(route, isp)))
    await store.commit(state, after, out, at)
    return notices[0].id


async def test_vietnamese_email_and_webhook_routed_per_isp(
    store: AlertStore, hooks: tuple[Hooks, int], mailbox: Mailbox
) -> None:
    receiver, port = hooks
    route = routing(port, mailbox.port)
    clock = Clock()
    deliverer = Deliverer(store, route, clock=clock, rng=random.Random(1))
    try:
        await fire(store, route, "VNPT", "thon-a", T0)
        await fire(store, route, "Viettel", "thon-b", T0)
        outcomes = await deliverer.deliver_due()
    finally:
        await deliverer.close()
    assert all(o.delivered for o in outcomes), outcomes
    # The office hears of both, each operator only of its own.
    assert len(receiver.received["office"]) == 2
    assert [b["title"] for b in receiver.received["vnpt"]] == [
        "[CẢNH BÁO] Tốc độ thấp: Thôn Đồng Tâm (thon-a), Xã Hiệp Lực (VNPT)"
    ]
    assert ["(Viettel)" in b["title"] for b in receiver.received["viettel"]] == [True]
    vnpt = receiver.received["vnpt"][0]
    assert "Nhà mạng: VNPT" in vnpt["message"]
    assert "399,0 Mb/s dưới ngưỡng 800,0 Mb/s" in vnpt["message"]
    # The email: two of them (one per alert), to the office's address, diacritics intact, NFC.
    assert mailbox.rcpts == [["vanphong@xa.example"], ["vanphong@xa.example"]]
    subjects = sorted(str(m["subject"]) for m in mailbox.messages)
    assert subjects[0] == "[CẢNH BÁO] Tốc độ thấp: Thôn Đồng Tâm (thon-a), Xã Hiệp Lực (VNPT)"
    assert unicodedata.is_normalized("NFC", subjects[0])
    body = mailbox.messages[0].get_body(("plain", "html"))
    assert body is not None
    text = body.get_content()
    assert "Quy tắc: low (Tốc độ thấp)" in text
    assert "Giờ Việt Nam (UTC+7)" in text
    assert unicodedata.is_normalized("NFC", text)
    rows = await store.deliveries()
    assert len(rows) == 6 and all(r.delivered_at == T0 and r.attempts == 1 for r in rows)


async def test_failing_receiver_is_retried_with_backoff_and_delivered_once(
    store: AlertStore, hooks: tuple[Hooks, int], mailbox: Mailbox
) -> None:
    receiver, port = hooks
    receiver.fail_first["vnpt"] = 1
    route = routing(port, mailbox.port)
    clock = Clock()
    deliverer = Deliverer(store, route, clock=clock, rng=random.Random(1), base_s=30)
    try:
        notice_id = await fire(store, route, "VNPT", "thon-a", T0)
        first = {o.channel: o for o in await deliverer.deliver_due()}
        assert not first["isp/VNPT/0"].delivered
        assert first["office/0"].delivered and first["office/1"].delivered
        (row,) = [r for r in await store.deliveries() if r.channel == "isp/VNPT/0"]
        # 30 s × a jitter factor in [0.5, 1).
        assert T0 + timedelta(seconds=15) <= row.next_attempt_at < T0 + timedelta(seconds=30)
        assert row.attempts == 1 and row.last_error and "500" in row.last_error
        assert await deliverer.deliver_due() == []  # not due yet
        clock.now = row.next_attempt_at
        second = await deliverer.deliver_due()
        assert [(o.channel, o.delivered) for o in second] == [("isp/VNPT/0", True)]
        clock.now += timedelta(hours=1)
        assert await deliverer.deliver_due() == []
    finally:
        await deliverer.close()
    assert receiver.calls["vnpt"] == 2
    assert len(receiver.received["vnpt"]) == 1
    assert len(receiver.received["office"]) == 1 and len(mailbox.messages) == 1
    rows = await store.deliveries(notice_id=notice_id)
    (done,) = [r for r in rows if r.channel == "isp/VNPT/0"]
    assert done.attempts == 2 and done.delivered_at == row.next_attempt_at


async def test_dead_mail_server_delays_only_the_email(
    store: AlertStore, hooks: tuple[Hooks, int], mailbox: Mailbox, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    receiver, port = hooks
    mailbox.stop()
    route = routing(port, mailbox.port)
    clock = Clock()
    deliverer = Deliverer(store, route, clock=clock, rng=random.Random(2))
    try:
        await fire(store, route, "VNPT", "thon-a", T0)
        outcomes = await deliverer.deliver_due()
        first = {o.channel: o.delivered for o in outcomes}
        assert first == {"office/0": True, "office/1": False, "isp/VNPT/0": True}
        (mail_error,) = [o.error for o in outcomes if o.channel == "office/1"]
        assert mail_error and "email" in mail_error
        assert len(receiver.received["office"]) == 1 and len(receiver.received["vnpt"]) == 1
        mailbox.start()  # the mail server is back
        clock.now += timedelta(hours=2)
        second = await deliverer.deliver_due()
        assert [(o.channel, o.delivered) for o in second] == [("office/1", True)]
    finally:
        await deliverer.close()
    assert len(mailbox.messages) == 1
    assert len(receiver.received["office"]) == 1  # nothing sent twice
    # The webhook token and the mail URL never reach a log line or the stored error.
    # The senders' logs only: the receivers started here (aiohttp.access, aiosmtpd's mail.log)
    # print what they got, as the real servers would on their own machines.
    senders = ("apprise", "urllib3", "hamletnet")
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith(senders))
    assert TOKEN not in ours and "vanphong@xa.example" not in ours
    assert "vanphong" not in mail_error and str(mailbox.port) not in mail_error
    assert "***" in ours  # Apprise and urllib3 did try to print them


def test_backoff_doubles_with_jitter_and_a_cap() -> None:
    rng = random.Random(3)
    for attempts, ceiling in [(1, 30), (2, 60), (3, 120), (10, 1800), (200, 1800)]:
        delay = backoff_s(attempts, rng, base_s=30, cap_s=1800)
        assert ceiling / 2 <= delay < ceiling
    with pytest.raises(ValueError, match="at least 1"):
        backoff_s(0, rng)


def test_channels_and_redaction() -> None:
    route = routing(8080, 2525)
    assert channels_for(route, "VNPT") == ("office/0", "office/1", "isp/VNPT/0")
    assert channels_for(route, None) == ("office/0", "office/1")
    assert channels_for(route, "FPT") == ("office/0", "office/1")
    assert channel_url(route, "isp/Viettel/0") is not None
    assert channel_url(route, "isp/Viettel/1") is None
    assert channel_url(route, "isp/FPT/0") is None
    url = "tgram://123456:AAbbCCddEE/-100200300?format=text"
    text = redact(f"failed on {url}; bot 123456:AAbbCCddEE; chat -100200300", secret_fragments(url))
    assert "AAbbCC" not in text and "100200300" not in text
    mail = "mailtos://user:P%40ssw0rd@smtp.example.vn"
    assert "P@ssw0rd" not in redact("login P@ssw0rd refused", secret_fragments(mail))


async def test_background_loop_delivers_when_woken(
    store: AlertStore, hooks: tuple[Hooks, int], mailbox: Mailbox
) -> None:
    receiver, port = hooks
    route = routing(port, mailbox.port)
    deliverer = Deliverer(store, route, rng=random.Random(4))
    loop_task = asyncio.create_task(deliverer.run(poll_s=3600))
    try:
        await fire(store, route, "Viettel", "thon-b", datetime.now(UTC))
        deliverer.wake()
        for _ in range(500):  # until delivered (bounded; no wall-clock assertion)
            rows = await store.deliveries()
            if rows and all(r.delivered_at for r in rows):
                break
            await asyncio.sleep(0.01)
    finally:
        loop_task.cancel()
        await asyncio.gather(loop_task, return_exceptions=True)
        await deliverer.close()
    assert len(receiver.received["viettel"]) == 1 and len(mailbox.messages) == 1
