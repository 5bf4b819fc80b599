"""The outbox worker: delivers queued notices through Apprise, one call per (notice, channel).

Apprise is blocking (smtplib, requests), so each call runs on a worker thread of our own with a
deadline. A failed call is retried with exponential back-off and jitter (``backoff_s``); the
deliveries of a notice are independent rows, so a dead mail server delays only the email while
the webhook and the other channels go out. Channel URLs hold secrets: they are read from the
configuration at the moment of the call, never stored, and every text that could carry them
(Apprise's and urllib3's log records, the error kept on the outbox row) goes through ``redact``.
A call that runs out of its deadline may still complete on its thread; the retry then sends it a
second time (at least once, never at most once: a lost alert is worse than a repeated one).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, unquote, urlsplit

import apprise
from pydantic import SecretStr

from server.alerts.config import Routing
from server.alerts.store import AlertStore, Delivery

log = logging.getLogger("hamletnet.server.alerts.delivery")

#: First retry after about this long; each further failure doubles it...
BACKOFF_BASE_S = 30.0
#: ...up to this (a dead mail server is tried every half hour or so until it is back).
BACKOFF_CAP_S = 1800.0
#: One Apprise call may take this long (its own socket timeouts are shorter).
CALL_TIMEOUT_S = 60.0
#: Fragments of a URL shorter than this are not redacted (``http``, a port, ``to``).
_MIN_SECRET = 4
#: Loggers that can print a channel URL or its path while Apprise runs.
_CHATTY_LOGGERS = ("apprise", "urllib3.connectionpool")


def backoff_s(attempts: int, rng: random.Random, *, base_s: float = BACKOFF_BASE_S,
              cap_s: float = BACKOFF_CAP_S) -> float:  # fmt: skip
    """Seconds to wait after the ``attempts``-th failed attempt (1, 2, ...): ``base·2^(a-1)``
    capped at ``cap``, times a random factor in [0.5, 1) so that channels failing together do
    not retry in step ("equal jitter", AWS Architecture Blog, "Exponential Backoff And Jitter",
    2015)."""
    if attempts < 1:
        raise ValueError(f"attempts must be at least 1, not {attempts}")
    ceiling = min(cap_s, base_s * 2.0 ** min(attempts - 1, 62))
    return ceiling * (0.5 + 0.5 * rng.random())


# -- Channels -----------------------------------------------------------------------------------


def channels_for(routing: Routing, isp: str | None) -> tuple[str, ...]:
    """Channel keys an alert about ``isp`` goes to: every office URL, and the operator's own
    (``Routing.contacts_for``)."""
    keys = [f"office/{i}" for i in range(len(routing.office.urls))]
    own = routing.isps.get(isp) if isp is not None else None
    if own is not None:
        keys += [f"isp/{isp}/{i}" for i in range(len(own.urls))]
    return tuple(keys)


def channel_url(routing: Routing, key: str) -> SecretStr | None:
    """The URL of a channel key in the configuration as it is now; gone from it: ``None``."""
    party, _, index = key.rpartition("/")
    if not index.isdigit():
        return None
    if party == "office":
        urls = routing.office.urls
    elif party.startswith("isp/") and party[4:] in routing.isps:
        urls = routing.isps[party[4:]].urls
    else:
        return None
    position = int(index)
    return urls[position] if position < len(urls) else None


# -- Redaction ----------------------------------------------------------------------------------


def secret_fragments(url: str) -> set[str]:
    """The parts of an Apprise URL that may be secret: the whole URL, user and password, the
    host (``tgram://`` and ``zalo://`` put the bot token there), every path segment and query
    value, raw and percent-decoded, case as written."""
    parts = urlsplit(url)
    rest = url.split("://", 1)[-1]
    raw = {url, parts.username or "", parts.password or ""}
    raw.update(rest.split("?", 1)[0].replace("@", "/").replace(":", "/").split("/"))
    raw.update(value for _, value in parse_qsl(parts.query, keep_blank_values=True))
    found = set()
    for item in raw:
        for text in (item, unquote(item)):
            if len(text) >= _MIN_SECRET:
                found.add(text)
    return found


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret replaced by ``***``, longest first (so a URL goes whole)."""
    for secret in sorted(set(secrets), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


class _RedactingFilter(logging.Filter):
    """Rewrites records of the chatty loggers so that no channel URL fragment is printed."""

    def __init__(self, secrets: Callable[[], set[str]]) -> None:
        super().__init__()
        self._secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        secrets = self._secrets()
        message = record.getMessage()
        cleaned = redact(message, secrets)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


# -- The worker ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Outcome:
    notice_id: str
    channel: str
    delivered: bool
    error: str | None = None


class Deliverer:
    """Delivers due outbox rows. ``deliver_due`` is one pass (tests call it with their own
    clock); ``run`` is the app's background loop, woken by ``wake`` when notices are queued."""

    def __init__(
        self,
        store: AlertStore,
        routing: Routing,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        rng: random.Random | None = None,
        timeout_s: float = CALL_TIMEOUT_S,
        base_s: float = BACKOFF_BASE_S,
        cap_s: float = BACKOFF_CAP_S,
        threads: int = 4,
    ) -> None:
        self.store = store
        self.routing = routing
        self._clock = clock
        self._rng = rng or random.Random()  # jitter, not a secret
        self._timeout_s = timeout_s
        self._base_s = base_s
        self._cap_s = cap_s
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="alerts-send")
        self._inflight: dict[tuple[str, str], asyncio.Task[Outcome]] = {}
        self._wake = asyncio.Event()
        self._filter = _RedactingFilter(self._all_secrets)
        self._attached = False

    # -- logging hooks ------------------------------------------------------------------------
    def _all_secrets(self) -> set[str]:
        urls = [*self.routing.office.urls]
        for contact in self.routing.isps.values():
            urls += contact.urls
        found: set[str] = set()
        for url in urls:
            found |= secret_fragments(url.get_secret_value())
        return found

    def _attach(self) -> None:
        if self._attached:
            return
        for name in _CHATTY_LOGGERS:
            logging.getLogger(name).addFilter(self._filter)
        self._attached = True

    def _detach(self) -> None:
        if not self._attached:
            return
        for name in _CHATTY_LOGGERS:
            logging.getLogger(name).removeFilter(self._filter)
        self._attached = False

    # -- delivering ---------------------------------------------------------------------------
    def wake(self) -> None:
        """Notices were queued: look at the outbox now rather than at the next due time."""
        self._wake.set()

    async def deliver_due(self) -> list[Outcome]:
        """Start every due delivery not already in flight, and wait for those started."""
        return list(await asyncio.gather(*self._start_due(await self._due())))

    async def _due(self) -> list[Delivery]:
        return await self.store.due(self._clock(), exclude=list(self._inflight))

    def _start_due(self, rows: Sequence[Delivery]) -> list[asyncio.Task[Outcome]]:
        self._attach()
        tasks = []
        for row in rows:
            key = (row.notice_id, row.channel)
            task = asyncio.create_task(self._deliver(row), name=f"alert-send {row.channel}")
            self._inflight[key] = task
            task.add_done_callback(lambda _t, k=key: self._inflight.pop(k, None))  # type: ignore[misc]
            tasks.append(task)
        return tasks

    async def _deliver(self, row: Delivery) -> Outcome:
        url = channel_url(self.routing, row.channel)
        if url is None:
            gone = f"channel {row.channel} is no longer in the configuration"
            await self.store.mark_given_up(row.notice_id, row.channel, gone, self._clock())
            log.warning("alert %s: gave up on %s: %s", row.notice_id, row.channel, gone)
            return Outcome(row.notice_id, row.channel, False, gone)
        loop = asyncio.get_running_loop()
        secret = url.get_secret_value()
        sent: bool
        error: str | None
        try:
            sent, error = await asyncio.wait_for(
                loop.run_in_executor(
                    self._executor, self._send, secret, row.title, row.body, row.kind
                ),
                self._timeout_s,
            )
        except TimeoutError:
            sent, error = False, f"no answer within {self._timeout_s:g} s"
        error = redact(error, secret_fragments(secret)) if error else error
        now = self._clock()
        if sent:
            await self.store.mark_delivered(row.notice_id, row.channel, now)
            log.info("alert %s delivered to %s", row.notice_id, row.channel)
            return Outcome(row.notice_id, row.channel, True)
        delay = backoff_s(row.attempts + 1, self._rng, base_s=self._base_s, cap_s=self._cap_s)
        retry_at = now + timedelta(seconds=delay)
        await self.store.mark_failed(row.notice_id, row.channel, error or "failed", retry_at)
        log.warning(
            "alert %s: %s failed (attempt %d), retry at %s: %s",
            row.notice_id,
            row.channel,
            row.attempts + 1,
            retry_at.isoformat(),
            error,
        )
        return Outcome(row.notice_id, row.channel, False, error)

    def _send(
        self, url: str, title: str, body: str, kind: str = "firing"
    ) -> tuple[bool, str | None]:
        """One blocking Apprise call, on a worker thread; the error text is the warnings Apprise
        kept for this call (``AppriseResult.logs``), redacted by the caller."""
        app = apprise.Apprise(asset=apprise.AppriseAsset(secure_logging=True))
        if not app.add(url):
            return False, "Apprise cannot use this channel URL (check its scheme and fields)"
        try:
            # The notice's kind travels as Apprise's type (a webhook's "type" field, a chat
            # icon): a recovery is a success, a firing alert or its reminder a warning.
            notify_type = (
                apprise.NotifyType.SUCCESS if kind == "resolved" else apprise.NotifyType.WARNING
            )
            result = app.notify(
                body=body,
                title=title,
                body_format=apprise.NotifyFormat.TEXT,
                notify_type=notify_type,
            )
        except Exception as exc:  # a plugin's bug is this channel's failure, not the worker's
            return False, f"Apprise raised {type(exc).__name__}"
        if result:
            return True, None
        warnings = [
            str(entry.message)
            for entry in result.logs()
            if str(entry.level) in ("WARNING", "ERROR", "CRITICAL")
        ]
        return False, "; ".join(warnings) or "Apprise reported a failure"

    async def run(self, *, poll_s: float = 60.0) -> None:
        """The background loop: deliver what is due, sleep until the next due time (at most
        ``poll_s``) or until woken. Cancel it to stop; ``close`` waits for calls in flight."""
        self._attach()
        while True:
            self._wake.clear()
            try:
                self._start_due(await self._due())
                nxt = await self.store.next_due_at()
            except Exception:
                log.exception("alert outbox: cannot read the outbox; trying again later")
                nxt = None
            wait = poll_s
            if nxt is not None:
                wait = min(poll_s, max(0.5, (nxt - self._clock()).total_seconds()))
            try:
                await asyncio.wait_for(self._wake.wait(), wait)
            except TimeoutError:
                pass

    async def close(self) -> None:
        for task in list(self._inflight.values()):
            task.cancel()
        await asyncio.gather(*self._inflight.values(), return_exceptions=True)
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._detach()
