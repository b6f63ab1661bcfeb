"""Live updates over server-sent events, without a polling storm.

One loop per topic (the overview; one campaign page per role) reads Redis once a tick and
renders its HTML fragments; every open page subscribed to the topic gets only the fragments
that changed. A page that opens later gets the latest fragments at once. A stream ends by
itself after ``LIFETIME_S`` (the browser's EventSource reconnects at once) or when the server
is stopping, so an open dashboard never holds up a graceful shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable

from starlette.requests import Request

from waqtor.runtime.exiting import exiting as _exiting
from waqtor.runtime.exiting import watch_server_exit as watch_server_exit

log = logging.getLogger("waqtor.dashboard")

Produce = Callable[[], Awaitable[dict[str, str]]]
Allowed = Callable[[], Awaitable[bool]]
TICK_S = 1.0
LIFETIME_S = 300.0
KEEPALIVE_S = 15.0
#: An open stream checks this often that its session is still logged in (logout ends it).
RECHECK_S = 5.0


class Mailbox:
    """What one open page has not been sent yet: the newest fragment per event, no backlog."""

    def __init__(self) -> None:
        self.pending: dict[str, str] = {}
        self.ready = asyncio.Event()

    def put(self, events: dict[str, str]) -> None:
        self.pending.update(events)
        self.ready.set()

    def take(self) -> dict[str, str]:
        events, self.pending = self.pending, {}
        self.ready.clear()
        return events


class Topic:
    def __init__(self, produce: Produce, tick_s: float) -> None:
        self.produce = produce
        self.tick_s = tick_s
        self.last: dict[str, str] = {}
        self.mailboxes: set[Mailbox] = set()
        self.task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        while self.mailboxes:
            try:
                events = await self.produce()
            except Exception as exc:  # Redis down, a job removed meanwhile...: say so, go on
                log.warning("dashboard live update failed: %s", exc)
                events = {"alert": "Live updates paused: the server cannot read Redis right now"}
            else:
                events.setdefault("alert", "")
            changed = {k: v for k, v in events.items() if self.last.get(k) != v}
            if changed:
                self.last.update(changed)
                for box in self.mailboxes:
                    box.put(changed)
            await asyncio.sleep(self.tick_s)


class Hub:
    def __init__(self, tick_s: float = TICK_S) -> None:
        self.tick_s = tick_s
        self.topics: dict[str, Topic] = {}

    def subscribe(self, key: str, produce: Produce) -> Mailbox:
        topic = self.topics.get(key)
        if topic is None:
            topic = self.topics[key] = Topic(produce, self.tick_s)
        box = Mailbox()
        if topic.last:
            box.put(dict(topic.last))
        topic.mailboxes.add(box)
        if topic.task is None or topic.task.done():
            topic.task = asyncio.ensure_future(topic.run())
        return box

    def unsubscribe(self, key: str, box: Mailbox) -> None:
        topic = self.topics.get(key)
        if topic is None:
            return
        topic.mailboxes.discard(box)
        if not topic.mailboxes:
            del self.topics[key]
            if topic.task is not None:
                topic.task.cancel()


#: Every line break the event-stream format knows: CRLF, a lone CR and a lone LF each end a line.
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def encode(events: dict[str, str]) -> str:
    out = []
    for name, html in events.items():
        # An empty data field would not be dispatched: an empty comment clears the element.
        # Split at CR too, not only LF: a browser ends the line at a bare CR, so text after it
        # (a message with "\r" in it) would otherwise become a field of its own.
        lines = "".join(f"data: {line}\n" for line in _LINE_BREAK.split(html or "<!---->"))
        out.append(f"event: {name}\n{lines}\n")
    return "".join(out)


async def stream(
    request: Request,
    hub: Hub,
    key: str,
    produce: Produce,
    lifetime_s: float = LIFETIME_S,
    allowed: Allowed | None = None,
) -> AsyncIterator[str]:
    """``allowed``: whether the viewer is still logged in; checked every RECHECK_S."""
    box = hub.subscribe(key, produce)
    loop = asyncio.get_running_loop()
    started = last_write = last_check = loop.time()
    try:
        yield "retry: 1500\n\n"
        while not _exiting.is_set() and loop.time() - started < lifetime_s:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(box.ready.wait(), 1.0)
            if await request.is_disconnected():
                break
            if allowed is not None and loop.time() - last_check >= RECHECK_S:
                last_check = loop.time()
                if not await allowed():
                    break
            events = box.take()
            if events:
                last_write = loop.time()
                yield encode(events)
            elif loop.time() - last_write > KEEPALIVE_S:
                last_write = loop.time()
                yield ": keep-alive\n\n"
    finally:
        hub.unsubscribe(key, box)
